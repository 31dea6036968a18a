"""Fine-tuning: `--model.init_from PATH` starts a run from another model's weights.

PATH is a lit_llm checkpoint, a Hugging Face GPT-2/Llama directory or an export-safetensors file. Two steps:
1. `apply_init_from` (the CLI, before it builds anything, with the model's and data's defaults): the source's architecture, block size and
   tokenizer become the run's wherever the user left the default, so `--model.init_from` alone is enough.
   The tokenizer goes to a content-addressed file in the cache and `--data.tokenizer` names it, so the new
   corpus is tokenized exactly as the source's was.
2. `load_init_weights` (LanguageModel.configure_model, once the network is built): checks that the run's
   config and tokenizer are the source's, saying what differs, and copies the weights.
With --ckpt_path (resume, validate, test) the checkpoint's weights are used, not the source's, and the
checkpoint file supplies the tokenizer, so a fine-tuned model is evaluated without its source at hand.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from pathlib import Path

from tokenizers import Tokenizer

from lit_llm.checkpoints import read_source
from lit_llm.data.corpus import default_cache_dir
from lit_llm.data.tokenizer import EOS
from lit_llm.errors import LitLLMError
from lit_llm.model.gpt import ARCH_FIELDS

SHAPE_ARGS = tuple(f for f in ARCH_FIELDS if f not in ("vocab_size", "block_size"))  # --model.* options
COMPARED = (*ARCH_FIELDS, "norm_eps")


def defaults(cls) -> dict:
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


def save_tokenizer(tokenizer_json: str, cache_dir: Path) -> Path:
    """The tokenizer as a file named by its content (written once, never overwritten)."""
    digest = hashlib.sha256(tokenizer_json.encode()).hexdigest()[:16]
    path = cache_dir / "init_from" / f"tokenizer-{digest}.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(tokenizer_json)
        tmp.replace(path)  # same content whoever wins a race
    return path


def apply_init_from(config, model_cls, data_cls) -> None:
    """Fill the parsed CLI config (the subcommand's namespace) from --model.init_from's source wherever
    an option is at model_cls's / data_cls's default."""
    init_from = config.model.get("init_from") if config.get("model") is not None else None
    if not init_from:
        return
    if config.get("ckpt_path"):
        # a resumed or evaluated checkpoint's weights replace the source's, so the source is not loaded,
        # and a checkpoint file (a fine-tuned one carries the source's tokenizer) stands in for it here
        config.model.init_from = None
        if Path(config.ckpt_path).is_file():
            init_from = config.ckpt_path
    source = read_source(init_from, weights=False)
    model_defaults, data_defaults = defaults(model_cls), defaults(data_cls)
    for name in SHAPE_ARGS:
        if config.model[name] == model_defaults[name]:
            config.model[name] = getattr(source.config, name)
    if config.data.block_size == data_defaults["block_size"]:
        config.data.block_size = source.config.block_size
        config.model.block_size = source.config.block_size  # the parse-time link has already run
    if config.data.tokenizer == data_defaults["tokenizer"]:
        if source.tokenizer_json is None:
            raise LitLLMError(f"--model.init_from {init_from} carries no tokenizer; give the one it was trained "
                              "with as --data.tokenizer PATH")
        if Tokenizer.from_str(source.tokenizer_json).token_to_id(EOS) is None:
            raise LitLLMError(f"--model.init_from {init_from}: its tokenizer has no {EOS} token, which lit_llm puts "
                              "between documents (adding it would grow the vocabulary past the model's)")
        cache = Path(config.data.cache_dir).expanduser() if config.data.cache_dir else default_cache_dir()
        config.data.tokenizer = str(save_tokenizer(source.tokenizer_json, cache))


def same_tokenizer(a: str, b: str) -> bool:
    return Tokenizer.from_str(a).to_str() == Tokenizer.from_str(b).to_str()


HINTS = {"vocab_size": "fine-tuning tokenizes with the source's tokenizer: leave --data.tokenizer unset",
         "block_size": "--data.block_size may be at most the source's"}


def load_init_weights(module) -> None:
    """Copy the source's weights into module.model after checking config and tokenizer match."""
    path = module.hparams.init_from
    source = read_source(path)
    ours, theirs = module.config, source.config
    names = [n for n in COMPARED if n != "rope_theta" or "rope" in (ours.pos, theirs.pos)]
    # a shorter context than the source's is fine (nanoGPT's crop_block_size): the first positions are kept
    differ = [n for n in names if getattr(ours, n) != getattr(theirs, n)
              and not (n == "block_size" and ours.block_size < theirs.block_size)]
    if differ:
        what = ", ".join(f"{n} {getattr(ours, n)} here vs {getattr(theirs, n)} in the source" for n in differ)
        hints = [HINTS.get(n, f"leave --model.{n} unset") for n in differ if n != "norm_eps"]
        raise LitLLMError(f"--model.init_from {path} does not fit this run: {what}"
                          + (f" ({'; '.join(dict.fromkeys(hints))})" if hints else ""))
    if module.tokenizer_json and source.tokenizer_json and not same_tokenizer(module.tokenizer_json,
                                                                              source.tokenizer_json):
        raise LitLLMError(f"--model.init_from {path}: the data's tokenizer has the source's size but other tokens; "
                          f"{HINTS['vocab_size']}")
    if any(p.is_meta for p in module.model.parameters()):
        raise LitLLMError("--model.init_from does not support meta-device initialisation (FSDP); fine-tune with "
                          "a single device or DDP")
    state = dict(source.state_dict)
    if "wpe.weight" in state:
        state["wpe.weight"] = state["wpe.weight"][: ours.block_size]  # crop learned positions to our context
    try:
        module.model.load_state_dict(state)
    except RuntimeError as err:
        detail = (str(err).strip().splitlines()[1:2] or [str(err)])[0].strip()
        raise LitLLMError(f"--model.init_from {path}: its weights do not fit its config: {detail}") from None
    if not module.tokenizer_json:
        module.tokenizer_json = source.tokenizer_json
