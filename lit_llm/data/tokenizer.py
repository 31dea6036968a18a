"""Tokenizers, all as HF `tokenizers.Tokenizer` so every one saves to and loads from tokenizer.json.

Specs: "char" (one id per character seen in the corpus), "bpe" (byte-level BPE trained on the corpus
to --data.vocab_size), "gpt2" (GPT-2's vocab.json + merges.txt), or a path to a tokenizer.json.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from lit_llm.data.corpus import default_cache_dir
from lit_llm.errors import LitLLMError

EOS = "<|endoftext|>"
PAD = "<pad>"
MASK = "<mask>"  # for the masked-LM objective
UNK = "<unk>"


def char_tokenizer(texts: Iterable[str]) -> Tokenizer:
    chars = sorted(set().union(*(set(t) for t in texts)))
    vocab = {c: i for i, c in enumerate(chars)}
    for special in (EOS, PAD, MASK, UNK):
        vocab[special] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([EOS, PAD, MASK, UNK])
    return tok


def bpe_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    specials = [EOS, PAD, MASK]
    if vocab_size < len(alphabet) + len(specials):
        raise LitLLMError(
            f"--data.vocab_size {vocab_size} is too small for byte-level BPE: it needs at least "
            f"{len(alphabet) + len(specials)} (256 bytes + {', '.join(specials)})"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def gpt2_dir() -> Path | None:
    """Where GPT-2's vocab.json and merges.txt are: $LIT_LLM_GPT2_DIR, else the lit_llm cache."""

    for candidate in (os.environ.get("LIT_LLM_GPT2_DIR"), default_cache_dir() / "gpt2"):
        if candidate and (Path(candidate) / "vocab.json").exists() and (Path(candidate) / "merges.txt").exists():
            return Path(candidate)
    return None


def gpt2_tokenizer(directory: Path | None = None) -> Tokenizer:
    directory = directory or gpt2_dir()
    if directory is None:
        try:
            return Tokenizer.from_pretrained("gpt2")
        except Exception as err:  # the hub client raises many types
            raise LitLLMError(
                f"GPT-2 tokenizer files not found and not downloadable ({err.__class__.__name__}); "
                "set LIT_LLM_GPT2_DIR to a directory holding vocab.json and merges.txt"
            ) from None
    tok = Tokenizer(models.BPE.from_file(str(directory / "vocab.json"), str(directory / "merges.txt")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOS])
    return tok


def load_tokenizer_file(path: str | Path) -> Tokenizer:
    try:
        return Tokenizer.from_file(str(path))
    except Exception as err:
        raise LitLLMError(f"cannot load tokenizer {path}: {err}") from None


def build_tokenizer(spec: str, vocab_size: int, texts: Iterable[str]) -> Tokenizer:
    """Train or load the tokenizer a spec names; texts are only read for "char" and "bpe"."""
    if spec == "char":
        return char_tokenizer(texts)
    if spec == "bpe":
        return bpe_tokenizer(texts, vocab_size)
    if spec == "gpt2":
        return gpt2_tokenizer()
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "vocab.json").exists() and (path / "merges.txt").exists():
        return gpt2_tokenizer(path)
    if path.is_file():
        return load_tokenizer_file(path)
    raise LitLLMError(
        f"unknown tokenizer {spec!r}: use char, bpe, gpt2, a tokenizer.json path, "
        "or a directory with vocab.json and merges.txt"
    )


def eos_id(tok: Tokenizer) -> int:
    token_id = tok.token_to_id(EOS)
    if token_id is None:  # a foreign tokenizer.json without our EOS: add it
        tok.add_special_tokens([EOS])
        token_id = tok.token_to_id(EOS)
    return token_id


def tokenizer_spec_key(spec: str) -> str:
    """What identifies a tokenizer spec in the cache key: file contents for paths, else the name."""
    path = Path(spec).expanduser()
    if path.is_file():

        return "file:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return spec
