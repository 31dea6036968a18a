"""corpus -> clean -> dedup -> split -> tokenizer -> token shards + tokenizer.json + meta.json.

Two passes, memory bounded whatever the corpus size:
1. scan: stream every source, clean, deduplicate, and spill the kept documents to a temporary file
   (length-prefixed UTF-8), keeping only a hash per document in memory;
2. write: assign splits, train or load the tokenizer (BPE on a bounded sample), then stream the spill
   file through `encode_batch` (all cores) in chunks into shards of at most `shard_tokens` tokens.
The result is built in a temporary directory and renamed into place, so an interrupted prepare leaves
nothing that a later run trusts; the same inputs (cache key) reuse the finished directory.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from filelock import FileLock
from tokenizers import Tokenizer

from lit_llm.data.clean import CleanConfig, clean_text
from lit_llm.data.corpus import iter_source, source_fingerprint
from lit_llm.data.dedup import DedupConfig, Deduplicator
from lit_llm.data.progress import Progress
from lit_llm.data.report import print_summary, warn
from lit_llm.data.split import SPLITS, assign_splits, position_cuts, share_warnings, split_by_position
from lit_llm.data.tokenizer import build_tokenizer, eos_id, tokenizer_spec_key
from lit_llm.errors import LitLLMError
from lit_llm.umask import follow_umask

FORMAT_VERSION = 2
ENCODE_CHUNK_CHARS = 4_000_000  # characters encoded per encode_batch call
BPE_SAMPLE_CHARS = 50_000_000  # BPE learns from at most this much training text
HEADER = struct.Struct("<IH")  # spill record: byte length, source index


@dataclass
class PrepareConfig:
    corpus: list[str] | str = "python-stdlib"
    tokenizer: str = "bpe"
    vocab_size: int = 4096
    val_fraction: float = 0.1
    test_fraction: float = 0.0
    split_seed: int = 1337
    text_field: str = "text"
    clean: CleanConfig = field(default_factory=CleanConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    shard_tokens: int = 2**28
    split_by: Literal["document", "position"] = "document"

    def __post_init__(self) -> None:
        self.corpus = [self.corpus] if isinstance(self.corpus, str) else list(self.corpus)
        if not self.corpus:
            raise LitLLMError("--data.corpus is empty")


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

    def shards(self, split: str) -> list[np.ndarray]:
        info = self.meta["splits"].get(split, {})
        return [np.memmap(self.path / s["file"], dtype=self.meta["dtype"], mode="r")
                for s in info.get("shards", []) if s["tokens"]]

    def tokens(self, split: str) -> np.ndarray:
        """The split as one array: a memmap when it is one shard, else a concatenated copy."""
        shards = self.shards(split)
        if not shards:
            return np.zeros(0, dtype=self.meta["dtype"])
        return shards[0] if len(shards) == 1 else np.concatenate(shards)


def is_prepared_dir(path: str | Path) -> bool:
    return (Path(path) / "meta.json").is_file() and (Path(path) / "tokenizer.json").is_file()


def cache_key(cfg: PrepareConfig, cache_dir: Path) -> str:
    parts = {
        "format": FORMAT_VERSION,
        "sources": [source_fingerprint(c, cache_dir) for c in cfg.corpus],
        "tokenizer": tokenizer_spec_key(cfg.tokenizer),
        "vocab_size": cfg.vocab_size if cfg.tokenizer == "bpe" else None,
        "split": [cfg.val_fraction, cfg.test_fraction, cfg.split_seed, cfg.split_by],
        "layout": 2,  # 2: position splits cut at line boundaries, an EOS only at a document's end
        "text_field": cfg.text_field,
        "clean": asdict(cfg.clean),
        "dedup": asdict(cfg.dedup),
        "shard_tokens": cfg.shard_tokens,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


# --- pass 1: scan ---------------------------------------------------------------------------------
@dataclass
class Scan:
    spill: Path
    split_keys: list[float]  # one per kept document, in order: a seeded hash in [0, 1)
    total_chars: int  # of the kept documents
    chars: set[str]
    sources: list[dict]
    counts: Counter
    examples: list[dict]


def scan(cfg: PrepareConfig, cache_dir: Path, spill: Path, progress) -> Scan:
    counts: Counter = Counter()
    dedup = Deduplicator(cfg.dedup, counts)
    split_keys: list[float] = []
    total_chars = 0
    chars: set[str] = set()
    sources = []
    seed = cfg.split_seed.to_bytes(8, "little", signed=True)
    with open(spill, "wb") as out:
        for s, corpus in enumerate(cfg.corpus):
            checksum, n_docs, n_bytes = hashlib.sha256(), 0, 0
            for doc in iter_source(corpus, cfg.text_field, cache_dir, counts):
                raw = doc.text.encode("utf-8")
                checksum.update(len(raw).to_bytes(8, "little") + raw)
                n_docs, n_bytes = n_docs + 1, n_bytes + len(raw)
                progress(len(raw))
                text = clean_text(doc.text, cfg.clean, counts)
                if text is None or dedup.is_duplicate(doc.name, text):
                    continue
                data = text.encode("utf-8")
                out.write(HEADER.pack(len(data), s))
                out.write(data)
                digest = hashlib.blake2b(data, digest_size=8, key=seed).digest()
                split_keys.append(int.from_bytes(digest, "little") / 2**64)
                total_chars += len(text)
                if cfg.tokenizer == "char":
                    chars.update(text)
            sources.append({"corpus": corpus, "checksum": checksum.hexdigest(), "documents": n_docs,
                            "bytes": n_bytes})
    if not split_keys:
        raise LitLLMError(f"corpus {', '.join(cfg.corpus)} is empty after cleaning: no documents with text")
    counts["documents_in"] = sum(s["documents"] for s in sources)
    counts["documents_kept"] = len(split_keys)
    return Scan(spill, split_keys, total_chars, chars, sources, counts, dedup.examples)


def read_spill(path: Path):
    """Yield (source index, text) for each kept document."""
    with open(path, "rb") as f:
        while header := f.read(HEADER.size):
            n, s = HEADER.unpack(header)
            yield s, f.read(n).decode("utf-8")


# --- pass 2: write --------------------------------------------------------------------------------
class SplitWriter:
    """Encodes documents in chunks (EOS after each document's end) into shards of at most shard_tokens tokens."""

    def __init__(self, split: str, directory: Path, tok: Tokenizer, dtype, eos: int, shard_tokens: int):
        self.split, self.dir, self.tok, self.dtype = split, directory, tok, dtype
        self.eos, self.shard_tokens = eos, shard_tokens
        self.pending: list[tuple[int, str, bool]] = []
        self.pending_chars = 0
        self.shards: list[dict] = []
        self.file = None
        self.tokens = self.documents = self.chars = 0
        self.source_ranges: dict[int, list[int]] = {}  # source -> [first token, end token)

    def add(self, source: int, text: str, eos: bool = True) -> None:
        """Queue a document (or a piece of one: eos False when the document goes on in another split)."""
        self.pending.append((source, text, eos))
        self.pending_chars += len(text)
        if self.pending_chars >= ENCODE_CHUNK_CHARS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        encode = getattr(self.tok, "encode_batch_fast", self.tok.encode_batch)
        encodings = encode([t for _, t, _ in self.pending], add_special_tokens=False)
        for (source, text, eos), enc in zip(self.pending, encodings):
            ids = np.asarray(enc.ids + [self.eos] * eos, dtype=self.dtype)
            start = self.tokens
            self._write(ids)
            span = self.source_ranges.setdefault(source, [start, start])
            span[1] = self.tokens
            self.documents += 1
            self.chars += len(text)
        self.pending, self.pending_chars = [], 0

    def _write(self, ids: np.ndarray) -> None:
        while len(ids):
            if self.file is None or self.shards[-1]["tokens"] >= self.shard_tokens:
                self._open()
            room = self.shard_tokens - self.shards[-1]["tokens"]
            part, ids = ids[:room], ids[room:]
            data = part.tobytes()
            self.file.write(data)
            self.hash.update(data)
            self.shards[-1]["tokens"] += len(part)
            self.tokens += len(part)

    def _open(self) -> None:
        self.close()
        name = f"{self.split}-{len(self.shards):05d}.bin"
        self.file, self.hash = open(self.dir / name, "wb"), hashlib.sha256()
        self.shards.append({"file": name, "tokens": 0})

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.shards[-1]["sha256"] = self.hash.hexdigest()
            self.file = None

    def finish(self, source_names: list[str]) -> dict:
        self.flush()
        self.close()
        return {
            "tokens": self.tokens, "documents": self.documents, "chars": self.chars, "shards": self.shards,
            "sources": [{"corpus": source_names[s], "start": a, "end": b}
                        for s, (a, b) in sorted(self.source_ranges.items())],
        }


def _bounded(texts, max_chars: int):
    seen = 0
    for text in texts:
        yield text[: max_chars - seen]
        seen += len(text)
        if seen >= max_chars:
            return


def prepare(cfg: PrepareConfig, cache_dir: Path, out: Path | None = None, log=print) -> PreparedData:
    """Build (or reuse) the prepared directory for cfg; out overrides the cache location."""
    if len(cfg.corpus) == 1 and is_prepared_dir(cfg.corpus[0]):
        return PreparedData.load(cfg.corpus[0])
    key = cache_key(cfg, cache_dir)
    if out is None:
        first = cfg.corpus[0]
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(first).stem or first)[:40] + ("+" if len(cfg.corpus) > 1 else "")
        tok_slug = cfg.tokenizer if cfg.tokenizer in ("char", "bpe", "gpt2") else "file"
        out = cache_dir / "prepared" / f"{slug}-{tok_slug}-{key[:12]}"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = out.parent / f".{out.name}.lock"  # hidden beside the output: other ranks / processes wait, then reuse
    with FileLock(str(lock)):
        if out.exists():
            if is_prepared_dir(out) and json.loads((out / "meta.json").read_text()).get("key") == key:
                return PreparedData.load(out)
            raise LitLLMError(f"{out} exists and holds something else; choose another --out or remove it")
        for stale in out.parent.glob(f".{out.name}.*"):  # left by a killed build; we hold the lock
            if stale != lock:
                shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            meta = _build(cfg, cache_dir, tmp, key, log)
            follow_umask(tmp)  # mkdtemp's folder is private (0700)
            tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    for line in meta["warnings"]:
        warn(line)
    print_summary(out, meta, log)
    return PreparedData.load(out)


def _build(cfg: PrepareConfig, cache_dir: Path, tmp: Path, key: str, log) -> dict:

    start = time.perf_counter()
    with Progress("scan", log) as bar:
        sc = scan(cfg, cache_dir, tmp / "spill.tmp", bar.advance)
    by = "position" if len(sc.split_keys) == 1 or cfg.split_by == "position" else "document"
    splits = assign_splits(sc.split_keys, cfg.val_fraction, cfg.test_fraction) if by == "document" else None
    cuts = position_cuts(sc.total_chars, cfg.val_fraction, cfg.test_fraction)

    def documents(which: int | None = None):
        """(source, text, split index, ends the document) of kept documents (or their pieces), from the spill."""
        start = 0
        for i, (source, text) in enumerate(read_spill(sc.spill)):
            if by == "position":
                pieces = list(split_by_position(text, start, cuts))
                start += len(text)
                for k, (j, part) in enumerate(pieces):
                    if which is None or which == j:
                        yield source, part, j, k == len(pieces) - 1
            elif which is None or splits[i] == which:
                yield source, text, int(splits[i]), True

    t0 = time.perf_counter()
    if cfg.tokenizer == "char":
        tok = build_tokenizer("char", 0, ["".join(sorted(sc.chars))])
    else:
        tok = build_tokenizer(cfg.tokenizer, cfg.vocab_size,
                              _bounded((t for _, t, _, _ in documents(0)), BPE_SAMPLE_CHARS))
    tokenizer_seconds = time.perf_counter() - t0
    eos = eos_id(tok)
    vocab_size = tok.get_vocab_size()
    dtype = np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)
    writers = [SplitWriter(s, tmp, tok, dtype, eos, cfg.shard_tokens) for s in SPLITS]
    t0 = time.perf_counter()
    with Progress("tokenize", log, total=len(sc.split_keys)) as bar:
        for source, text, split, ends in documents():
            writers[split].add(source, text, ends)
            bar.advance(1)
        split_meta = {s: w.finish(cfg.corpus) for s, w in zip(SPLITS, writers)}
    encode_seconds = time.perf_counter() - t0
    sc.spill.unlink()
    tok.save(str(tmp / "tokenizer.json"))
    total_tokens = sum(m["tokens"] for m in split_meta.values())
    total_bytes = sum(s["bytes"] for s in sc.sources)
    meta = {
        "format": FORMAT_VERSION,
        "key": key,
        "vocab_size": vocab_size,
        "dtype": dtype.name,
        "eos_id": eos,
        "tokenizer": {"spec": cfg.tokenizer, "vocab_size_requested": cfg.vocab_size,
                      "special_tokens": [t for t in ("<|endoftext|>", "<pad>", "<mask>", "<unk>")
                                         if tok.token_to_id(t) is not None]},
        "sources": sc.sources,
        "cleaning": {"config": asdict(cfg.clean), **{k: v for k, v in sc.counts.items()
                                                      if "dup" not in k and not k.startswith("skipped_files")}},
        "skipped_files": {k.removeprefix("skipped_files_"): v for k, v in sc.counts.items()
                          if k.startswith("skipped_files") and v},
        "dedup": {"config": asdict(cfg.dedup), "exact_duplicates": sc.counts["exact_duplicates"],
                  "near_duplicates": sc.counts["near_duplicates"], "examples": sc.examples},
        "split": {"val_fraction": cfg.val_fraction, "test_fraction": cfg.test_fraction, "seed": cfg.split_seed,
                  "by": by},
        "splits": split_meta,
        "warnings": share_warnings(split_meta, cfg.val_fraction, cfg.test_fraction, by),
        "bytes_per_token": round(total_bytes / max(1, total_tokens), 4),
        "seconds": {"total": round(time.perf_counter() - start, 3), "tokenizer": round(tokenizer_seconds, 3),
                    "encode": round(encode_seconds, 3)},
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta
