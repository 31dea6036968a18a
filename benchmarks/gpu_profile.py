"""Where a GPU step of `lit-llm fit` goes: the timed fit of benchmarks/gpu.py (GPT-2 small, bf16-mixed, compile)
in variants side by side, and a torch.profiler table of a few steps.

    python benchmarks/gpu_profile.py [--gpt2-dir DIR] [--steps 120] [--variants default,wandb-disabled,unchunked-loss,profile]

Variants (each one `lit-llm fit` subprocess, as part 1 of gpu.py):
- default: as gpu.py part 1 (W&B offline);
- wandb-disabled: `--wandb.mode disabled`;
- unchunked-loss: the loss as the plain loop computes it (one F.cross_entropy over an fp32 copy of the logits),
  swapped in by the `UnchunkedLoss` callback below: how much the chunked, checkpointed fp32 loss costs;
- profile: default plus `Profile`, a torch.profiler trace of 5 steps, its tables printed to the fit's log
  (sorted by GPU time and by CPU time), with the GPU's busy time over those steps' wall time.
Prints tokens/s per variant (mean and median of the logging windows after the first).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

import gpu  # benchmarks/gpu.py: the same fit settings and runner

PROFILE_STEPS = 5


class UnchunkedLoss(Callback):
    """Swaps lit_llm's chunked loss for one F.cross_entropy over an fp32 copy of the whole logits."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        import torch.nn.functional as F

        from lit_llm.data.samplers import IGNORE_INDEX
        from lit_llm.training import module, objectives

        def token_nll(logits, targets, chunk_rows=0):
            nll = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX,
                                  reduction="sum")
            return nll, (targets != IGNORE_INDEX).sum()

        for where in (module, objectives):
            if hasattr(where, "token_nll"):
                where.token_nll = token_nll


class Profile(Callback):
    """torch.profiler over PROFILE_STEPS optimizer steps starting at `start`; tables printed to stdout."""

    def __init__(self, start: int = 60) -> None:
        self.start, self.prof, self.t0 = start, None, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.start and self.prof is None:
            torch.cuda.synchronize()
            acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
            self.prof = torch.profiler.profile(activities=acts)
            self.prof.__enter__()
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.prof is not None and trainer.global_step == self.start + PROFILE_STEPS:
            torch.cuda.synchronize()
            wall = time.perf_counter() - self.t0
            self.prof.__exit__(None, None, None)
            events = self.prof.key_averages()
            gpu_us = sum(e.self_device_time_total for e in events)
            print(f"\nPROFILE {PROFILE_STEPS} steps: wall {wall * 1e3:.1f} ms, {wall * 1e3 / PROFILE_STEPS:.1f} ms/step; "
                  f"GPU busy {gpu_us / 1e3:.1f} ms ({gpu_us / 1e6 / wall:.1%} of wall)", flush=True)
            for key in ("self_device_time_total", "self_cpu_time_total"):
                print(f"\nPROFILE by {key}\n" + events.table(sort_by=key, row_limit=30, max_name_column_width=60),
                      flush=True)
            self.prof = False


def windows(rows: list[dict]) -> list[float]:
    vals = [r["train/tokens_per_sec"] for r in rows if r.get("train/tokens_per_sec")]
    return vals[1:] or vals  # the first window holds compilation


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpt2-dir")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--variants", default="default,wandb-disabled,unchunked-loss,profile")
    p.add_argument("--outdir")
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device")
    s = gpu.settings(argparse.Namespace(tiny=False, cpu=False, block_size=None, batch_size=args.batch_size,
                                        steps=args.steps, log_every=args.log_every, check_steps=20, compile=None,
                                        threads=None))
    s["corpus"], s["wandb_mode"] = "python-stdlib", "offline"
    os.environ["LIT_LLM_GPT2_DIR"] = str(gpu.gpt2_files(args.gpt2_dir))
    outdir = Path(args.outdir or tempfile.mkdtemp(prefix="lit_llm_gpu_profile_")).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    base = ["--config", str(gpu.REPO / "configs/trainer/gpu.yaml"), "--trainer.precision", s["precision"],
            "--model.system.compile", "true", "--trainer.max_steps", str(s["steps"]),
            "--trainer.log_every_n_steps", str(s["log_every"]), "--trainer.limit_val_batches", "0",
            *gpu.data_args(s, s["block"], s["batch"]), *gpu.model_args(s["arch"])]
    extra = {"default": [], "wandb-disabled": ["--wandb.mode", "disabled"],
             "unchunked-loss": ["--trainer.callbacks+=gpu_profile.UnchunkedLoss"],
             "profile": ["--trainer.callbacks+=gpu_profile.Profile"]}
    results = {}
    for name in args.variants.split(","):
        print(f"[{name}]", flush=True)
        try:
            run = gpu.run_fit(name, outdir, s, base + extra[name])
        except RuntimeError as err:
            print(f"  FAILED: {err}", flush=True)
            continue
        w = windows(run["rows"])
        results[name] = (statistics.mean(w), statistics.median(w), run["wall_seconds"])
        print(f"  mean {results[name][0]:,.0f} tokens/s, median window {results[name][1]:,.0f}", flush=True)
        if name == "profile":
            log = (outdir / f"{name}.log").read_text()
            print(log[log.find("PROFILE"):], flush=True)
    print(f"\nGPT-2 small, micro-batch {s['batch']} x {s['block']}, {s['steps']} steps, bf16-mixed, compile, "
          f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("| variant | tokens/s (mean of windows) | median window | wall s |\n| --- | --- | --- | --- |")
    for name, (mean, median, wall) in results.items():
        print(f"| {name} | {mean:,.0f} | {median:,.0f} | {wall:.0f} |")


if __name__ == "__main__":
    sys.path.insert(0, str(gpu.REPO))
    main()
