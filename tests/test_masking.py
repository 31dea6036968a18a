"""Masked LM: BERT's corruption ratios, loss at the masked positions only, bidirectional attention."""

import csv

import lightning as L
import pytest
import torch

from lit_llm.cli.main import main
from lit_llm.data.datamodule import TextDataModule
from lit_llm.data.samplers import IGNORE_INDEX
from lit_llm.training.objectives import mask_tokens, seeded_generator
from lit_llm.model.gpt import GPT, GPTConfig
from lit_llm.training.module import LanguageModel
from tests.test_cli import fit_args


def test_mask_ratios_on_a_large_sample():
    V, mask_id = 1000, 1000  # the mask id lies outside the random draws, so every outcome is identifiable
    tokens = torch.randint(V, (400, 256), generator=torch.Generator().manual_seed(0))  # 102,400 positions
    inputs, targets = mask_tokens(tokens, mask_id, V, seeded_generator(1, tokens.device))
    selected = targets != IGNORE_INDEX
    n = selected.sum().item()
    assert abs(n / tokens.numel() - 0.15) < 0.005
    assert torch.equal(targets[selected], tokens[selected])  # targets: the original tokens
    assert torch.equal(inputs[~selected], tokens[~selected])  # unselected positions untouched
    masked = (inputs == mask_id) & selected
    kept = (inputs == tokens) & selected
    replaced = selected & ~masked & ~kept
    assert abs(masked.sum().item() / n - 0.8) < 0.01
    assert abs(kept.sum().item() / n - 0.1) < 0.01  # 0.1 + 0.1/V: a random draw may hit the same token
    assert abs(replaced.sum().item() / n - 0.1) < 0.01
    assert (inputs == mask_id).sum() == masked.sum()  # MASK only at selected positions


def test_masks_are_seeded_and_respect_valid():
    tokens = torch.randint(50, (8, 64), generator=torch.Generator().manual_seed(0))
    a = mask_tokens(tokens, 50, 50, seeded_generator(7, tokens.device))
    b = mask_tokens(tokens, 50, 50, seeded_generator(7, tokens.device))
    c = mask_tokens(tokens, 50, 50, seeded_generator(8, tokens.device))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[1], c[1])
    valid = torch.zeros_like(tokens, dtype=torch.bool)
    valid[:, :10] = True
    inputs, targets = mask_tokens(tokens, 50, 50, seeded_generator(7, tokens.device), valid=valid)
    assert (targets[:, 10:] == IGNORE_INDEX).all() and torch.equal(inputs[:, 10:], tokens[:, 10:])


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_bidirectional_attention_sees_the_future(pos):
    torch.manual_seed(0)
    idx = torch.randint(30, (1, 12))
    changed = idx.clone()
    changed[0, 6] = (idx[0, 6] + 1) % 30  # token t+1 for t = 5
    for causal in (True, False):
        model = GPT(GPTConfig(vocab_size=30, block_size=16, n_layer=2, n_head=2, n_embd=16, pos=pos, causal=causal))
        model.eval()
        with torch.no_grad():
            before, after = model(idx), model(changed)
        assert torch.allclose(before[0, :6], after[0, :6]) == causal  # positions <= t see t+1 only if bidirectional
        assert not torch.allclose(before[0, 6:], after[0, 6:])
    with pytest.raises(ValueError, match="causal"):
        model.generate(idx, 3)


def test_masked_val_loss_counts_only_masked_positions(tiny_text, tmp_path):
    T = 32
    dm = TextDataModule(str(tiny_text), "char", block_size=T, batch_size=4, eval_batch_size=16)
    torch.manual_seed(0)
    model = LanguageModel(vocab_size=dm.prepare_once().vocab_size, block_size=T, n_layer=2, n_head=2, n_embd=32,
                          objective="masked", mask_seed=5)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False,
                        enable_model_summary=False, use_distributed_sampler=False, default_root_dir=tmp_path)
    result = trainer.validate(model, datamodule=dm, verbose=False)[0]

    # by hand: the same seeded masks, an explicit log-softmax, summed at the selected positions only
    tok = model.tokenizer()
    mask_id, V = tok.token_to_id("<mask>"), dm.prepare_once().vocab_size
    total, count, correct, all_total, all_count = 0.0, 0, 0, 0.0, 0
    with torch.no_grad():
        for batch_idx, batch in enumerate(dm.val_dataloader()):
            valid = batch["target"] != -1
            g = torch.Generator().manual_seed((5 * 1_000_003 - (1 + batch_idx * 1024)) % 2**63)
            inputs, targets = mask_tokens(batch["input"], mask_id, V, g, 0.15, valid)
            logp = torch.log_softmax(model.model(inputs).double(), dim=-1)
            sel = targets != -1
            total -= logp[sel].gather(-1, targets[sel][:, None]).sum().item()
            count += sel.sum().item()
            correct += (logp[sel].argmax(-1) == targets[sel]).sum().item()
            all_total -= logp[valid].gather(-1, batch["input"][valid][:, None]).sum().item()
            all_count += valid.sum().item()
    assert 0.13 < count / all_count < 0.17
    assert result["val/loss"] == pytest.approx(total / count, rel=1e-5)
    assert result["val/ppl"] == pytest.approx(torch.tensor(total / count).exp().item(), rel=1e-4)
    assert result["val/mlm_acc"] == pytest.approx(correct / count, abs=1e-6)
    assert abs(result["val/loss"] - all_total / all_count) > 1e-3  # scoring every position would differ
    # the same masks at every evaluation
    assert trainer.validate(model, datamodule=dm, verbose=False)[0]["val/loss"] == pytest.approx(result["val/loss"])


def test_masked_fit_learns_and_logs_mlm_metrics(tiny_text, tmp_path, capsys):
    args = fit_args(tiny_text, "runs", 40, "--model.objective", "masked", "--wandb.mode", "disabled")
    args[args.index("--trainer.val_check_interval") + 1] = "20"
    assert main(args) == 0
    err = capsys.readouterr().err  # validation samples are skipped with one clear warning, not per prompt
    assert err.count("lit-llm: warning: no samples: a masked LM") == 1 and "sample prompt" not in err
    assert not (tmp_path / "runs/lightning_logs/version_0/samples.jsonl").exists()
    with open(tmp_path / "runs/lightning_logs/version_0/metrics.csv") as f:
        val = [r for r in csv.DictReader(f) if r["val/loss"]]
    acc = [float(r["val/mlm_acc"]) for r in val]
    assert float(val[-1]["val/loss"]) < float(val[0]["val/loss"]) and acc[-1] > 0.05
    ckpt = str(tmp_path / "runs/checkpoints/last.ckpt")
    assert main(["generate", "--checkpoint", ckpt, "--prompt", "the"]) == 2  # a masked LM cannot generate


def test_masked_objective_needs_a_mask_token(tiny_text, gpt2_files, monkeypatch, capsys):
    monkeypatch.setenv("LIT_LLM_GPT2_DIR", str(gpt2_files))
    args = fit_args(tiny_text, "runs", 2, "--model.objective", "masked", "--wandb.mode", "disabled")
    args[args.index("--data.tokenizer") + 1] = "gpt2"
    assert main(args) == 2
    assert "<mask>" in capsys.readouterr().err
