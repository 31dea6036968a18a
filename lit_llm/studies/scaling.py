"""The scaling-law fits of `lit-llm scaling` over run summaries, a CSV or a W&B sweep (figures, printing and the
command itself: scaling_output.py).

Laws (N = parameters, D = training tokens, C = training FLOPs, L = loss):
- chinchilla: L(N, D) = E + A/N^alpha + B/D^beta, fitted as Hoffmann et al. (2022) did: Huber loss
  (delta 1e-3) on log L - LSE(a - alpha log N, b - beta log D, e), L-BFGS from the best of their grid of starts,
  bootstrap confidence intervals. Compute-optimal: N_opt = G (C/6)^a, D_opt = (C/6)^b / G with
  a = beta/(alpha+beta), b = alpha/(alpha+beta), G = (alpha A / (beta B))^(1/(alpha+beta)).
- L_N: L(N) = E + A/N^alpha over each size's best loss; L_D likewise over each budget's best loss.
- isoflop (approach 2) and approach1: lit_llm.studies.isoflop (parabolas per isoFLOP profile, bootstrap CIs).
- agreement: whether approach 2's a and approach 3's a = beta/(alpha+beta) lie in each other's 95% interval, and
  the 95% interval of their difference.
- backtest: the law fitted without the largest budget, predicting that budget's runs (its extrapolation error),
  and the held-out protocol replayed there: approach 2's compute-optimal size (the run nearest it) and the loss
  both approaches predict for it; the same replay on every budget from the fourth on gives each approach's
  root-mean-square error one budget ahead.
C is the runs' training FLOPs as they counted them (summary "flops": attention and head included), 6ND for CSVs
without a C column.
"""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp

from lit_llm.errors import LitLLMError
from lit_llm.studies.isoflop import approach1, approach2, budget_of, frontier_loss, n_opt, profiles
from lit_llm.studies.runs import fit_summaries

DELTA = 1e-3
MAX_EXPONENT = 3.0  # exponents are bounded to [0, 3]: one at the bound means the data do not pin it down
TOLERANCES = {"ftol": 1e-15, "gtol": 1e-12, "maxiter": 20000}  # L-BFGS-B's, run to convergence (fit_power_law)


# --- data -----------------------------------------------------------------------------------------
PARAMS = {"non_embedding": "params_non_embedding", "total": "params", "with_head": "params_with_head"}


def load_points(source: str | Path | list, params: str = "non_embedding", metric: str = "val/loss",
                columns: dict[str, str] | None = None, minimum: int = 3) -> dict[str, np.ndarray]:
    """N, D, C, loss arrays from directories of run summaries (summary.json), a CSV file or a W&B sweep; with
    summaries also "shapes": each n_layer's N and FLOPs per token."""
    if params not in PARAMS:
        raise LitLLMError(f"--params {params!r}: use one of {', '.join(PARAMS)}")
    rows, shapes = [], {}
    for item in source if isinstance(source, list) else [source]:
        if str(item).startswith("wandb:"):
            rows += wandb_rows(str(item)[6:], params, metric)
        elif (path := Path(item)).is_dir():
            for _, s in fit_summaries(path):  # not a `validate`/`test` of a checkpoint: that run's point again
                if s.get(metric) is not None and s.get(PARAMS[params]) and s.get("tokens_seen"):
                    rows.append((s[PARAMS[params]], s["tokens_seen"], s.get("flops"), s[metric]))
                    if s.get("n_layer") and s.get("flops_per_token"):
                        shapes[s["n_layer"]] = {"n_layer": s["n_layer"], "N": float(s[PARAMS[params]]),
                                                "flops_per_token": float(s["flops_per_token"])}
        elif path.is_file():
            rows += csv_rows(path, columns or {})
        else:
            raise LitLLMError(f"{item} not found: give a sweep directory or a CSV with columns N, D, loss")
    if len(rows) < minimum:
        raise LitLLMError(f"{source} holds {len(rows)} usable runs; a fit needs at least {minimum}")
    n, d, c, loss = (np.array(col, dtype=np.float64) for col in zip(*[(n, d, c or 6 * n * d, l) for n, d, c, l in rows]))
    return {"N": n, "D": d, "C": c, "loss": loss, "shapes": list(shapes.values())}


def csv_rows(path: Path, columns: dict[str, str]) -> list[tuple]:
    """(N, D, C, loss) from a CSV with columns N, D and/or C (training FLOPs; C = 6ND or D = C / 6N when one is
    missing) and loss, matched
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
        roles = ("N", tokens, "loss") + (("C",) if tokens == "D" and named["C"] else ())  # C as counted, when given
        for line, record in enumerate(reader, start=2):
            values = {}
            for role in roles:
                text = (record.get(named[role]) or "").strip()
                try:
                    values[role] = float(text.replace(",", "").replace("_", ""))
                except ValueError:
                    values[role] = float("nan")
                if not math.isfinite(values[role]) or values[role] <= 0:
                    raise LitLLMError(f"{path}, row {line}, column {named[role]!r}: {text!r} is not a positive number")
            d = values["D"] if tokens == "D" else values["C"] / (6 * values["N"])
            rows.append((values["N"], d, values.get("C"), values["loss"]))
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
    rows = []
    for run in runs:
        s = run.summary
        if s.get(metric) is not None and s.get(PARAMS[params]) and s.get("tokens_seen"):
            rows.append((float(s[PARAMS[params]]), float(s["tokens_seen"]), s.get("flops"), float(s[metric])))
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
    tests at 40-150x the time). The tolerances are far below L-BFGS-B's defaults: the objective is ~1e-3 and
    flat along the E-A-B valley, where the defaults stopped early enough for the order of the runs to move E
    and alpha in the third digit."""
    logL = np.log(loss)
    best, best_value = None, math.inf
    for theta0 in screen_starts(X, logL, starts, refine):
        bounds = [(None, None)] + [(None, None), (0.0, MAX_EXPONENT)] * X.shape[1]
        res = minimize(_objective, theta0, args=(X, logL), jac=True, method="L-BFGS-B", bounds=bounds,
                       options=TOLERANCES)
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
    """Approach 3's compute-optimal N and D at C = 6ND; NaN when a term does not fall with its variable (an
    exponent or a coefficient at 0: the fit ran off along a bound) and so leaves no optimum."""
    alpha, beta = p["alpha"], p["beta"]
    if min(alpha, beta, p["A"], p["B"]) <= 0:
        return {k: math.nan for k in ("a", "b", "G", "N_opt", "D_opt", "tokens_per_param")} | {"C": C}
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
    for p in [params, *samples]:  # the compute-optimal exponents: N_opt ∝ C^a, D_opt ∝ C^b
        total = p["alpha"] + p["beta"]
        p["a"], p["b"] = (p["beta"] / total, p["alpha"] / total) if total > 0 else (math.nan, math.nan)
    ci = {k: [float(np.nanpercentile([s[k] for s in samples], 2.5)), float(np.nanpercentile([s[k] for s in samples], 97.5))]
          for k in params} if samples else {}
    at_bound = [k for k in ("alpha", "beta") if params[k] >= MAX_EXPONENT - 1e-6 or params[k] <= 1e-6]
    return {**params, "huber_loss": value, "ci": ci, "bootstrap": bootstrap, "exponents_at_bound": at_bound,
            "samples": samples}


def law_loss(p: dict, N: float, D: float) -> float:
    """L(N, D) of a fitted Chinchilla law."""
    return float(p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"])


def fit_single(x: np.ndarray, loss: np.ndarray, name: str) -> dict | None:
    """L(x) = E + A/x^alpha over the best loss at each distinct x."""
    xs = np.unique(x)
    if len(xs) < 3:
        return None
    best = np.array([loss[x == v].min() for v in xs])
    theta, value = fit_power_law(np.log(xs)[:, None], best, single_starts())
    return {"E": math.exp(theta[0]), "A": math.exp(theta[1]), "alpha": float(theta[2]), "huber_loss": value,
            "points": {name: xs.tolist(), "loss": best.tolist()}}


def counted_frontier(law: dict, shapes: list[dict], Cs: np.ndarray) -> dict | None:
    """Approach 3's compute-optimal frontier with compute as the runs counted it, C = flops_per_token(N) x D
    (attention and head included), not 6ND: for small widths attention is a large, size-dependent share, so
    the closed form a = beta/(alpha+beta) would not be comparable with approach 2's. flops_per_token(N)
    follows the sizes tried (a quadratic in log-log through them, extended a decade each way); N_opt(C)
    minimises L(N, C / flops_per_token(N)) on a fine grid; a and b are the slopes over the budgets Cs."""
    if len(shapes) < 3:
        return None
    logN = np.log([s["N"] for s in shapes])
    coef = np.polyfit(logN, np.log([s["flops_per_token"] for s in shapes]), 2)
    grid = np.linspace(logN.min() - 1, logN.max() + 1, 4000)
    N, fpt = np.exp(grid), np.exp(np.polyval(coef, grid))
    n_opt = []
    for C in Cs:
        losses = law["E"] + law["A"] / N ** law["alpha"] + law["B"] / (C / fpt) ** law["beta"]
        n_opt.append(N[np.argmin(losses)])
    n_opt = np.array(n_opt)
    d_opt = Cs / np.exp(np.polyval(coef, np.log(n_opt)))
    a = np.polyfit(np.log(Cs), np.log(n_opt), 1)[0]
    b = np.polyfit(np.log(Cs), np.log(d_opt), 1)[0]
    return {"a": float(a), "b": float(b), "C": Cs.tolist(), "N_opt": n_opt.tolist(), "D_opt": d_opt.tolist()}


def fit_all(pts: dict, bootstrap: int = 100, budget: float | None = None) -> dict:
    """Every fit; the Chinchilla law keeps its bootstrap parameter samples under "samples" (not JSON-worthy:
    fit_to_dir drops them)."""
    chin = fit_chinchilla(pts, bootstrap)
    budget = budget or float(pts["C"].max())
    iso = approach2(pts, bootstrap=max(bootstrap, 200) if bootstrap else 0)
    Cs = np.array([g["C"] for g in iso.get("profiles", [])]) if iso.get("profiles") else np.unique(pts["C"])
    counted = counted_frontier(chin, pts.get("shapes", []), Cs) if len(Cs) >= 2 else None
    if counted is not None:
        samples = [f["a"] for p in chin["samples"] if (f := counted_frontier(p, pts["shapes"], Cs))]
        if samples:
            counted["ci"] = {"a": [float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))]}
        chin["counted_frontier"] = counted
    a3_samples = samples if counted is not None else [p["a"] for p in chin["samples"]]
    agree = agreement(iso, chin, iso.pop("samples_a", []), a3_samples)
    return {
        "runs": len(pts["loss"]),
        "chinchilla": chin,
        "compute_optimal": compute_optimal(chin, budget),
        "L_N": fit_single(pts["N"], pts["loss"], "N"),
        "L_D": fit_single(pts["D"], pts["loss"], "D"),
        "isoflop": iso,
        "approach1": approach1(pts),
        "agreement": agree,
        "backtest": backtest(pts),
    }


def backtest(pts: dict) -> dict | None:
    """Approach 3's law fitted without the largest budget's runs, predicting them: how far the law carries one
    budget beyond its data on these runs, known before any held-out run (relative error = measured/predicted - 1).
    "replay" plays the held-out protocol on that budget: approach 2 refitted without it picks the run nearest its
    N_opt, and approaches 2 (frontier_loss) and 3 each predict that run's loss. "rolling" plays it on every budget
    from the fourth on (fitted on the budgets below each; from the third when there are only three), and
    "rolling_rms" is each approach's root-mean-square error over them: how precisely the protocol predicts one
    budget ahead on these runs, known before the held-out run."""
    groups = profiles(pts["C"])
    if len(groups) < 3:
        return None
    last = groups[-1]
    keep = np.setdiff1d(np.arange(len(pts["loss"])), last)
    law = fit_chinchilla({k: pts[k][keep] for k in ("N", "D", "loss")}, bootstrap=0)
    runs = [{"N": float(pts["N"][i]), "D": float(pts["D"][i]), "loss": float(pts["loss"][i]),
             "predicted": law_loss(law, pts["N"][i], pts["D"][i])} for i in last]
    for r in runs:
        r["relative_error"] = r["loss"] / r["predicted"] - 1
    best = min(runs, key=lambda r: r["loss"])
    result = {"C": budget_of(pts, last), "fitted_runs": int(len(keep)), "runs": runs,
              "best_run_relative_error": best["relative_error"],
              "median_abs_relative_error": float(np.median([abs(r["relative_error"]) for r in runs]))}
    first = min(3, len(groups) - 1)  # three fitted budgets where there are more than three, else two
    rolling = [r for k in range(first, len(groups)) if (r := replay(pts, np.concatenate(groups[:k]), groups[k]))]
    if rolling and rolling[-1]["C"] == result["C"]:
        result["replay"] = rolling[-1]
        result["rolling"] = rolling
        result["rolling_rms"] = {k: float(np.sqrt(np.mean([r["relative_error"][k] ** 2 for r in rolling])))
                                 for k in rolling[-1]["relative_error"]}
    return result


def replay(pts: dict, fitted: np.ndarray, target: np.ndarray) -> dict | None:
    """The held-out protocol on one budget (the runs `target`) from the runs `fitted` only: approach 2's N_opt
    picks the run nearest it; approaches 2 (frontier_loss) and 3 each predict that run's loss (None when
    approach 2 finds no frontier in the fitted runs)."""
    sub = {k: pts[k][fitted] for k in ("N", "D", "C", "loss")}
    iso = approach2(sub, bootstrap=0)
    if iso.get("a") is None:
        return None
    C = budget_of(pts, target)
    i = min(target, key=lambda i: abs(math.log(pts["N"][i] / n_opt(iso, C))))
    N, D, loss = float(pts["N"][i]), float(pts["D"][i]), float(pts["loss"][i])
    two, three = frontier_loss(iso, C, N), law_loss(fit_chinchilla(sub, bootstrap=0), N, D)
    return {"C": C, "N": N, "D": D, "loss": loss, "N_opt_approach2": n_opt(iso, C), "approach2": two,
            "approach3": three, "relative_error": {"approach 2": loss / two - 1, "approach 3": loss / three - 1}}


def agreement(iso: dict, chin: dict, a2_samples: list[float] = (), a3_samples: list[float] = ()) -> dict | None:
    """Whether approaches 2 and 3 agree on a: each estimate inside the other's 95% interval. Approach 3's a is
    its frontier under the runs' own FLOP count where the runs give their sizes' FLOPs (counted_frontier),
    else the closed form beta/(alpha+beta) for C = 6ND. Given both bootstraps' samples of a, also the 95%
    interval of the difference a2 - a3: whether the two estimates differ by more than their noise explains."""
    if iso.get("a") is None:
        return None
    three = chin.get("counted_frontier") or chin
    ci2, ci3 = iso.get("ci", {}).get("a"), three.get("ci", {}).get("a")
    chin = {"a": three["a"]}
    inside = lambda x, ci: bool(ci and ci[0] <= x <= ci[1])  # noqa: E731
    both = inside(iso["a"], ci3) and inside(chin["a"], ci2)
    result = {"a_approach2": iso["a"], "a_approach3": chin["a"], "ci_approach2": ci2, "ci_approach3": ci3,
              "agree": both, "intervals_overlap": bool(ci2 and ci3 and ci2[0] <= ci3[1] and ci3[0] <= ci2[1])}
    if len(a2_samples) and len(a3_samples):  # independent bootstraps: pairing samples by index pairs them at random
        m = min(len(a2_samples), len(a3_samples))
        diff = np.asarray(a2_samples[:m]) - np.asarray(a3_samples[:m])
        ci = [float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))]
        result.update(difference=iso["a"] - chin["a"], ci_difference=ci, difference_excludes_zero=not ci[0] <= 0 <= ci[1])
    return result
