"""What `lit-llm scaling` shows of its fits: the figures (loss vs compute, isoFLOP profiles, residuals, a
study's learning-rate sweep), the lines it prints and `fit_to_dir`, the `scaling fit` command's work."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from lit_llm.studies.scaling import MAX_EXPONENT, compute_optimal, fit_all, load_points


def plot_all(pts: dict, fit: dict, out: Path) -> list[Path]:
    # imported here: matplotlib is slow to import and only plots need it; Agg is chosen before pyplot loads
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p, files = fit["chinchilla"], []

    def predict(N, D):
        return p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    sc = ax.scatter(pts["C"], pts["loss"], c=np.log10(pts["N"]), cmap="viridis", s=30, zorder=3)
    fig.colorbar(sc, ax=ax, label="log10 N")
    Cs = np.logspace(np.log10(pts["C"].min()) - 0.3, np.log10(pts["C"].max()) + 0.5, 100)
    opt = [compute_optimal(p, c) for c in Cs]
    ax.plot(Cs, [predict(o["N_opt"], o["D_opt"]) for o in opt], "k--", label="compute-optimal frontier (fit)")
    ax.set(xscale="log", xlabel="training FLOPs C = 6ND", ylabel="loss", title="Loss vs compute")
    ax.legend()
    files.append(out / "loss_vs_compute.png")
    fig.tight_layout()
    fig.savefig(files[-1], dpi=120)
    plt.close(fig)

    files.append(plot_isoflop(plt, pts, fit, out / "isoflop.png"))

    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    resid = np.log(predict(pts["N"], pts["D"])) - np.log(pts["loss"])
    ax.scatter(pts["C"], resid, s=20)
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xscale="log", xlabel="training FLOPs", ylabel="log L_fit - log L", title="Chinchilla fit residuals")
    files.append(out / "residuals.png")
    fig.tight_layout()
    fig.savefig(files[-1], dpi=120)
    plt.close(fig)
    return files


def plot_isoflop(plt, pts: dict, fit: dict, path: Path) -> Path:
    """Each isoFLOP profile's runs and parabola (solid with its vertex where it has an interior minimum, dotted
    where not) and, after a study, the held-out run: predicted (star) and measured (cross)."""
    profiles = (fit.get("isoflop") or {}).get("profiles", [])
    columns = max(1, math.ceil((len(profiles) + 3) / 14))  # 14 entries a column fit the height
    fig, ax = plt.subplots(figsize=(6.5 + 1.3 * columns, 4.5))
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(profiles), 1)))
    for color, g in zip(colors, profiles):
        N = np.array(g["N"])
        xs = np.linspace(np.log(N.min()) - 0.3, np.log(N.max()) + 0.3, 60)
        interior = "N_opt" in g
        ax.plot(np.exp(xs), np.polyval(g["parabola"], xs), "-" if interior else ":", color=color,
                label=f"C = {g['C']:.2g}" + ("" if interior else " (no interior min.)"))
        ax.scatter(N, g["loss"], color=color, s=18, zorder=3)
        if interior:
            ax.plot([g["N_opt"]], [g["loss_opt"]], "o", mfc="white", color=color, zorder=4)
    if p := fit.get("prediction"):
        ax.plot([p["N"]], [p["loss"]], "*", color="crimson", ms=13, zorder=5, label=f"held-out C = {p['C']:.2g}: predicted")
        if p.get("measured_loss") is not None:
            ax.plot([p["N"]], [p["measured_loss"]], "x", color="black", ms=10, mew=2, zorder=6, label="held-out: measured")
    if not profiles:
        ax.scatter(pts["N"], pts["loss"], c="grey", s=12, zorder=3, label="runs")
    ax.set(xscale="log", xlabel="parameters N", ylabel="loss", title="IsoFLOP profiles")
    # beside the axes, never over the data, in columns when there are many budgets
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, ncol=columns)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def describe(fit: dict) -> list[str]:
    """The fits in lines for the terminal and the study report: approach 3 (parametric), approach 2 (isoFLOP
    parabolas, profile by profile), approach 1 (best run per budget) and whether 2 and 3 agree."""
    c, o, lines = fit["chinchilla"], fit["compute_optimal"], []
    ci = lambda k, d: f" [{d['ci'][k][0]:.3f}, {d['ci'][k][1]:.3f}]" if d.get("ci", {}).get(k) else ""  # noqa: E731
    lines.append(f"{fit['runs']} runs. approach 3: L(N,D) = {c['E']:.3f} + {c['A']:.3g}/N^{c['alpha']:.3f}{ci('alpha', c)}"
                 f" + {c['B']:.3g}/D^{c['beta']:.3f}{ci('beta', c)}")
    if c["exponents_at_bound"]:
        lines.append(f"warning: {', '.join(c['exponents_at_bound'])} at the bound [0, {MAX_EXPONENT}]: the runs do not "
                     "determine it; the compute-optimal allocation below is not reliable")
    if math.isnan(o["a"]):
        lines.append("approach 3 compute-optimal: none (an exponent or coefficient is 0, so its term does not fall "
                     "and the law has no optimum)")
    else:
        lines.append(f"approach 3 compute-optimal: N_opt ∝ C^{o['a']:.3f}{ci('a', c)}, D_opt ∝ C^{o['b']:.3f}"
                     f"{ci('b', c)}; at C = {o['C']:.3g}: N = {o['N_opt']:.3g}, D = {o['D_opt']:.3g}, "
                     f"{o['tokens_per_param']:.1f} tokens/parameter")
    if cf := c.get("counted_frontier"):
        lines.append(f"approach 3 frontier with C as counted (attention, head): N_opt ∝ C^{cf['a']:.3f}{ci('a', cf)}, "
                     f"D_opt ∝ C^{cf['b']:.3f}")
    iso = fit.get("isoflop") or {}
    for g in iso.get("profiles", []):
        where = f": N_opt = {g['N_opt']:.3g}, D_opt = {g['D_opt']:.3g}" if "N_opt" in g else ""
        lines.append(f"  isoFLOP C = {g['C']:.3g} ({g['runs']} runs): {g['status']}{where}")
    if iso.get("a") is not None:
        lines.append(f"approach 2: N_opt ∝ C^{iso['a']:.3f}{ci('a', iso)}, D_opt ∝ C^{iso['b']:.3f}{ci('b', iso)} over "
                     f"{iso['interior_minima']} profiles with an interior minimum")
        if iso.get("bootstrap_failed"):
            every = iso.get("ci_a_keeping_every_resample")
            lines.append(f"  {iso['bootstrap_failed']} of {iso['bootstrap']} resamples lost a vertex and are set aside"
                         + (f"; keeping them, each over the profiles that kept theirs: a in "
                            f"[{every[0]:.3f}, {every[1]:.3f}]" if every else ""))
    elif iso:
        lines.append(f"approach 2: no exponent: {iso.get('note', 'no isoFLOP profile with 3+ sizes')}")
    if a1 := fit.get("approach1"):
        lines.append(f"approach 1 (best run per budget, coarse): N_opt ∝ C^{a1['a']:.3f}, D_opt ∝ C^{a1['b']:.3f}")
    if ag := fit.get("agreement"):
        verdict = ("agree: each a lies in the other's 95% interval" if ag["agree"] else
                   "overlap in their intervals only" if ag["intervals_overlap"] else "disagree")
        lines.append(f"approaches 2 and 3 on a: {ag['a_approach2']:.3f} vs {ag['a_approach3']:.3f}: {verdict}")
        if ag.get("ci_difference"):
            lo, hi = ag["ci_difference"]
            lines.append(f"  difference a2 - a3 = {ag['difference']:.3f}, 95% [{lo:.3f}, {hi:.3f}]: " + (
                "larger than the bootstraps' noise" if ag["difference_excludes_zero"] else "within the bootstraps' noise"))
    if bt := fit.get("backtest"):
        lines.append(f"backtest: fitted without C = {bt['C']:.3g}, approach 3 predicts its best run "
                     f"{100 * bt['best_run_relative_error']:+.1f}% off (median |error| over its {len(bt['runs'])} runs "
                     f"{100 * bt['median_abs_relative_error']:.1f}%)")
        for r in bt.get("rolling") or []:
            lines.append(f"  replay of the held-out protocol at C = {r['C']:.3g}: approach 2's N_opt "
                         f"{r['N_opt_approach2']:.3g} -> the run at N = {r['N']:.3g} (loss {r['loss']:.4f}); predicted "
                         + ", ".join(f"{k} {r[k.replace(' ', '')]:.4f} ({100 * e:+.1f}%)"
                                     for k, e in r["relative_error"].items()))
        if rms := bt.get("rolling_rms"):
            lines.append("  replays' root-mean-square error one budget ahead: "
                         + ", ".join(f"{k} {100 * e:.1f}%" for k, e in rms.items()))
    return lines


def measured(p: dict) -> str:
    """The held-out run's measured loss against the prediction, with its seeds' spread when it ran several."""
    seeds = p.get("measured_losses") or [p["measured_loss"]]
    spread = (f" (mean of {len(seeds)} seeds, sd {p['measured_std']:.4f} = {100 * p['measured_std'] / p['measured_loss']:.1f}%)"
              if p.get("measured_std") is not None else "")
    text = f"measured {p['measured_loss']:.4f}{spread}: {100 * p['relative_error']:+.2f}% from the prediction"
    if (rms := p.get("replay_rms")) is not None:  # the protocol's own error one budget ahead, known beforehand
        text += (f", {'within' if abs(p['relative_error']) <= rms else 'beyond'} the {100 * rms:.1f}% (root mean "
                 "square) its replays one budget ahead erred")
    return text


def plot_tune(tune: dict, path: Path) -> Path:
    """Val loss against lr, a line per tuned configuration (depth and width), each one's best and the lr its
    depth was given by the rule marked."""
    import matplotlib  # imported here: slow to import, and only figures need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    used = {int(k): v for k, v in tune.get("lr_by_n_layer", {}).items()}
    for row in tune["configs"]:
        check = " (µP check)" if row.get("role") == "mup_check" else ""
        line = ax.plot(row["lr"], row["val_loss"], "o-", label=f"n_layer {row['n_layer']}, width {row['width']}{check}: "
                       f"best lr {row['best_lr']:.3g}")
        ax.axvline(row["best_lr"], color=line[0].get_color(), ls=":", lw=1)
        if row["n_layer"] in used and not check:
            ax.plot([used[row["n_layer"]]], [min(row["val_loss"])], "v", color=line[0].get_color(), ms=9)
    ax.plot([], [], "kv", label="lr the rule gives that depth")
    ax.set(xscale="log", xlabel="learning rate (µP: the base width's)", ylabel="val loss (mean over seeds)", title="Stage 1: learning rate")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def fit_to_dir(source: str, out: str | Path, params: str = "non_embedding", metric: str = "val/loss",
               bootstrap: int = 100, budget: float | None = None, columns: dict[str, str] | None = None) -> dict:
    """`lit-llm scaling fit`: fits the runs of source, writes out/fit.json and the plots, prints the laws."""
    pts = load_points(source, params, metric, columns)
    for name, values in (("model sizes (N)", pts["N"]), ("token counts (D)", pts["D"])):
        if len(np.unique(np.round(np.log(values), 6))) < 3:
            print(f"warning: only {len(np.unique(values))} distinct {name}: the fit cannot identify that term; "
                  "its exponent says nothing", file=sys.stderr)
    fit = fit_all(pts, bootstrap, budget)
    fit["chinchilla"].pop("samples")
    fit["isoflop"].pop("samples_frontier", None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fit.json").write_text(json.dumps(fit, indent=2))
    files = plot_all(pts, fit, out)
    print("\n".join(describe(fit)))
    print(f"wrote {out / 'fit.json'} and {', '.join(f.name for f in files)}")
    return fit
