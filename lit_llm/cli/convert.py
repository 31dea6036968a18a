"""Convert models to and from other formats: Hugging Face directories, safetensors.

  lit-llm convert import-hf HF_DIR --out CKPT            HF GPT-2 (or Llama) -> a lit_llm checkpoint
  lit-llm convert export-hf CKPT --out DIR               -> GPT2LMHeadModel / LlamaForCausalLM + tokenizer
  lit-llm convert export-safetensors CKPT --out FILE     weights + metadata (model config, tokenizer)

Every file is read through lit_llm.checkpoints (plain tensors and strings, never an arbitrary pickle).
Nothing is overwritten: each command writes a temporary sibling and renames it into place.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import lightning
import torch
from jsonargparse import ArgumentParser
from tokenizers import Tokenizer

from lit_llm.checkpoints import META_CONFIG, META_TOKENIZER, Source, read_source
from lit_llm.data.tokenizer import build_tokenizer
from lit_llm.errors import LitLLMError
from lit_llm.model.gpt import ARCH_FIELDS, GPT, GPTConfig, resize_vocab_rows
from lit_llm.model.hf import is_hf_dir, need_safetensors, read_hf_tokenizer, write_hf_dir


def checked_state_dict(cfg: GPTConfig, sd: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """The state dict as our GPT holds it (tied weights shared), after checking every key and shape."""
    with torch.device("cpu"):
        model = GPT(cfg)
    try:
        model.load_state_dict(sd)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[1:2] or [str(err)]
        raise LitLLMError(f"{where}: the weights do not fit the config: {first[0].strip()}") from None
    return model.state_dict()


def checkpoint_dict(source: Source) -> dict:
    """A lit_llm checkpoint (what `generate`, `--model.init_from` and `--ckpt_path` read) for a source."""
    cfg = source.config
    hparams = {name: getattr(cfg, name) for name in ARCH_FIELDS}
    state = checked_state_dict(cfg, source.state_dict, str(source.path))
    return {
        "state_dict": {f"model.{k}": v for k, v in state.items()},
        "hyper_parameters": hparams,
        "lit_llm": {"tokenizer_json": source.tokenizer_json, "data_meta_json": "{}", "model_config": asdict(cfg),
                    "tokens_seen": 0, "imported_from": f"{source.kind}:{source.path}"},
        "pytorch-lightning_version": lightning.__version__, "epoch": 0, "global_step": 0,
    }


# --- writing without overwriting -----------------------------------------------------------------
def refuse_existing(out: Path) -> None:
    if out.exists():
        raise LitLLMError(f"{out} already exists; choose another --out (nothing is overwritten)")


def readable_as_plain_files(path: Path) -> None:
    """Give what was written the permissions the umask gives a new file (safetensors' save_file makes its
    files private, 0600: exports are for sharing)."""
    umask = os.umask(0)
    os.umask(umask)
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~umask)


def write_new(out: Path, write) -> None:
    """write(tmp_path) then rename tmp_path to out, so a failure leaves no partial out behind."""
    refuse_existing(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        readable_as_plain_files(tmp)
        refuse_existing(out)  # appeared meanwhile
        os.rename(tmp, out)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp)
        elif tmp.exists():
            tmp.unlink()


def tokenizer_for_import(directory: Path, spec: str | None, vocab_size: int) -> str:
    if spec:
        text = build_tokenizer(spec, 0, []).to_str()
    else:
        text = read_hf_tokenizer(directory)
        if text is None:
            raise LitLLMError(f"{directory} has no tokenizer.json (or vocab.json + merges.txt); give one with "
                              "--tokenizer PATH (or gpt2)")
    size = Tokenizer.from_str(text).get_vocab_size()
    if size > vocab_size:
        raise LitLLMError(f"the tokenizer has {size} tokens but the model only {vocab_size}: not this model's tokenizer")
    return text


def import_hf(hf_dir: str, out: str, tokenizer: str | None = None) -> Source:
    directory, out_path = Path(hf_dir).expanduser(), Path(out).expanduser()
    refuse_existing(out_path)
    if not is_hf_dir(directory):
        raise LitLLMError(f"{directory} is not a Hugging Face model directory (no config.json)")
    source = read_source(directory)
    source.tokenizer_json = tokenizer_for_import(directory, tokenizer, source.config.vocab_size)
    ckpt = checkpoint_dict(source)
    write_new(out_path, lambda tmp: torch.save(ckpt, tmp))
    return source


def export_hf(ckpt: str, out: str) -> str:
    out_path = Path(out).expanduser()
    refuse_existing(out_path)
    source = read_source(ckpt)
    arch: list[str] = []
    write_new(out_path, lambda tmp: arch.append(write_hf_dir(tmp, source.config, source.state_dict,
                                                              source.tokenizer_json)))
    return arch[0]


def export_safetensors(ckpt: str, out: str) -> None:
    out_path = Path(out).expanduser()
    refuse_existing(out_path)
    source = read_source(ckpt)
    sd = dict(source.state_dict)
    resize_vocab_rows(sd, source.config.vocab_size)  # exactly vocab_size rows, whatever our padding
    if source.config.tie_embeddings:
        sd.pop("lm_head.weight")  # the same tensor as wte.weight; safetensors stores no aliases
    metadata = {"format": "pt", META_CONFIG: json.dumps(asdict(source.config))}
    if source.tokenizer_json is not None:
        metadata[META_TOKENIZER] = source.tokenizer_json
    save_file = need_safetensors().save_file
    write_new(out_path, lambda tmp: save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp), metadata))


def main(args: list[str]) -> None:
    parser = ArgumentParser(prog="lit-llm convert", description="Convert models to and from other formats.")
    commands = parser.add_subcommands(dest="action")
    imp = ArgumentParser(description="A Hugging Face GPT-2 (or Llama) directory -> a lit_llm checkpoint.")
    imp.add_argument("hf_dir", type=str, help="directory with config.json and model.safetensors or pytorch_model.bin")
    imp.add_argument("--out", type=str, required=True, help="the checkpoint to write (.ckpt)")
    imp.add_argument("--tokenizer", type=str | None, default=None,
                     help="tokenizer.json, a vocab.json+merges.txt directory, or gpt2 (default: the one in hf_dir)")
    commands.add_subcommand("import-hf", imp, help=imp.description)
    exp = ArgumentParser(description="A lit_llm checkpoint -> a transformers model directory.")
    exp.add_argument("checkpoint", type=str)
    exp.add_argument("--out", type=str, required=True, help="the directory to create")
    commands.add_subcommand("export-hf", exp, help=exp.description)
    st = ArgumentParser(description="A lit_llm checkpoint -> one .safetensors file (weights, config, tokenizer).")
    st.add_argument("checkpoint", type=str)
    st.add_argument("--out", type=str, required=True, help="the .safetensors file to create")
    commands.add_subcommand("export-safetensors", st, help=st.description)
    cfg = parser.parse_args(args)
    action, sub = cfg.action, cfg[cfg.action]
    if action == "import-hf":
        source = import_hf(sub.hf_dir, sub.out, sub.tokenizer)
        c = source.config
        print(f"wrote {sub.out}: {source.kind} {c.n_layer} layers x {c.n_embd}, vocab {c.vocab_size}, "
              f"block {c.block_size}")
        print(f"use it with: lit-llm generate --checkpoint {sub.out}  or  --model.init_from {sub.out}")
    elif action == "export-hf":
        arch = export_hf(sub.checkpoint, sub.out)
        cls = "GPT2LMHeadModel" if arch == "gpt2" else "LlamaForCausalLM"
        print(f"wrote {sub.out} ({cls}); load with transformers.AutoModelForCausalLM.from_pretrained({sub.out!r})")
    else:
        export_safetensors(sub.checkpoint, sub.out)
        print(f"wrote {sub.out}; read with safetensors.torch.load_file (config and tokenizer in its metadata)")
