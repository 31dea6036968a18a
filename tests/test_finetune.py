"""Fine-tuning with --model.init_from: a tiny model trained on corpus A (Shakespeare) continues on corpus B
(Python source), taking the source's architecture, block size and tokenizer."""

import json
import sysconfig
from pathlib import Path

import pytest
import torch

from lit_llm.cli.main import main

CONFIGS = Path(__file__).parents[1] / "configs"
QUIET = ["--trainer.enable_progress_bar", "false", "--wandb.mode", "disabled"]


@pytest.fixture
def corpus_b(tmp_path) -> Path:
    """~30k characters of Python source: a new domain for a Shakespeare model."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    text = "".join((stdlib / name).read_text() for name in ("json/encoder.py", "json/decoder.py", "textwrap.py"))
    path = tmp_path / "b.txt"
    path.write_text(text[:30_000])
    return path


@pytest.fixture
def source(tiny_text, tmp_path) -> Path:
    """A toy model (block 32, char tokenizer) trained on corpus A."""
    assert main(["fit", "--config", str(CONFIGS / "model/toy.yaml"), "--data.corpus", str(tiny_text),
                 "--data.tokenizer", "char", "--data.block_size", "32", "--data.batch_size", "8",
                 "--model.warmup_steps", "5", "--trainer.max_steps", "40", "--trainer.val_check_interval", "40",
                 "--trainer.default_root_dir", str(tmp_path / "a"), *QUIET]) == 0
    return tmp_path / "a/checkpoints/last.ckpt"


def summary(root: Path) -> dict:
    (path,) = (root / "lightning_logs").glob("*/summary.json")
    return json.loads(path.read_text())


def tokenizer_file(ckpt: Path, tmp_path: Path) -> Path:
    path = tmp_path / "source-tokenizer.json"
    path.write_text(torch.load(ckpt, weights_only=True)["lit_llm"]["tokenizer_json"])
    return path


def test_init_from_loads_weights_and_fine_tuning_lowers_val_loss(source, corpus_b, tmp_path):
    data_b = ["--data.corpus", str(corpus_b), "--data.batch_size", "8"]
    # the source model on B, through Lightning's own checkpoint restore (tokenizer and block size given)
    assert main(["validate", "--ckpt_path", str(source), *data_b, "--data.tokenizer",
                 str(tokenizer_file(source, tmp_path)), "--data.block_size", "32",
                 "--trainer.default_root_dir", str(tmp_path / "src_b"), *QUIET]) == 0
    source_loss = summary(tmp_path / "src_b")["val/loss"]
    # --model.init_from alone: architecture, block size and tokenizer come from the source, and the
    # weights are the source's (the "step 0" validation equals the source's loss on B)
    assert main(["validate", "--model.init_from", str(source), *data_b,
                 "--trainer.default_root_dir", str(tmp_path / "init_b"), *QUIET]) == 0
    init = summary(tmp_path / "init_b")
    assert init["val/loss"] == pytest.approx(source_loss, abs=1e-5)
    assert init["config"]["model.n_layer"] == 2 and init["config"]["model.n_embd"] == 64
    assert init["config"]["model.block_size"] == 32
    # a few fine-tuning steps on B with the shipped config
    assert main(["fit", "--config", str(CONFIGS / "finetune.yaml"), "--model.init_from", str(source), *data_b,
                 "--model.lr", "1e-3", "--trainer.max_steps", "30", "--trainer.val_check_interval", "30",
                 "--trainer.default_root_dir", str(tmp_path / "ft"), *QUIET]) == 0
    tuned = summary(tmp_path / "ft")
    assert tuned["global_step"] == 30
    assert tuned["val/loss"] < source_loss - 0.1, (tuned["val/loss"], source_loss)
    ckpt = torch.load(tmp_path / "ft/checkpoints/last.ckpt", weights_only=True)
    src = torch.load(source, weights_only=True)
    assert ckpt["lit_llm"]["tokenizer_json"] == src["lit_llm"]["tokenizer_json"]
    assert ckpt["hyper_parameters"]["init_from"] == str(source)
    # the fine-tuned checkpoint is used without its source: generate, and validate on B with no
    # tokenizer or block size given (they come from the checkpoint) reproduces the fit's last val/loss
    source.unlink()
    tuned_ckpt = str(tmp_path / "ft/checkpoints/last.ckpt")
    assert main(["generate", "--checkpoint", tuned_ckpt, "--prompt", "def ", "--max_new_tokens", "10"]) == 0
    assert main(["validate", "--ckpt_path", tuned_ckpt, *data_b,
                 "--trainer.default_root_dir", str(tmp_path / "ft_b"), *QUIET]) == 0
    assert summary(tmp_path / "ft_b")["val/loss"] == pytest.approx(tuned["val/loss"], abs=1e-5)


@pytest.mark.parametrize("extra, message", [
    (["--data.tokenizer", "char"], "vocab_size"),  # B's own character set: another vocabulary
    (["--data.block_size", "64"], "block_size 64 here vs 32 in the source"),
    (["--model.n_layer", "3"], "n_layer 3 here vs 2 in the source"),
])
def test_mismatch_is_one_line_error(source, corpus_b, tmp_path, capsys, extra, message):
    capsys.readouterr()
    code = main(["fit", "--model.init_from", str(source), "--data.corpus", str(corpus_b), "--trainer.max_steps",
                 "2", "--trainer.default_root_dir", str(tmp_path / "bad"), *QUIET, *extra])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lit-llm: error: --model.init_from") and message in err[-1], err[-1]
    assert not any("Traceback" in line for line in err)


def test_fine_tune_with_a_shorter_block_crops_the_positions(source, corpus_b, tmp_path):
    """--data.block_size below the source's (nanoGPT's crop_block_size): the run keeps the source's first
    positions and every other weight as they are."""
    assert main(["fit", "--model.init_from", str(source), "--data.corpus", str(corpus_b), "--data.block_size", "16",
                 "--model.lr", "1e-12", "--model.warmup_steps", "0", "--trainer.max_steps", "1",
                 "--trainer.default_root_dir", str(tmp_path / "short"), *QUIET]) == 0
    tuned = torch.load(tmp_path / "short/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    src = torch.load(source, weights_only=True)["state_dict"]
    assert tuned["model.wpe.weight"].shape[0] == 16
    assert torch.allclose(tuned["model.wpe.weight"], src["model.wpe.weight"][:16], atol=1e-8)
    assert all(torch.allclose(tuned[k], v, atol=1e-8) for k, v in src.items() if k != "model.wpe.weight")


def test_init_from_missing_source(tmp_path, capsys):
    assert main(["fit", "--model.init_from", str(tmp_path / "nope.ckpt"), *QUIET]) == 2
    assert "nope.ckpt not found" in capsys.readouterr().err


def test_same_size_tokenizer_with_other_tokens_is_refused(source, corpus_b, tmp_path, capsys):
    tokenizer = json.loads(torch.load(source, weights_only=True)["lit_llm"]["tokenizer_json"])
    vocab = tokenizer["model"]["vocab"]
    vocab["a"], vocab["b"] = vocab["b"], vocab["a"]
    swapped = tmp_path / "swapped.json"
    swapped.write_text(json.dumps(tokenizer))
    capsys.readouterr()
    assert main(["fit", "--model.init_from", str(source), "--data.corpus", str(corpus_b), "--data.tokenizer",
                 str(swapped), "--trainer.default_root_dir", str(tmp_path / "bad"), *QUIET]) == 2
    assert "the source's size but other tokens" in capsys.readouterr().err.strip().splitlines()[-1]


def test_fine_tune_from_a_hugging_face_directory(tiny_text, tmp_path):
    """A GPT-2 directory as transformers writes it (here: exported from a lit_llm model) is a source."""
    pytest.importorskip("safetensors")
    from lit_llm.cli.convert import Source, checkpoint_dict
    from lit_llm.data.tokenizer import char_tokenizer
    from lit_llm.model.gpt import GPT, GPTConfig

    tok = char_tokenizer([tiny_text.read_text()])
    cfg = GPTConfig(vocab_size=tok.get_vocab_size(), block_size=32, n_layer=2, n_head=2, n_embd=32)
    torch.manual_seed(0)
    ckpt = tmp_path / "m.ckpt"
    torch.save(checkpoint_dict(Source(ckpt, "test", cfg, tok.to_str(), GPT(cfg).state_dict())), ckpt)
    assert main(["convert", "export-hf", str(ckpt), "--out", str(tmp_path / "hf")]) == 0
    data = ["--data.corpus", str(tiny_text), "--data.batch_size", "8"]
    assert main(["validate", "--model.init_from", str(tmp_path / "hf"), *data,
                 "--trainer.default_root_dir", str(tmp_path / "v_hf"), *QUIET]) == 0
    tok_file = tmp_path / "tok.json"
    tok_file.write_text(tok.to_str())
    assert main(["validate", "--ckpt_path", str(ckpt), *data, "--data.tokenizer", str(tok_file),
                 "--data.block_size", "32", "--trainer.default_root_dir", str(tmp_path / "v_ckpt"), *QUIET]) == 0
    assert summary(tmp_path / "v_hf")["val/loss"] == pytest.approx(summary(tmp_path / "v_ckpt")["val/loss"], abs=1e-5)
    assert main(["fit", "--config", str(CONFIGS / "finetune.yaml"), "--model.init_from", str(tmp_path / "hf"),
                 *data, "--trainer.max_steps", "3", "--trainer.default_root_dir", str(tmp_path / "ft"), *QUIET]) == 0
    assert summary(tmp_path / "ft")["global_step"] == 3
