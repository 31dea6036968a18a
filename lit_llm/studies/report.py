"""`lit-llm report RUNS_DIR --out DIR`: one self-contained HTML page over every run under RUNS_DIR.

A run is a `lightning_logs/version_N/` directory holding `summary.json` (written by every fit), found at
any depth, so a single root, a sweep directory (`lit-llm sweep`) or a tree of both all work. The page has
a sortable runs table, loss and perplexity curves against tokens and FLOPs, throughput and MFU over
training time, the loss at each position of the context (runs with `--model.loss_by_position true`), the
scaling fit of each sweep (`lit_llm.studies.scaling`, reused as is), the samples
generated at validation during training (`samples.jsonl`) and those `lit-llm predict` wrote. Runs are read
through `lit_llm.studies.runs`. It is written to `DIR/report.html` through a temporary file and a rename;
an existing report is replaced only with `--overwrite`.

Why static PNGs: the figures are matplotlib PNGs inlined as base64 `<img>`. matplotlib is already a
dependency; an interactive JS plotting library would have to be inlined (hundreds of KB per page) or
fetched from a CDN (no longer offline), and a PNG renders identically offline, in any browser, in a
mail or a pull request. The only script is a few lines: click a column header to sort the table.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from lit_llm.errors import LitLLMError
from lit_llm.studies.report_html import SORT_SCRIPT, STYLE, evaluations_table, runs_table, samples_section
from lit_llm.studies.runs import STUDY, Run, find_runs, find_sweeps, sweep_name
from lit_llm.studies.scaling import MAX_EXPONENT, fit_all, load_points
from lit_llm.studies.scaling_output import describe, measured, plot_all

REPORT_NAME = "report.html"
# config keys worth showing when they differ between runs (paths and names never are)
HIGHLIGHT_PREFIXES = ("model.", "data.", "max_tokens", "tokens_per_step", "seed_everything", "trainer.max_steps",
                      "trainer.accumulate_grad_batches", "trainer.precision", "trainer.devices", "trainer.num_nodes")
NOT_HIGHLIGHTS = ("data.cache_dir", "data.prompts", "data.num_workers", "data.eval_batch_size")
SHARED_KEYS = ("data.corpus", "data.tokenizer", "data.block_size", "data.batch_size", "model.lr", "model.norm",
               "model.pos", "model.mlp")


# --- table and curve data -------------------------------------------------------------------------
def curves(run: Run) -> dict[str, dict[str, np.ndarray]]:
    """Train and val loss/ppl against tokens and FLOPs, and throughput against tokens.

    Validation rows carry tokens_seen (runs before lit_llm logged it there: a row at `step` s follows
    s + 1 optimizer steps, so its tokens are interpolated from the training rows and the run's start and
    end). metrics.csv has no clock, so
    throughput is drawn against tokens seen, the run's progress (rebuilding time from the windows would
    be wrong: a window that spans a validation measures only the steps after it)."""
    fpt = float(run.summary.get("flops_per_token") or 0)
    train = [r for r in run.rows if "train/loss" in r and "tokens_seen" in r]
    steps = [0.0] + [r["step"] + 1 for r in train] + [float(run.summary.get("global_step", 0))]
    tokens = [0.0] + [r["tokens_seen"] for r in train] + [float(run.summary.get("tokens_seen", 0))]
    order = np.argsort(steps, kind="stable")
    val = [r for r in run.rows if "val/loss" in r]
    interpolated = np.interp([r["step"] + 1 for r in val], np.array(steps)[order], np.array(tokens)[order])
    val_tokens = np.array([r.get("tokens_seen", t) for r, t in zip(val, interpolated)], dtype=float)
    t = np.array([r["tokens_seen"] for r in train])
    timed = [r for r in train if r.get("train/tokens_per_sec", 0) > 0]
    return {
        "train": {"tokens": t, "flops": t * fpt, "loss": np.array([r["train/loss"] for r in train])},
        "val": {"tokens": val_tokens, "flops": val_tokens * fpt, "loss": np.array([r["val/loss"] for r in val]),
                "ppl": np.array([r.get("val/ppl", math.exp(r["val/loss"])) for r in val])},
        "throughput": {"tokens": np.array([r["tokens_seen"] for r in timed]),
                       "tokens_per_sec": np.array([r["train/tokens_per_sec"] for r in timed]),
                       "mfu": np.array([r.get("train/mfu", np.nan) for r in timed])},
    }


def varying_keys(runs: list[Run]) -> list[str]:
    configs = [r.summary.get("config", {}) for r in runs]
    keys = sorted({k for c in configs for k in c if k.startswith(HIGHLIGHT_PREFIXES) and k not in NOT_HIGHLIGHTS})
    return [k for k in keys if len({json.dumps(c.get(k), default=str) for c in configs}) > 1]


def table_row(run: Run, keys: list[str]) -> dict:
    """One row of the runs table. tokens/s is the run's mean (all devices; start-up and validation left
    out); MFU is scaled from the last window's to that mean rate (MFU is proportional to it)."""
    s, cfg, tp = run.summary, run.summary.get("config", {}), run.summary.get("throughput", {})
    world = s.get("world_size") or 1
    rate = tp.get("tokens_per_sec_per_device_mean", tp.get("tokens_per_sec_per_device"))
    mfu = tp.get("mfu")
    if mfu is not None and rate and tp.get("tokens_per_sec_per_device"):
        mfu = mfu * rate / tp["tokens_per_sec_per_device"]
    return {
        "run": run.label,
        "model": model_name(cfg),
        "config": ", ".join(f"{k.split('.', 1)[-1] if k.startswith('model.') else k}={cfg.get(k)}" for k in keys),
        "params": s.get("params"), "params_non_embedding": s.get("params_non_embedding"),
        "tokens": s.get("tokens_seen"), "flops": s.get("flops"), "steps": s.get("global_step"),
        "val_loss": s.get("val/loss"), "val_ppl": s.get("val/ppl"),
        "tokens_per_sec": rate * world if rate else None, "mfu": mfu, "seconds": s.get("train_seconds"),
    }


def model_name(cfg: dict) -> str:
    shape = f"{cfg.get('model.n_layer', '?')}L·{cfg.get('model.n_embd', '?')}d"
    arch = cfg.get("model.arch", "transformer")
    return f"{shape}·{cfg.get('model.n_head', '?')}h" if arch == "transformer" else f"{arch} {shape}"


# --- figures --------------------------------------------------------------------------------------
def _png(fig) -> str:
    import matplotlib.pyplot as plt  # already loaded by curve_figures (why there, see there)

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def curve_figures(runs: list[Run]) -> list[tuple[str, str]]:
    """(title, base64 PNG) of the loss/ppl curves against tokens and FLOPs, and the throughput."""
    # imported here: matplotlib is slow to import and only figures need it; Agg is chosen before pyplot loads
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = [curves(r) for r in runs]
    colors = plt.get_cmap("tab10" if len(runs) <= 10 else "tab20")(np.arange(len(runs)) % 20)
    figures = []
    for axis, xlabel in (("tokens", "tokens seen"), ("flops", "training FLOPs")):
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
        for run, d, color in zip(runs, data, colors):
            axes[0].plot(d["train"][axis], d["train"]["loss"], color=color, lw=1.2, label=run.label)
            axes[1].plot(d["val"][axis], d["val"]["loss"], "o-", color=color, ms=3, lw=1.2)
            axes[2].plot(d["val"][axis], d["val"]["ppl"], "o-", color=color, ms=3, lw=1.2)
        for ax, title in zip(axes, ("train/loss", "val/loss", "val/ppl")):
            ax.set(xscale="log", xlabel=xlabel, title=title)
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # labelled minor ticks overlap
            ax.grid(alpha=0.3, which="both")
        _legend(fig, axes[0], len(runs))
        figures.append((f"Loss and perplexity vs {xlabel}", _png(fig)))
    fig, axes = plt.subplots(1, 2, figsize=(15, 4.2))
    for run, d, color in zip(runs, data, colors):
        axes[0].plot(d["throughput"]["tokens"], d["throughput"]["tokens_per_sec"], ".-", color=color, label=run.label)
        axes[1].plot(d["throughput"]["tokens"], 100 * d["throughput"]["mfu"], ".-", color=color)
    axes[0].set(xlabel="tokens seen", title="tokens/s (all devices; each window since the previous logged step)")
    axes[1].set(xlabel="tokens seen", title="MFU (%)")
    for ax in axes:
        ax.grid(alpha=0.3)
    _legend(fig, axes[0], len(runs))
    figures.append(("Throughput during training", _png(fig)))
    return figures


def _legend(fig, ax, n: int) -> None:
    fig.tight_layout(rect=(0, 0, 0.85, 1))
    if n > 40:
        return  # a legend that long helps nobody; the table names the runs
    fig.legend(*ax.get_legend_handles_labels(), loc="center left", bbox_to_anchor=(0.855, 0.5),
               fontsize=8 if n <= 12 else 6, ncol=1 if n <= 20 else 2, frameon=False)


def position_section(runs: list[Run]) -> str:
    """The val loss at each position of the context, one line per run that recorded it
    (`--model.loss_by_position true`: the fit's final validation, or a `validate`)."""
    recorded = [r for r in runs if r.positions]
    if not recorded:
        return ("<p class=note>No run recorded it: <code>--model.loss_by_position true</code> (fit or "
                "<code>lit-llm validate</code>) writes <code>loss_by_position.csv</code>.</p>")
    import matplotlib.pyplot as plt  # loaded (with the Agg backend) by curve_figures, which runs first

    fig, ax = plt.subplots(figsize=(9, 4.2))
    for run in recorded:
        rows = [p for p in run.positions if "position" in p and "loss" in p]
        ax.plot([p["position"] for p in rows], [p["loss"] for p in rows], lw=1.2,
                label=run.label + ("" if run.is_fit else " (validate)"))
    ax.set(xlabel="position t in the context (the prediction at t has read t+1 tokens)", ylabel="val loss (nats/token)",
           xscale="symlog", title="mean validation loss at each position")
    ax.grid(alpha=0.3, which="both")
    _legend(fig, ax, len(recorded))
    return f"<img alt='loss by position' src='data:image/png;base64,{_png(fig)}'>"


# --- sections -------------------------------------------------------------------------------------
def scaling_sections(root: Path, bootstrap: int) -> list[str]:
    """The scaling fit of every sweep under root (lit_llm.studies.scaling's loading, fit and plots), or why not;
    for the directory of a `lit-llm scaling study`, the study's own fit and held-out prediction."""
    if (root / STUDY).exists():
        return study_section(root)
    sweeps = find_sweeps(root)
    if not sweeps:
        return ["<p class=note>No scaling fit: no sweep under this directory (a <code>sweep-state.json</code> "
                "written by <code>lit-llm sweep</code>).</p>"]
    out = []
    for sweep in sweeps:
        name = html.escape(sweep_name(sweep) + (f" ({sweep.relative_to(root).as_posix()})" if sweep != root else ""))
        try:
            pts = load_points(sweep)
            if len(np.unique(pts["N"])) < 2 or len(np.unique(pts["D"])) < 2:
                raise LitLLMError("its runs do not vary both the model size N and the tokens D")
        except LitLLMError as err:
            out.append(f"<p class=note>Sweep <b>{name}</b>: no scaling fit: {html.escape(str(err))}.</p>")
            continue
        fit = fit_all(pts, bootstrap)
        with tempfile.TemporaryDirectory() as tmp:
            images = [base64.b64encode(p.read_bytes()).decode() for p in plot_all(pts, fit, Path(tmp))]
        c, o = fit["chinchilla"], fit["compute_optimal"]
        text = (f"{fit['runs']} runs. L(N, D) = {c['E']:.3f} + {c['A']:.3g}/N<sup>{c['alpha']:.3f}</sup> + "
                f"{c['B']:.3g}/D<sup>{c['beta']:.3f}</sup> (Huber fit, {bootstrap} bootstrap resamples). ")
        text += ("Compute-optimal: none (a term of the law does not fall: no optimum)." if math.isnan(o["a"]) else
                 f"Compute-optimal: N<sub>opt</sub> ∝ C<sup>{o['a']:.3f}</sup>, D<sub>opt</sub> ∝ C<sup>{o['b']:.3f}"
                 f"</sup>; at C = {o['C']:.3g} FLOPs: N = {o['N_opt']:.3g}, D = {o['D_opt']:.3g} "
                 f"({o['tokens_per_param']:.1f} tokens per parameter).")
        if not math.isnan(o["a"]) and not pts["N"].min() <= o["N_opt"] <= pts["N"].max():
            text += (f" That N lies outside the sizes tried ({pts['N'].min():.3g} to {pts['N'].max():.3g}): "
                     "an extrapolation.")
        if c["exponents_at_bound"]:
            text += (f" <b>Warning:</b> {', '.join(c['exponents_at_bound'])} at the bound [0, {MAX_EXPONENT}]: "
                     "the runs do not determine it, so the compute-optimal allocation is not reliable.")
        iso = fit["isoflop"] or {}
        if iso.get("a") is not None:
            text += f" IsoFLOP (approach 2): N<sub>opt</sub> ∝ C<sup>{iso['a']:.3f}</sup>."
        elif iso.get("note"):
            text += f" IsoFLOP: {html.escape(iso['note'])}."
        figs = "".join(f'<img alt="scaling {i}" src="data:image/png;base64,{b}">' for i, b in enumerate(images))
        out.append(f"<h3>Sweep {name}</h3><p>{text}</p><div class=row>{figs}</div>")
    return out


def study_section(root: Path) -> list[str]:
    """A study's fits as `lit-llm scaling study` wrote them (fit/fit.json, its figures) and its prediction."""
    try:
        fit = json.loads((root / "fit" / "fit.json").read_text())
    except (OSError, ValueError):
        return [f"<p class=note>Study in {html.escape(str(root))}: no fit yet (fit/fit.json is written at its end).</p>"]
    text = f"<pre>{html.escape(chr(10).join(describe(fit)))}</pre>"
    if (p := fit.get("prediction")) and p.get("measured_loss") is not None:
        text += (f"<p><b>Held-out prediction</b> at C = {p['C']:.3g} FLOPs (a budget the fit did not see): n_layer "
                 f"{p['n_layer']} (N = {p['N']:.3g}, D = {p['D']:.3g}), predicted val loss {p['loss']:.4f} "
                 f"({html.escape(p.get('loss_from', 'approach 3'))}), "
                 f"{html.escape(measured(p))}.</p>")
    figs = "".join(f'<img alt="{f.stem}" src="data:image/png;base64,{base64.b64encode(f.read_bytes()).decode()}">'
                   for f in sorted((root / "fit").glob("*.png")))
    return [f"<h3>Study {html.escape(root.name)}</h3>{text}<div class=row>{figs}</div>"]


def render(root: Path, bootstrap: int) -> tuple[str, int]:
    """The page's HTML and the number of training runs in it."""
    runs, skipped = find_runs(root)
    fits, evals = [r for r in runs if r.is_fit], [r for r in runs if not r.is_fit]
    if not fits:
        raise LitLLMError(f"no training runs under {root} (no lightning_logs/version_N/summary.json from a "
                          "`lit-llm fit`); give the --trainer.default_root_dir of a fit, or a sweep directory")
    keys = varying_keys(fits)
    configs = [r.summary.get("config", {}) for r in fits]
    shared = [f"{k}={configs[0].get(k)}" for k in SHARED_KEYS
              if k in configs[0] and all(c.get(k) == configs[0].get(k) for c in configs)]
    notes = []
    if skipped:
        notes.append(f"Skipped (no readable summary.json: killed, failed or still running): {', '.join(skipped)}.")
    figures = "".join(f"<h3>{html.escape(t)}</h3><img alt='{html.escape(t)}' src='data:image/png;base64,{b}'>"
                      for t, b in curve_figures(fits))
    title = f"lit_llm report: {root.resolve().name}"
    page = f"""<!DOCTYPE html>
<html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>
<style>{STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class=note>{len(fits)} training runs under <code>{html.escape(str(root.resolve()))}</code>, {time.strftime('%Y-%m-%d %H:%M')}.
Shared by all runs: {html.escape(', '.join(shared) or '–')}. {html.escape(' '.join(notes))}</p>
<h2>Runs</h2><p class=note>Click a column header to sort. Final val loss/ppl over the whole validation split;
tokens/s: the run's mean over all devices (start-up and validation excluded); MFU at that mean rate.</p>
{runs_table([table_row(r, keys) for r in fits])}
{evaluations_table(evals)}
<h2>Curves</h2>{figures}
<h2>Loss by position</h2>{position_section(runs)}
<h2>Scaling</h2>{''.join(scaling_sections(root, bootstrap))}
<h2>Samples</h2>{samples_section(root)}
<script>{SORT_SCRIPT}</script></body></html>
"""
    return page, len(fits)


def write_report(runs_dir: str | Path, out: str | Path, overwrite: bool = False, bootstrap: int = 20) -> Path:
    """Writes out/report.html atomically; refuses to replace an existing one unless overwrite."""
    root, out = Path(runs_dir), Path(out)
    if not root.is_dir():
        raise LitLLMError(f"{root} is not a directory: give the directory of a run or a sweep")
    if out.exists() and not out.is_dir():
        raise LitLLMError(f"--out {out} is a file: give a directory (the report is written to DIR/{REPORT_NAME})")
    target = out / REPORT_NAME
    if target.exists() and not overwrite:
        raise LitLLMError(f"{target} exists: pass --overwrite to replace it, or another --out")
    parent = next(p for p in [out, *out.parents] if p.exists())  # fail before the work, not after it
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise LitLLMError(f"cannot write the report to {out}: {parent} is not a writable directory")
    page, _ = render(root, bootstrap)
    tmp = None
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out, prefix=".report-", suffix=".tmp")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is for reading
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
        os.replace(tmp, target)  # a reader never sees half a page; an old report stays whole until then
    except OSError as err:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise LitLLMError(f"cannot write the report to {out}: {err.strerror or err}") from None
    return target
