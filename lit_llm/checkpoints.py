"""The one reader of checkpoint files, and the atomic writer under every checkpoint save.

- `read_checkpoint`: any .ckpt as plain tensors and types (torch.load(weights_only=True), memory-mapped:
  tensors are read only when used), with one-line errors for a missing, truncated or foreign file.
- `read_lm_checkpoint` / `load_model`: a lit_llm language-model checkpoint, and the GPT + tokenizer it
  rebuilds on its own (its config and tokenizer travel inside it, under "lit_llm").
- `read_source`: a model to start from or convert: a lit_llm .ckpt, a Hugging Face directory or a
  .safetensors export (never an arbitrary pickle).
- `write_atomically`: bytes to a hidden temporary sibling, fsync, rename: a kill or a full disk mid-write
  leaves the previous file whole.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from lit_llm.errors import LitLLMError
from lit_llm.model.build import LanguageNetwork, build_model
from lit_llm.model.gpt import GPTConfig
from lit_llm.model.hf import is_hf_dir, need_safetensors, read_hf_config, read_hf_model, read_hf_tokenizer

META_CONFIG, META_TOKENIZER = "lit_llm.model_config", "lit_llm.tokenizer_json"
TMP_MARK = ".tmp-"  # hidden temporary files are named .NAME.tmp-PID


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint's contents, memory-mapped, plain types only."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise LitLLMError(f"{path} is a directory; give a checkpoint file (e.g. {path}/last.ckpt)")
    if not path.is_file():
        raise LitLLMError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise LitLLMError(f"cannot read checkpoint {path} ({err.__class__.__name__}); is it truncated?") from None
    if not isinstance(ckpt, dict):
        raise LitLLMError(f"{path} is not a Lightning checkpoint")
    return ckpt


def read_lm_checkpoint(path: str | Path) -> dict:
    """A lit_llm language-model checkpoint (it carries its model config and tokenizer)."""
    ckpt = read_checkpoint(path)
    extra = ckpt.get("lit_llm")
    if "state_dict" not in ckpt or not isinstance(extra, dict) or "model_config" not in extra:
        what = "a classifier" if "labels" in (extra or {}) or "head.weight" in ckpt.get("state_dict", {}) else "not"
        raise LitLLMError(f"{path} is {what} a lit_llm language-model checkpoint (no lit_llm model_config)"
                          if what == "not" else f"{path} is a classifier checkpoint; use it with `lit-llm classify`")
    return ckpt


def gpt_state_dict(ckpt: dict) -> dict[str, torch.Tensor]:
    """The GPT's own weights in a LanguageModel checkpoint (keys without the module's "model." prefix)."""
    return {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}


def load_model(path: str | Path) -> tuple[LanguageNetwork, Tokenizer]:
    """The network (GPT or recurrent LM; eval mode, CPU) and tokenizer of a lit_llm checkpoint, from it alone."""
    ckpt = read_lm_checkpoint(path)
    extra = ckpt["lit_llm"]
    model = build_model(GPTConfig(**extra["model_config"]))
    model.load_state_dict(gpt_state_dict(ckpt))
    if not extra.get("tokenizer_json"):
        raise LitLLMError(f"{path} carries no tokenizer")
    return model.eval(), Tokenizer.from_str(extra["tokenizer_json"])


def newest_last_checkpoint(directory: str | Path) -> Path | None:
    """The newest last*.ckpt in directory, as Lightning's --ckpt_path last picks it."""
    candidates = list(Path(directory).glob("last*.ckpt"))
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def run_facts(path: str | Path) -> dict:
    """global_step and lit_llm's run facts of a checkpoint (plain types only)."""
    ckpt = read_checkpoint(path)
    extra = ckpt.get("lit_llm", {})
    return {"global_step": int(ckpt.get("global_step", 0)), "lit_llm": extra, **extra.get("resume", {})}


def write_atomically(path: Path, data: bytes | memoryview) -> None:
    """Write data to path through a hidden temporary sibling, fsynced, then renamed into place."""
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write_chunks(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_chunks(f, data: bytes | memoryview) -> None:
    """The file write itself (its own function so the tests can slow it down to kill a save midway)."""
    f.write(data)


def is_tmp_file(path: Path) -> bool:
    return path.name.startswith(".") and TMP_MARK in path.name


# --- model sources: lit_llm checkpoints, Hugging Face directories, safetensors exports -------------
@dataclass
class Source:
    """A model to start from or convert: its config, weights (GPT's own keys) and tokenizer.json text."""

    path: Path
    kind: str  # lit_llm | hf-gpt2 | hf-llama | safetensors
    config: GPTConfig
    tokenizer_json: str | None
    state_dict: dict[str, torch.Tensor] | None = None  # None when read with weights=False


def read_source(path: str | Path, weights: bool = True) -> Source:
    """A lit_llm .ckpt, a Hugging Face model directory, or a .safetensors file from export-safetensors."""
    path = Path(path).expanduser()
    if not path.exists():
        raise LitLLMError(f"{path} not found (expected a lit_llm .ckpt, a Hugging Face model directory or a "
                          ".safetensors file)")
    if path.is_dir():
        if not is_hf_dir(path):
            raise LitLLMError(f"{path} is a directory without config.json, not a Hugging Face model directory")
        if weights:
            cfg, sd = read_hf_model(path)
        else:
            cfg, sd = read_hf_config(path), None
        return Source(path, f"hf-{'gpt2' if cfg.norm == 'layernorm' else 'llama'}", cfg, read_hf_tokenizer(path), sd)
    if path.suffix == ".safetensors":
        return read_safetensors(path, weights)
    return read_lit_llm_source(path)


def read_lit_llm_source(path: Path) -> Source:
    ckpt = read_lm_checkpoint(path)
    extra = ckpt["lit_llm"]
    return Source(path, "lit_llm", GPTConfig(**extra["model_config"]), extra.get("tokenizer_json"),
                  gpt_state_dict(ckpt))


def read_safetensors(path: Path, weights: bool) -> Source:
    st = need_safetensors()
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:
        raise LitLLMError(f"cannot read {path} as safetensors ({err.__class__.__name__})") from None
    if META_CONFIG not in meta:
        raise LitLLMError(f"{path} has no {META_CONFIG} metadata: not written by `lit-llm convert export-safetensors`")
    cfg = GPTConfig(**json.loads(meta[META_CONFIG]))
    sd = None
    if weights:
        sd = st.load_file(str(path))
        if cfg.tie_embeddings:
            sd["lm_head.weight"] = sd["wte.weight"]
    return Source(path, "safetensors", cfg, meta.get(META_TOKENIZER), sd)
