"""Text classification on the synthetic sentiment task: the bag-of-embeddings baseline vs Transformers.

Rows (same data, split and step budget, test metrics of the last checkpoint):
  baseline                  embedding -> mean pooling -> linear (no Transformer)
  transformer, scratch      2 x 64 GPT trained on the labels only
  pretrained, frozen        a 2 x 64 lit_llm LM pretrained on unlabelled reviews; only the head trains
                            (last-token and mean pooling)
  pretrained, fine-tuned    the same LM, all weights trained

    python benchmarks/classify.py --out runs/classify-bench
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lit_llm.cli.main import main as lit_llm  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--wandb.mode", "disabled"]


def run(args: list[str]) -> float:
    t0 = time.time()
    if lit_llm(args) != 0:
        raise SystemExit(f"failed: lit-llm {' '.join(args)}")
    return time.time() - t0


def test_metrics(root: Path) -> dict:
    version = sorted(root.glob("lightning_logs/version_*"), key=lambda p: int(p.name.split("_")[1]))[-1]
    with open(version / "metrics.csv") as f:
        return {k: float(v) for row in csv.DictReader(f) for k, v in row.items() if v}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/classify-bench", help="a new directory for data and runs")
    parser.add_argument("--n", type=int, default=4000, help="labelled rows")
    parser.add_argument("--steps", type=int, default=400, help="classifier training steps")
    parser.add_argument("--lm_steps", type=int, default=600, help="LM pretraining steps")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists; choose another --out")
    data, unlabeled = out / "sentiment.csv", out / "unlabeled.jsonl"
    run(["classify", "make-data", "--out", str(data), "--n", str(args.n), "--seed", "0"])
    run(["classify", "make-data", "--out", str(unlabeled), "--n", "20000", "--seed", "1"])
    lm_seconds = run(["fit", "--config", str(REPO / "configs/model/toy.yaml"), "--data.corpus", str(unlabeled),
                      "--data.tokenizer", "bpe", "--data.vocab_size", "512", "--data.block_size", "64",
                      "--data.batch_size", "32", "--trainer.max_steps", str(args.lm_steps),
                      "--trainer.default_root_dir", str(out / "lm"), *QUIET])
    lm = str(out / "lm/checkpoints/last.ckpt")
    variants = {
        "baseline (embedding mean -> linear)": ["--model.arch", "baseline", "--model.lr", "1e-2"],
        "transformer, scratch (last token)": [],
        "pretrained LM, frozen (head only), last token": ["--model.checkpoint", lm, "--model.freeze_backbone",
                                                          "true", "--model.lr", "1e-2"],
        "pretrained LM, frozen (head only), mean": ["--model.checkpoint", lm, "--model.freeze_backbone", "true",
                                                    "--model.lr", "1e-2", "--model.pooling", "mean"],
        "pretrained LM, fine-tuned (last token)": ["--model.checkpoint", lm],
    }
    rows = []
    for i, (name, extra) in enumerate(variants.items()):
        root = out / f"run-{i}"
        common = ["--config", str(REPO / "configs/classify.yaml"), "--data.path", str(data),
                  "--trainer.default_root_dir", str(root), *QUIET]
        seconds = run(["classify", "fit", *common, "--trainer.max_steps", str(args.steps), *extra])
        run(["classify", "test", *common, *extra, "--ckpt_path", str(root / "checkpoints/last.ckpt")])
        m = test_metrics(root)
        rows.append((name, m["test/acc"], m["test/f1"], seconds))
    print(f"\n{args.n} rows (5% label noise), 80/10/10 split, {args.steps} steps, batch 64; "
          f"LM pretraining: {args.lm_steps} steps on 20,000 unlabelled reviews ({lm_seconds:.0f} s)\n")
    print("| model | test acc | test macro-F1 | fit seconds |")
    print("| --- | --- | --- | --- |")
    for name, acc, f1, seconds in rows:
        print(f"| {name} | {acc:.4f} | {f1:.4f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
