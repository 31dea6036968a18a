"""`lit-llm scaling study FILE`: a whole scaling study from sweep files, resumable.

A study file (sweeps/scaling-cpu/study.yaml) names W&B sweep files beside it, the same ones `wandb agent`
runs, and the held-out budget:

    name: scaling-cpu
    parallel: 2                      # runs at a time
    tune: tune.yaml                  # a grid over model.lr, depths and seeds: each depth's best lr, a rule lr(L)
    mup_check: tune-width.yaml       # optional: the same lrs at a wider width, to check µP's transfer
    isoflop: [isoflop-1.yaml, ...]   # one grid over sizes per compute budget (--max_flops)
    holdout: {max_flops: 1.9e13, seeds: [1337, 1338, 1339]}
                                     # a budget left out of the fit: its compute-optimal run is predicted, then run
                                     # once per seed (their spread: the noise floor of the comparison)

Stages: (1) tune: run tune.yaml and fit the learning-rate rule every later run follows: each tuned depth's best
lr on the mean over seeds (a parabola vertex in log lr when the grid brackets it, else the grid's best), then
lr(L) = c * L^x through them (one depth: one lr); the µP check's width should agree with the base width's best
(recorded); (2) isoflop: run every isoFLOP sweep, each run at its depth's lr; (3) fit:
approaches 1, 2 and 3 on those runs (`scaling.fit_all`); (4) predict: of the sizes tried that fit in one pass
over the data, the one nearest approach 2's N_opt at the held-out budget, and its loss from the approach whose
replays of this protocol one budget ahead on the fitted budgets erred less (Study.predict); (5) holdout: run
it at its depth's lr (written as holdout.yaml, a sweep file too) and compare; (6) report: study.json, report.md
and the figures.
Each sweep keeps its own state, so a study that is stopped and started again re-runs nothing that finished.
"""

from __future__ import annotations

import csv
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

from lit_llm.errors import LitLLMError, yaml_problem
from lit_llm.studies.isoflop import frontier_loss, n_opt, vertex
from lit_llm.studies.runs import STUDY, fit_summaries
from lit_llm.studies.scaling import PARAMS, fit_all, law_loss, load_points
from lit_llm.studies.scaling_output import describe, measured, plot_all, plot_tune
from lit_llm.studies.sweep import SweepRunner, load_sweep

N_COUNT = "with_head"  # N: the weights a token's matmuls use (non-embedding + the output head)


def load_study(path: Path) -> dict:
    try:
        spec = yaml.safe_load(path.read_text())
    except OSError as err:
        raise LitLLMError(f"cannot read study file {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise LitLLMError(f"study file {path} is not valid YAML: {yaml_problem(err)}") from None
    if not isinstance(spec, dict) or not spec.get("tune") or not spec.get("isoflop"):
        raise LitLLMError(f"study file {path} needs `tune: FILE` and `isoflop: [FILE, ...]` (sweep files beside it)")
    if not isinstance(spec.get("holdout"), dict) or not spec["holdout"].get("max_flops"):
        raise LitLLMError(f"study file {path} needs `holdout: {{max_flops: C}}`, the budget left out of the fit")
    seeds = spec["holdout"].get("seeds")
    if seeds is not None and (not isinstance(seeds, list) or not seeds or not all(isinstance(x, int) for x in seeds)
                              or len(set(seeds)) < len(seeds)):
        raise LitLLMError(f"study file {path}: `holdout.seeds` must be a list of distinct integers, e.g. [1337, 1338]")
    for name in [spec["tune"], *([spec["mup_check"]] if spec.get("mup_check") else []), *spec["isoflop"]]:
        load_sweep(path.parent / name)  # every sweep file is checked before anything runs
    return spec


def failed(file, out) -> LitLLMError:
    return LitLLMError(f"sweep {file} has failed runs (their output.log is in {out}); fix the cause and run the "
                       "study again: finished runs are kept")


def best_lr(lrs: list[float], losses) -> float:
    """The vertex of a parabola in log lr through the best grid point and its neighbours, else the best point."""
    i = int(np.argmin(losses))
    if 0 < i < len(lrs) - 1:
        x = np.log(lrs[i - 1:i + 2])
        _, x_opt, _ = vertex(x, np.asarray(losses[i - 1:i + 2], dtype=float))
        if x_opt is not None:
            return float(np.exp(x_opt))
    return float(lrs[i])


def tuning_rows(runs: list[tuple[str, dict]]) -> dict[tuple[int, int], dict]:
    """The tuning table from (role, run summary) pairs, role "tune" or "mup_check": per (n_layer, width), its N,
    the val loss per lr (the mean over seeds), the seed counts and the best lr (best_lr)."""
    rows: dict[tuple[int, int], dict] = {}
    for role, s in runs:
        if s.get("val/loss") is not None and s.get("n_embd") and s.get("n_layer"):
            row = rows.setdefault((int(s["n_layer"]), int(s["n_embd"])), {
                "n_layer": int(s["n_layer"]), "width": int(s["n_embd"]), "N": s.get(PARAMS[N_COUNT]), "role": role,
                "runs": {}})
            row["runs"].setdefault(float(s["config"]["model.lr"]), []).append(float(s["val/loss"]))
    for (n_layer, width), row in rows.items():
        lrs = sorted(row.pop("runs").items())
        if len(lrs) < 2:
            raise LitLLMError(f"the tuning sweeps need finished runs at 2+ learning rates for n_layer {n_layer}, "
                              f"width {width}")
        row.update(lr=[lr for lr, _ in lrs], val_loss=[float(np.mean(v)) for _, v in lrs],
                   seeds=[len(v) for _, v in lrs])
        row["best_lr"] = best_lr(row["lr"], row["val_loss"])
    return rows


def lr_rule(rows: dict[tuple[int, int], dict]) -> tuple[dict, dict]:
    """Per tuned depth (role "tune"), the best lr of the mean loss over its widths; and the rule through them:
    one depth gives that lr (form "constant"), several a power law lr(L) = c * L^x fitted in log-log. The rule
    keeps its lrs within the grid tried ("within"): it is not extrapolated past what was measured."""
    depths = {}
    for L in sorted({r["n_layer"] for r in rows.values() if r["role"] == "tune"}):
        at = [r for r in rows.values() if r["role"] == "tune" and r["n_layer"] == L]
        lrs = sorted(set.intersection(*(set(r["lr"]) for r in at)))
        if len(lrs) < 2:
            raise LitLLMError(f"the tuning sweep needs 2+ learning rates shared by the widths of n_layer {L}")
        mean = np.mean([[r["val_loss"][r["lr"].index(lr)] for lr in lrs] for r in at], axis=0)
        depths[L] = {"lr": lrs, "val_loss": mean.tolist(), "best_lr": best_lr(lrs, mean)}
    grid = [min(min(d["lr"]) for d in depths.values()), max(max(d["lr"]) for d in depths.values())]
    if len(depths) == 1:
        rule = {"form": "constant", "coefficient": next(iter(depths.values()))["best_lr"], "exponent": 0.0}
    else:
        x, c = np.polyfit(np.log(list(depths)), np.log([d["best_lr"] for d in depths.values()]), 1)
        rule = {"form": "c * n_layer^x", "coefficient": float(np.exp(c)), "exponent": float(x)}
    return depths, {**rule, "within": grid}


def rule_lr(rule: dict, n_layer: int) -> float:
    """The learning rate of a model of depth n_layer under a tuned rule (lr_rule)."""
    return float(np.clip(rule["coefficient"] * n_layer ** rule["exponent"], *rule["within"]))


def interval(samples: list[float]) -> list[float] | None:
    """The 95% interval of bootstrap samples (None without enough of them)."""
    return [float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))] if len(samples) >= 20 else None


class Study:
    def __init__(self, path: str, out: str | None, parallel: int | None = None, bootstrap: int = 100) -> None:
        self.path = Path(path)
        self.spec = load_study(self.path)
        self.name = self.spec.get("name") or self.path.parent.name
        self.out = Path(out or Path("runs") / "studies" / self.name)
        self.parallel = parallel or int(self.spec.get("parallel", 1))
        self.bootstrap = bootstrap
        self.rule: dict | None = None  # the tuned learning-rate rule (tune)
        self.record: dict = {"name": self.name, "study_file": str(self.path), "seconds": {}}
        try:  # a resumed study keeps what its earlier invocations took
            self.earlier = json.loads((self.out / STUDY).read_text()).get("invocations", [])
        except (OSError, ValueError):
            self.earlier = []

    def sweep(self, file: str | Path, out: Path, parallel: int | None = None) -> Path:
        runner = SweepRunner(str(file), str(out), None, parallel or self.parallel, False, 0, per_run=self.lr_args)
        if runner.run() != 0:
            raise failed(file, out)
        return out

    def sweeps(self, files: list[str], per_run=None) -> list[Path]:
        """Several sweeps' runs in one pool, the longest first (the highest budget, then the smallest model:
        the most tokens), so no core waits for another sweep's last run."""
        runners = [SweepRunner(str(self.path.parent / f), str(self.out / Path(f).stem), None, self.parallel, False, 0,
                               per_run=per_run) for f in files]
        jobs = [(r, run) for r in runners for run in r.pending()]
        for r in runners:
            r.save()
        jobs.sort(key=lambda j: (-float(j[1]["params"].get("max_flops", 0)), j[1]["params"].get("model.n_layer", 0)))
        with ThreadPoolExecutor(self.parallel) as pool:
            for future in [pool.submit(r.execute, run, f"{i + 1}/{len(jobs)}") for i, (r, run) in enumerate(jobs)]:
                future.result()
        for f, r in zip(files, runners):
            if r.finish() != 0:
                raise failed(f, r.out)
        return [r.out for r in runners]

    def timed(self, stage: str, fn, *args):
        start = time.time()
        print(f"== {self.name}: {stage}", flush=True)
        result = fn(*args)
        self.record["seconds"][stage] = round(time.time() - start, 1)
        return result

    def run(self) -> int:
        start = time.time()
        self.timed("tune", self.tune)
        iso_dirs = self.timed("isoflop", self.sweeps, self.spec["isoflop"], self.lr_args)
        pts = load_points([str(d) for d in iso_dirs], N_COUNT)
        self.record["tune"]["lr_by_n_layer"] = {s["n_layer"]: self.lr_for(s["n_layer"]) for s in pts["shapes"]}
        fit = self.timed("fit", fit_all, pts, self.bootstrap)
        train_tokens = [s["tokens_seen"] / s["data_passes"] for d in iso_dirs for _, s in fit_summaries(d)
                        if s.get("data_passes")]
        prediction = self.predict(fit, pts, train_tokens[0] if train_tokens else None)
        held_out = self.timed("holdout", self.holdout, prediction)
        prediction.update(held_out)
        prediction["relative_error"] = held_out["measured_loss"] / prediction["loss"] - 1
        prediction["relative_errors"] = {k: held_out["measured_loss"] / prediction[f"loss_approach{k[-1]}"] - 1
                                         for k in ("approach 2", "approach 3") if prediction[f"loss_approach{k[-1]}"]}
        fit["prediction"] = prediction
        self.record["seconds"]["total"] = round(time.time() - start, 1)
        self.record["invocations"] = [*self.earlier, {"finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                                                      "seconds": self.record["seconds"]}]
        self.report(fit, pts)
        return 0

    # --- stages ----------------------------------------------------------------------------------------
    def tune(self) -> dict:
        """Runs the tuning sweep (`tune`) and the µP check (`mup_check`, when named), and sets the lr rule every
        later run follows (lr_rule: under µP the lr transfers across width, not across depth, so each depth gets
        its own, as Porian et al. 2024 tune it per size). The µP check compares the best lrs of the widest and
        the narrowest width at the smallest depth: under µP they agree."""
        files = [self.spec["tune"]] + ([self.spec["mup_check"]] if self.spec.get("mup_check") else [])
        outs = self.sweeps(files)
        rows = tuning_rows([(role, s) for role, out in zip(("tune", "mup_check"), outs) for _, s in fit_summaries(out)])
        if not any(r["role"] == "tune" for r in rows.values()):
            raise LitLLMError(f"the tuning sweep in {outs[0]} has no finished run: see the output.log files there")
        depths, self.rule = lr_rule(rows)
        rule, grid = self.rule, self.rule["within"]
        base_depth = min(L for L, _ in rows)
        base, widest = min(k for k in rows if k[0] == base_depth), max(k for k in rows if k[0] == base_depth)
        self.record["tune"] = {
            "configs": [rows[k] for k in sorted(rows)], "depths": depths, "rule": self.rule,
            "base_width": base[1], "widest_width": widest[1],
            "best_lr_ratio_widest_to_base": rows[widest]["best_lr"] / rows[base]["best_lr"] if widest != base else None}
        print("tuned lr " + ", ".join(f"n_layer {L}: {d['best_lr']:.4g}" for L, d in depths.items())
              + f"; rule lr(L) = {rule['coefficient']:.4g} * L^{rule['exponent']:.3f} (kept within "
              f"{grid[0]:.3g}-{grid[1]:.3g}); each width's best: "
              + ", ".join(f"n_layer {L} width {w}: {r['best_lr']:.4g}" for (L, w), r in sorted(rows.items())), flush=True)
        return self.record["tune"]

    def lr_for(self, n_layer: int) -> float:
        return rule_lr(self.rule, n_layer)

    def lr_args(self, params: dict) -> list[str]:
        """The --model.lr of a run after tuning (none before: the tuning sweeps set their own)."""
        if self.rule is None:
            return []
        if "model.n_layer" not in params and self.rule["exponent"] != 0:
            raise LitLLMError("a study's sweep runs need model.n_layer among their parameters: the tuned learning "
                              "rate depends on depth")
        return [f"--model.lr={self.lr_for(int(params.get('model.n_layer', 1))):.4g}"]

    def predict(self, fit: dict, pts: dict, train_tokens: float | None) -> dict:
        """The compute-optimal size at the held-out budget and its loss. The size: of the sizes tried whose tokens
        fit in one pass over the train split, the nearest to approach 2's N_opt (approach 3's lowest loss when
        approach 2 has no frontier). The loss: from the approach whose replays of this protocol one budget ahead
        (fit["backtest"]["rolling"]) erred less (root mean square); that error, "replay_rms", is the precision to
        expect of the prediction. Both approaches' figures are kept."""
        C = float(self.spec["holdout"]["max_flops"])
        law, iso = fit["chinchilla"], fit["isoflop"]
        candidates = []
        for s in sorted(pts["shapes"], key=lambda s: s["n_layer"]):
            D = C / s["flops_per_token"]
            candidates.append({
                "n_layer": s["n_layer"], "N": s["N"], "D": D,
                "data_passes": D / train_tokens if train_tokens else None,
                "approach 2": frontier_loss(iso, C, s["N"]) if iso.get("a") is not None else None,
                "interval_approach2": interval([frontier_loss(f, C, s["N"]) for f in iso.get("samples_frontier", [])]),
                "approach 3": law_loss(law, s["N"], D),
                "interval_approach3": interval([law_loss(p, s["N"], D) for p in law.get("samples", [])])})
        one_pass = [c for c in candidates if c["data_passes"] is None or c["data_passes"] <= 1] or candidates
        if iso.get("a") is not None:
            size_from, best = "approach 2", min(one_pass, key=lambda c: abs(math.log(c["N"] / n_opt(iso, C))))
        else:
            size_from, best = "approach 3", min(one_pass, key=lambda c: c["approach 3"])
        rms = (fit.get("backtest") or {}).get("rolling_rms")
        loss_from = min(rms, key=rms.get) if rms and best["approach 2"] is not None else "approach 3"
        sizes = [c["n_layer"] for c in candidates]
        prediction = {"C": C, "n_layer": best["n_layer"], "N": best["N"], "D": best["D"],
                      "data_passes": best["data_passes"], "loss": best[loss_from], "size_from": size_from,
                      "loss_from": loss_from,
                      "loss_approach2": best["approach 2"], "loss_approach3": best["approach 3"],
                      "interval_approach2": best["interval_approach2"], "interval_approach3": best["interval_approach3"],
                      "candidates": candidates,
                      "at_edge_of_sizes_tried": best["n_layer"] in (min(sizes), max(sizes)),
                      "N_opt_approach2": n_opt(iso, C) if iso.get("a") is not None else None,
                      "replay_rms": rms.get(loss_from) if rms else None}
        print(f"prediction at C = {C:.3g}: n_layer {best['n_layer']} (N = {best['N']:.3g}, D = {best['D']:.3g}, size "
              f"from {size_from}), loss {prediction['loss']:.4f} ({loss_from})", flush=True)
        return prediction

    def holdout(self, prediction: dict) -> dict:
        """The predicted run at the held-out budget, once per seed of the study file's `holdout.seeds` (else once
        with the config's seed): the measured loss is their mean, and their spread is the noise floor a
        comparison with the prediction cannot beat."""
        template = load_sweep(self.path.parent / self.spec["isoflop"][-1])
        seeds = self.spec["holdout"].get("seeds") or []
        parameters = {"model.n_layer": {"value": prediction["n_layer"]}, "max_flops": {"value": prediction["C"]}}
        if seeds:
            parameters["seed_everything"] = {"values": seeds}
        sweep = {**template, "name": f"{self.name}-holdout", "method": "grid", "parameters": parameters}
        out = self.out / "holdout"
        out.mkdir(parents=True, exist_ok=True)
        file = out / "holdout.yaml"
        file.write_text("# written by lit-llm scaling study: the predicted compute-optimal run at the held-out budget\n"
                        + yaml.safe_dump(sweep, sort_keys=False))
        self.sweep(file, out, parallel=min(len(seeds) or 1, self.parallel))  # one run: all cores
        pts = load_points(str(out), N_COUNT, minimum=1)
        losses = pts["loss"].tolist()
        return {"measured_loss": float(np.mean(losses)), "measured_losses": losses,
                "measured_std": float(np.std(losses, ddof=1)) if len(losses) > 1 else None,
                "measured_C": float(pts["C"][0]), "measured_N": float(pts["N"][0])}

    # --- output ----------------------------------------------------------------------------------------
    def report(self, fit: dict, pts: dict) -> None:
        fit_dir = self.out / "fit"
        fit_dir.mkdir(parents=True, exist_ok=True)
        law = fit["chinchilla"]
        law.pop("samples", None)
        fit["isoflop"].pop("samples_frontier", None)
        (fit_dir / "fit.json").write_text(json.dumps(fit, indent=2))
        figures = [*plot_all(pts, fit, fit_dir), plot_tune(self.record["tune"], fit_dir / "tune.png")]
        self.write_runs(fit_dir / "runs.csv")  # before study.json: it notes the runs that saw data twice
        self.record.update(fit=str(fit_dir / "fit.json"), figures=[str(f) for f in figures])
        (self.out / STUDY).write_text(json.dumps(self.record, indent=2))
        (self.out / "report.md").write_text(self.markdown(fit))
        print("\n".join(describe(fit)))
        p = fit["prediction"]
        print(f"held-out C = {p['C']:.3g}: predicted {p['loss']:.4f}, {measured(p)}")
        print(f"wrote {self.out / 'report.md'}, {self.out / STUDY}, {fit_dir / 'fit.json'} and {len(figures)} "
              f"figures; {self.record['seconds']['total'] / 60:.1f} min", flush=True)

    def write_runs(self, path: Path) -> None:
        """Every isoFLOP and held-out run in one table, to re-check the fits with `lit-llm scaling fit runs.csv`."""
        columns = ["stage", "n_layer", "n_embd", "N", "D", "C", "loss", "data_passes", "train_seconds"]
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for stage in [Path(f).stem for f in self.spec["isoflop"]] + ["holdout"]:
                for _, s in fit_summaries(self.out / stage):
                    if (s.get("data_passes") or 0) > 1:
                        self.record.setdefault("repeated_data", []).append(
                            {"stage": stage, "n_layer": s.get("n_layer"), "data_passes": s["data_passes"]})
                    writer.writerow([stage, s.get("n_layer"), s.get("n_embd"), s.get(PARAMS[N_COUNT]), s["tokens_seen"],
                                     s["flops"], s["val/loss"], s.get("data_passes"), s.get("train_seconds")])

    def markdown(self, fit: dict) -> str:
        """report.md: the tuning, the profiles, the three approaches and the held-out prediction."""
        t, p, sec = self.record["tune"], fit["prediction"], self.record["seconds"]
        rule, grid = t["rule"], sorted({lr for r in t["configs"] for lr in r["lr"]})
        lines = [f"# Scaling study {self.name}", "", f"Study file `{self.path}`; every run's command and output under "
                 f"`{self.out}`. Wall clock of this invocation: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in sec.items())
                 + "".join(f"; of the one finished {i['finished']}: {i['seconds'].get('total', 0) / 60:.1f} min"
                         for i in self.earlier)
                 + ".", "",
                 "## Learning rate (stage 1)", "", f"Val loss, the mean over {max(max(r['seeds']) for r in t['configs'])} "
                 "seed(s) per point:", "", "| n_layer | width | sweep | best lr | " + " | ".join(f"{lr:.3g}" for lr in grid) + " |",
                 "| --- | --- | --- | --- |" + " --- |" * len(grid)]
        for row in t["configs"]:
            cells = [f"{row['val_loss'][row['lr'].index(lr)]:.4f}" if lr in row["lr"] else "" for lr in grid]
            lines.append(f"| {row['n_layer']} | {row['width']} | {row['role']} | {row['best_lr']:.3g} | " + " | ".join(cells) + " |")
        ratio = t["best_lr_ratio_widest_to_base"]
        lines += ["", f"Rule: lr(L) = {rule['coefficient']:.4g} x n_layer^{rule['exponent']:.3f}, kept within "
                  f"{rule['within'][0]:.3g}-{rule['within'][1]:.3g}; used: " + ", ".join(
                      f"n_layer {L}: {lr:.3g}" for L, lr in t["lr_by_n_layer"].items()) + "." + (
                      f" µP check: best lr at width {t['widest_width']} / at width {t['base_width']}: {ratio:.2f}."
                      if ratio is not None else ""), "", "## Fits (stages 2-3)",
                  "", "```",
                  *describe(fit), "```", "", "![isoFLOP profiles](fit/isoflop.png)", "",
                  "## Held-out prediction (stages 4-5)", "",
                  f"Fitted without it, {p['size_from']} picks n_layer {p['n_layer']} (N = {p['N']:.3g}, "
                  f"D = {p['D']:.3g}"
                  + (f", {p['data_passes']:.2f} passes over the data" if p.get("data_passes") else "")
                  + f") as compute-optimal at C = {p['C']:.3g}; {p['loss_from']} (the smaller error in the backtest's "
                  f"replays) predicts val loss **{p['loss']:.4f}**" + (f" (bootstrap 95%: {ci[0]:.4f}-{ci[1]:.4f})" if (
                      ci := p[f"interval_approach{p['loss_from'][-1]}"]) else "") + f"; {measured(p)}.", "",
                  "| n_layer | N | D | data passes | approach 2 (bootstrap 95%) | approach 3 (bootstrap 95%) |",
                  "| --- | --- | --- | --- | --- | --- |"]

        def cell(x: float | None, ci: list[float] | None) -> str:
            return ("" if x is None else f"{x:.4f}") + (f" ({ci[0]:.4f}-{ci[1]:.4f})" if ci else "")

        lines += [f"| {c['n_layer']} | {c['N']:.3g} | {c['D']:.3g} | "
                  + ("" if c["data_passes"] is None else f"{c['data_passes']:.2f}")
                  + f" | {cell(c['approach 2'], c['interval_approach2'])} | {cell(c['approach 3'], c['interval_approach3'])} |"
                  for c in p["candidates"]]
        lines += ["", "Measured against each approach: " + ", ".join(
            f"{k} {100 * e:+.2f}%" for k, e in p.get("relative_errors", {}).items()) + "."]
        repeated = self.record.get("repeated_data", [])
        lines += ["", "Data: every run trained on at most one pass over the train split, except: " + (", ".join(
            f"{r['stage']} n_layer {r['n_layer']} ({r['data_passes']:.2f} passes)" for r in repeated) or "none") + "."]
        if p["at_edge_of_sizes_tried"]:
            lines += ["", "Note: the predicted size is the smallest or largest tried; the optimum may lie beyond it."]
        return "\n".join(lines) + "\n"
