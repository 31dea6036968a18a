"""GPU benchmark (issue #13): lit-llm's training speed against a plain PyTorch loop, and a 1-GPU FSDP check.

    python benchmarks/gpu.py [--gpt2-dir ../shared/data/gpt2] [--out gpu.json]   # one H100/H200, < 8 min
    python benchmarks/gpu.py --cpu --tiny --out tiny.json                         # the same parts on a CPU

1. `lit-llm fit` in a subprocess: GPT-2 small (12 x 768, block 1024, GPT-2 tokenizer over the built-in
   `python-stdlib` corpus), micro-batch 16 x 1024, bf16-mixed, `--model.system.compile true`, W&B offline.
   Tokens/s and MFU come from the run's summary.json (the mean over the logging windows after the first);
   peak GPU memory from `PeakMemory` below, a callback the fit loads from this file.
2. The same network (lit_llm.model.gpt.GPT), data windows, optimizer (AdamW, fused on CUDA, weight decay on
   >= 2-D weights, warmup + cosine), bf16 autocast, torch.compile and clipping (1.0) in a plain PyTorch loop
   in this process, timed over the same steps after a device sync; then the ratio lit-llm / plain.
3. A smaller model fitted twice in fp32 from the same initial weights (`SharedInit` below), data and steps:
   single device, then `configs/trainer/fsdp.yaml` with one device; the logged `grad_norm` (metrics.csv)
   must agree step by step (relative difference < 1e-3). At world size 1 PyTorch runs FSDP's FULL_SHARD as
   NO_SHARD, so this checks the FSDP wrapping, flat parameters, activation-checkpointing policy and the
   grad_norm path, not a reduction across ranks. FSDP needs a GPU: with --cpu the part is skipped
   (`--check-strategy ddp` runs it with a 1-process DDP stand-in, which checks only the comparison).

`--tiny` swaps in a 2 x 64 model over a character-level slice of python-stdlib (no GPT-2 files needed);
`--cpu` runs on the CPU in fp32 without compile, one torch thread per loop. Exit status: 0 when every part
ran and passed, 1 when one failed, 2 for bad input (no GPU without --cpu, no GPT-2 files).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
SEED = 1337
OPTIM = {"lr": 6e-4, "min_lr": 6e-5, "warmup_steps": 10, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95}
# (n_layer, n_head, n_embd, n_ff) of the timed model and of the FSDP check's smaller one
ARCH = {"gpt2-small": (12, 12, 768, 0), "small": (4, 4, 256, 0), "tiny": (2, 4, 64, 256)}
WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


# --- callbacks the fits load from this file (--trainer.callbacks+=gpu.NAME, benchmarks/ on PYTHONPATH) ---
class PeakMemory(Callback):
    """Writes the training's peak memory to a JSON file: torch.cuda.max_memory_allocated since the start of
    training on a GPU (read after every step: a host-side counter, no sync), the process's peak RSS on a CPU."""

    def __init__(self, path: str) -> None:
        self.path, self.peak = path, 0

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trainer.strategy.root_device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.strategy.root_device.type == "cuda":
            self.peak = max(self.peak, torch.cuda.max_memory_allocated(trainer.strategy.root_device))

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            Path(self.path).write_text(json.dumps(peak_memory(trainer.strategy.root_device, self.peak)))


def peak_memory(device: torch.device, cuda_peak: int = 0) -> dict:
    if device.type == "cuda":
        return {"kind": "cuda max_memory_allocated", "bytes": cuda_peak or torch.cuda.max_memory_allocated(device)}
    return {"kind": "process peak RSS", "bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


class SharedInit(Callback):
    """At the start of a fit, after the strategy has wrapped the model: mode "save" writes the model's
    initial weights to `path`, mode "load" replaces them with the saved ones, so two fits under different
    strategies (whose random inits differ: FSDP builds the model on the CPU, one device on the GPU) start
    from the same weights."""

    def __init__(self, path: str, mode: str = "save") -> None:
        if mode not in ("save", "load"):
            raise ValueError(f"mode must be save or load, got {mode!r}")
        self.path, self.mode = path, mode

    def on_fit_start(self, trainer, pl_module) -> None:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        wrapped = trainer.strategy.model
        full = FSDP.summon_full_params(wrapped, writeback=True) if isinstance(wrapped, FSDP) else nullcontext()
        with full, torch.no_grad():
            params = canonical_params(pl_module.model)
            if self.mode == "save":
                if trainer.is_global_zero:
                    torch.save({k: p.detach().cpu().clone() for k, p in params.items()}, self.path)
                return
            saved = torch.load(self.path, weights_only=True)
            if set(saved) != set(params):
                raise RuntimeError(f"SharedInit: parameter names differ: only saved "
                                   f"{sorted(set(saved) - set(params))}, only here {sorted(set(params) - set(saved))}")
            for name, p in params.items():
                p.copy_(saved[name])


def canonical_params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters by their names without FSDP, checkpoint and compile wrappers."""
    out = {}
    for name, p in model.named_parameters():
        if "_flat_param" in name:
            continue
        for prefix in WRAPPER_PREFIXES:
            name = name.replace(prefix, "")
        out[name] = p
    return out


# --- settings ---------------------------------------------------------------------------------------------
def settings(args) -> dict:
    """What the parts run: model, data, batch, steps, device and precision."""
    tiny, cpu = args.tiny, args.cpu
    s = {
        "arch": "tiny" if tiny else "gpt2-small", "check_arch": "tiny" if tiny else "small",
        "block": args.block_size or (64 if tiny else 1024), "batch": args.batch_size or (4 if tiny else 16),
        "steps": args.steps or (20 if tiny else 60), "log_every": args.log_every or (5 if tiny else 10),
        "check_block": 64 if tiny else 256, "check_batch": 4 if tiny else 8, "check_steps": args.check_steps,
        "accelerator": "cpu" if cpu else "gpu", "precision": "32-true" if cpu else "bf16-mixed",
        "compile": (not cpu) if args.compile is None else args.compile,
        "threads": args.threads or (1 if cpu else None),
        "tokenizer": "char" if tiny else "gpt2",
    }
    if s["steps"] <= 2 * s["log_every"]:
        raise SystemExit(f"--steps must be above 2 x --log-every ({2 * s['log_every']}): the first window is warm-up")
    return s


def tiny_corpus(outdir: Path, chars: int = 300_000) -> Path:
    """A slice of python-stdlib (its first files, sorted) as one text file, for the char tokenizer."""
    from lit_llm.data.corpus import python_stdlib_files

    parts, n = [], 0
    for path in python_stdlib_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        parts.append(text)
        n += len(text)
        if n >= chars:
            break
    path = outdir / "corpus.txt"
    path.write_text("".join(parts)[:chars])
    return path


def gpt2_files(given: str | None) -> Path:
    candidates = [Path(given)] if given else [root / "shared" / "data" / "gpt2" for root in (REPO.parent, REPO)]
    for c in candidates:
        if (c / "vocab.json").exists() and (c / "merges.txt").exists():
            return c.resolve()
    print(f"error: GPT-2 tokenizer files (vocab.json, merges.txt) not found in {', '.join(map(str, candidates))}; "
          "give --gpt2-dir DIR, or run --tiny (a char tokenizer, no files needed)", file=sys.stderr)
    raise SystemExit(2)


def data_args(s: dict, block: int, batch: int) -> list[str]:
    return ["--data.corpus", s["corpus"], "--data.tokenizer", s["tokenizer"], "--data.block_size", str(block),
            "--data.batch_size", str(batch)]


def model_args(arch: str) -> list[str]:
    n_layer, n_head, n_embd, n_ff = ARCH[arch]
    out = ["--model.n_layer", str(n_layer), "--model.n_head", str(n_head), "--model.n_embd", str(n_embd),
           "--model.n_ff", str(n_ff)]
    return out + [x for k, v in OPTIM.items() for x in (f"--model.{k}", str(v))]


# --- running lit-llm fit ----------------------------------------------------------------------------------
def run_fit(name: str, outdir: Path, s: dict, extra: list[str]) -> dict:
    """`python -m lit_llm fit` in a subprocess (its output in OUTDIR/NAME.log); returns its summary.json,
    metrics.csv rows and wall time."""
    from lit_llm.studies.runs import latest_summary, read_metrics

    root = outdir / name
    cmd = [sys.executable, "-m", "lit_llm", "fit", "--seed_everything", str(SEED),
           "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
           "--trainer.num_sanity_val_steps", "0", "--wandb.mode", s["wandb_mode"], *extra]
    path = [str(HERE), str(REPO), os.environ.get("PYTHONPATH")]  # gpu.NAME callbacks; this checkout's lit_llm
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, path)))
    env.setdefault("WANDB_SILENT", "true")
    if s["threads"]:
        env["OMP_NUM_THREADS"] = str(s["threads"])
    print(f"  $ {shlex.join(cmd)}", flush=True)
    log = outdir / f"{name}.log"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode:
        tail = "".join(log.read_text().splitlines(keepends=True)[-25:])
        raise RuntimeError(f"lit-llm fit ({name}) exited with {proc.returncode}; end of {log}:\n{tail}")
    found = latest_summary(root)
    if found is None:
        raise RuntimeError(f"lit-llm fit ({name}) wrote no summary.json under {root}")
    path, summary = found
    return {"summary": summary, "rows": read_metrics(path.parent / "metrics.csv"), "wall_seconds": wall,
            "log_dir": str(path.parent)}


def by_step(rows: list[dict], key: str) -> dict[int, float]:
    """A metric by step from metrics.csv rows (logged every --trainer.log_every_n_steps)."""
    return {int(r["step"]): r[key] for r in rows if key in r}


def part_fit(s: dict, outdir: Path, peak_tflops: float | None) -> dict:
    """Part 1: the timed model through lit-llm fit; tokens/s, MFU and peak memory."""
    from lit_llm.checkpoints import read_lm_checkpoint

    memory_file = outdir / "peak-memory.json"
    preset = REPO / "configs/trainer" / ("cpu.yaml" if s["accelerator"] == "cpu" else "gpu.yaml")
    extra = ["--config", str(preset), "--trainer.precision", s["precision"],
             "--model.system.compile", str(s["compile"]).lower(), "--trainer.max_steps", str(s["steps"]),
             "--trainer.log_every_n_steps", str(s["log_every"]), "--trainer.limit_val_batches", "0",
             *data_args(s, s["block"], s["batch"]), *model_args(s["arch"]),
             "--trainer.callbacks+=gpu.PeakMemory", f"--trainer.callbacks.path={memory_file}"]
    if peak_tflops:
        extra += ["--throughput.peak_tflops", str(peak_tflops)]
    run = run_fit("fit", outdir, s, extra)
    summary = run["summary"]
    t = summary.get("throughput", {})
    tps = t.get("tokens_per_sec_per_device_mean")
    # the peak the fit divided by (the table's on a GPU, ours on a CPU): last window's TFLOP/s over its MFU
    peak = t["tflops_per_device"] / t["mfu"] if t.get("mfu") else None
    memory = json.loads(memory_file.read_text())
    # the network the fit trained, exactly (e.g. a padded vocabulary), for the plain loop to rebuild
    model_config = read_lm_checkpoint(summary["checkpoints"]["last"])["lit_llm"]["model_config"]
    return {"tokens_per_sec": tps, "tokens_per_sec_last_window": t.get("tokens_per_sec"),
            "mfu": tps * summary["flops_per_token"] / 1e12 / peak if tps and peak else None,
            "mfu_last_window": t.get("mfu"), "peak_tflops": peak, "peak_memory_bytes": memory["bytes"],
            "peak_memory_kind": memory["kind"], "params": summary["params"],
            "flops_per_token": summary["flops_per_token"], "train_loss": by_step(run["rows"], "train/loss"),
            "wall_seconds": round(run["wall_seconds"], 1), "log_dir": run["log_dir"], "model_config": model_config,
            "summary": {k: v for k, v in summary.items() if k != "config"}}


# --- the plain PyTorch loop -------------------------------------------------------------------------------
def part_plain(s: dict, peak_tflops: float | None, model_config: dict | None = None) -> dict:
    """Part 2: the same network (model_config: the fit's GPTConfig, else built from the settings), windows,
    optimizer, precision and compile in a plain loop, timed over the steps lit-llm's throughput covers
    (after its first logging window)."""
    import torch.nn.functional as F

    from lit_llm.data.datamodule import TextDataModule
    from lit_llm.data.samplers import RandomWindows
    from lit_llm.model.gpt import GPT, GPTConfig
    from lit_llm.training.optim import lr_at

    device = torch.device("cpu" if s["accelerator"] == "cpu" else "cuda")
    if s["threads"]:
        torch.set_num_threads(s["threads"])
    T, B, steps, warmup = s["block"], s["batch"], s["steps"], s["log_every"]
    data = TextDataModule(s["corpus"], s["tokenizer"], block_size=T, batch_size=B, seed=SEED)
    prepared = data.prepare_once()  # the fit's (cached) prepared data
    windows = RandomWindows(data.stream("train"), T, B, SEED)
    n_layer, n_head, n_embd, n_ff = ARCH[s["arch"]]
    config = (GPTConfig(**model_config) if model_config else
              GPTConfig(vocab_size=prepared.vocab_size, block_size=T, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                        n_ff=n_ff))
    torch.manual_seed(SEED)
    with device:
        model = GPT(config)
    model.train()
    if s["compile"]:
        model.compile()  # in place, as --model.system.compile
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": OPTIM["weight_decay"]},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    lr = OPTIM["lr"]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(OPTIM["beta1"], OPTIM["beta2"]),
                                  **({"fused": True} if device.type == "cuda" else {}))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: lr_at(k, lr, OPTIM["min_lr"], OPTIM["warmup_steps"], steps) / lr)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if "bf16" in s["precision"] else nullcontext())
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    losses = []  # on the device: read once at the end, no sync per step
    for step in range(steps):
        if step == warmup:
            sync()
            t0 = time.perf_counter()
        tokens = windows.batch(step)["tokens"]
        tokens = tokens.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else tokens
        x, y = tokens[:, :-1], tokens[:, 1:]
        with autocast:
            logits = model(x)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())  # fp32 loss, as lit_llm's
        losses.append(loss.detach())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    sync()
    seconds = time.perf_counter() - t0
    tps = B * T * (steps - warmup) / seconds
    flops = model.flops_per_token(T)
    memory = peak_memory(device)
    out = {"tokens_per_sec": tps, "mfu": tps * flops / 1e12 / peak_tflops if peak_tflops else None,
           "peak_tflops": peak_tflops, "peak_memory_bytes": memory["bytes"], "peak_memory_kind": memory["kind"],
           "params": model.num_params(non_embedding=False), "flops_per_token": flops,
           "train_loss": dict(enumerate(torch.stack(losses).tolist())), "timed_steps": [warmup, steps - 1],
           "seconds": round(seconds, 3)}
    del model, optimizer, schedule, logits, loss, losses
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


# --- the FSDP grad_norm check -----------------------------------------------------------------------------
def part_check(s: dict, outdir: Path, strategy: str) -> dict:
    """Part 3: one fit on a single device, one under `strategy` (FSDP, 1 device), same initial weights, data
    and steps, fp32; their logged grad_norm must agree at every step."""
    init = outdir / "check-init.pt"
    common = ["--trainer.precision", "32-true", "--trainer.max_steps", str(s["check_steps"]),
              "--trainer.log_every_n_steps", "1", "--trainer.val_check_interval", str(s["check_steps"]),
              "--trainer.limit_val_batches", "2", *data_args(s, s["check_block"], s["check_batch"]),
              *model_args(s["check_arch"]), "--trainer.callbacks+=gpu.SharedInit", f"--trainer.callbacks.path={init}"]
    single = ["--trainer.accelerator", s["accelerator"], "--trainer.devices", "1"]
    under = (["--config", str(REPO / "configs/trainer/fsdp.yaml"), "--trainer.devices", "1"] if strategy == "fsdp"
             else [*single, "--trainer.strategy", "ddp"])
    ref = run_fit("check-single", outdir, s, [*single, *common, "--trainer.callbacks.mode=save"])
    other = run_fit(f"check-{strategy}", outdir, s, [*under, *common, "--trainer.callbacks.mode=load"])

    a, b = by_step(ref["rows"], "grad_norm"), by_step(other["rows"], "grad_norm")
    steps = sorted(a)
    rel = [abs(a[k] - b[k]) / max(abs(a[k]), 1e-12) if k in b else float("inf") for k in steps]
    ok = len(steps) == s["check_steps"] and sorted(b) == steps and max(rel) < 1e-3
    la, lb = by_step(ref["rows"], "train/loss"), by_step(other["rows"], "train/loss")
    return {"status": "pass" if ok else "fail", "strategy": strategy, "steps": steps,
            "single_grad_norm": [a[k] for k in steps], f"{strategy}_grad_norm": [b.get(k) for k in steps],
            "rel_diff": rel, "max_rel_diff": max(rel) if rel else None, "tolerance": 1e-3,
            "max_train_loss_rel_diff": max((abs(la[k] - lb[k]) / abs(la[k]) for k in la if k in lb), default=None),
            "val_loss": [ref["summary"].get("val/loss"), other["summary"].get("val/loss")],
            "params": ref["summary"]["params"], "log_dirs": [ref["log_dir"], other["log_dir"]]}


# --- report -----------------------------------------------------------------------------------------------
def fmt(value, spec: str = ",.0f", none: str = "n/a") -> str:
    return none if value is None else format(value, spec)


def report(result: dict) -> None:
    s, fit, plain = result["settings"], result.get("fit", {}), result.get("plain", {})
    print(f"\nlit_llm benchmark ({result['mode']}): {s['arch']} model, micro-batch {s['batch']} x {s['block']}, "
          f"{s['steps']} steps (timed: steps {s['log_every']}..{s['steps'] - 1}), {s['precision']}, "
          f"compile {'on' if s['compile'] else 'off'}, {result['device']}, torch {result['torch']}")
    logged = sorted(fit.get("train_loss", {}))
    at = logged[-1] if logged else s["steps"] - 1  # the fit's last logged step
    print(f"\n| part | tokens/s | MFU | peak memory (GiB) | train loss at step {at} | params |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in (("1. lit-llm fit", fit), ("2. plain PyTorch loop", plain)):
        if "tokens_per_sec" not in r:
            print(f"| {name} | {r.get('error', 'not run').splitlines()[0]} | | | | |")
            continue
        print(f"| {name} | {fmt(r['tokens_per_sec'])} | {fmt(r['mfu'], '.1%')} | "
              f"{fmt(r['peak_memory_bytes'] / 2**30, '.2f')} ({r['peak_memory_kind']}) | "
              f"{fmt(r['train_loss'].get(at), '.4f')} | {r['params']:,} |")
    if result.get("ratio") is not None:
        print(f"| lit-llm / plain | {result['ratio']:.3f} | | "
              f"{fmt(result.get('memory_ratio'), '.3f')} | | |")
    if plain.get("params") and fit.get("params") and plain["params"] != fit["params"]:
        print(f"warning: not the same network: lit-llm {fit['params']:,} parameters, plain {plain['params']:,}")
    if fit.get("mfu_last_window") is not None:
        print(f"lit-llm last window: {fmt(fit['tokens_per_sec_last_window'])} tokens/s, MFU "
              f"{fit['mfu_last_window']:.1%} (summary.json); MFU against {fmt(fit['peak_tflops'], '.3g')} TFLOP/s")
    check = result.get("fsdp", {})
    print(f"\n3. grad_norm check ({check.get('strategy', 'fsdp')} vs single device): "
          f"{check.get('status', 'not run').upper()}"
          + (f" - {check['reason']}" if check.get("reason") else "")
          + (f" - {check['error'].splitlines()[0]}" if check.get("error") else ""))
    if check.get("steps"):
        other = f"{check['strategy']}_grad_norm"
        print(f"| step | single | {check['strategy']} | rel diff |\n| --- | --- | --- | --- |")
        for k, x, y, r in zip(check["steps"], check["single_grad_norm"], check[other], check["rel_diff"]):
            print(f"| {k} | {x:.6f} | {fmt(y, '.6f')} | {r:.2e} |")
        print(f"max rel diff {check['max_rel_diff']:.2e} (tolerance {check['tolerance']:g}); final val/loss "
              f"{fmt(check['val_loss'][0], '.5f')} vs {fmt(check['val_loss'][1], '.5f')}")
    print(f"\nresult: {'OK' if result['ok'] else 'FAILED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="run on the CPU: fp32, no compile, FSDP check skipped")
    parser.add_argument("--tiny", action="store_true", help="2 x 64 model, block 64, batch 4, 20 steps, char tokenizer")
    parser.add_argument("--gpt2-dir", help="vocab.json + merges.txt (default: ../shared/data/gpt2 beside the repo)")
    parser.add_argument("--batch-size", type=int, help="micro-batch (default 16, --tiny 4)")
    parser.add_argument("--block-size", type=int, help="sequence length (default 1024, --tiny 64)")
    parser.add_argument("--steps", type=int, help="training steps of parts 1 and 2 (default 60, --tiny 20)")
    parser.add_argument("--log-every", type=int, help="logging window; the first is warm-up (default 10, --tiny 5)")
    parser.add_argument("--check-steps", type=int, default=20, help="steps of each part-3 fit")
    parser.add_argument("--check-strategy", choices=["fsdp", "ddp"], default="fsdp",
                        help="part 3's strategy; ddp (1 process) is a stand-in that runs on a CPU")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, help="default: on GPU, off on CPU")
    parser.add_argument("--threads", type=int, help="torch threads per loop (default: 1 with --cpu)")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak for MFU (default: lit_llm's table; "
                        "on a CPU a matmul measurement)")
    parser.add_argument("--parts", default="1,2,3", help="which parts to run, e.g. 3")
    parser.add_argument("--wandb-mode", choices=["offline", "disabled"], default="offline",
                        help="W&B in the fits (default offline, as for users; disabled where wandb is missing)")
    parser.add_argument("--outdir", help="where runs go (default: a new temporary directory)")
    parser.add_argument("--out", help="write every figure to this JSON file")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))  # this checkout's lit_llm, as in the fits
    from lit_llm.training.callbacks.throughput import device_peak_tflops, measure_cpu_peak_tflops

    s = settings(args)
    s["wandb_mode"] = args.wandb_mode
    parts = {p.strip() for p in args.parts.split(",")}
    if not args.cpu and not torch.cuda.is_available():
        print("error: no CUDA device; run `python benchmarks/gpu.py --cpu --tiny` on a CPU", file=sys.stderr)
        raise SystemExit(2)
    outdir = Path(args.outdir).resolve() if args.outdir else Path(tempfile.mkdtemp(prefix="lit_llm_gpu_"))
    outdir.mkdir(parents=True, exist_ok=True)
    if args.tiny:
        s["corpus"] = str(tiny_corpus(outdir))
    else:
        s["corpus"] = "python-stdlib"
        os.environ["LIT_LLM_GPT2_DIR"] = str(gpt2_files(args.gpt2_dir))  # `--data.tokenizer gpt2` reads it
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"outdir: {outdir}  LIT_LLM_CACHE={os.environ.get('LIT_LLM_CACHE', '(default)')}", flush=True)
    if s["threads"]:
        torch.set_num_threads(s["threads"])
    # on a CPU one measured peak for both loops; on a GPU the fit looks up the same table as we do below
    peak = args.peak_tflops or (measure_cpu_peak_tflops() if args.cpu else None)
    result = {"mode": f"{'cpu' if args.cpu else 'gpu'}{'-tiny' if args.tiny else ''}", "torch": torch.__version__,
              "command": shlex.join([sys.executable, *sys.argv]), "settings": s, "outdir": str(outdir)}
    failed = False
    if "1" in parts:
        print(f"[1] lit-llm fit: {s['arch']}, {s['steps']} steps", flush=True)
        try:
            result["fit"] = part_fit(s, outdir, peak)
            print(f"  {result['fit']['tokens_per_sec']:,.0f} tokens/s", flush=True)
        except Exception as err:  # report it and go on with the other parts
            result["fit"], failed = {"error": str(err)}, True
            print(f"  FAILED: {err}", flush=True)
    device = torch.device("cpu" if args.cpu else "cuda")  # CUDA is touched only after the first fit
    result["device"] = "CPU" if args.cpu else torch.cuda.get_device_name(device)
    peak = peak or device_peak_tflops(device, s["precision"])
    if "2" in parts:
        print(f"[2] plain PyTorch loop: {s['arch']}, {s['steps']} steps", flush=True)
        try:
            result["plain"] = part_plain(s, peak, result.get("fit", {}).get("model_config"))
            print(f"  {result['plain']['tokens_per_sec']:,.0f} tokens/s", flush=True)
        except Exception as err:
            result["plain"], failed = {"error": f"{err.__class__.__name__}: {err}"}, True
            print(f"  FAILED: {err}", flush=True)
    fit, plain = result.get("fit", {}), result.get("plain", {})
    if fit.get("tokens_per_sec") and plain.get("tokens_per_sec"):
        result["ratio"] = fit["tokens_per_sec"] / plain["tokens_per_sec"]
        result["memory_ratio"] = fit["peak_memory_bytes"] / plain["peak_memory_bytes"]
        failed |= fit["params"] != plain["params"]  # not the same network: the ratio means nothing
    elif "1" in parts and "2" in parts:
        failed = True
    if "3" in parts:
        if args.cpu and args.check_strategy == "fsdp":
            reason = ("FSDP needs a GPU (Lightning's FSDPStrategy refuses accelerator=cpu); run without --cpu on a "
                      "GPU, or --check-strategy ddp for a 1-process DDP stand-in")
            result["fsdp"] = {"status": "skipped", "strategy": "fsdp", "reason": reason}
            print(f"[3] grad_norm check skipped: {reason}", flush=True)
        else:
            print(f"[3] grad_norm check: {args.check_strategy} (1 device) vs single device, {s['check_steps']} steps",
                  flush=True)
            try:
                result["fsdp"] = part_check(s, outdir, args.check_strategy)
            except Exception as err:
                result["fsdp"] = {"status": "error", "strategy": args.check_strategy, "error": str(err)}
            failed |= result["fsdp"]["status"] != "pass"
    result["ok"] = not failed
    report(result)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(f"figures: {args.out}")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
