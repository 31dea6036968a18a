"""Tiny Shakespeare (char) benchmark: final val loss of the two baby configs, and the tokens/s of
Lightning training against a plain PyTorch loop of the same model and batch, side by side.

    python benchmarks/shakespeare_char.py --corpus /path/to/tinyshakespeare.txt \
        [--steps 2000] [--speed-steps 300] [--only quality|speed] [--seeds 1337,1,2]

A script that prints figures, not a test. Set LIT_LLM_CACHE to choose where the prepared data goes.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {  # name -> (config file, val-loss target at 2000 steps)
    "gpt2-exact": ("configs/shakespeare-char.yaml", 1.89),
    "modern": ("configs/shakespeare-char-modern.yaml", 1.80),
}
WARMUP_STEPS = 20  # steps left out of the timed part of both loops
WINDOW = 10  # Lightning logs (and the Throughput callback measures) every 10 steps in both configs


def log_dir_of(root: Path) -> Path:
    versions = sorted(glob.glob(str(root / "lightning_logs" / "version_*")),
                      key=lambda p: int(p.rsplit("_", 1)[1]))
    if not versions:
        raise SystemExit(f"no lightning_logs/version_* under {root}")
    return Path(versions[-1])


def window_rates(log_dir: Path) -> list[tuple[int, float]]:
    """(step, train/tokens_per_sec) per logging window from metrics.csv, in step order."""
    rates = []
    with open(log_dir / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            value = row.get("train/tokens_per_sec")
            if value:
                rates.append((int(row["step"]), float(value)))
    return sorted(rates)


def run_fit(config: str, corpus: str, root: Path, steps: int, extra: list[str], threads: int | None = None) -> dict:
    """Run `python -m lit_llm fit` in a subprocess; return summary.json plus our own measurements."""
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"{root} is not empty; pick another --outdir")
    cmd = [sys.executable, "-m", "lit_llm", "fit", "--config", config, "--data.corpus", corpus,
           "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
           "--trainer.max_steps", str(steps), *extra]
    print(f"  $ {shlex.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"lit_llm fit exited with {proc.returncode}")
    log_dir = log_dir_of(root)
    summary = json.loads((log_dir / "summary.json").read_text())
    windows = window_rates(log_dir)
    # the first logged window (steps 11-20 at log_every_n_steps 10) is warm-up, as in the plain loop
    sizes = [b[0] - a[0] for a, b in zip(windows, windows[1:])]  # steps per later window
    timed = [r for _, r in windows[1:]]
    summary["_wall"] = wall
    summary["_median_tps"] = statistics.median(timed) if timed else float("nan")
    summary["_best_tps"] = max(timed) if timed else float("nan")
    # total tokens / total time over the later windows (steps 21..N): size-weighted harmonic mean
    summary["_aggregate_tps"] = (sum(sizes) / sum(n / r for n, r in zip(sizes, timed))
                                 if timed else float("nan"))
    summary["_log_dir"] = str(log_dir)
    return summary


# --- quality -------------------------------------------------------------------------------------
def quality(args, outdir: Path) -> None:
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [None]
    rows = []
    for name, (config, target) in CONFIGS.items():
        if name not in args.configs.split(","):
            continue
        for seed in seeds:
            extra = [] if seed is None else ["--seed_everything", str(seed), "--data.seed", str(seed)]
            extra += args.extra
            tag = name if seed is None else f"{name}-seed{seed}"
            print(f"[quality] {tag}", flush=True)
            s = run_fit(config, args.corpus, outdir / tag, args.steps, extra)
            rows.append((name, seed, target, s))
            print(f"  val/loss {s['val/loss']:.4f}  params {s['params']:,}  "
                  f"train_seconds {s['train_seconds']}", flush=True)

    print(f"\nQuality: {args.steps} steps, final val loss (full val split)")
    head = (f"{'config':<12} {'seed':>6} {'params':>9} {'val loss':>9} {'target':>7} {'':>5} "
            f"{'tok/s med':>10} {'tok/s last':>10} {'train s':>8} {'wall s':>7}")
    print(head)
    print("-" * len(head))
    for name, seed, target, s in rows:
        ok = ("PASS" if s["val/loss"] <= target else "FAIL") if args.steps == 2000 else "n/a"  # targets: 2000 steps
        seed_txt = "cfg" if seed is None else str(seed)
        print(f"{name:<12} {seed_txt:>6} {s['params']:>9,} {s['val/loss']:>9.4f} {target:>7.2f} {ok:>5} "
              f"{s['_median_tps']:>10,.0f} {s['throughput'].get('tokens_per_sec', float('nan')):>10,.0f} "
              f"{s['train_seconds']:>8.1f} {s['_wall']:>7.1f}")
    print("tok/s med: median of train/tokens_per_sec over logging windows (first window left out); "
          "tok/s last: summary.json (the last window only); train s: summary.json; "
          "wall s: the whole subprocess, start-up included")
    if len(seeds) > 1:
        print("\nAcross seeds:")
        for name, (_, target) in CONFIGS.items():
            losses = [s["val/loss"] for n, _, _, s in rows if n == name]
            if len(losses) < 2:
                continue
            mean = statistics.mean(losses)
            sd = statistics.stdev(losses)
            n_pass = sum(v <= target for v in losses)
            passing = f"passing {n_pass}/{len(losses)}  (target <= {target})" if args.steps == 2000 else ""
            print(f"{name:<12} mean {mean:.4f}  sd {sd:.4f}  min {min(losses):.4f}  max {max(losses):.4f}  {passing}")


# --- speed ---------------------------------------------------------------------------------------
def plain_loop(corpus: str, steps: int, seed: int = 1337) -> dict:
    """The gpt2-exact config's training step in plain PyTorch (nanoGPT's loop: uniform random windows,
    AdamW, warmup + cosine, clip 1.0); tokens/s over steps WARMUP_STEPS..steps. Returns the model too."""
    import torch
    import torch.nn.functional as F
    import yaml

    from lit_llm.data.datamodule import TextDataModule
    from lit_llm.data.samplers import RandomWindows
    from lit_llm.model.gpt import GPT, GPTConfig
    from lit_llm.training.optim import lr_at

    cfg = yaml.safe_load((REPO / CONFIGS["gpt2-exact"][0]).read_text())
    m, d = cfg["model"], cfg["data"]
    block, batch = d["block_size"], d["batch_size"]
    assert (block, batch) == (64, 12), (block, batch)
    prepared = TextDataModule(corpus, "char", block_size=block, batch_size=batch).prepare_once()
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=prepared.vocab_size, block_size=block, n_layer=m["n_layer"],
                       n_head=m["n_head"], n_embd=m["n_embd"], norm=m["norm"], pos=m["pos"], mlp=m["mlp"],
                       bias=m["bias"], tie_embeddings=m["tie_embeddings"], dropout=m["dropout"],
                       pad_vocab_to=m.get("system", {}).get("pad_vocab_to", 64))
    model = GPT(config)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": m["weight_decay"]},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    lr, min_lr = float(m["lr"]), float(m["min_lr"])
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(m["beta1"], m["beta2"]))
    decay = m["lr_decay_steps"]
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_at(step, lr, min_lr, m["warmup_steps"], decay) / lr)
    batches = iter(RandomWindows(prepared.tokens("train"), block, batch, seed))
    marks = {}
    for step in range(steps):
        if step == WARMUP_STEPS or (step > WARMUP_STEPS and step % WINDOW == 0):
            marks[step] = time.perf_counter()
        tokens = next(batches)["tokens"]
        x, y = tokens[:, :-1], tokens[:, 1:]
        logits = model(x)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    marks[steps] = time.perf_counter()
    loss_value = loss.item()
    per_step = block * batch
    timed = steps - WARMUP_STEPS
    ticks = sorted(marks)
    rates = [per_step * (b - a) / (marks[b] - marks[a]) for a, b in zip(ticks, ticks[1:])]
    return {"aggregate_tps": per_step * timed / (marks[steps] - marks[WARMUP_STEPS]),
            "median_tps": statistics.median(rates), "best_tps": max(rates), "loss": loss_value,
            "params": sum(p.numel() for p in model.parameters()), "threads": torch.get_num_threads(),
            "model": model, "prepared": prepared}


def val_losses(model, prepared, block: int, batch: int, seed: int) -> dict:
    """Val loss of `model` three ways: exact over the whole split (what lit_llm logs as val/loss), and
    nanoGPT's estimate (mean of eval_iters random batches of `batch` windows) at 20 and 200 iterations."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from lit_llm.data.samplers import IGNORE_INDEX, SequentialWindows

    val = prepared.tokens("val")
    model.eval()
    nll, count = 0.0, 0
    with torch.no_grad():
        windows = SequentialWindows(val, block)
        for i in range(0, len(windows), 64):
            items = [windows[j] for j in range(i, min(i + 64, len(windows)))]
            x = torch.stack([it["input"] for it in items])
            y = torch.stack([it["target"] for it in items])
            nll += F.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX, reduction="sum").item()
            count += int((y != IGNORE_INDEX).sum())
        out = {"exact": nll / count}
        data = np.asarray(val, dtype=np.int64)
        rng = torch.Generator().manual_seed(seed)

        def estimate(iters: int) -> float:
            losses = []
            for _ in range(iters):
                ix = torch.randint(len(data) - block, (batch,), generator=rng)
                xy = torch.stack([torch.from_numpy(data[i:i + block + 1]) for i in ix.tolist()])
                logits = model(xy[:, :-1])
                losses.append(F.cross_entropy(logits.flatten(0, 1), xy[:, 1:].flatten()).item())
            return sum(losses) / len(losses)

        out["nanogpt_20"], out["nanogpt_200"] = estimate(20), estimate(200)
        # the spread of nanoGPT's --eval_iters=20 figure itself, over 60 independent draws
        out["nanogpt_20_sd"] = statistics.stdev(estimate(20) for _ in range(60))
    return out


def reference(args, outdir: Path) -> None:
    """Train the plain PyTorch loop for --steps per seed and report its val loss, exact and nanoGPT-style,
    next to the Lightning run's checkpoint of the same seed (if the quality part ran)."""
    from lit_llm.checkpoints import load_model

    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [1337]
    rows = []
    for seed in seeds:
        print(f"[reference] plain PyTorch loop, seed {seed}, {args.steps} steps", flush=True)
        p = plain_loop(args.corpus, args.steps, seed)
        plain = val_losses(p["model"], p["prepared"], 64, 12, seed)
        ckpts = sorted((outdir / f"gpt2-exact-seed{seed}").glob("checkpoints/last*.ckpt"))
        light = val_losses(load_model(str(ckpts[-1]))[0], p["prepared"], 64, 12, seed) if ckpts else None
        rows.append((seed, plain, light))
        print(f"  plain {plain}  lightning {light}", flush=True)
    print(f"\nReference: gpt2-exact, {args.steps} steps; val loss exact (whole split) and nanoGPT's estimate "
          "(mean of 20 / 200 random batches of 12 x 64)")
    head = f"{'seed':>6} {'loop':>10} {'exact':>8} {'nano-20':>8} {'nano-200':>8} {'sd of nano-20':>13}"
    print(head)
    print("-" * len(head))
    for seed, plain, light in rows:
        for name, v in (("plain", plain), ("lightning", light)):
            if v:
                print(f"{seed:>6} {name:>10} {v['exact']:>8.4f} {v['nanogpt_20']:>8.4f} {v['nanogpt_200']:>8.4f} "
                      f"{v['nanogpt_20_sd']:>13.4f}")
    for name, i in (("plain", 1), ("lightning", 2)):
        vals = [r[i]["exact"] for r in rows if r[i]]
        if len(vals) > 1:
            print(f"{name}: exact mean {statistics.mean(vals):.4f} sd {statistics.stdev(vals):.4f}")


def speed(args, outdir: Path) -> None:
    import torch

    config = CONFIGS["gpt2-exact"][0]
    if args.threads:  # this process runs the plain loop; the Lightning subprocess gets OMP_NUM_THREADS
        torch.set_num_threads(args.threads)
    extra = ["--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0", *args.extra]
    results = []
    for r in range(args.rounds):
        print(f"[speed] round {r + 1}: plain PyTorch, {args.speed_steps} steps", flush=True)
        p = plain_loop(args.corpus, args.speed_steps)
        print(f"  plain: {p['aggregate_tps']:,.0f} tok/s (steps {WARMUP_STEPS}..{args.speed_steps}), "
              f"median window {p['median_tps']:,.0f}, final loss {p['loss']:.4f}", flush=True)
        print(f"[speed] round {r + 1}: Lightning, {args.speed_steps} steps", flush=True)
        s = run_fit(config, args.corpus, outdir / f"speed-round{r + 1}", args.speed_steps, extra, args.threads)
        print(f"  lightning: {s['_aggregate_tps']:,.0f} tok/s (steps {WARMUP_STEPS}..{args.speed_steps}), "
              f"median window {s['_median_tps']:,.0f}, summary.json (last window) "
              f"{s['throughput'].get('tokens_per_sec', float('nan')):,.0f}, "
              f"final train/loss {s['metrics'].get('train/loss', float('nan')):.4f}", flush=True)
        results.append((p, s))

    print(f"\nSpeed: gpt2-exact config, block 64 x batch 12, {args.speed_steps} steps, "
          f"torch threads {results[0][0]['threads']} ({'--threads' if args.threads else 'default'}; "
          f"torch {torch.__version__})")
    head = (f"{'round':>5} {'plain tok/s':>12} {'lightning tok/s':>16} {'ratio':>7}   "
            f"{'plain med':>10} {'light med':>10} {'ratio med':>9}   "
            f"{'plain best':>10} {'light best':>10} {'ratio best':>10}")
    print(head)
    print("-" * len(head))
    ratios, ratios_med, ratios_best = [], [], []
    disturbed = [r for r, (p, s) in enumerate(results, 1)
                 if min(p["aggregate_tps"] / p["median_tps"], s["_aggregate_tps"] / s["_median_tps"]) < 0.9]
    for r, (p, s) in enumerate(results, 1):
        ratio = s["_aggregate_tps"] / p["aggregate_tps"]
        ratio_med = s["_median_tps"] / p["median_tps"]
        ratios.append(ratio)
        ratios_med.append(ratio_med)
        ratios_best.append(s["_best_tps"] / p["best_tps"])
        print(f"{r:>5} {p['aggregate_tps']:>12,.0f} {s['_aggregate_tps']:>16,.0f} {ratio:>7.3f}   "
              f"{p['median_tps']:>10,.0f} {s['_median_tps']:>10,.0f} {ratio_med:>9.3f}   "
              f"{p['best_tps']:>10,.0f} {s['_best_tps']:>10,.0f} {ratios_best[-1]:>10.3f}")
    def verdict(r: float) -> str:
        return f"{r:.3f} ({'PASS' if r >= 0.95 else 'FAIL'})"

    print(f"lightning/plain, median of rounds, target >= 0.95: "
          f"{verdict(statistics.median(ratios))} over steps {WARMUP_STEPS}..{args.speed_steps}; "
          f"{verdict(statistics.median(ratios_med))} by median {WINDOW}-step window; "
          f"{verdict(statistics.median(ratios_best))} by best window")
    print("tok/s = tokens / time over the same steps in both loops; Lightning's from metrics.csv "
          "(train/tokens_per_sec windows after the first), plain's from time.perf_counter; med / best: "
          f"median / fastest {WINDOW}-step window (robust to another process taking the CPU for a while)")
    print(f"params: plain {results[0][0]['params']:,}, lightning {results[0][1]['params']:,}")
    if disturbed:
        print(f"note: round(s) {', '.join(map(str, disturbed))} disturbed: a loop's total rate is >10% below its "
              "median window (another process had the CPU); re-run, or add --rounds")
        clean = [i for i in range(len(results)) if i + 1 not in disturbed]
        if clean:
            print(f"lightning/plain over the undisturbed round(s) only: "
                  f"{verdict(statistics.median(ratios[i] for i in clean))} over steps {WARMUP_STEPS}.."
                  f"{args.speed_steps}; {verdict(statistics.median(ratios_med[i] for i in clean))} by median window")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, help="tinyshakespeare.txt")
    parser.add_argument("--steps", type=int, default=2000, help="training steps of the quality runs")
    parser.add_argument("--speed-steps", type=int, default=300, help="steps of each speed run")
    parser.add_argument("--rounds", type=int, default=2, help="plain/Lightning rounds of the speed part")
    parser.add_argument("--only", choices=["quality", "speed", "reference"], help="run one part only")
    parser.add_argument("--configs", default="gpt2-exact,modern", help="quality configs to run (comma-separated)")
    parser.add_argument("--reference", action="store_true",
                        help="after the quality runs, train the plain loop per seed and compare val losses")
    parser.add_argument("--seeds", help="comma-separated seeds for the quality runs (seed_everything and data.seed)")
    parser.add_argument("--threads", type=int,
                        help="torch threads of both speed loops (default: torch's); quality runs keep the default")
    parser.add_argument("--outdir", help="where runs go (default: a new temporary directory)")
    parser.add_argument("--extra", action="append", default=[],
                        help="one more argument for every `lit_llm fit` (repeat: --extra=--model.bias --extra=false)")
    args = parser.parse_args()
    for flag, steps in (("--steps", args.steps), ("--speed-steps", args.speed_steps)):
        if steps <= WARMUP_STEPS:
            parser.error(f"{flag} must exceed the {WARMUP_STEPS} untimed warm-up steps, got {steps}")
    if args.speed_steps <= WARMUP_STEPS + 2 * WINDOW:
        parser.error(f"--speed-steps must be above {WARMUP_STEPS + 2 * WINDOW}")
    args.corpus = str(Path(args.corpus).resolve())
    outdir = Path(args.outdir).resolve() if args.outdir else Path(tempfile.mkdtemp(prefix="lit_llm_bench_"))
    outdir.mkdir(parents=True, exist_ok=True)
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"outdir: {outdir}  LIT_LLM_CACHE={os.environ.get('LIT_LLM_CACHE', '(default)')}  "
          f"WANDB_MODE={os.environ.get('WANDB_MODE', '(unset)')}", flush=True)
    if args.only in (None, "speed"):
        speed(args, outdir)
    if args.only in (None, "quality"):
        if args.only is None:
            print()
        quality(args, outdir)
    if args.only == "reference" or args.reference:
        reference(args, outdir)


if __name__ == "__main__":
    main()
