"""`lit-llm sweep FILE`: run a W&B sweep file offline, one run after another (or N at a time).

The file is the same one `wandb sweep FILE` + `wandb agent` run online. Grid and random configurations
follow W&B's semantics (grid: the cartesian product of `values` and inclusive `int_uniform` ranges, keys
sorted, the last varying fastest; random: W&B's distributions); bayes asks W&B's open-source engine
(`pip install sweeps==0.2.0`, optional, imported only for bayes). Commands are rendered as the agent
renders them (`${args}` -> `--k=v`). State lives in <out>/sweep-state.json, so an interrupted sweep resumes without re-running finished runs.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

from lit_llm.errors import LitLLMError, yaml_problem
from lit_llm.studies.runs import SWEEP_STATE, latest_summary, read_sweep_state

METHODS = ("grid", "random", "bayes")


def load_sweep(path: str | Path) -> dict:
    try:
        sweep = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise LitLLMError(f"cannot read sweep file {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise LitLLMError(f"sweep file {path} is not valid YAML: {yaml_problem(err)}") from None
    if not isinstance(sweep, dict) or sweep.get("method") not in METHODS:
        raise LitLLMError(f"sweep file {path} needs `method:` one of {', '.join(METHODS)}")
    if not isinstance(sweep.get("parameters"), dict) or not sweep["parameters"]:
        raise LitLLMError(f"sweep file {path} needs a `parameters:` mapping")
    for name, spec in sweep["parameters"].items():
        if not isinstance(spec, dict):
            raise LitLLMError(f"sweep file {path}: parameter {name!r} needs a mapping (value:, values: or distribution:)")
        if "values" in spec and (not isinstance(spec["values"], list) or not spec["values"]):
            raise LitLLMError(f"sweep file {path}: parameter {name!r} has no values; give at least one")
    return sweep


# --- configurations -------------------------------------------------------------------------------
def grid_values(name: str, spec: dict) -> list:
    if "value" in spec:
        return [spec["value"]]
    if "values" in spec:
        return list(spec["values"])
    if spec.get("distribution") == "int_uniform":
        return list(range(int(spec["min"]), int(spec["max"]) + 1))
    raise LitLLMError(f"grid search cannot enumerate parameter {name!r} ({spec}); give `values`")


def grid_configs(parameters: dict) -> list[dict]:
    names = sorted(parameters)
    return [dict(zip(names, combo)) for combo in
            itertools.product(*(grid_values(n, parameters[n]) for n in names))]


def _q(x: float, q: float) -> float:
    return round(x / q) * q


def sample_value(name: str, spec: dict, rng: np.random.Generator):
    """One draw from a W&B parameter spec (distributions as W&B's sweep docs define them)."""
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        values = list(spec["values"])
        p = spec.get("probabilities")
        return values[int(rng.choice(len(values), p=p))]
    dist = spec.get("distribution") or ("int_uniform" if isinstance(spec.get("min"), int)
                                        and isinstance(spec.get("max"), int) else "uniform")
    lo, hi = spec.get("min"), spec.get("max")
    mu, sigma, q = spec.get("mu", 0.0), spec.get("sigma", 1.0), spec.get("q", 1.0)
    if dist == "int_uniform":
        return int(rng.integers(int(lo), int(hi) + 1))  # inclusive, as W&B
    draws = {
        "uniform": lambda: rng.uniform(lo, hi),
        "q_uniform": lambda: _q(rng.uniform(lo, hi), q),
        "log_uniform": lambda: math.exp(rng.uniform(lo, hi)),  # min/max are natural logs
        "q_log_uniform": lambda: _q(math.exp(rng.uniform(lo, hi)), q),
        "log_uniform_values": lambda: math.exp(rng.uniform(math.log(lo), math.log(hi))),
        "q_log_uniform_values": lambda: _q(math.exp(rng.uniform(math.log(lo), math.log(hi))), q),
        "inv_log_uniform": lambda: math.exp(-rng.uniform(lo, hi)),
        "inv_log_uniform_values": lambda: 1 / math.exp(rng.uniform(math.log(1 / hi), math.log(1 / lo))),
        "normal": lambda: rng.normal(mu, sigma),
        "q_normal": lambda: _q(rng.normal(mu, sigma), q),
        "log_normal": lambda: math.exp(rng.normal(mu, sigma)),
        "q_log_normal": lambda: _q(math.exp(rng.normal(mu, sigma)), q),
        "beta": lambda: rng.beta(spec.get("a", 1.0), spec.get("b", 1.0)),
        "q_beta": lambda: _q(rng.beta(spec.get("a", 1.0), spec.get("b", 1.0)), q),
    }
    if dist not in draws:
        raise LitLLMError(f"parameter {name!r}: unknown distribution {dist!r}")
    return float(draws[dist]())


def random_config(parameters: dict, seed: int, index: int) -> dict:
    rng = np.random.default_rng([seed, index])  # run i's parameters do not depend on earlier runs
    return {n: sample_value(n, parameters[n], rng) for n in sorted(parameters)}


def bayes_config(sweep: dict, finished: list[dict]) -> dict | None:
    try:  # imported here: an optional dependency that only bayes needs
        import sweeps as engine
    except ImportError:
        raise LitLLMError("method: bayes needs W&B's sweep engine: pip install 'sweeps==0.2.0' "
                          "(or run this file with `wandb sweep` + `wandb agent`)") from None
    metric = sweep.get("metric", {}).get("name")
    runs = [engine.SweepRun(name=r["id"], config={k: {"value": v} for k, v in r["params"].items()},
                            state=engine.RunState.finished if r["status"] == "finished" else engine.RunState.failed,
                            summary_metrics={metric: r.get("metric")} if r.get("metric") is not None else {})
            for r in finished]
    run = engine.next_run({k: v for k, v in sweep.items() if k != "command"}, runs)
    return None if run is None else {k: _plain(v["value"]) for k, v in run.config.items()}


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


# --- commands -------------------------------------------------------------------------------------
def render_command(sweep: dict, params: dict) -> list[str]:
    """The command line as `wandb agent` builds it from the sweep's `command`."""
    args = [f"--{k}={v}" for k, v in params.items()]
    template = sweep.get("command") or ["${env}", "${interpreter}", "${program}", "${args}"]
    out: list[str] = []
    for token in template:
        if token == "${env}":
            out.append("/usr/bin/env")
        elif token == "${interpreter}":
            out.append(sys.executable)
        elif token == "${program}":
            out.append(str(sweep.get("program", "")))
        elif token == "${args}":
            out += args
        elif token == "${args_no_hyphens}":
            out += [f"{k}={v}" for k, v in params.items()]
        elif token == "${args_no_boolean_flags}":
            out += [f"--{k}" if v is True else f"--{k}={v}" for k, v in params.items() if v is not False]
        elif token == "${args_json}":
            out.append(json.dumps(params))
        else:
            out.append(str(token))
    return out


def is_lit_llm(command: list[str]) -> bool:
    return any(t in ("lit_llm", "lit-llm") or t.endswith("/lit-llm") for t in command)


# --- runner ---------------------------------------------------------------------------------------
class SweepRunner:
    def __init__(self, path: str, out: str | None, count: int | None, parallel: int, dry_run: bool,
                 seed: int, extra: list[str] | tuple = (), per_run: Callable[[dict], list[str]] | None = None) -> None:
        """extra: arguments added to every run's command after the sweep's own; per_run: a function of a run's
        parameters giving more (a study passes each size its tuned learning rate this way)."""
        self.sweep = load_sweep(path)
        self.name = self.sweep.get("name") or Path(path).stem
        self.extra, self.per_run = list(extra), per_run
        self.out = Path(out or Path("runs") / "sweeps" / self.name)
        self.count, self.parallel, self.dry_run, self.seed = count, max(1, parallel), dry_run, seed
        self.metric = self.sweep.get("metric", {}).get("name", "val/loss")
        self.state_path = self.out / SWEEP_STATE
        self.runs: list[dict] = []
        self.lock = threading.RLock()  # --parallel: one thread at a time changes the runs and writes the state
        if self.state_path.exists():
            self.runs = read_sweep_state(self.out).get("runs")
            if not isinstance(self.runs, list):
                raise LitLLMError(f"{self.state_path} holds no list of runs: move it away to start afresh")

    def planned(self) -> list[dict]:
        """The runs this sweep will have (grid, random); bayes proposes them one at a time."""
        method, params = self.sweep["method"], self.sweep["parameters"]
        if method == "grid":
            configs = grid_configs(params)
            if self.count:
                configs = configs[: self.count]
        elif method == "random":
            n = self.count or self.sweep.get("run_cap")
            if not n:
                raise LitLLMError("random search needs --count N (or run_cap in the sweep file)")
            configs = [random_config(params, self.seed, i) for i in range(n)]
        else:
            return []
        return [{"id": f"run-{i:03d}", "params": c} for i, c in enumerate(configs)]

    def command(self, run: dict) -> list[str]:
        cmd = render_command(self.sweep, run["params"]) + self.extra + (self.per_run(run["params"]) if self.per_run else [])
        if is_lit_llm(cmd):  # each run in its own root, grouped and tagged in W&B by the sweep's name
            cmd += [f"--trainer.default_root_dir={self.out / run['id']}", f"--wandb.group={self.name}",
                    f"--wandb.name={self.name}-{run['id']}", f"--wandb.tags={json.dumps(self.tags())}"]
        return cmd

    def tags(self) -> list[str]:
        return [f"sweep:{self.name}", f"method:{self.sweep['method']}"]

    def save(self, run: dict | None = None, **changes) -> None:
        """Applies changes to a run and writes the state (atomically: through a file and a rename)."""
        with self.lock:
            if run is not None:
                run.update(changes)
            self.out.mkdir(parents=True, exist_ok=True)
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"sweep": self.sweep, "runs": self.runs}, indent=2, default=str))
            os.replace(tmp, self.state_path)

    def record(self, run: dict) -> dict:
        known = {r["id"]: r for r in self.runs}
        if run["id"] in known and known[run["id"]]["params"] != run["params"]:
            raise LitLLMError(f"{self.out} holds another sweep's {run['id']}; use another --out")
        if run["id"] not in known:
            self.runs.append({**run, "status": "pending"})
        return next(r for r in self.runs if r["id"] == run["id"])

    def execute(self, run: dict, position: str) -> None:
        cmd = self.command(run)
        root = self.out / run["id"]
        root.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "WANDB_RUN_GROUP": self.name}
        if self.parallel > 1 and "OMP_NUM_THREADS" not in env:
            # runs side by side must not each spin a thread per core: oversubscribed CPUs crawl
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.parallel))
        start = time.time()
        self.save(run, status="running", command=cmd)
        with open(root / "output.log", "w") as log:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
        path, summary = latest_summary(root) or (None, {})
        self.save(run, seconds=round(time.time() - start, 1), metric=summary.get(self.metric),
                  summary=str(path) if path else None,
                  status="finished" if rc == 0 else f"failed (exit {rc}, see {root / 'output.log'})")
        shown = ", ".join(f"{k}={v}" for k, v in run["params"].items())
        result = f"{self.metric} {run['metric']:.4f}" if isinstance(run["metric"], float) else run["status"]
        print(f"[{position}] {run['id']} {shown} -> {result} ({run['seconds']:.0f} s)", flush=True)

    def pending(self) -> list[dict]:
        """The planned runs not finished yet (recorded in the state); the finished ones are announced as skipped."""
        todo = []
        for run in self.planned():
            state = self.record(run)
            if state["status"] == "finished":
                print(f"[skip] {run['id']} finished earlier")
            else:
                todo.append(state)
        return todo

    def finish(self) -> int:
        """The closing line; 1 when a run did not finish."""
        failed = [r for r in self.runs if r["status"] != "finished"]
        print(f"sweep {self.name}: {len(self.runs) - len(failed)}/{len(self.runs)} runs finished; state in {self.state_path}")
        return 1 if failed else 0

    def run(self) -> int:
        if self.sweep["method"] == "bayes":
            return self._run_bayes()
        todo = self.pending()
        if self.dry_run:
            for run in todo:
                print(shlex.join(self.command(run)))
            return 0
        self.save()
        total = len(self.runs)
        with ThreadPoolExecutor(self.parallel) as pool:
            futures = [pool.submit(self.execute, r, f"{i + 1}/{total}") for i, r in enumerate(todo)]
            for f in futures:
                f.result()
        return self.finish()

    def _run_bayes(self) -> int:
        n = self.count or self.sweep.get("run_cap")
        if not n:
            raise LitLLMError("bayes search needs --count N (or run_cap in the sweep file)")
        while sum(r["status"] == "finished" for r in self.runs) < n:
            params = bayes_config(self.sweep, [r for r in self.runs if r["status"] == "finished"])
            if params is None:
                break
            run = self.record({"id": f"run-{len(self.runs):03d}", "params": params})
            if self.dry_run:
                print(shlex.join(self.command(run)))
                return 0
            self.execute(run, f"{len(self.runs)}/{n}")
            if run["status"] != "finished":
                return 1
        return 0
