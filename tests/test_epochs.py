"""Epoch fits (`--trainer.max_epochs N`): N passes over the training windows, each window once per epoch in
a new order, equal and disjoint shares per rank, the cosine schedule ending at the last step of the last
epoch, max_steps as a cap, and an exact resume mid-epoch after kill -9."""

import csv
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT, csv_rows, fit_cmd, kill_point, wait_for_step

from lit_llm.cli.main import main
from lit_llm.data.datamodule import TextDataModule
from lit_llm.data.prepare import PrepareConfig, prepare
from lit_llm.data.samplers import EpochBatches, EpochWindows, TokenStream

T, B = 16, 4
DRIVER = Path(__file__).with_name("ddp_driver.py")


@pytest.fixture
def small_text(shakespeare, tmp_path) -> Path:
    """3,000 characters: ~2,700 training tokens, a few dozen steps an epoch."""
    path = tmp_path / "small.txt"
    path.write_text(shakespeare.read_text()[:3000])
    return path


def read_epoch(data: EpochWindows, epoch: int) -> list[dict]:
    sampler = EpochBatches(len(data))
    sampler.set_epoch(epoch)
    return [data[item] for item in sampler]


@pytest.mark.parametrize("split_at", [None, 500])  # one shard, or two with windows across the boundary
def test_each_window_once_per_epoch_in_a_new_order_disjoint_across_ranks(split_at):
    tokens = np.arange(1000, dtype=np.int64)  # token value = its position: a window shows where it starts
    stream = TokenStream([tokens] if split_at is None else [tokens[:split_at], tokens[split_at:]])
    block, batch, world, accumulate = 7, 3, 2, 2
    n_windows = (len(tokens) - 1) // block  # 142 windows of block + 1 tokens, sharing boundary tokens
    per_step = batch * world * accumulate
    used = n_windows // per_step * per_step  # whole optimizer steps only: 132
    orders = []
    for epoch in range(3):
        ranks = []
        for rank in range(world):
            data = EpochWindows(stream, block, batch, seed=5, rank=rank, world_size=world, accumulate=accumulate)
            batches = read_epoch(data, epoch)
            assert len(batches) == len(data) == used // (batch * world)  # equal counts, a multiple of accumulate
            assert len(batches) % accumulate == 0
            ids = []
            for k, b in enumerate(batches):
                assert b["index"] == k and b["epoch"] == epoch
                starts = b["tokens"][:, 0].numpy()
                assert starts.tolist() == (b["sample_ids"].numpy() * block).tolist()  # window i starts at i*T
                assert (b["tokens"].numpy() == starts[:, None] + np.arange(block + 1)).all()  # T+1 consecutive
                ids.append(b["sample_ids"].tolist())
            ranks.append(ids)
        flat = [[i for batch_ids in ids for i in batch_ids] for ids in ranks]
        assert not set(flat[0]) & set(flat[1])  # disjoint across ranks
        together = flat[0] + flat[1]
        assert len(together) == len(set(together)) == used  # each window at most once, all but the remainder
        assert set(together) <= set(range(n_windows))
        # global micro-batch m = k*W + r: step s of the epoch takes micro-batches k = s*A .. s*A+A-1 of every rank
        orders.append([i for k in range(len(ranks[0])) for r in range(world) for i in ranks[r][k]])
    assert orders[0] != orders[1] != orders[2]  # a new order each epoch
    assert set(orders[0]) != set(orders[1]) or set(orders[1]) != set(orders[2])  # another remainder left out


def test_epoch_sampler_resumes_mid_epoch_then_reads_whole_epochs():
    sampler = EpochBatches(10, epoch=3, start=4)
    assert len(sampler) == 10  # Lightning counts the batches run before the stop
    assert list(sampler) == [(3, k) for k in range(4, 10)]
    sampler.set_epoch(4)
    assert list(sampler) == [(4, k) for k in range(10)]


def fit_args(corpus: Path, root: Path, *extra: str) -> list[str]:
    return ["fit", "--config", str(ROOT / "configs/model/toy.yaml"), "--data.corpus", str(corpus),
            "--data.tokenizer", "char", "--data.block_size", str(T), "--data.batch_size", str(B),
            "--model.lr", "1e-3", "--model.min_lr", "1e-4", "--model.warmup_steps", "3",
            "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(root),
            "--wandb.mode", "disabled", *extra]


def steps_per_epoch(corpus: Path, accumulate: int) -> int:
    n_tokens = len(TextDataModule(str(corpus), "char", block_size=T).stream("train"))
    return (n_tokens - 1) // T // (B * accumulate)


def cosine(step: int, total: int, warmup: int = 3, lr: float = 1e-3, floor: float = 1e-4) -> float:
    if step < warmup:
        return lr * (step + 1) / (warmup + 1)
    if step >= total:
        return floor
    return floor + (lr - floor) * (1 + math.cos(math.pi * (step - warmup) / (total - warmup))) / 2


def test_two_epochs_train_every_step_once_and_the_cosine_ends_at_the_last(small_text, tmp_path):
    root = tmp_path / "run"
    assert main(fit_args(small_text, root, "--trainer.max_epochs", "2", "--trainer.accumulate_grad_batches", "2")) == 0
    per_epoch = steps_per_epoch(small_text, accumulate=2)
    total = 2 * per_epoch
    summary = json.loads((root / "lightning_logs/version_0/summary.json").read_text())
    assert summary["global_step"] == total and summary["epochs_completed"] == 2 and summary["epochs"] == 2
    assert summary["tokens_seen"] == total * 2 * B * T
    rows = csv_rows(root)
    train = [r for r in rows if r["train/loss"]]
    assert [int(r["step"]) for r in train] == list(range(total))
    assert [int(r["epoch"]) for r in train] == [0] * per_epoch + [1] * per_epoch
    assert [int(r["step"]) for r in rows if r["val/loss"]] == [per_epoch - 1, total - 1]  # after each epoch
    for r in train:  # the schedule's length is the epochs' steps, with the accumulation counted
        assert float(r["lr"]) == pytest.approx(cosine(int(r["step"]), total), rel=1e-6)
    ckpt = torch.load(root / "checkpoints/last.ckpt", weights_only=True)
    assert ckpt["lr_schedulers"][0]["last_epoch"] == total
    assert ckpt["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(1e-4, rel=1e-9)  # min_lr reached


def test_max_steps_caps_an_epoch_fit_and_bad_limits_are_refused(small_text, tmp_path, capsys):
    root = tmp_path / "capped"
    assert main(fit_args(small_text, root, "--trainer.max_epochs", "3", "--trainer.max_steps", "5")) == 0
    summary = json.loads((root / "lightning_logs/version_0/summary.json").read_text())
    assert summary["global_step"] == 5 and summary["epochs_completed"] == 0
    assert summary["epochs"] == pytest.approx(5 / steps_per_epoch(small_text, 1), abs=1e-4)
    lrs = [float(r["lr"]) for r in csv_rows(root) if r["train/loss"]]
    assert lrs == pytest.approx([cosine(s, 5) for s in range(5)], rel=1e-6)  # the cosine ends at the cap
    capsys.readouterr()
    for bad, message in [(["--trainer.max_epochs=0"], "--trainer.max_epochs must be positive, got 0"),
                         (["--trainer.max_epochs=-3"], "--trainer.max_epochs must be positive, got -3"),
                         (["--trainer.max_epochs=2", "--trainer.limit_train_batches=0.5"],
                          "--trainer.limit_train_batches cuts every epoch short")]:
        before = sorted(p.name for p in tmp_path.iterdir())
        assert main(fit_args(small_text, tmp_path / "bad", *bad)) == 2
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if "error:" in line]
        assert len(errors) == 1 and errors[0].startswith(f"lit-llm: error: {message}"), err[-2000:]
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # refused before anything is written
    # a checkpoint's data position is of one kind: an epoch fit does not resume a fit by steps, nor the reverse
    steps = tmp_path / "steps"
    assert main(fit_args(small_text, steps, "--trainer.max_steps", "3")) == 0
    for root, switch, message in [(steps, ["--trainer.max_epochs", "2"], "the checkpoint is of a fit by steps"),
                                  (root, ["--trainer.max_steps", "8"], "the checkpoint is of an epoch fit")]:
        files = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
        capsys.readouterr()
        assert main(fit_args(small_text, root, *switch, "--ckpt_path", "last")) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
        assert len(errors) == 1 and message in errors[0], errors
        assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == files  # nothing on disk changed
    weights = ["--data.corpus", f"[{small_text}, {small_text}]", "--data.corpus_weights", "[1, 2]"]
    assert main(fit_args(small_text, tmp_path / "weights", "--trainer.max_epochs=2", *weights)) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "--data.corpus_weights samples the sources by weight" in errors[0]


@pytest.mark.slow
def test_kill_9_mid_epoch_or_at_its_end_then_resume_equals_uninterrupted_run(small_text, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cmd(root: Path, *extra: str) -> list[str]:
        args = fit_cmd(small_text, root, "--data.batch_size", "8", "--trainer.max_epochs", "2", *extra)
        i = args.index("--trainer.max_steps")
        return args[:i] + args[i + 2:]  # epochs alone end the fit

    whole = tmp_path / "whole"
    subprocess.run(cmd(whole), check=True, capture_output=True, env=env, timeout=600)
    per_epoch = (len(TextDataModule(str(small_text), "char", block_size=16).stream("train")) - 1) // 16 // 8
    total = 2 * per_epoch
    a = torch.load(whole / "checkpoints/last.ckpt", weights_only=True)
    whole_rows = csv_rows(whole)
    assert a["global_step"] == total

    # checkpoints every 3 steps: a random point in either epoch, and the first step of the second epoch
    # (whose checkpoint is the first epoch's end when per_epoch is a multiple of 3)
    for name, kill_at in [("random", kill_point(4, total - 4)), ("epoch-end", per_epoch)]:
        killed = tmp_path / name
        proc = subprocess.Popen(cmd(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                start_new_session=True)
        wait_for_step(killed, kill_at, proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        saved_step = torch.load(killed / "checkpoints/last.ckpt", weights_only=True)["global_step"]
        run = subprocess.run(cmd(killed, "--ckpt_path", "last"), capture_output=True, text=True, env=env,
                             timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        assert "not resumable" not in run.stderr  # Lightning's warning: the data module resumes the position

        b = torch.load(killed / "checkpoints/last.ckpt", weights_only=True)
        assert b["global_step"] == total
        for key in a["state_dict"]:
            assert torch.equal(a["state_dict"][key], b["state_dict"][key]), \
                f"{key} differs (killed at {kill_at}, resumed from step {saved_step})"
        rows = csv_rows(killed)
        assert [int(r["step"]) for r in rows if r["train/loss"]] == list(range(total))  # every step once
        for column in ("train/loss", "epoch"):
            assert [r[column] for r in rows if r["train/loss"]] == [r[column] for r in whole_rows if r["train/loss"]]
        val_steps = [int(r["step"]) for r in rows if r["val/loss"]]
        assert val_steps == [int(r["step"]) for r in whole_rows if r["val/loss"]]
        assert sorted(set(val_steps)) == sorted({*range(9, total, 10), total - 1})  # every 10 batches, the end


@pytest.mark.slow
def test_ddp_epochs_split_each_epoch_disjointly_and_match_one_process(small_text, tmp_path):
    cache = tmp_path / "cache"
    prepare(PrepareConfig(str(small_text), "char"), cache)  # once, before the ranks start
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name, devices, batch in [("single", 1, 4), ("ddp", 2, 2)]:
        out = tmp_path / name
        out.mkdir()
        run = subprocess.run([sys.executable, str(DRIVER), str(small_text), str(out), str(cache), str(devices),
                              str(batch), "2"], capture_output=True, text=True, env=env, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
    n_windows = (len(TokenStream(prepare(PrepareConfig(str(small_text), "char"), cache).shards("train"))) - 1) // 16
    per_epoch = n_windows // 4  # steps of 4 windows (one process x 4, or two ranks x 2)
    one = json.loads((tmp_path / "single" / "ids-rank0.json").read_text())
    ranks = [json.loads((tmp_path / "ddp" / f"ids-rank{r}.json").read_text()) for r in range(2)]
    assert len(one) == len(ranks[0]) == len(ranks[1]) == 2 * per_epoch  # equal shares, two epochs
    for epoch in range(2):
        steps = range(epoch * per_epoch, (epoch + 1) * per_epoch)
        seen = []
        for step in steps:
            *a, tag_a = ranks[0][step]
            *b, tag_b = ranks[1][step]
            assert tag_a == tag_b == one[step][-1] == f"epoch{epoch}"
            assert not set(a) & set(b)  # disjoint
            assert set(a) | set(b) == set(one[step][:-1])  # together the same global batch as one process
            seen += a + b
        assert len(seen) == len(set(seen)) == per_epoch * 4  # each window once per epoch
    assert one[:per_epoch] != one[per_epoch:]  # a new order
    with open(tmp_path / "single" / "metrics.csv") as f:
        single = [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]
    with open(tmp_path / "ddp" / "metrics.csv") as f:
        ddp = [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]
    assert len(single) == len(ddp) == 2 * per_epoch
    assert max(abs(x - y) for x, y in zip(single, ddp)) <= 1e-4
