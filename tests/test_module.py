import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lit_llm.data.datamodule import TextDataModule
from lit_llm.training.module import LanguageModel
from lit_llm.training.optim import lr_at


def tiny_model(vocab_size: int, block_size: int = 16, **kw) -> LanguageModel:
    torch.manual_seed(0)
    model = LanguageModel(vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=32, **kw)
    model.configure_model()
    return model


def independent_nll(model: LanguageModel, tokens: np.ndarray, T: int) -> tuple[float, int]:
    """Sum of -log p(next token) over the split, windows of T targets, by an explicit log-softmax."""
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(tokens) - 1, T):
            chunk = torch.tensor(tokens[start : start + T + 1].astype(np.int64))
            logp = torch.log_softmax(model.model(chunk[None, :-1])[0].double(), dim=-1)
            total -= logp[torch.arange(len(chunk) - 1), chunk[1:]].sum().item()
            count += len(chunk) - 1
    return total, count


def test_val_ppl_is_exact_token_weighted_over_whole_split(tiny_text, tmp_path):
    T = 16
    dm = TextDataModule(str(tiny_text), "char", block_size=T, batch_size=4, eval_batch_size=8)
    val = dm.prepare_once().tokens("val")
    n_windows = math.ceil((len(val) - 1) / T)
    assert n_windows % 8 and (len(val) - 1) % T  # the last batch is short, and so is the last window
    model = tiny_model(dm.prepare_once().vocab_size, T)
    with torch.no_grad():  # a peaked, non-uniform model, so batches differ in loss
        model.model.wte.weight.mul_(40)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False,
                        enable_model_summary=False, use_distributed_sampler=False, default_root_dir=tmp_path)
    result = trainer.validate(model, datamodule=dm, verbose=False)[0]
    total, count = independent_nll(model, val, T)
    assert count == len(val) - 1
    assert result["val/loss"] == pytest.approx(total / count, rel=2e-6)
    assert result["val/ppl"] == pytest.approx(math.exp(total / count), rel=5e-5)
    # the naive alternatives (mean of batch losses, mean of batch perplexities) differ measurably here
    losses = _batch_losses(model, dm)
    assert abs(sum(losses) / len(losses) / (total / count) - 1) > 1e-5  # 5x the tolerance above
    assert abs(sum(math.exp(x) for x in losses) / len(losses) / result["val/ppl"] - 1) > 5e-4


def _batch_losses(model, dm) -> list[float]:
    with torch.no_grad():
        return [F.cross_entropy(model.model(b["input"]).flatten(0, 1), b["target"].flatten(), ignore_index=-1).item()
                for b in dm.val_dataloader()]


def test_optimizer_groups_decay_only_matrices():
    model = tiny_model(50)

    class FakeTrainer:
        max_steps = 100
        precision_plugin = None  # no GradScaler: the fused AdamW

    model._trainer = FakeTrainer()  # configure_optimizers reads max_steps for the schedule
    opt = model.configure_optimizers()["optimizer"]
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters())  # every parameter once (tied head too)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in no_decay["params"]} >= {"model.ln_f.weight", "model.h.0.attn.c_attn.bias"}


def test_lr_schedule_warmup_cosine_floor():
    lrs = [lr_at(s, 1e-3, 1e-4, 10, 100) for s in range(120)]
    assert lrs[0] == pytest.approx(1e-3 / 11) and lrs[9] == pytest.approx(1e-3 * 10 / 11)
    assert lrs[10] == pytest.approx(1e-3)
    assert lrs[55] == pytest.approx(1e-4 + 0.5 * 0.9e-3)  # halfway through the cosine
    assert lrs[100] == lrs[119] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_grad_scaler_skips_are_not_failures(tiny_text, tmp_path):
    """16-mixed: a GradScaler starting at 2^40 overflows fp16 for its first steps and skips them (its normal
    scale search). The non-finite guard must leave those to it: with max_nonfinite_skips=0 training still
    runs to the end, with finite weights, and the scaler did skip."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    dm = TextDataModule(str(tiny_text), "char", block_size=16, batch_size=4, cache_dir=str(tmp_path / "cache"))
    model = LanguageModel(vocab_size=dm.prepare_once().vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=32,
                          warmup_steps=0, max_nonfinite_skips=0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    trainer = L.Trainer(max_steps=12, accelerator="cpu", plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)],
                        gradient_clip_val=1.0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, log_every_n_steps=1)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 12
    assert scaler.get_scale() < 2.0**40  # it found overflows and backed off
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert model.guard.skips is None  # nothing counted against the limit


@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_chunked_loss_equals_the_plain_one(tiny_text, compiled):
    """token_nll in chunks (each upcast to fp32 inside a checkpoint, eager or compiled as under
    --model.system.compile) equals one F.cross_entropy over all positions, in value (1e-6 relative) and
    gradient, with ignored targets in the batch."""
    from lit_llm.training.objectives import chunk_nll, token_nll

    torch.manual_seed(0)
    logits = torch.randn(3, 40, 301, requires_grad=True)
    targets = torch.randint(0, 301, (3, 40))
    targets[1, :7] = -1
    plain = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1, reduction="sum")
    (g_plain,) = torch.autograd.grad(plain, logits)
    chunk_fn = torch.compile(chunk_nll) if compiled else chunk_nll
    chunked, n = token_nll(logits, targets, chunk_rows=17, chunk_fn=chunk_fn)
    (g_chunked,) = torch.autograd.grad(chunked, logits)
    assert int(n) == 3 * 40 - 7
    assert abs(float(chunked) - float(plain)) <= 1e-6 * abs(float(plain))
    assert torch.allclose(g_chunked, g_plain, atol=1e-7)
