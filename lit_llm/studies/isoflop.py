"""Chinchilla's approaches 1 and 2 (Hoffmann et al. 2022, §3.1-3.2) on runs grouped by compute budget.

An isoFLOP profile is the runs of one compute budget C (within `DECADES` of each other in log10 C). Approach 2
fits a parabola to loss against log N on each profile (and against log D), takes its vertex as N_opt(C)
(D_opt(C)), and fits the power laws N_opt = k C^a and D_opt = k' C^b through the vertices. A profile counts only
when its parabola is convex with the vertex strictly inside the sizes it tried: otherwise the optimum is not
bracketed and the profile says so instead of giving a vertex. The 95% intervals come from a residual
bootstrap: the parabolas' residuals (pooled over the profiles, scaled by sqrt(n / (n - 3)) for the fitted
parameters) are resampled onto the fitted values, every parabola and both power laws are refitted, and a
resample where some profile loses its interior minimum counts as failed (reported).
As a predictor (`frontier_loss`), approach 2 also gives the loss of the frontier: the vertices' losses follow
L_opt(C) = k C^-gamma (Kaplan et al. 2020's L(C_min), a line in log-log), and a size N off the frontier scores
q (ln N - ln N_opt(C))^2 more, q the profiles' median parabola curvature.
Approach 1 here is the crude version final-only runs allow: the best run of each budget and a power law
through their sizes (no smoothing of training curves, so its sizes are only those tried).
"""

from __future__ import annotations

import math

import numpy as np

DECADES = 0.1


def profiles(C: np.ndarray, decades: float = DECADES) -> list[np.ndarray]:
    """Indices of the runs of each compute budget, smallest budget first."""
    logC, groups, used = np.log10(C), [], np.zeros(len(C), bool)
    for i in np.argsort(logC):
        if not used[i]:
            members = np.where(~used & (np.abs(logC - logC[i]) <= decades))[0]
            used[members] = True
            groups.append(members[np.argsort(C[members])])
    return groups


def budget_of(pts: dict, group: np.ndarray) -> float:
    """An isoFLOP profile's budget: the geometric mean of its runs' C."""
    return float(np.exp(np.mean(np.log(pts["C"][group]))))


def vertex(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float | None, str]:
    """Parabola coefficients, the vertex's x (None without an interior minimum) and a status."""
    coef = np.polyfit(x, y, 2)
    if coef[0] <= 0:
        return coef, None, "no minimum: the profile is not convex"
    x_opt = -coef[1] / (2 * coef[0])
    if x_opt <= x.min():
        return coef, None, "no interior minimum: the smallest size tried is best (add smaller models)"
    if x_opt >= x.max():
        return coef, None, "no interior minimum: the largest size tried is best (add larger models)"
    return coef, float(x_opt), "interior minimum"


def power_law(C: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Exponent and coefficient of y = k C^a, least squares in log-log."""
    a, log_k = np.polyfit(np.log(C), np.log(y), 1)
    return float(a), float(math.exp(log_k))


def approach2(pts: dict, bootstrap: int = 1000, seed: int = 0) -> dict:
    """Parabola per isoFLOP profile, power laws through the vertices, bootstrap intervals."""
    groups = [g for g in profiles(pts["C"]) if len(np.unique(pts["N"][g])) >= 3]
    table, used = [], []
    for g in groups:
        xN, xD, y = np.log(pts["N"][g]), np.log(pts["D"][g]), pts["loss"][g]
        coef_n, n_opt, status = vertex(xN, y)
        coef_d, d_opt, _ = vertex(xD, y)
        row = {"C": budget_of(pts, g), "runs": int(len(g)), "status": status,
               "N": pts["N"][g].tolist(), "loss": y.tolist(), "best_run_N": float(pts["N"][g][np.argmin(y)]),
               "parabola": coef_n.tolist(), "parabola_D": coef_d.tolist()}
        if n_opt is not None and d_opt is not None:
            row.update(N_opt=math.exp(n_opt), D_opt=math.exp(d_opt), loss_opt=float(np.polyval(coef_n, n_opt)))
            used.append(g)
        table.append(row)
    result = {"profiles": table, "interior_minima": len(used), "a": None, "b": None}
    if len(used) < 2:
        result["note"] = (f"{len(used)} of {len(table)} isoFLOP profiles have an interior minimum; approach 2 needs "
                          "at least 2 to give an exponent")
        return result
    rows = [r for r in table if "N_opt" in r]
    Cs = np.array([r["C"] for r in rows])
    b, k_d = power_law(Cs, np.array([r["D_opt"] for r in rows]))
    result.update(frontier(Cs, [np.array(r["parabola"]) for r in rows], np.log([r["N_opt"] for r in rows])))
    samples, failed, kept, frontiers = bootstrap_exponents(pts, used, Cs, bootstrap, seed)
    result.update(b=b, D_opt_coefficient=k_d, bootstrap=bootstrap, bootstrap_failed=failed,
                  samples_a=samples[:, 0].tolist(), samples_frontier=frontiers)
    if len(samples) >= 20:
        result["ci"] = {name: [float(np.percentile(samples[:, i], 2.5)), float(np.percentile(samples[:, i], 97.5))]
                        for i, name in enumerate(("a", "b"))}
    if failed and len(kept) >= 20:  # the same interval without setting resamples aside: is it too narrow?
        result["ci_a_keeping_every_resample"] = [float(np.percentile(kept, 2.5)), float(np.percentile(kept, 97.5))]
    return result


def frontier(Cs: np.ndarray, parabolas: list[np.ndarray], x_opts: np.ndarray) -> dict:
    """Through the profiles' vertices: N_opt = k C^a, L_opt = k_L C^gamma, and the parabolas' median curvature."""
    a, k_n = power_law(Cs, np.exp(x_opts))
    gamma, k_l = power_law(Cs, np.array([np.polyval(c, x) for c, x in zip(parabolas, x_opts)]))
    return {"a": a, "N_opt_coefficient": k_n, "loss_opt_exponent": gamma, "loss_opt_coefficient": k_l,
            "curvature": float(np.median([c[0] for c in parabolas]))}


def n_opt(iso: dict, C: float) -> float:
    """Approach 2's compute-optimal size at budget C."""
    return iso["N_opt_coefficient"] * C ** iso["a"]


def frontier_loss(iso: dict, C: float, N: float) -> float:
    """Approach 2's loss of a model of N parameters at budget C: the frontier's loss plus the profiles' median
    curvature times the squared log distance from the frontier's size."""
    frontier_at_c = iso["loss_opt_coefficient"] * C ** iso["loss_opt_exponent"]
    return frontier_at_c + iso["curvature"] * math.log(N / n_opt(iso, C)) ** 2


def bootstrap_exponents(pts: dict, used: list[np.ndarray], Cs: np.ndarray, n: int,
                        seed: int) -> tuple[np.ndarray, int, list[float], list[dict]]:
    """(a, b) of each residual-bootstrap resample, the number of resamples that lost a vertex, a of every
    resample with 3+ vertices over the profiles that kept theirs (setting aside only the profiles that lost one),
    and each full resample's frontier (for frontier_loss's interval)."""
    fits = []
    for g in used:
        xN, xD, y = np.log(pts["N"][g]), np.log(pts["D"][g]), pts["loss"][g]
        fitted = np.polyval(np.polyfit(xN, y, 2), xN)
        fits.append((xN, xD, fitted, (y - fitted) * math.sqrt(len(g) / max(len(g) - 3, 1))))
    pool = np.concatenate([f[3] for f in fits])
    rng, samples, failed, kept, frontiers = np.random.default_rng(seed), [], 0, [], []
    for _ in range(n):
        parabolas, n_opt, d_opt = [], [], []
        for xN, xD, fitted, _ in fits:
            y = fitted + rng.choice(pool, len(fitted))
            coef, x_opt, _ = vertex(xN, y)
            parabolas.append(coef)
            n_opt.append(x_opt)
            d_opt.append(vertex(xD, y)[1])
        with_vertex = [i for i, v in enumerate(n_opt) if v is not None]
        if len(with_vertex) >= 3:
            kept.append(power_law(Cs[with_vertex], np.exp([n_opt[i] for i in with_vertex]))[0])
        if any(v is None for v in n_opt + d_opt):
            failed += 1
            continue
        frontiers.append(frontier(Cs, parabolas, np.array(n_opt)))
        samples.append((frontiers[-1]["a"], power_law(Cs, np.exp(d_opt))[0]))
    return np.array(samples).reshape(-1, 2), failed, kept, frontiers


def approach1(pts: dict) -> dict | None:
    """The best run of each budget; a power law through their sizes when 3+ budgets have one."""
    rows = []
    for g in profiles(pts["C"]):
        best = g[np.argmin(pts["loss"][g])]
        rows.append({"C": float(pts["C"][best]), "N": float(pts["N"][best]), "D": float(pts["D"][best]),
                     "loss": float(pts["loss"][best]), "runs": int(len(g))})
    if len(rows) < 3:
        return None
    a, _ = power_law(np.array([r["C"] for r in rows]), np.array([r["N"] for r in rows]))
    b, _ = power_law(np.array([r["C"] for r in rows]), np.array([r["D"] for r in rows]))
    return {"best_runs": rows, "a": a, "b": b,
            "note": "best run per budget (sizes only those tried): a coarse check, no interval"}
