"""Pruning reaches the requested sparsity and checkpoints load into a plain GPT; int8 generation and its
perplexity change."""

import csv
import math
from pathlib import Path

import lightning as L
import pytest
import torch

from lit_llm.cli.main import main
from lit_llm.model.quantize import quantize_int8, state_dict_mb
from lit_llm.training.callbacks.pruning import block_linears, target_sparsity
from lit_llm.data.datamodule import TextDataModule
from lit_llm.training.module import LanguageModel
from tests.test_cli import fit_args

CONFIGS = Path(__file__).parents[1] / "configs"


def test_cubic_schedule():
    assert target_sparsity(0, 0.5, "gradual", 10, 110) == 0.0
    assert target_sparsity(10, 0.5, "gradual", 10, 110) == 0.0
    assert target_sparsity(60, 0.5, "gradual", 10, 110) == pytest.approx(0.5 * (1 - 0.5**3))
    assert target_sparsity(110, 0.5, "gradual", 10, 110) == target_sparsity(500, 0.5, "gradual", 10, 110) == 0.5
    assert target_sparsity(10, 0.3, "once", 10, 110) == 0.3


def zeros_per_layer(ckpt: str) -> tuple[list[float], object]:
    module = LanguageModel.from_checkpoint(ckpt)  # a plain LanguageModel: strict load, no weight_orig / weight_mask
    return [float((layer.weight == 0).float().mean()) for layer in block_linears(module.model)], module


@pytest.mark.parametrize("how", ["config", "flags"])
def test_pruning_reaches_the_requested_sparsity(tiny_text, tmp_path, how):
    if how == "config":  # configs/prune.yaml: 50%, gradual
        extra, amount = ["--config", str(CONFIGS / "prune.yaml")], 0.5
    else:
        extra, amount = ["--trainer.callbacks+=lit_llm.training.callbacks.pruning.GPTPruning", "--trainer.callbacks.amount=0.3",
                         "--trainer.callbacks.schedule=once", "--trainer.callbacks.start_step=5"], 0.3
    assert main(fit_args(tiny_text, "runs", 20, "--wandb.mode", "disabled", *extra)) == 0
    ckpt = torch.load(tmp_path / "runs/checkpoints/last.ckpt", weights_only=True)
    assert not any(k.endswith(("_orig", "_mask")) for k in ckpt["state_dict"])
    per_layer, module = zeros_per_layer(str(tmp_path / "runs/checkpoints/last.ckpt"))
    weights = [layer.weight for layer in block_linears(module.model)]
    assert len(per_layer) == 2 * 4  # 2 blocks x (qkv, attention out, fc, mlp out)
    for frac, w in zip(per_layer, weights):
        assert abs(frac - amount) <= 1 / w.numel() + 1e-9  # PyTorch rounds the count of weights to prune
    assert (module.model.wte.weight[: module.config.vocab_size] != 0).all()  # embeddings (and the tied head) stay dense
    with open(tmp_path / "runs/lightning_logs/version_0/metrics.csv") as f:
        logged = [float(r["pruning/sparsity"]) for r in csv.DictReader(f) if r.get("pruning/sparsity")]
    assert logged[-1] == pytest.approx(amount, abs=1e-3)
    if how == "config":
        assert logged == sorted(logged) and any(0 < x < amount - 0.01 for x in logged)  # gradual, every 10 steps
    else:
        assert logged[0] == 0 and logged[2] == pytest.approx(amount, abs=1e-3)  # step 1, 3: none; 5: all of it


def test_int8_generate_and_perplexity(tiny_text, tmp_path, capsys):
    assert main(fit_args(tiny_text, "runs", 30, "--wandb.mode", "disabled")) == 0
    ckpt = str(tmp_path / "runs/checkpoints/last.ckpt")
    capsys.readouterr()
    assert main(["generate", "--checkpoint", ckpt, "--prompt", "ROMEO:", "--max_new_tokens", "20",
                 "--quantize", "int8", "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ROMEO:") and len(out) > len("ROMEO:") + 10

    module = LanguageModel.from_checkpoint(ckpt)
    dm = TextDataModule(str(tiny_text), "char", block_size=16, batch_size=4, eval_batch_size=32)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False,
                        enable_model_summary=False, use_distributed_sampler=False, default_root_dir=tmp_path)
    fp32 = trainer.validate(module, datamodule=dm, verbose=False)[0]["val/ppl"]
    fp32_mb = state_dict_mb(module.model)
    module.model = quantize_int8(module.model)
    assert type(module.model.h[0].mlp.c_fc).__name__ == "Linear" and "quantized" in type(module.model.h[0].mlp.c_fc).__module__
    int8 = trainer.validate(module, datamodule=dm, verbose=False)[0]["val/ppl"]
    assert math.isfinite(int8) and abs(int8 / fp32 - 1) < 0.05, (fp32, int8)
    assert state_dict_mb(module.model) < fp32_mb


def test_resumed_pruning_keeps_the_zeros(tiny_text, tmp_path):
    """A fit starting from pruned weights (e.g. --ckpt_path of a pruned run) keeps their zeros at zero."""
    import torch.nn.utils.prune as prune

    from lit_llm.training.callbacks.pruning import GPTPruning, sparsity

    dm = TextDataModule(str(tiny_text), "char", block_size=16, batch_size=4)
    torch.manual_seed(0)
    module = LanguageModel(dm.prepare_once().vocab_size, 16, n_layer=2, n_head=2, n_embd=32, warmup_steps=0)
    module.configure_model()
    layers = block_linears(module.model)
    for layer in layers:
        prune.l1_unstructured(layer, "weight", 0.3)
        prune.remove(layer, "weight")
    zeros = [layer.weight == 0 for layer in layers]
    before = [layer.weight.detach().clone() for layer in layers]
    trainer = L.Trainer(max_steps=5, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, use_distributed_sampler=False, limit_val_batches=0,
                        callbacks=[GPTPruning(0.3, "once", start_step=100)], default_root_dir=tmp_path)
    trainer.fit(module, datamodule=dm)
    layers = block_linears(module.model)
    assert all((layer.weight[z] == 0).all() for layer, z in zip(layers, zeros))
    assert any(not torch.equal(layer.weight, b) for layer, b in zip(layers, before))  # it did train
    assert sparsity(layers) == pytest.approx(0.3, abs=1e-3)
