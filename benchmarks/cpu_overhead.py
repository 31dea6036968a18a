"""Per-step time of `lit-llm fit --config configs/shakespeare-char.yaml` against nanoGPT's own train.py on
the same model and batch (its CPU "baby" run), side by side, W&B disabled and offline.

    python benchmarks/cpu_overhead.py --nanogpt /path/to/nanoGPT --corpus /path/to/tinyshakespeare.txt \
        [--steps 300] [--rounds 3] [--threads 2] [--variants nanogpt,lit-disabled,lit-offline] [--tty]

nanoGPT runs as a subprocess from its own checkout (its data/shakespeare_char/prepare.py must have been run:
train.bin, val.bin, meta.pkl); nothing of it is imported. Its command: config/train_shakespeare_char.py
with --device=cpu --compile=False --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
--dropout=0.0 --bias=True --lr_decay_iters=2000 --log_interval=1 --eval_iters=20 --eval_interval=10000.

Each round runs every variant once, in turn (the order rotates from round to round), so a load that comes
and goes on a shared machine hits all of them alike. The steady state is read from each run's own per-step
clock, not from the process's wall time (start-up, the final validation and checkpoint are left out):
- nanoGPT: its per-iteration `time ...ms`, summed over 10-iteration windows from iteration 21 on;
- lit-llm: the Throughput callback's train/tokens_per_sec (metrics.csv), one 10-step window per logging
  step (log_every_n_steps 10), the first two windows left out; every cost of a step (hooks, logging,
  W&B, data) lands in one window.
Per variant: the median window (ms/step and tokens/s), the spread of the per-round medians, the 20th
percentile of all its windows (the least disturbed ones), and the tokens/s ratio to nanoGPT, per round
(then its median and spread) and of the 20th percentiles. `--short-steps N` also runs N steps
and reports the difference of the two run lengths per step, in wall time (everything, but start-up
noise included) and in CPU time (user + sys of the process: waiting for a busy core left out, so it
holds up better on a loaded machine; with 1 thread it is the step's work). `--tty` runs both under a pseudo-terminal (`script`), so the progress bar
draws as for a user at a terminal. Prints `uptime` before and after.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/shakespeare-char.yaml"
TOKENS_PER_STEP = 12 * 64  # batch 12 x block 64 (both configs)
WINDOW = 10
NANOGPT_ARGS = ["--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1", "--block_size=64",
                "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--lr_decay_iters=2000",
                "--dropout=0.0", "--always_save_checkpoint=False", "--eval_interval=10000", "--bias=True"]
ITER_LINE = re.compile(r"iter (\d+): loss [\d.]+, time ([\d.]+)ms")


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: " + " ".join(open("/proc/loadavg").read().split()[:3])


class KilledBySignal(Exception):
    pass


def run(cmd: list[str], cwd: Path, env: dict, log: Path, tty: bool) -> tuple[float, float]:
    """Run cmd with its output in log; return its wall time and CPU time (user + sys, with the children it
    waited for). Under tty, in a pseudo-terminal."""
    if tty:
        cmd = ["script", "-q", "-e", "-c", shlex.join(cmd), str(log)]
    t0 = time.perf_counter()
    with open(os.devnull if tty else log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode < 0:
        raise KilledBySignal(f"killed by signal {-proc.returncode}")
    if proc.returncode:
        sys.stderr.write(log.read_text(errors="replace")[-4000:])
        raise SystemExit(f"{shlex.join(cmd)} exited with {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def nanogpt_windows(log: Path) -> list[float]:
    """ms/step of each 10-iteration window from iteration 21 on."""
    times = {int(m[1]): float(m[2]) for m in ITER_LINE.finditer(log.read_text(errors="replace"))}
    windows = []
    for start in range(21, max(times, default=0) + 1, WINDOW):
        chunk = [times.get(i) for i in range(start, start + WINDOW)]
        if None not in chunk:
            windows.append(sum(chunk) / WINDOW)
    return windows


def lit_windows(root: Path) -> list[float]:
    """ms/step of each logging window from metrics.csv (train/tokens_per_sec), the first two left out."""
    versions = sorted(glob.glob(str(root / "lightning_logs" / "version_*")), key=lambda p: int(p.rsplit("_", 1)[1]))
    if not versions:
        raise SystemExit(f"no lightning_logs/version_* under {root}")
    rates = []
    with open(Path(versions[-1]) / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row.get("train/tokens_per_sec"):
                rates.append((int(row["step"]), float(row["train/tokens_per_sec"])))
    return [1e3 * TOKENS_PER_STEP / r for _, r in sorted(rates)[1:]]


def variant_cmd(name: str, args, workdir: Path, steps: int) -> tuple[list[str], Path]:
    if name.startswith("nanogpt"):
        cmd = [sys.executable, "train.py", "config/train_shakespeare_char.py", *NANOGPT_ARGS,
               f"--max_iters={steps}", f"--out_dir={workdir / 'nanogpt-out'}"]
        if name == "nanogpt-wandb":
            cmd.append("--wandb_log=True")
        return cmd, Path(args.nanogpt)
    which, mode = name.split("-", 1)  # lit | base | exact, - disabled | offline
    cmd = [sys.executable, "-m", "lit_llm", "fit", "--config", CONFIG, "--data.corpus", args.corpus,
           "--trainer.default_root_dir", str(workdir), "--trainer.max_steps", str(steps),
           "--trainer.val_check_interval", str(10**6), "--wandb.mode", mode, *args.lit_args]
    if which == "exact":  # nanoGPT's exact (erf) GELU instead of GPT-2's tanh form
        cmd += ["--model.mlp", "gelu_exact"]
    return cmd, lit_repo(which, args)


def lit_repo(which: str, args) -> Path:
    return Path(args.baseline).resolve() if which == "base" else REPO


def measure(name: str, args, outdir: Path, tag: str, steps: int) -> dict:
    workdir = outdir / f"{name}-{tag}"
    workdir.mkdir(parents=True)
    cmd, cwd = variant_cmd(name, args, workdir, steps)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               WANDB_SILENT="true")
    if name == "nanogpt-wandb":
        env["WANDB_MODE"] = "offline"
        env["WANDB_DIR"] = str(workdir)
    if not name.startswith("nanogpt"):  # this checkout's lit_llm (or the baseline's), not an installed one
        env["PYTHONPATH"] = os.pathsep.join([str(cwd), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    log = workdir / "output.log"
    for attempt in range(3):  # on a shared machine a run may be killed from outside: run it again
        try:
            wall, cpu = run(cmd, cwd, env, log, args.tty)
            break
        except KilledBySignal as err:
            print(f"  {name}: {err}; again", flush=True)
            shutil.rmtree(workdir)
            workdir.mkdir(parents=True)
    else:
        raise SystemExit(f"{name} was killed three times")
    windows = nanogpt_windows(log) if name.startswith("nanogpt") else lit_windows(workdir)
    return {"wall": wall, "cpu": cpu, "windows": windows,
            "median": statistics.median(windows) if windows else float("nan")}


def p20(runs: list[dict]) -> float:
    """The 20th percentile of all of a variant's windows (the fast ones: least disturbed by other load)."""
    windows = sorted(w for res in runs for w in res["windows"])
    return windows[len(windows) // 5] if windows else float("nan")


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nanogpt", help="nanoGPT checkout (needs data/shakespeare_char/{train,val}.bin)")
    p.add_argument("--corpus", required=True, help="tinyshakespeare.txt, for lit-llm")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--short-steps", type=int, default=0, help="also run this many steps: run-length difference")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS / MKL_NUM_THREADS of every run")
    p.add_argument("--variants", default="nanogpt,lit-disabled,lit-offline",
                   help="comma-separated: nanogpt, nanogpt-wandb (its wandb_log, offline), lit-disabled, lit-offline, "
                        "base-disabled, base-offline (the --baseline checkout), exact-disabled, exact-offline "
                        "(this checkout with --model.mlp gelu_exact, nanoGPT's GELU)")
    p.add_argument("--baseline", help="another lit_llm checkout (e.g. `git archive` of an older commit) for base-*")
    p.add_argument("--tty", action="store_true", help="run under a pseudo-terminal (progress bar drawn)")
    p.add_argument("--outdir", help="where the runs go (default: a new temporary directory)")
    p.add_argument("lit_args", nargs="*", help="extra lit-llm arguments, after --")
    args = p.parse_args()
    variants = args.variants.split(",")
    if any(v.startswith("base") for v in variants) and not args.baseline:
        raise SystemExit("base-* variants need --baseline DIR")
    if any(v.startswith("nanogpt") for v in variants):
        if not args.nanogpt or not (Path(args.nanogpt) / "data/shakespeare_char/train.bin").is_file():
            raise SystemExit("--nanogpt DIR must be a nanoGPT checkout with data/shakespeare_char prepared")
    outdir = Path(args.outdir or tempfile.mkdtemp(prefix="cpu-overhead-"))
    print(f"runs in {outdir}; threads {args.threads}; steps {args.steps}; tty {args.tty}")
    print(f"before: {uptime()}", flush=True)
    results: dict[str, list[dict]] = {v: [] for v in variants}
    short: dict[str, list[float]] = {v: [] for v in variants}  # wall-time difference, ms/step
    short_cpu: dict[str, list[float]] = {v: [] for v in variants}  # CPU-time difference, ms/step
    for r in range(args.rounds):
        order = variants[r % len(variants):] + variants[: r % len(variants)]
        for name in order:
            res = measure(name, args, outdir, f"r{r}", args.steps)
            results[name].append(res)
            line = f"round {r} {name:<14} median window {res['median']:6.2f} ms/step  wall {res['wall']:6.1f} s"
            if args.short_steps:
                res_short = measure(name, args, outdir, f"r{r}-short", args.short_steps)
                n = args.steps - args.short_steps
                short[name].append(1e3 * (res["wall"] - res_short["wall"]) / n)
                short_cpu[name].append(1e3 * (res["cpu"] - res_short["cpu"]) / n)
                line += f"  difference: wall {short[name][-1]:6.2f}, CPU {short_cpu[name][-1]:6.2f} ms/step"
            print(line + f"  [{uptime().split('load average:')[-1].strip()}]", flush=True)
    print(f"after: {uptime()}\n")

    ref = next((v for v in variants if v.startswith("nanogpt")), None)
    print(f"{'variant':<14} {'ms/step':>8} {'by round':>15} {'tokens/s':>9} {'p20 ms':>7}  "
          f"tokens/s ratio to {ref or '-'}: median of rounds (spread), of p20")
    for name in variants:
        medians = [res["median"] for res in results[name]]
        ms = statistics.median(medians)
        fast = p20(results[name])
        ratios = ([results[ref][i]["median"] / m for i, m in enumerate(medians)] if ref and name != ref else [])
        ratio_txt = (f"{statistics.median(ratios):.3f} ({spread(ratios)}), {p20(results[ref]) / fast:.3f}"
                     if ratios else "")
        print(f"{name:<14} {ms:8.2f} {spread(medians):>15} {1e3 * TOKENS_PER_STEP / ms:9.0f} {fast:7.2f}  {ratio_txt}")
        if args.short_steps:
            ratios = ([short_cpu[ref][i] / c for i, c in enumerate(short_cpu[name])] if ref and name != ref else [])
            print(f"{'':<14} difference of run lengths, ms/step: wall {statistics.median(short[name]):.2f} "
                  f"({spread(short[name])}), CPU {statistics.median(short_cpu[name]):.2f} ({spread(short_cpu[name])})"
                  + (f"; CPU ratio to {ref} {statistics.median(ratios):.3f} ({spread(ratios)})" if ratios else ""))
    for which in ("lit", "base"):
        if f"{which}-disabled" in results and f"{which}-offline" in results:
            costs = [1 - results[f"{which}-disabled"][i]["median"] / results[f"{which}-offline"][i]["median"]
                     for i in range(args.rounds)]  # the share of tokens/s lost
            print(f"{which}: W&B offline costs {100 * statistics.median(costs):.1f}% of tokens/s "
                  f"(by round {100 * min(costs):.1f}% to {100 * max(costs):.1f}%)")


if __name__ == "__main__":
    main()
