"""Pruning and int8 quantization of a small GPT: state-dict size, generation speed, validation perplexity.

Trains a base model (or takes --checkpoint), then compares on the same validation split:
  baseline            the base model fine-tuned --finetune_steps more steps (same steps as the pruned rows)
  pruned X% one-shot  the base model's block Linear weights L1-pruned to X%, no further training
  pruned X%           the base model fine-tuned with GPTPruning (cubic schedule to X% over 3/4 of the steps)
  int8                the baseline with dynamic int8 quantization of every Linear (CPU)
Pruned models are saved as checkpoints and reloaded through LanguageModel.from_checkpoint (plain weights),
so the table also shows that pruned checkpoints load without masks.

    python benchmarks/compression.py --corpus ../shared/data/tinyshakespeare.txt
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.utils.prune as prune

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lit_llm.model.quantize import quantize_int8, state_dict_mb
from lit_llm.training.callbacks.pruning import GPTPruning, block_linears, sparsity  # noqa: E402
from lit_llm.data.datamodule import TextDataModule  # noqa: E402
from lit_llm.training.module import LanguageModel  # noqa: E402


def trainer(root: str, steps: int, callbacks=()) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, precision="32-true", max_steps=steps, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     use_distributed_sampler=False, limit_val_batches=0, gradient_clip_val=1.0,
                     callbacks=list(callbacks), default_root_dir=root)


def val_ppl(module: LanguageModel, dm: TextDataModule, root: str) -> float:
    t = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, use_distributed_sampler=False, default_root_dir=root)
    return t.validate(module, datamodule=dm, verbose=False)[0]["val/ppl"]


def generate_seconds(model, prompt_ids: list[int], new_tokens: int, seed: int) -> float:
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    model.generate(torch.tensor([prompt_ids]), new_tokens, temperature=0.8, top_k=200, generator=g)
    return time.perf_counter() - t0


def finetune(base_ckpt: str, dm: TextDataModule, steps: int, root: str, amount: float | None) -> str:
    """Fine-tune the base weights for `steps` at a constant low LR, pruning to `amount` if given; save and
    return a checkpoint (plain weights, the zeros in place)."""
    base = LanguageModel.from_checkpoint(base_ckpt)
    hp = {k: v for k, v in base.hparams.items() if not k.startswith("_")}
    lr = hp["min_lr"] if hp.get("min_lr") is not None else hp["lr"] / 10
    module = LanguageModel(**{**hp, "lr": lr, "min_lr": lr, "warmup_steps": 0})
    module.configure_model()
    module.load_state_dict(base.state_dict())
    callbacks = [GPTPruning(amount, "gradual", 0, end_step=max(1, steps * 3 // 4))] if amount else []
    t = trainer(root, steps, callbacks)
    t.fit(module, datamodule=dm)
    path = os.path.join(root, f"finetuned-{amount or 0}.ckpt")
    t.save_checkpoint(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="tinyshakespeare", help="a text corpus (char tokenizer)")
    parser.add_argument("--checkpoint", default=None, help="start from this lit_llm checkpoint instead of training")
    parser.add_argument("--base_steps", type=int, default=1500)
    parser.add_argument("--finetune_steps", type=int, default=300)
    parser.add_argument("--amounts", default="0.3,0.5")
    parser.add_argument("--new_tokens", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7, help="generation timing rounds (best is kept)")
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args()
    amounts = [float(a) for a in args.amounts.split(",")]
    root = tempfile.mkdtemp(prefix="lit-llm-compression-")
    L.seed_everything(args.seed, verbose=False)
    dm = TextDataModule(args.corpus, "char", block_size=64, batch_size=12, eval_batch_size=64)

    base_ckpt = args.checkpoint
    if base_ckpt is None:  # nanoGPT's CPU baby model on the corpus
        module = LanguageModel(dm.prepare_once().vocab_size, 64, n_layer=4, n_head=4, n_embd=128, lr=1e-3, min_lr=1e-4,
                               warmup_steps=100, lr_decay_steps=args.base_steps)
        t0 = time.time()
        t = trainer(root, args.base_steps)
        t.fit(module, datamodule=dm)
        base_ckpt = os.path.join(root, "base.ckpt")
        t.save_checkpoint(base_ckpt)
        print(f"base model: {args.base_steps} steps in {time.time() - t0:.0f} s", file=sys.stderr)

    rows, models = [], []
    prompt = dm.prepare_once().tokens("val")[:16].tolist()

    def measure(name: str, module: LanguageModel) -> None:
        layers = block_linears(module.model)
        rows.append({"model": name, "MB": state_dict_mb(module.model),
                     "sparsity": sparsity(layers) if layers else float("nan"), "val ppl": val_ppl(module, dm, root)})
        models.append(module.model)
        print(f"measured {name}", file=sys.stderr)

    base_tuned = finetune(base_ckpt, dm, args.finetune_steps, root, None)
    baseline = LanguageModel.from_checkpoint(base_tuned)
    measure("baseline", baseline)
    for amount in amounts:
        module = LanguageModel.from_checkpoint(base_ckpt)
        for layer in block_linears(module.model):
            prune.l1_unstructured(layer, "weight", amount)
            prune.remove(layer, "weight")
        measure(f"pruned {amount:.0%} one-shot", module)
    for amount in amounts:
        module = LanguageModel.from_checkpoint(finetune(base_ckpt, dm, args.finetune_steps, root, amount))
        measure(f"pruned {amount:.0%} + fine-tune", module)
    int8 = LanguageModel.from_checkpoint(base_tuned)
    int8.model = quantize_int8(int8.model)
    measure("int8 (dynamic)", int8)
    # generation speed: rounds over all models in turn (a shared machine's load hits them alike), best round
    best = [float("inf")] * len(models)
    for r in range(args.rounds):
        for i, model in enumerate(models):
            best[i] = min(best[i], generate_seconds(model, prompt, args.new_tokens, r))
    for row, seconds in zip(rows, best):
        row["tok/s"] = args.new_tokens / seconds

    print(f"\n{args.corpus}, char, 4 x 128 GPT; base {args.base_steps} steps, +{args.finetune_steps} fine-tune; "
          f"generate {args.new_tokens} tokens, batch 1, KV cache, {torch.get_num_threads()} thread(s), best of {args.rounds} rounds\n")
    print("| model | state dict (MB) | block weights zero | generate tok/s | val ppl | ppl vs baseline |")
    print("| --- | --- | --- | --- | --- | --- |")
    ref = rows[0]["val ppl"]
    for r in rows:
        zeros = "-" if r["sparsity"] != r["sparsity"] else f"{r['sparsity']:.1%}"
        print(f"| {r['model']} | {r['MB']:.3f} | {zeros} | {r['tok/s']:.0f} | {r['val ppl']:.4f} | "
              f"{r['val ppl'] / ref - 1:+.2%} |")


if __name__ == "__main__":
    main()
