"""The LSTM/GRU language models (`--model.arch lstm|gru`) and the loss by position in context
(`--model.loss_by_position true`): a reference forward, counts, the CLI (fit, validate, generate, report),
exact resume after kill -9 and DDP."""

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import csv_rows, fit_cmd, kill_point, wait_for_step

from lit_llm.cli.main import main
from lit_llm.data.prepare import PrepareConfig, prepare
from lit_llm.model.build import build_model
from lit_llm.model.gpt import GPTConfig
from lit_llm.model.recurrent import RecurrentLM
from lit_llm.studies.report import write_report
from lit_llm.studies.runs import find_runs

ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).with_name("ddp_driver.py")
RNN = {"lstm": (nn.LSTM, 4), "gru": (nn.GRU, 3)}  # torch module, gates per layer


def config(arch: str, **kw) -> GPTConfig:
    return GPTConfig(**{"vocab_size": 67, "block_size": 16, "n_layer": 2, "n_embd": 32, "arch": arch, **kw})


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_forward_matches_hand_built_torch_modules(arch):
    torch.manual_seed(0)
    model = build_model(config(arch, dropout=0.3)).eval()
    assert isinstance(model, RecurrentLM)
    for p in model.parameters():  # away from the init, so a missing piece would show
        nn.init.normal_(p, std=0.3)
    V, C = 67, 32
    emb = nn.Embedding(V, C)
    rnn = RNN[arch][0](C, C, num_layers=2, batch_first=True)
    norm = nn.LayerNorm(C)
    with torch.no_grad():
        emb.weight.copy_(model.wte.weight[:V])
        for name, p in rnn.named_parameters():
            p.copy_(model.state_dict()[f"rnn.{name}"])
        norm.weight.copy_(model.ln_f.weight)
        norm.bias.copy_(model.ln_f.bias)
        idx = torch.randint(V, (3, 16))
        expected = F.linear(norm(rnn(emb(idx))[0]), emb.weight)  # the head tied to the embedding
        logits = model(idx)
    assert logits.shape == (3, 16, V)
    assert (logits - expected).abs().max().item() <= 1e-6


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_counts_and_generation_carrying_the_state(arch):
    model = build_model(config(arch)).eval()
    V, C, L, gates = 67, 32, 2, RNN[arch][1]
    per_layer = 2 * gates * C * C + 2 * gates * C  # input and recurrent weights and biases
    total = V * C + L * per_layer + 2 * C  # tied table + layers + final LayerNorm (padding rows excluded)
    assert model.num_params(non_embedding=False) == total
    assert model.num_params() == total - V * C
    assert model.flops_per_token() == model.flops_per_token(1024) == 6 * total  # no context-length term
    untied = build_model(config(arch, tie_embeddings=False))
    assert untied.num_params() == total - V * C + V * C and untied.flops_per_token() == 6 * total

    prompt = torch.randint(V, (2, 5))
    cached = model.generate(prompt, 30, temperature=0)  # past block_size 16: the state carries on
    assert cached.shape == (2, 35) and torch.equal(cached[:, :5], prompt)
    assert torch.equal(cached, model.generate(prompt, 30, temperature=0, use_cache=False))
    with torch.no_grad():  # the last greedy token is the argmax after reading the whole text once
        assert torch.equal(model(cached[:, :-1])[:, -1].argmax(-1), cached[:, -1])


def test_recurrent_config_errors():
    with pytest.raises(ValueError, match="masked"):
        config("lstm", causal=False)
    with pytest.raises(ValueError, match="mup"):
        config("lstm", parametrization="mup", mup_base_width=32)
    config("gru", n_embd=30, n_head=4)  # n_head is a Transformer option: not checked for a recurrent LM


def read_positions(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def averaged(rows: list[dict]) -> float:
    return sum(float(r["loss"]) * int(r["tokens"]) for r in rows) / sum(int(r["tokens"]) for r in rows)


def fit_args(corpus: Path, root: Path, arch: str, *extra: str) -> list[str]:
    return ["fit", "--config", str(ROOT / "configs/model/toy.yaml"), "--model.arch", arch,
            "--data.corpus", str(corpus), "--data.tokenizer", "char", "--data.block_size", "32",
            "--data.batch_size", "4", "--trainer.max_steps", "8", "--trainer.val_check_interval", "4",
            "--trainer.log_every_n_steps", "2", "--trainer.default_root_dir", str(root),
            "--trainer.enable_progress_bar", "false", *extra]


def test_lstm_and_gru_fit_validate_generate_and_report(tiny_text, tmp_path, capsys):
    lstm, gru = tmp_path / "lstm", tmp_path / "gru"
    assert main(fit_args(tiny_text, lstm, "lstm", "--model.loss_by_position", "true")) == 0
    assert main(fit_args(tiny_text, gru, "gru")) == 0
    for root, arch in ((lstm, "lstm"), (gru, "gru")):
        log_dir = root / "lightning_logs/version_0"
        summary = json.loads((log_dir / "summary.json").read_text())
        state = torch.load(root / "checkpoints/last.ckpt", weights_only=True)
        assert state["lit_llm"]["model_config"]["arch"] == arch and "model.rnn.weight_hh_l1" in state["state_dict"]
        own = sum(v.numel() for k, v in state["state_dict"].items() if k != "model.lm_head.weight")  # tied
        padding = (state["state_dict"]["model.wte.weight"].size(0) - summary["config"]["model.vocab_size"]) * 64
        assert summary["params"] == own - padding > summary["params_non_embedding"] > 0
        assert summary["flops_per_token"] == 6 * summary["params"]
        assert summary["flops"] == summary["flops_per_token"] * summary["tokens_seen"] > 0
        assert summary["throughput"]["tokens_per_sec"] > 0
        assert main(["generate", "--checkpoint", str(root / "checkpoints/last.ckpt"), "--prompt", "First",
                     "--max_new_tokens", "20"]) == 0
        text = capsys.readouterr().out.strip().splitlines()[-1]
        assert text.startswith("First") and len(text) >= 20

    # the fit's final validation: the loss by position averages back to val/loss, each position scored
    rows = read_positions(lstm / "lightning_logs/version_0/loss_by_position.csv")
    summary = json.loads((lstm / "lightning_logs/version_0/summary.json").read_text())
    assert [int(r["position"]) for r in rows] == list(range(32))
    assert abs(averaged(rows) - summary["val/loss"]) <= 1e-6
    tables = list(lstm.glob("wandb/offline-run-*/files/media/table/val/loss_by_position_*.table.json"))  # W&B (offline)
    assert len(tables) == 2  # one per validation (steps 4 and 8), the last as the file
    last = json.loads(max(tables, key=lambda p: int(p.name.split("_")[3])).read_text())
    assert last["columns"] == ["position", "loss", "tokens"]
    assert last["data"] == [[int(r["position"]), float(r["loss"]), int(r["tokens"])] for r in rows]
    # a checkpoint trained without it: `validate --model.loss_by_position true` records it (the command line's)
    assert main(["validate", "--ckpt_path", str(gru / "checkpoints/last.ckpt"), "--model.loss_by_position", "true",
                 "--data.corpus", str(tiny_text), "--data.tokenizer", "char", "--data.block_size", "32",
                 "--trainer.default_root_dir", str(gru), "--trainer.enable_progress_bar", "false"]) == 0
    assert not (gru / "lightning_logs/version_0/loss_by_position.csv").exists()
    validated = json.loads((gru / "lightning_logs/version_1/summary.json").read_text())
    assert abs(averaged(read_positions(gru / "lightning_logs/version_1/loss_by_position.csv"))
               - validated["val/loss"]) <= 1e-6
    runs, _ = find_runs(tmp_path)  # what the report plots: the runs that recorded it, read back as written
    recorded = {r.label: [p["loss"] for p in r.positions] for r in runs if r.positions}
    assert recorded == {"lstm": [float(r["loss"]) for r in rows], "gru v1": [
        float(r["loss"]) for r in read_positions(gru / "lightning_logs/version_1/loss_by_position.csv")]}
    page = write_report(tmp_path, tmp_path / "report").read_text()
    assert "alt='loss by position'" in page and "No run recorded it" not in page
    # without the option, a checkpoint that recorded it keeps doing so (its hyper-parameters, as the others)
    assert main(["validate", "--ckpt_path", str(lstm / "checkpoints/last.ckpt"), "--data.corpus", str(tiny_text),
                 "--data.tokenizer", "char", "--data.block_size", "32", "--trainer.default_root_dir", str(lstm),
                 "--trainer.enable_progress_bar", "false"]) == 0
    assert read_positions(lstm / "lightning_logs/version_1/loss_by_position.csv") == rows  # the same weights


def test_recurrent_refusals(tiny_text, tmp_path, capsys):
    args = fit_args(tiny_text, tmp_path / "runs", "lstm", "--model.objective", "masked")
    assert main(args) == 2
    assert "recurrent LM (lstm) reads left to right" in capsys.readouterr().err
    assert main(fit_args(tiny_text, tmp_path / "runs", "gru", "--trainer.max_steps", "2")) == 0
    ckpt = tmp_path / "runs/checkpoints/last.ckpt"
    capsys.readouterr()
    assert main(["convert", "export-hf", str(ckpt), "--out", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "recurrent LM (gru)" in err and "export-safetensors" in err
    assert not (tmp_path / "hf").exists()
    resumed = fit_args(tiny_text, tmp_path / "runs", "lstm", "--trainer.max_steps", "4", "--ckpt_path", "last")
    assert main(resumed) == 2
    assert "arch" in capsys.readouterr().err


@pytest.mark.slow
def test_lstm_kill_9_then_resume_equals_uninterrupted_run(tiny_text, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    lstm = ("--model.arch", "lstm")
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    first = subprocess.run(fit_cmd(tiny_text, whole, *lstm), capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    proc = subprocess.Popen(fit_cmd(tiny_text, killed, *lstm), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    kill_at = kill_point(4, 24)
    wait_for_step(killed, kill_at, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run = subprocess.run(fit_cmd(tiny_text, killed, *lstm, "--ckpt_path", "last"), capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    a = torch.load(whole / "checkpoints/last.ckpt", weights_only=True)
    b = torch.load(killed / "checkpoints/last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 28 and "model.rnn.weight_hh_l1" in a["state_dict"]
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), f"{key} differs (killed at step {kill_at})"
    rows = csv_rows(killed)
    assert [int(r["step"]) for r in rows if r["train/loss"]] == list(range(28))
    assert [r["train/loss"] for r in rows if r["train/loss"]] == [r["train/loss"] for r in csv_rows(whole)
                                                                  if r["train/loss"]]


@pytest.mark.slow
def test_lstm_ddp_matches_single_process(tiny_text, tmp_path):
    cache = tmp_path / "cache"
    prepare(PrepareConfig(str(tiny_text), "char"), cache)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    losses = {}
    for name, devices, batch in [("single", 1, 4), ("ddp", 2, 2)]:
        out = tmp_path / name
        out.mkdir()
        run = subprocess.run([sys.executable, str(DRIVER), str(tiny_text), str(out), str(cache), str(devices),
                              str(batch), "0", "lstm"], capture_output=True, text=True, env=env, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        with open(out / "metrics.csv") as f:
            losses[name] = [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]
    assert len(losses["single"]) == len(losses["ddp"]) == 30
    assert losses["single"][0] > losses["single"][-1]  # it learns
    assert max(abs(a - b) for a, b in zip(losses["single"], losses["ddp"])) <= 1e-4
