"""A trainer configuration the machine cannot run (a GPU preset without a GPU) is one line and exit 2."""

from pathlib import Path

import pytest
import torch

from lit_llm.cli.main import main
from tests.test_cli import fit_args


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_preset_without_a_gpu_is_one_line(tiny_text, tmp_path, capsys):
    preset = str(Path(__file__).parents[1] / "configs/trainer/gpu.yaml")
    assert main(fit_args(tiny_text, "runs", 2, "--config", preset, "--wandb.mode", "disabled")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lit-llm: error: ") and "gpu" in err[0].lower()
    assert not (tmp_path / "runs/checkpoints").exists()
