"""Does the best learning rate transfer across width? A small LR sweep per width, standard vs µP.

Tiny char models on Tiny Shakespeare (configs/shakespeare-char.yaml with 2 layers, 4 heads), at the base
width and at 4x it, trained with `lit-llm fit` for a few hundred steps at each learning rate of a log grid;
the val loss (whole val split, final step) per (parametrization, width, lr), the best lr per row, and a
figure. At the base width µP is the standard parametrization exactly (tests/test_mup.py), so that row is
trained once and shown under both.

    OMP_NUM_THREADS=1 python benchmarks/mup_lr_transfer.py --corpus /path/to/tinyshakespeare.txt \
        [--widths 32,128] [--lrs 1e-3,...] [--steps 300] [--png docs/scaling-cpu/mup-lr-transfer.png]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lit_llm.cli.main import main as lit_llm  # noqa: E402
from lit_llm.studies.runs import latest_summary  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--wandb.mode", "disabled"]


def fit(root: Path, corpus: str, width: int, base: int, parametrization: str, lr: float, steps: int,
        seed: int) -> float:
    """Final val loss of one run."""
    args = ["fit", "--config", str(REPO / "configs/shakespeare-char.yaml"), "--data.corpus", corpus,
            "--model.n_layer", "2", "--model.n_head", "4", "--model.n_embd", str(width),
            "--model.parametrization", parametrization, "--model.mup_base_width", str(base),
            "--model.lr", str(lr), "--model.min_lr", str(lr / 10), "--model.warmup_steps", str(steps // 10),
            "--model.lr_decay_steps", str(steps), "--trainer.max_steps", str(steps),
            "--trainer.val_check_interval", str(steps), "--seed_everything", str(seed),
            "--trainer.default_root_dir", str(root), *QUIET]
    if lit_llm(args) != 0:
        raise SystemExit(f"failed: lit-llm {' '.join(args)}")
    found = latest_summary(root)
    if found is None or "val/loss" not in found[1]:
        raise SystemExit(f"no val/loss in {root}")
    return float(found[1]["val/loss"])


def best_lr(lrs: list[float], losses: list[float]) -> tuple[float, float]:
    """The grid's best lr, and the vertex of a parabola through it and its neighbours in log2(lr)
    (the grid's best at an edge of the grid)."""
    i = min(range(len(lrs)), key=lambda j: losses[j])
    if i in (0, len(lrs) - 1):
        return lrs[i], lrs[i]
    x = [math.log2(lrs[j]) for j in (i - 1, i, i + 1)]
    y = [losses[j] for j in (i - 1, i, i + 1)]
    denom = (x[0] - x[1]) * (x[0] - x[2]) * (x[1] - x[2])
    a = (x[2] * (y[1] - y[0]) + x[1] * (y[0] - y[2]) + x[0] * (y[2] - y[1])) / denom
    b = (x[2] ** 2 * (y[0] - y[1]) + x[1] ** 2 * (y[2] - y[0]) + x[0] ** 2 * (y[1] - y[2])) / denom
    return lrs[i], 2 ** (-b / (2 * a)) if a > 0 else lrs[i]


def plot(results: dict, lrs: list[float], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, parametrization in zip(axes, ("standard", "mup")):
        for width, losses in sorted(results[parametrization].items()):
            ax.plot(lrs, losses, marker="o", label=f"n_embd {width}")
            i = min(range(len(lrs)), key=lambda j: losses[j])
            ax.plot([lrs[i]], [losses[i]], marker="*", markersize=14, color=ax.lines[-1].get_color())
        ax.set_xscale("log")
        ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs], rotation=45)
        ax.minorticks_off()
        ax.set_xlabel("learning rate (base)")
        ax.set_title("standard parametrization" if parametrization == "standard" else "µP")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("val loss")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--widths", default="32,128", help="the first is the µP base width")
    parser.add_argument("--lrs", default="1e-3,2e-3,4e-3,8e-3,1.6e-2,3.2e-2,6.4e-2")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--png", default=None, help="write the figure here")
    parser.add_argument("--json", default=None, help="write the table here")
    parser.add_argument("--from-json", default=None, help="print and plot a table written by --json (no training)")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # LightningCLI warns when it sees command-line arguments besides its own
    widths = [int(w) for w in args.widths.split(",")]
    lrs = [float(x) for x in args.lrs.split(",")]
    base = widths[0]
    results: dict[str, dict[int, list[float]]] = {"standard": {}, "mup": {}}
    t0 = time.time()
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        lrs, args.steps = saved["lrs"], saved["steps"]
        results = {p: {int(w): v for w, v in r.items()} for p, r in saved["results"].items()}
        widths = sorted(results["standard"])
    with tempfile.TemporaryDirectory(prefix="mup-lr-") as tmp:
        for parametrization in ("standard", "mup"):
            for width in widths:
                if width in results[parametrization]:  # read from --from-json
                    continue
                if parametrization == "mup" and width == base:  # identical to the standard run
                    results["mup"][width] = results["standard"][width]
                    continue
                row = []
                for lr in lrs:
                    root = Path(tmp) / f"{parametrization}-{width}-{lr:g}"
                    row.append(fit(root, args.corpus, width, base, parametrization, lr, args.steps, args.seed))
                    print(f"  {parametrization:8s} n_embd {width:4d} lr {lr:<8g} val loss {row[-1]:.4f}  "
                          f"({time.time() - t0:.0f} s)", flush=True)
                results[parametrization][width] = row
    print(f"\nval loss after {args.steps} steps (2 layers, base width {base}); lr on the columns")
    print(f"{'':20s}" + "".join(f"{lr:>9g}" for lr in lrs) + "   best lr (grid / parabola)")
    bests = {}
    for parametrization in ("standard", "mup"):
        for width in widths:
            losses = results[parametrization][width]
            grid, fitted = best_lr(lrs, losses)
            bests[(parametrization, width)] = grid
            print(f"{parametrization + ' ' + str(width):20s}" + "".join(f"{x:9.4f}" for x in losses)
                  + f"   {grid:g} / {fitted:.2g}")
    for parametrization in ("standard", "mup"):
        ratio = bests[(parametrization, widths[0])] / bests[(parametrization, widths[-1])]
        print(f"{parametrization}: best lr at n_embd {widths[0]} / at {widths[-1]} = {ratio:g}")
    print(f"total {time.time() - t0:.0f} s")
    if args.json and not args.from_json:
        Path(args.json).write_text(json.dumps({"lrs": lrs, "steps": args.steps, "results": {
            p: {str(w): v for w, v in r.items()} for p, r in results.items()}}, indent=2))
    if args.png:
        plot(results, lrs, Path(args.png))


if __name__ == "__main__":
    main()
