"""corpus -> documents -> tokenizer -> token shards (train/val/test .bin) + tokenizer.json + meta.json.

A prepared directory is keyed by (corpus checksum, tokenizer spec, vocab size, split settings) and is
built in a temporary directory that is renamed into place, so a killed prepare never leaves a
directory that a later run trusts, and a second run with the same inputs reuses it.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock
from tokenizers import Tokenizer

from lit_llm.data.corpus import Document, corpus_checksum, load_documents
from lit_llm.data.tokenizer import build_tokenizer, eos_id, tokenizer_spec_key
from lit_llm.errors import LitLLMError

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
ENCODE_CHUNK_CHARS = 8_000_000  # documents are encoded (in parallel) this many characters at a time


@dataclass
class PrepareConfig:
    corpus: str = "python-stdlib"
    tokenizer: str = "bpe"
    vocab_size: int = 4096
    val_fraction: float = 0.1
    test_fraction: float = 0.0
    split_seed: int = 1337


@dataclass
class PreparedData:
    """A prepared directory and its meta.json."""

    path: Path
    meta: dict

    @classmethod
    def load(cls, path: str | Path) -> PreparedData:
        path = Path(path)
        try:
            meta = json.loads((path / "meta.json").read_text())
        except (OSError, ValueError) as err:
            raise LitLLMError(f"{path} is not a prepared data directory (meta.json unreadable: {err})") from None
        if meta.get("format") != FORMAT_VERSION:
            raise LitLLMError(f"{path} was prepared by another lit_llm version; prepare it again")
        return cls(path, meta)

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    def tokenizer(self) -> Tokenizer:
        return Tokenizer.from_file(str(self.path / "tokenizer.json"))

    def tokens(self, split: str) -> np.ndarray:
        info = self.meta["splits"].get(split)
        if not info or info["tokens"] == 0:
            return np.zeros(0, dtype=self.meta["dtype"])
        return np.memmap(self.path / info["file"], dtype=self.meta["dtype"], mode="r")


def is_prepared_dir(path: str | Path) -> bool:
    return (Path(path) / "meta.json").is_file() and (Path(path) / "tokenizer.json").is_file()


def split_documents(docs: list[Document], cfg: PrepareConfig) -> dict[str, list[Document]]:
    """One document: a contiguous split (train | val | test), as nanoGPT splits Tiny Shakespeare.
    Several: whole documents held out, drawn by a seeded shuffle, so no document straddles splits."""
    if not 0 <= cfg.val_fraction < 1 or not 0 <= cfg.test_fraction < 1 or cfg.val_fraction + cfg.test_fraction >= 1:
        raise LitLLMError("--data.val_fraction and --data.test_fraction must be in [0, 1) and sum below 1")
    if len(docs) == 1:
        text, name = docs[0].text, docs[0].name
        n = len(text)
        a = int(n * (1 - cfg.val_fraction - cfg.test_fraction))
        b = int(n * (1 - cfg.test_fraction))
        parts = {"train": text[:a], "val": text[a:b], "test": text[b:]}
        return {s: [Document(name, t)] if t else [] for s, t in parts.items()}
    total = sum(len(d.text) for d in docs)
    order = list(range(len(docs)))
    random.Random(cfg.split_seed).shuffle(order)
    held: dict[str, set[int]] = {"val": set(), "test": set()}
    it = iter(order)
    for split, fraction in (("test", cfg.test_fraction), ("val", cfg.val_fraction)):
        size = 0
        while fraction > 0 and (size < fraction * total or not held[split]):
            i = next(it, None)
            if i is None:
                break
            held[split].add(i)
            size += len(docs[i].text)
    out = {s: [d for i, d in enumerate(docs) if i in held[s]] for s in ("val", "test")}
    out["train"] = [d for i, d in enumerate(docs) if i not in held["val"] | held["test"]]
    if not out["train"]:
        raise LitLLMError(f"corpus has {len(docs)} documents: too few to hold out val/test and still train")
    return out


def _write_split(tok: Tokenizer, docs: list[Document], path: Path, dtype: np.dtype, eos: int) -> int:
    """Encode documents in chunks (encode_batch runs on all cores), EOS after each; return the token count."""
    count = 0
    with open(path, "wb") as f:
        i = 0
        while i < len(docs):
            chunk, size = [], 0
            while i < len(docs) and (not chunk or size < ENCODE_CHUNK_CHARS):
                chunk.append(docs[i].text)
                size += len(docs[i].text)
                i += 1
            for enc in tok.encode_batch(chunk, add_special_tokens=False):
                ids = np.asarray(enc.ids + [eos], dtype=dtype)
                f.write(ids.tobytes())
                count += len(ids)
    return count


def cache_key(cfg: PrepareConfig, checksum: str) -> str:
    parts = [
        f"v{FORMAT_VERSION}",
        checksum,
        tokenizer_spec_key(cfg.tokenizer),
        str(cfg.vocab_size) if cfg.tokenizer == "bpe" else "-",
        f"{cfg.val_fraction}:{cfg.test_fraction}:{cfg.split_seed}",
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def prepare(cfg: PrepareConfig, cache_dir: Path, out: Path | None = None, log=print) -> PreparedData:
    """Build (or reuse) the prepared directory for cfg; out overrides the cache location."""
    if is_prepared_dir(cfg.corpus):
        return PreparedData.load(cfg.corpus)
    docs = load_documents(cfg.corpus, cache_dir)
    checksum = corpus_checksum(docs)
    key = cache_key(cfg, checksum)
    if out is None:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(cfg.corpus).stem or cfg.corpus)[:40]
        tok_slug = cfg.tokenizer if cfg.tokenizer in ("char", "bpe", "gpt2") else "file"
        out = cache_dir / "prepared" / f"{slug}-{tok_slug}-{key[:12]}"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):  # other ranks / processes wait, then reuse
        if out.exists():
            if is_prepared_dir(out) and PreparedData.load(out).meta.get("key") == key:
                return PreparedData.load(out)
            raise LitLLMError(f"{out} exists and holds something else; choose another --out or remove it")
        start = time.perf_counter()
        splits = split_documents(docs, cfg)
        # chars come from every split (as nanoGPT does) so nothing maps to <unk>; BPE learns from train only
        sample = docs if cfg.tokenizer == "char" else splits["train"]
        tok = build_tokenizer(cfg.tokenizer, cfg.vocab_size, (d.text for d in sample))
        eos = eos_id(tok)
        vocab_size = tok.get_vocab_size()
        dtype = np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            split_meta = {}
            for split in SPLITS:
                file = f"{split}.bin"
                n = _write_split(tok, splits[split], tmp / file, dtype, eos)
                split_meta[split] = {
                    "file": file,
                    "tokens": n,
                    "documents": len(splits[split]),
                    "chars": sum(len(d.text) for d in splits[split]),
                    "sha256": hashlib.sha256((tmp / file).read_bytes()).hexdigest(),
                }
            tok.save(str(tmp / "tokenizer.json"))
            meta = {
                "format": FORMAT_VERSION,
                "key": key,
                "vocab_size": vocab_size,
                "dtype": dtype.name,
                "eos_id": eos,
                "tokenizer": {"spec": cfg.tokenizer, "vocab_size_requested": cfg.vocab_size},
                "source": {
                    "corpus": cfg.corpus,
                    "checksum": checksum,
                    "documents": len(docs),
                    "bytes": sum(len(d.text.encode("utf-8")) for d in docs),
                },
                "split": {"val_fraction": cfg.val_fraction, "test_fraction": cfg.test_fraction, "seed": cfg.split_seed},
                "splits": split_meta,
                "seconds": round(time.perf_counter() - start, 3),
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
            tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        counts = ", ".join(f"{s} {m['tokens']:,}" for s, m in split_meta.items() if m["tokens"])
        log(f"prepared {out} in {meta['seconds']:.1f}s: vocab {vocab_size}, tokens {counts}")
        return PreparedData.load(out)
