"""Document-level deduplication: exact (content hash) and near (MinHash + LSH from `datasketch`)."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass

from lit_llm.errors import LitLLMError

WORD = re.compile(r"\w+|[^\w\s]")


@dataclass
class DedupConfig:
    exact: bool = True
    """Drop documents whose cleaned text repeats an earlier one exactly."""
    near: bool = False
    """Drop near-duplicates: estimated Jaccard similarity of word 5-gram shingles >= near_threshold."""
    near_threshold: float = 0.8
    num_perm: int = 128
    shingle_words: int = 5


def shingles(text: str, k: int) -> set[bytes]:
    words = WORD.findall(text.lower())
    if len(words) <= k:
        return {" ".join(words).encode()}
    return {" ".join(words[i : i + k]).encode() for i in range(len(words) - k + 1)}


class Deduplicator:
    """Feed documents in order; `is_duplicate` says whether to drop one, and remembers the kept ones."""

    def __init__(self, cfg: DedupConfig, counts: Counter, max_examples: int = 5) -> None:
        self.cfg, self.counts = cfg, counts
        self.seen: set[bytes] = set()
        self.examples: list[dict] = []
        self.max_examples = max_examples
        self.lsh = None
        if cfg.near:
            try:
                from datasketch import MinHash, MinHashLSH
            except ImportError:
                raise LitLLMError("near-duplicate removal needs datasketch: pip install datasketch") from None
            self._minhash = MinHash
            self.lsh = MinHashLSH(threshold=cfg.near_threshold, num_perm=cfg.num_perm)
        self.n = 0

    def is_duplicate(self, name: str, text: str) -> bool:
        self.n += 1
        if self.cfg.exact:
            digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
            if digest in self.seen:
                self.counts["exact_duplicates"] += 1
                self._example("exact", name, None)
                return True
            self.seen.add(digest)
        if self.lsh is not None:
            m = self._minhash(num_perm=self.cfg.num_perm)
            m.update_batch(shingles(text, self.cfg.shingle_words))
            hits = self.lsh.query(m)
            if hits:
                self.counts["near_duplicates"] += 1
                self._example("near", name, hits[0])
                return True
            self.lsh.insert(name + f"#{self.n}", m)
        return False

    def _example(self, kind: str, name: str, of: str | None) -> None:
        if len(self.examples) < self.max_examples:
            self.examples.append({"kind": kind, "document": name, "duplicate_of": of})
