import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED.exists():  # CI clones main beside shared/
    SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Each test gets its own cache and working directory, and no W&B run leaks into the next."""
    monkeypatch.setenv("LIT_LLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    yield
    import sys

    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


@pytest.fixture
def shakespeare() -> Path:
    path = SHARED / "tinyshakespeare.txt"
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture
def gpt2_files() -> Path:
    path = SHARED / "gpt2"
    if not (path / "vocab.json").exists():
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture
def tiny_text(shakespeare, tmp_path) -> Path:
    """The first 30k characters of Tiny Shakespeare as a small corpus."""
    path = tmp_path / "tiny.txt"
    path.write_text(shakespeare.read_text()[:30_000])
    return path

