"""Helpers shared by the tests: the toy fit command the resume and reliability tests run, its CSV rows,
waiting for a step, replayable kill points, and the fault-injecting variants of a command (faults.py)."""

import csv
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DROPOUT = "0.1"  # dropout draws from the RNG: resume must restore it exactly


def fit_cmd(corpus: Path, root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lit_llm", "fit", "--config", str(ROOT / "configs/model/toy.yaml"),
            "--data.corpus", str(corpus), "--data.tokenizer", "char", "--data.block_size", "16",
            "--data.batch_size", "4", "--model.dropout", DROPOUT,
            "--trainer.max_steps", "28", "--trainer.val_check_interval", "10", "--trainer.log_every_n_steps", "1",
            "--checkpoint.every_n_train_steps", "3", "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(root), "--wandb.mode", "disabled", *extra]
    # W&B is off here: a killed job's W&B service can hold the run id for over a minute on a loaded machine
    # (lit_llm then falls back to a new id with a warning), which would make this test about W&B timing


def csv_rows(root: Path) -> list[dict]:
    with open(root / "lightning_logs/version_0/metrics.csv") as f:
        return list(csv.DictReader(f))


def wait_for_step(root: Path, step: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    path = root / "lightning_logs/version_0/metrics.csv"
    start = time.time()
    while time.time() - start < timeout:
        assert proc.poll() is None, "training ended before it could be killed"
        if path.exists():
            steps = [int(r["step"]) for r in csv_rows(root) if r.get("train/loss")]
            if steps and steps[-1] >= step:
                return
        time.sleep(0.05)
    raise TimeoutError


def kill_point(low: int, high: int) -> int:
    """A step to kill or signal a run at: random, but replayable. The seed is printed (pytest shows it when
    the test fails); LIT_LLM_KILL_SEED=SEED replays the same point."""
    seed = int(os.environ.get("LIT_LLM_KILL_SEED") or random.SystemRandom().randrange(2**32))
    step = random.Random(seed).randint(low, high)
    print(f"kill point: step {step} (replay with LIT_LLM_KILL_SEED={seed})")
    return step


def with_slow_saves(cmd: list[str], seconds: float) -> list[str]:
    """`python -m lit_llm ARGS` -> the same run with every checkpoint write paused halfway (tests/faults.py)."""
    assert cmd[1:3] == ["-m", "lit_llm"]
    return [cmd[0], str(Path(__file__).with_name("faults.py")), "--save-delay", str(seconds), "--", *cmd[3:]]


def nan_steps(steps: str) -> list[str]:
    return ["--trainer.callbacks+=faults.NonFiniteGradients", f"--trainer.callbacks.steps={steps}"]
