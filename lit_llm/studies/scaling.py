"""`lit-llm scaling fit INPUT --out DIR`: scaling-law fits over run summaries or a CSV.

Laws (N = parameters, D = training tokens, C = training FLOPs, L = loss):
- chinchilla: L(N, D) = E + A/N^alpha + B/D^beta, fitted as Hoffmann et al. (2022) did: Huber loss
  (delta 1e-3) on log L - LSE(a - alpha log N, b - beta log D, e), L-BFGS from the best of their grid of starts,
  bootstrap confidence intervals. Compute-optimal: N_opt = G (C/6)^a, D_opt = (C/6)^b / G with
  a = beta/(alpha+beta), b = alpha/(alpha+beta), G = (alpha A / (beta B))^(1/(alpha+beta)).
- L_N: L(N) = E + A/N^alpha over each size's best loss; L_D likewise over each budget's best loss.
- isoflop (approach 2): runs grouped by compute (within 0.1 decade); a parabola in log N per group with
  3+ sizes gives N_opt(C); a power law through those gives N_opt ∝ C^a, D_opt ∝ C^(1-a).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp

from lit_llm.errors import LitLLMError
from lit_llm.studies.runs import fit_summaries

DELTA = 1e-3
MAX_EXPONENT = 3.0  # exponents are bounded to [0, 3]: one at the bound means the data do not pin it down


# --- data -----------------------------------------------------------------------------------------
def load_points(source: str | Path, params: str = "non_embedding", metric: str = "val/loss",
                columns: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """N, D, C, loss arrays from a directory of run summaries (summary.json) or a CSV file."""
    rows = []
    if str(source).startswith("wandb:"):
        rows = wandb_rows(str(source)[6:], params, metric)
        source = Path(str(source))
    elif (source := Path(source)).is_dir():
        key = "params_non_embedding" if params == "non_embedding" else "params"
        for _, s in fit_summaries(source):  # not a `validate`/`test` of a checkpoint: that run's point again
            if s.get(metric) is not None and s.get(key) and s.get("tokens_seen"):
                rows.append((s[key], s["tokens_seen"], None, s[metric]))
    elif source.is_file():
        rows = csv_rows(source, columns or {})
    else:
        raise LitLLMError(f"{source} not found: give a sweep directory or a CSV with columns N, D, loss")
    if len(rows) < 3:
        raise LitLLMError(f"{source} holds {len(rows)} usable runs; a fit needs at least 3")
    arr = np.array([(n, d, l) for n, d, _, l in rows], dtype=np.float64)
    n, d, loss = arr.T
    return {"N": n, "D": d, "C": 6 * n * d, "loss": loss}


def csv_rows(path: Path, columns: dict[str, str]) -> list[tuple]:
    """(N, D, None, loss) from a CSV with columns N, D (or C: training FLOPs, D = C / 6N) and loss, matched
    without regard to case, or named by `columns` ({"N": "Model Size", "C": "Training FLOP", ...}). Every
    bad value is a one-line error naming the file, row and column."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        headers = {h.strip().lower(): h for h in reader.fieldnames or []}
        named = {role: columns.get(role) or headers.get(role.lower()) for role in ("N", "D", "C", "loss")}
        for role, header in columns.items():
            if header not in (reader.fieldnames or []):
                raise LitLLMError(f"{path} has no column {header!r} (given for {role}); its columns: "
                                  f"{', '.join(reader.fieldnames or [])}")
        tokens = "D" if named["D"] else "C" if named["C"] else None
        for role in ("N", tokens, "loss"):
            if role is None or not named[role]:
                raise LitLLMError(f"{path} needs columns N, D (or C) and loss; its columns: "
                                  f"{', '.join(reader.fieldnames or [])}. Map others with --columns "
                                  f"'N=Model Size,C=Training FLOP,loss=loss'")
        rows = []
        for line, record in enumerate(reader, start=2):
            values = {}
            for role in ("N", tokens, "loss"):
                text = (record.get(named[role]) or "").strip()
                try:
                    values[role] = float(text.replace(",", "").replace("_", ""))
                except ValueError:
                    values[role] = float("nan")
                if not math.isfinite(values[role]) or values[role] <= 0:
                    raise LitLLMError(f"{path}, row {line}, column {named[role]!r}: {text!r} is not a positive number")
            d = values["D"] if tokens == "D" else values["C"] / (6 * values["N"])
            rows.append((values["N"], d, None, values["loss"]))
    return rows


def wandb_rows(path: str, params: str, metric: str, api=None) -> list[tuple]:
    """(N, D, None, loss) of the finished runs of a W&B sweep ENTITY/PROJECT/SWEEP_ID (online)."""
    try:
        import wandb  # imported here: it takes seconds, and only wandb: sources need it

        api = api or wandb.Api(timeout=30)
        runs = api.sweep(path).runs
    except Exception as err:  # network, auth and lookup errors come in many types
        raise LitLLMError(f"cannot read W&B sweep {path} ({err.__class__.__name__}: {err}); offline, "
                          "give the sweep directory (run summaries) instead") from None
    key = "params_non_embedding" if params == "non_embedding" else "params"
    rows = []
    for run in runs:
        s = run.summary
        if s.get(metric) is not None and s.get(key) and s.get("tokens_seen"):
            rows.append((float(s[key]), float(s["tokens_seen"]), None, float(s[metric])))
    return rows


# --- fits -----------------------------------------------------------------------------------------
def huber(r: np.ndarray, delta: float = DELTA) -> tuple[np.ndarray, np.ndarray]:
    """Huber values and derivatives."""
    small = np.abs(r) <= delta
    value = np.where(small, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))
    grad = np.where(small, r, delta * np.sign(r))
    return value, grad


def _objective(theta: np.ndarray, X: np.ndarray, logL: np.ndarray) -> tuple[float, np.ndarray]:
    """theta = [e, a_1, alpha_1, a_2, alpha_2, ...]; term i is a_i - alpha_i * X[:, i] (X = log N, log D)."""
    k = X.shape[1]
    terms = [np.full(len(logL), theta[0])] + [theta[1 + 2 * i] - theta[2 + 2 * i] * X[:, i] for i in range(k)]
    stack = np.stack(terms)  # (1+k, n)
    lse = logsumexp(stack, axis=0)
    weights = np.exp(stack - lse)  # softmax: d lse / d term
    value, dh = huber(lse - logL)
    grad = np.empty_like(theta)
    grad[0] = np.sum(dh * weights[0])
    for i in range(k):
        grad[1 + 2 * i] = np.sum(dh * weights[1 + i])
        grad[2 + 2 * i] = -np.sum(dh * weights[1 + i] * X[:, i])
    return float(value.sum()), grad


def screen_starts(X: np.ndarray, logL: np.ndarray, starts: list[np.ndarray], keep: int) -> list[np.ndarray]:
    """The `keep` starts with the lowest objective, evaluated for all starts at once."""
    if len(starts) <= keep:
        return starts
    theta = np.stack(starts)  # (S, 1 + 2k)
    k = X.shape[1]
    terms = [np.repeat(theta[:, :1], len(logL), axis=1)]
    terms += [theta[:, 1 + 2 * i, None] - theta[:, 2 + 2 * i, None] * X[None, :, i] for i in range(k)]
    values = huber(logsumexp(np.stack(terms), axis=0) - logL[None, :])[0].sum(axis=1)
    return [starts[i] for i in np.argsort(values)[:keep]]


def fit_power_law(X: np.ndarray, loss: np.ndarray, starts: list[np.ndarray], refine: int = 64) -> tuple[np.ndarray, float]:
    """Best theta over the starts: all are evaluated, the `refine` best are optimised with L-BFGS on the
    Huber objective (optimising all 4,500 of Hoffmann et al.'s starts reached the same optimum on our
    tests at 40-150x the time)."""
    logL = np.log(loss)
    best, best_value = None, math.inf
    for theta0 in screen_starts(X, logL, starts, refine):
        bounds = [(None, None)] + [(None, None), (0.0, MAX_EXPONENT)] * X.shape[1]
        res = minimize(_objective, theta0, args=(X, logL), jac=True, method="L-BFGS-B", bounds=bounds)
        if res.fun < best_value:
            best, best_value = res.x, res.fun
    return best, best_value


def chinchilla_starts() -> list[np.ndarray]:
    """Hoffmann et al.'s grid: alpha, beta in 0..2, e in -1..1, a, b in 0..25."""
    return [np.array([e, a, alpha, b, beta]) for alpha, beta, e, a, b in itertools.product(
        np.arange(0, 2.01, 0.5), np.arange(0, 2.01, 0.5), np.arange(-1, 1.01, 0.5),
        np.arange(0, 25.1, 5), np.arange(0, 25.1, 5))]


def single_starts() -> list[np.ndarray]:
    return [np.array([e, a, alpha]) for e, a, alpha in itertools.product(
        np.arange(-1, 1.01, 0.5), np.arange(0, 25.1, 5), np.arange(0, 2.01, 0.5))]


def _chinchilla_params(theta: np.ndarray) -> dict:
    e, a, alpha, b, beta = theta
    return {"E": math.exp(e), "A": math.exp(a), "alpha": float(alpha), "B": math.exp(b), "beta": float(beta)}


def compute_optimal(p: dict, C: float) -> dict:
    alpha, beta = p["alpha"], p["beta"]
    a, b = beta / (alpha + beta), alpha / (alpha + beta)
    G = (alpha * p["A"] / (beta * p["B"])) ** (1 / (alpha + beta))
    n_opt, d_opt = G * (C / 6) ** a, (C / 6) ** b / G
    return {"a": a, "b": b, "G": G, "C": C, "N_opt": n_opt, "D_opt": d_opt, "tokens_per_param": d_opt / n_opt}


def fit_chinchilla(pts: dict, bootstrap: int = 100, seed: int = 0) -> dict:
    X = np.log(np.stack([pts["N"], pts["D"]], axis=1))
    theta, value = fit_power_law(X, pts["loss"], chinchilla_starts())
    params = _chinchilla_params(theta)
    rng = np.random.default_rng(seed)
    samples, grid = [], chinchilla_starts()
    for _ in range(bootstrap):  # resample runs, refit from the full-data optimum and a few grid starts
        idx = rng.integers(0, len(X), len(X))
        starts = [theta] + [grid[i] for i in rng.choice(len(grid), 4)]
        t, _ = fit_power_law(X[idx], pts["loss"][idx], starts)
        samples.append(_chinchilla_params(t))
    ci = {k: [float(np.percentile([s[k] for s in samples], 2.5)), float(np.percentile([s[k] for s in samples], 97.5))]
          for k in params} if samples else {}
    at_bound = [k for k in ("alpha", "beta") if params[k] >= MAX_EXPONENT - 1e-6 or params[k] <= 1e-6]
    return {**params, "huber_loss": value, "ci": ci, "bootstrap": bootstrap, "exponents_at_bound": at_bound}


def fit_single(x: np.ndarray, loss: np.ndarray, name: str) -> dict | None:
    """L(x) = E + A/x^alpha over the best loss at each distinct x."""
    xs = np.unique(x)
    if len(xs) < 3:
        return None
    best = np.array([loss[x == v].min() for v in xs])
    theta, value = fit_power_law(np.log(xs)[:, None], best, single_starts())
    return {"E": math.exp(theta[0]), "A": math.exp(theta[1]), "alpha": float(theta[2]), "huber_loss": value,
            "points": {name: xs.tolist(), "loss": best.tolist()}}


def fit_isoflop(pts: dict, decades: float = 0.1) -> dict | None:
    """Approach 2: group by compute, fit loss = p(log N) per group, power law through the minima."""
    logC = np.log10(pts["C"])
    groups, used = [], np.zeros(len(logC), bool)
    for i in np.argsort(logC):
        if used[i]:
            continue
        members = np.where(~used & (np.abs(logC - logC[i]) <= decades))[0]
        used[members] = True
        if len(np.unique(pts["N"][members])) >= 3:
            groups.append(members)
    minima = []
    for m in groups:
        x, y = np.log(pts["N"][m]), pts["loss"][m]
        c2, c1, c0 = np.polyfit(x, y, 2)
        if c2 <= 0:
            continue  # no minimum: the profile is not convex
        x_opt = -c1 / (2 * c2)
        if not x.min() - 0.5 <= x_opt <= x.max() + 0.5:
            continue  # the minimum lies outside the sizes tried
        C = float(np.exp(np.mean(np.log(pts["C"][m]))))
        minima.append({"C": C, "N_opt": float(np.exp(x_opt)), "loss_opt": float(np.polyval([c2, c1, c0], x_opt)),
                       "runs": int(len(m)), "parabola": [float(c2), float(c1), float(c0)]})
    if len(minima) < 2:
        return {"groups": minima, "a": None, "b": None, "note": "fewer than 2 isoFLOP groups with a minimum"}
    lc, ln = np.log([g["C"] for g in minima]), np.log([g["N_opt"] for g in minima])
    a, k = np.polyfit(lc, ln, 1)
    return {"groups": minima, "a": float(a), "b": float(1 - a), "N_opt_coefficient": float(math.exp(k))}


def fit_all(pts: dict, bootstrap: int = 100, budget: float | None = None) -> dict:
    chin = fit_chinchilla(pts, bootstrap)
    budget = budget or float(pts["C"].max())
    return {
        "runs": len(pts["loss"]),
        "chinchilla": chin,
        "compute_optimal": compute_optimal(chin, budget),
        "L_N": fit_single(pts["N"], pts["loss"], "N"),
        "L_D": fit_single(pts["D"], pts["loss"], "D"),
        "isoflop": fit_isoflop(pts),
    }


# --- plots ----------------------------------------------------------------------------------------
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

    iso = fit.get("isoflop") or {}
    columns = max(1, math.ceil((len(iso.get("groups", [])) + 1) / 14))  # 14 entries a column fit the height
    fig, ax = plt.subplots(figsize=(6.5 + 1.3 * columns, 4.5))
    for g in iso.get("groups", []):
        xs = np.linspace(math.log(g["N_opt"]) - 1.5, math.log(g["N_opt"]) + 1.5, 50)
        line = ax.plot(np.exp(xs), np.polyval(g["parabola"], xs), label=f"C = {g['C']:.2g}")
        ax.plot([g["N_opt"]], [g["loss_opt"]], "o", color=line[0].get_color())
    ax.scatter(pts["N"], pts["loss"], c="grey", s=12, zorder=3, label="runs")
    ax.set(xscale="log", xlabel="parameters N", ylabel="loss", title="IsoFLOP profiles")
    # beside the axes, never over the data, in columns when there are many budgets
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, ncol=columns)
    files.append(out / "isoflop.png")
    fig.tight_layout()
    fig.savefig(files[-1], dpi=120)
    plt.close(fig)

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


def fit_to_dir(source: str, out: str | Path, params: str = "non_embedding", metric: str = "val/loss",
               bootstrap: int = 100, budget: float | None = None, columns: dict[str, str] | None = None) -> dict:
    """`lit-llm scaling fit`: fits the runs of source, writes out/fit.json and the plots, prints the laws."""
    pts = load_points(source, params, metric, columns)
    for name, values in (("model sizes (N)", pts["N"]), ("token counts (D)", pts["D"])):
        if len(np.unique(np.round(np.log(values), 6))) < 3:
            print(f"warning: only {len(np.unique(values))} distinct {name}: the fit cannot identify that term; "
                  "its exponent says nothing", file=sys.stderr)
    fit = fit_all(pts, bootstrap, budget)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fit.json").write_text(json.dumps(fit, indent=2))
    files = plot_all(pts, fit, out)
    c, o = fit["chinchilla"], fit["compute_optimal"]
    print(f"{fit['runs']} runs. L(N,D) = {c['E']:.3f} + {c['A']:.3g}/N^{c['alpha']:.3f} + {c['B']:.3g}/D^{c['beta']:.3f}")
    if c["exponents_at_bound"]:
        print(f"warning: {', '.join(c['exponents_at_bound'])} at the bound [0, {MAX_EXPONENT}]: the runs do not "
              "determine it; the compute-optimal allocation below is not reliable")
    print(f"compute-optimal: N_opt ∝ C^{o['a']:.3f}, D_opt ∝ C^{o['b']:.3f}; at C = {o['C']:.3g}: "
          f"N = {o['N_opt']:.3g}, D = {o['D_opt']:.3g}, {o['tokens_per_param']:.1f} tokens/parameter")
    iso = fit["isoflop"]
    if iso and iso.get("a") is not None:
        print(f"isoFLOP (approach 2): N_opt ∝ C^{iso['a']:.3f} over {len(iso['groups'])} budgets")
    print(f"wrote {out / 'fit.json'} and {', '.join(f.name for f in files)}")
    return fit
