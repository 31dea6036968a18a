"""Transformer vs LSTM/GRU (docs/recurrent.md): the figures of a sweep of sweeps/recurrent.yaml.

    OMP_NUM_THREADS=1 lit-llm sweep sweeps/recurrent.yaml --out runs/sweeps/recurrent
    python benchmarks/recurrent_study.py runs/sweeps/recurrent --out docs/recurrent \
        [--check ../shared/data/tinyshakespeare.txt]

Reads every fit under the sweep directory through lit_llm.studies.runs (summary.json and
loss_by_position.csv) and writes
- loss_vs_params.png: final val loss against non-embedding parameters, one line per architecture;
- loss_vs_position.png: the final val loss at each position of the context, one line per run
  (the colour is the architecture, darker is larger; thin: every position, dots: means over 1, 2, 4, ...
  positions);
and prints a Markdown table of the runs (arch, width, parameters, tokens, val loss, mean loss at positions
0, 8-15 and 64-127, tokens/s, seconds). A script that draws figures, not a test.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from lit_llm.studies.runs import find_runs  # noqa: E402

COLOURS = {"transformer": "Blues", "lstm": "Oranges", "gru": "Greens"}


def load(root: Path) -> list[dict]:
    runs, _ = find_runs(root)
    out = []
    for run in runs:
        if not run.is_fit:
            continue
        s, cfg = run.summary, run.summary.get("config", {})
        positions = sorted((p["position"], p["loss"]) for p in run.positions if "position" in p and "loss" in p)
        out.append({"label": run.label, "arch": cfg.get("model.arch", "transformer"), "width": cfg.get("model.n_embd"),
                    "layers": cfg.get("model.n_layer"), "N": s["params_non_embedding"], "tokens": s["tokens_seen"],
                    "loss": s["val/loss"], "positions": positions, "seconds": s.get("train_seconds"),
                    "tokens_per_sec": s.get("throughput", {}).get("tokens_per_sec_per_device_mean")})
    return sorted(out, key=lambda r: (r["arch"], r["N"]))


def plot(runs: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    archs = sorted({r["arch"] for r in runs}, key=list(COLOURS).index)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for arch in archs:
        rs = [r for r in runs if r["arch"] == arch]
        ax.plot([r["N"] for r in rs], [r["loss"] for r in rs], "o-", color=plt.get_cmap(COLOURS[arch])(0.75),
                label=arch)
    tokens = sorted({r["tokens"] for r in runs})
    ax.set(xscale="log", xlabel="non-embedding parameters", ylabel="final val loss (nats/char)",
           title=f"Tiny Shakespeare (char), {', '.join(f'{t:,}' for t in tokens)} training tokens")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # labelled minor ticks overlap
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss_vs_params.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for arch in archs:
        rs = [r for r in runs if r["arch"] == arch and r["positions"]]
        for i, r in enumerate(rs):
            colour = plt.get_cmap(COLOURS[arch])(0.35 + 0.6 * (i + 1) / len(rs))
            ax.plot([p for p, _ in r["positions"]], [v for _, v in r["positions"]], lw=0.6, alpha=0.35, color=colour)
            x, y = binned(r["positions"])
            ax.plot(x, y, "o-", ms=3, lw=1.5, color=colour, label=f"{arch} N={r['N'] / 1e3:.0f}k")
    ax.set(xscale="symlog", xlabel="position t in the context (the prediction at t has read t+1 characters)",
           ylabel="val loss (nats/char)", title="final val loss at each position of the context")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "loss_vs_position.png", dpi=100)
    plt.close(fig)


def binned(positions: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """The mean loss over positions 0, 1, 2-3, 4-7, 8-15, ... (each position's own ~1/sqrt(windows) noise
    averaged down), at the bin's mean position; the thin lines show every position."""
    x, y, lo = [], [], 0
    while lo <= max(p for p, _ in positions):
        hi = max(1, 2 * lo)
        inside = [(p, v) for p, v in positions if lo <= p < hi]
        if inside:
            x.append(sum(p for p, _ in inside) / len(inside))
            y.append(sum(v for _, v in inside) / len(inside))
        lo = hi
    return x, y


def mean_loss(positions: list[tuple[float, float]], lo: int, hi: int) -> float:
    inside = [v for p, v in positions if lo <= p < hi]
    return sum(inside) / len(inside) if inside else float("nan")


def table(runs: list[dict]) -> str:
    lines = ["| arch | layers x width | non-emb. params | tokens | val loss | loss at t = 0 / 8-15 / 64-127 "
             "| tokens/s | time (s) |", "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        at = " / ".join(f"{mean_loss(r['positions'], lo, hi):.3f}" for lo, hi in ((0, 1), (8, 16), (64, 128)))
        rate = f"{r['tokens_per_sec']:,.0f}" if r["tokens_per_sec"] else "-"
        lines.append(f"| {r['arch']} | {r['layers']} x {r['width']} | {r['N']:,} | {r['tokens']:,} | {r['loss']:.4f} "
                     f"| {at} | {rate} | {r['seconds'] or 0:.0f} |")
    return "\n".join(lines)


def check(root: Path, corpus: Path, windows: int) -> str:
    """An independent check of loss_by_position.csv: each arch's largest checkpoint scored with a plain
    model(x) and F.cross_entropy on the first `windows` 128-character windows of the corpus' last 10%."""
    import torch
    import torch.nn.functional as F

    from lit_llm.checkpoints import load_model

    text = corpus.read_text()
    val = text[int(len(text) * 0.9):]
    lines = []
    for arch in sorted({r["arch"] for r in load(root)}):
        best = max((r for r in load(root) if r["arch"] == arch), key=lambda r: r["N"])
        model, tok = load_model(root / best["label"] / "checkpoints" / "last.ckpt")
        ids = torch.tensor(tok.encode(val).ids)
        n = min(windows, (len(ids) - 1) // 128)
        x, y = ids[: n * 128].view(n, 128), ids[1 : n * 128 + 1].view(n, 128)
        with torch.no_grad():
            nll = F.cross_entropy(model(x).transpose(1, 2), y, reduction="none").mean(0)
        bins = ", ".join(f"t={lo}-{hi - 1}: {nll[lo:hi].mean():.3f}" for lo, hi in ((0, 1), (8, 16), (64, 128)))
        lines.append(f"{arch} N={best['N']:,} ({n} windows): {bins}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/recurrent"))
    parser.add_argument("--check", type=Path, default=None, metavar="CORPUS",
                        help="also score the largest run of each arch directly on CORPUS's last 10%%")
    parser.add_argument("--check-windows", type=int, default=400)
    args = parser.parse_args()
    runs = load(args.sweep_dir)
    if not runs:
        raise SystemExit(f"no finished fits under {args.sweep_dir}")
    plot(runs, args.out)
    print(table(runs))
    print(f"\nwrote {args.out / 'loss_vs_params.png'} and {args.out / 'loss_vs_position.png'}")
    if args.check:
        print(check(args.sweep_dir, args.check, args.check_windows))


if __name__ == "__main__":
    main()
