"""benchmarks/gpu.py (issue #13) in its CPU mode: the three parts run end to end on a tiny model, the FSDP part
says it is skipped on a CPU, and the grad_norm comparison itself runs with a 1-process DDP stand-in."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


def bench(tmp_path: Path, *args: str, timeout: int = 300) -> tuple[subprocess.CompletedProcess, dict | None]:
    out = tmp_path / "figures.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--outdir", str(tmp_path / "runs"), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=timeout)
    return proc, json.loads(out.read_text()) if out.exists() else None


@pytest.mark.slow
def test_cpu_tiny_runs_both_loops_and_skips_fsdp(tmp_path):
    proc, figures = bench(tmp_path, "--cpu", "--tiny")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    fit, plain = figures["fit"], figures["plain"]
    assert fit["tokens_per_sec"] > 0 and plain["tokens_per_sec"] > 0
    assert figures["ratio"] == pytest.approx(fit["tokens_per_sec"] / plain["tokens_per_sec"])
    assert fit["params"] == plain["params"]  # the same network in both loops
    assert fit["mfu"] > 0 and plain["mfu"] > 0 and fit["peak_memory_bytes"] > 0
    assert figures["fsdp"]["status"] == "skipped" and "GPU" in figures["fsdp"]["reason"]
    assert figures["ok"] is True
    assert "| 1. lit-llm fit |" in proc.stdout and "| lit-llm / plain |" in proc.stdout


@pytest.mark.slow
def test_grad_norm_check_with_a_ddp_stand_in(tmp_path):
    """Part 3's machinery (shared initial weights, metrics.csv, step-by-step comparison) without a GPU."""
    proc, figures = bench(tmp_path, "--cpu", "--tiny", "--parts", "3", "--check-strategy", "ddp", "--check-steps", "6")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    check = figures["fsdp"]
    assert check["status"] == "pass" and check["strategy"] == "ddp"
    assert check["steps"] == list(range(6)) and check["max_rel_diff"] < 1e-3
    assert (tmp_path / "runs" / "check-init.pt").exists()


def test_missing_gpt2_files_is_a_clear_error(tmp_path):
    proc, _ = bench(tmp_path, "--cpu", "--gpt2-dir", str(tmp_path / "nowhere"), timeout=120)
    assert proc.returncode == 2 and "vocab.json" in proc.stderr and "--tiny" in proc.stderr

