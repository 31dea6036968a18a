"""lit-llm convert: logits parity with transformers both ways (GPT-2 and Llama), generation from the export,
safetensors round trip, refusals. Small random models, no download."""

import json
from pathlib import Path

import pytest
import torch

from lit_llm.cli.main import main
from lit_llm.cli.convert import Source, checkpoint_dict, read_source
from lit_llm.data.tokenizer import char_tokenizer
from lit_llm.checkpoints import load_model
from lit_llm.model.gpt import GPT, GPTConfig, resize_vocab_rows

transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\nAll: Speak, speak!\n"
TOL = 1e-4


@pytest.fixture
def tok():
    return char_tokenizer([TEXT])


def random_ids(vocab: int, n: int = 24, batch: int = 2) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, n), generator=torch.Generator().manual_seed(0))


def our_checkpoint(path: Path, cfg: GPTConfig, tok, seed: int = 0) -> GPT:
    """A lit_llm checkpoint of a random model (weights scaled up so greedy decoding has clear winners)."""
    torch.manual_seed(seed)
    model = GPT(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.mul_(4.0) if p.dim() > 1 else p.add_(0.1 * torch.randn_like(p))  # biases and norms not trivial
    torch.save(checkpoint_dict(Source(path, "test", cfg, tok.to_str(), model.state_dict())), path)
    return model


def run(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["convert", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def hf_logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


# --- GPT-2 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("file_format", ["safetensors", "bin"])
def test_import_hf_gpt2_matches_transformers(tmp_path, tok, capsys, file_format):
    V = tok.get_vocab_size()
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=V, n_positions=32, n_embd=64, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0)).eval()
    hf_dir = tmp_path / "hf"
    if file_format == "safetensors":
        hf.save_pretrained(hf_dir)
    else:  # the original hub layout: a bare GPT2Model state dict ("h.0.attn...") in pytorch_model.bin
        hf_dir.mkdir()
        hf.config.to_json_file(hf_dir / "config.json")
        torch.save(hf.transformer.state_dict(), hf_dir / "pytorch_model.bin")
    tok.save(str(hf_dir / "tokenizer.json"))
    code, out = run(capsys, "import-hf", hf_dir, "--out", tmp_path / "gpt2.ckpt")
    assert code == 0, out
    model, tokenizer = load_model(tmp_path / "gpt2.ckpt")  # as `lit-llm generate` loads it
    ids = random_ids(V)
    with torch.no_grad():
        ours = model(ids)
    assert (ours - hf_logits(hf, ids)).abs().max() < TOL
    # greedy generation agrees too, and the CLI generates from the imported checkpoint
    prompt = torch.tensor([tokenizer.encode("Speak").ids])
    ours_gen = model.generate(prompt, 12, temperature=0)
    theirs_gen = hf.generate(prompt, max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert ours_gen.tolist() == theirs_gen.tolist()
    assert main(["generate", "--checkpoint", str(tmp_path / "gpt2.ckpt"), "--prompt", "Speak",
                 "--max_new_tokens", "12", "--temperature", "0"]) == 0
    assert capsys.readouterr().out.strip() == tokenizer.decode(ours_gen[0].tolist())


def test_import_reads_gpt2_vocab_and_merges(tmp_path, gpt2_files, capsys):
    """The hub's GPT-2 layout: no tokenizer.json, but vocab.json + merges.txt."""
    import shutil

    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_positions=16, n_embd=32, n_layer=1, n_head=2))
    hf.save_pretrained(tmp_path / "hf")
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(gpt2_files / name, tmp_path / "hf" / name)
    assert run(capsys, "import-hf", tmp_path / "hf", "--out", tmp_path / "gpt2.ckpt")[0] == 0
    _, tokenizer = load_model(tmp_path / "gpt2.ckpt")
    assert tokenizer.encode("Hello world").ids == [15496, 995]  # GPT-2's ids
    assert tokenizer.token_to_id("<|endoftext|>") == 50256


@pytest.mark.parametrize("bias, tied, mlp", [(True, True, "gelu"), (False, False, "gelu"),
                                             (True, True, "gelu_exact")])
def test_export_hf_gpt2_matches_transformers_and_generates(tmp_path, tok, capsys, bias, tied, mlp):
    cfg = GPTConfig(vocab_size=tok.get_vocab_size(), block_size=32, n_layer=2, n_head=4, n_embd=64,
                    bias=bias, tie_embeddings=tied, mlp=mlp)
    ours = our_checkpoint(tmp_path / "ours.ckpt", cfg, tok)
    code, out = run(capsys, "export-hf", tmp_path / "ours.ckpt", "--out", tmp_path / "hf")
    assert code == 0 and "GPT2LMHeadModel" in out, out
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == "GPT2LMHeadModel"
    ids = random_ids(cfg.vocab_size)
    with torch.no_grad():
        expected = ours(ids)
    assert (hf_logits(hf, ids) - expected).abs().max() < TOL
    # transformers' tokenizer and greedy generation reproduce ours, text included
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    prompt = "Before we"
    ids = hf_tok(prompt, return_tensors="pt").input_ids
    assert ids[0].tolist() == tok.encode(prompt).ids
    theirs = hf.generate(ids, max_new_tokens=20, do_sample=False, pad_token_id=hf_tok.pad_token_id)
    mine = ours.generate(ids, 20, temperature=0)
    assert theirs.tolist() == mine.tolist()
    assert hf_tok.decode(theirs[0]) == tok.decode(mine[0].tolist(), skip_special_tokens=False)


@pytest.mark.parametrize("mlp", ["gelu", "gelu_exact"])
def test_gpt2_round_trip_is_exact(tmp_path, tok, capsys, mlp):
    cfg = GPTConfig(vocab_size=tok.get_vocab_size(), block_size=16, n_layer=1, n_head=2, n_embd=32, mlp=mlp)
    our_checkpoint(tmp_path / "a.ckpt", cfg, tok)
    assert run(capsys, "export-hf", tmp_path / "a.ckpt", "--out", tmp_path / "hf")[0] == 0
    assert run(capsys, "import-hf", tmp_path / "hf", "--out", tmp_path / "b.ckpt")[0] == 0
    a, b = read_source(tmp_path / "a.ckpt"), read_source(tmp_path / "b.ckpt")
    assert a.config == b.config and a.tokenizer_json == b.tokenizer_json
    assert a.state_dict.keys() == b.state_dict.keys()
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)


# --- Llama (modern mode) ---------------------------------------------------------------------------
@pytest.mark.parametrize("tied", [True, False])
def test_export_modern_as_llama_matches_transformers(tmp_path, tok, capsys, tied):
    cfg = GPTConfig(vocab_size=tok.get_vocab_size(), block_size=32, n_layer=2, n_head=4, n_embd=64,
                    norm="rmsnorm", pos="rope", mlp="swiglu", bias=False, tie_embeddings=tied, rope_theta=500.0)
    ours = our_checkpoint(tmp_path / "ours.ckpt", cfg, tok)
    code, out = run(capsys, "export-hf", tmp_path / "ours.ckpt", "--out", tmp_path / "hf")
    assert code == 0 and "LlamaForCausalLM" in out, out
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
    ids = random_ids(cfg.vocab_size, n=32)
    with torch.no_grad():
        expected = ours(ids)
    assert (hf_logits(hf, ids) - expected).abs().max() < TOL
    theirs = hf.generate(ids[:1, :5], max_new_tokens=20, do_sample=False, pad_token_id=0)
    assert theirs.tolist() == ours.generate(ids[:1, :5], 20, temperature=0).tolist()
    # and back: import-hf reads the Llama directory into the same weights
    assert run(capsys, "import-hf", tmp_path / "hf", "--out", tmp_path / "back.ckpt")[0] == 0
    back = read_source(tmp_path / "back.ckpt")
    assert back.config == cfg
    assert all(torch.equal(back.state_dict[k], v) for k, v in ours.state_dict().items())


def test_import_hf_llama_matches_transformers(tmp_path, tok, capsys):
    V = tok.get_vocab_size()
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=V, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=32, rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=0,
        eos_token_id=0)).eval()
    hf.save_pretrained(tmp_path / "hf")
    tok.save(str(tmp_path / "hf/tokenizer.json"))
    assert run(capsys, "import-hf", tmp_path / "hf", "--out", tmp_path / "llama.ckpt")[0] == 0
    model, _ = load_model(tmp_path / "llama.ckpt")
    ids = random_ids(V, n=32)
    with torch.no_grad():
        assert (model(ids) - hf_logits(hf, ids)).abs().max() < TOL


# --- refusals ------------------------------------------------------------------------------------
def one_line_error(code: int, out: str, message: str) -> None:
    assert code == 2
    lines = out.strip().splitlines()
    assert lines[-1].startswith("lit-llm: error:") and message in lines[-1], out
    assert "Traceback" not in out


def test_export_refuses_a_mode_without_hf_twin(tmp_path, tok, capsys):
    cfg = GPTConfig(vocab_size=tok.get_vocab_size(), block_size=16, n_layer=1, n_head=2, n_embd=32,
                    norm="rmsnorm", pos="learned", mlp="gelu")
    our_checkpoint(tmp_path / "mixed.ckpt", cfg, tok)
    one_line_error(*run(capsys, "export-hf", tmp_path / "mixed.ckpt", "--out", tmp_path / "hf"),
                   "no exact Hugging Face architecture")
    assert not (tmp_path / "hf").exists()


def test_import_refuses_what_it_cannot_reproduce(tmp_path, tok, capsys):
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5))
    hf.save_pretrained(tmp_path / "gqa")
    one_line_error(*run(capsys, "import-hf", tmp_path / "gqa", "--out", tmp_path / "x.ckpt"), "grouped-query")
    config = json.loads((tmp_path / "gqa/config.json").read_text())
    config.update(num_key_value_heads=4, rms_norm_eps=1e-6)
    (tmp_path / "gqa/config.json").write_text(json.dumps(config))
    one_line_error(*run(capsys, "import-hf", tmp_path / "gqa", "--out", tmp_path / "x.ckpt"), "epsilon")
    assert not (tmp_path / "x.ckpt").exists()


def test_pytorch_model_bin_is_never_unpickled_beyond_tensors(tmp_path, tok, capsys):
    hf_dir = tmp_path / "evil"
    hf_dir.mkdir()
    transformers.GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=16, n_embd=32, n_layer=1,
                            n_head=2).to_json_file(hf_dir / "config.json")
    torch.save({"wte.weight": torch.zeros(1), "payload": Path("/etc/passwd")}, hf_dir / "pytorch_model.bin")
    one_line_error(*run(capsys, "import-hf", hf_dir, "--out", tmp_path / "x.ckpt"), "plain tensors")


def test_no_output_is_overwritten(tmp_path, tok, capsys):
    cfg = GPTConfig(vocab_size=tok.get_vocab_size(), block_size=16, n_layer=1, n_head=2, n_embd=32)
    our_checkpoint(tmp_path / "a.ckpt", cfg, tok)
    for action, out in (("export-hf", tmp_path / "dir"), ("export-safetensors", tmp_path / "w.safetensors")):
        out.mkdir() if action == "export-hf" else out.write_text("keep")
        one_line_error(*run(capsys, action, tmp_path / "a.ckpt", "--out", out), "already exists")
    one_line_error(*run(capsys, "import-hf", tmp_path / "dir", "--out", tmp_path / "a.ckpt"), "already exists")
    assert (tmp_path / "w.safetensors").read_text() == "keep" and not any((tmp_path / "dir").iterdir())


# --- safetensors ---------------------------------------------------------------------------------
def test_export_safetensors_round_trip(tmp_path, tok, capsys):
    cfg = GPTConfig(vocab_size=tok.get_vocab_size(), block_size=16, n_layer=2, n_head=2, n_embd=32)
    ours = our_checkpoint(tmp_path / "a.ckpt", cfg, tok)
    code, out = run(capsys, "export-safetensors", tmp_path / "a.ckpt", "--out", tmp_path / "a.safetensors")
    assert code == 0, out
    loaded = safetensors_torch.load_file(str(tmp_path / "a.safetensors"))
    expected = {k: v for k, v in ours.state_dict().items() if k != "lm_head.weight"}  # tied to wte.weight
    resize_vocab_rows(expected, cfg.vocab_size)  # exports hold the real vocabulary, not our padding
    assert loaded["wte.weight"].shape[0] == cfg.vocab_size < ours.wte.weight.shape[0]
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "a.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert json.loads(meta["lit_llm.model_config"])["n_embd"] == 32
    assert meta["lit_llm.tokenizer_json"] == tok.to_str()
    # the file is a source for --model.init_from and conversions: same model, tied head restored
    back = read_source(tmp_path / "a.safetensors")
    model = GPT(back.config).eval()
    model.load_state_dict(back.state_dict)
    ids = random_ids(cfg.vocab_size, n=16)
    with torch.no_grad():
        assert torch.equal(model(ids), ours(ids))


def test_exports_and_prepared_folders_follow_the_umask(tmp_path, tok):
    """Under umask 022 what lit_llm leaves on disk is 0755 (folders) and 0644 (files), not tempfile's
    private 0700/0600."""
    import os
    import stat
    import subprocess
    import sys

    our_checkpoint(tmp_path / "a.ckpt", GPTConfig(vocab_size=tok.get_vocab_size(), block_size=16, n_layer=1,
                                                  n_head=2, n_embd=16), tok)
    (tmp_path / "corpus.txt").write_text(TEXT * 20)
    child = ("import os, sys; os.umask(0o022); from lit_llm.cli.main import main; "
             "sys.exit(max(main(a) for a in [sys.argv[1:5], sys.argv[5:9], sys.argv[9:]]))")
    args = ["convert", "export-safetensors", "a.ckpt", "--out=a.safetensors", "convert", "export-hf", "a.ckpt",
            "--out=hf", "prepare", "--data.corpus", "corpus.txt", "--data.tokenizer", "char", "--out", "prepared"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LIT_LLM_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", child, *args], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    made = [tmp_path / "a.safetensors", tmp_path / "hf", tmp_path / "prepared"]
    paths = [p for m in made for p in [m, *(m.rglob("*") if m.is_dir() else [])]]
    assert len(paths) > 6
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in paths}
    assert modes == {k: 0o755 if (tmp_path / k).is_dir() else 0o644 for k in modes}


def test_exports_get_the_permissions_of_plain_files(tmp_path, tok, capsys):
    """safetensors writes 0600 files; an export is for sharing, so it gets what the umask gives open()."""
    cfg = GPTConfig(vocab_size=tok.get_vocab_size(), block_size=16, n_layer=1, n_head=2, n_embd=32)
    our_checkpoint(tmp_path / "a.ckpt", cfg, tok)
    (tmp_path / "plain").write_bytes(b"")  # what open() gives a new file under this process's umask
    plain = (tmp_path / "plain").stat().st_mode & 0o777
    assert run(capsys, "export-safetensors", tmp_path / "a.ckpt", "--out", tmp_path / "a.safetensors")[0] == 0
    assert run(capsys, "export-hf", tmp_path / "a.ckpt", "--out", tmp_path / "hf")[0] == 0
    files = [tmp_path / "a.safetensors", *(tmp_path / "hf").iterdir()]
    assert {f.name: f.stat().st_mode & 0o777 for f in files} == {f.name: plain for f in files}
