"""Exact resume after kill -9: the same weights as an uninterrupted run and the same CSV log."""

import os
import signal
import subprocess

import pytest
import torch
from helpers import csv_rows, fit_cmd, kill_point, wait_for_step


@pytest.mark.slow
def test_kill_9_then_resume_equals_uninterrupted_run(tiny_text, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = tmp_path / "whole"
    subprocess.run(fit_cmd(tiny_text, whole), check=True, capture_output=True, env=env, timeout=600)

    killed = tmp_path / "killed"
    # its own process group: the kill takes the job's W&B service with it, as a crashed or preempted job does
    proc = subprocess.Popen(fit_cmd(tiny_text, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    # checkpoints every 3 steps (lit_llm saves them before the first validation too; one that falls on a step
    # that validates is written after the validation)
    kill_at = kill_point(4, 24)
    wait_for_step(killed, kill_at, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = sorted(p.name for p in (killed / "checkpoints").iterdir())
    saved.append(torch.load(killed / "checkpoints/last.ckpt", weights_only=True)["global_step"])
    saved.append([r["step"] for r in csv_rows(killed)][-5:])
    assert "last.ckpt" in saved[:-2], saved
    run = subprocess.run(fit_cmd(tiny_text, killed, "--ckpt_path", "last"), capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]

    a = torch.load(whole / "checkpoints/last.ckpt", weights_only=True)
    b = torch.load(killed / "checkpoints/last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 28
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), f"{key} differs (killed at step {kill_at})"
    assert a["lit_llm"]["tokens_seen"] == b["lit_llm"]["tokens_seen"]

    rows = csv_rows(killed)
    train_steps = [int(r["step"]) for r in rows if r["train/loss"]]
    assert train_steps == list(range(28)), (kill_at, saved, run.stderr[-3000:])  # every step once
    val_steps = [int(r["step"]) for r in rows if r["val/loss"]]
    assert val_steps == [9, 19, 27]
    whole_losses = [r["train/loss"] for r in csv_rows(whole) if r["train/loss"]]
    assert [r["train/loss"] for r in rows if r["train/loss"]] == whole_losses  # the same numbers, too
    assert not (killed / "lightning_logs/version_1").exists()
