"""Train/val/test splits: whole documents by a seeded hash, or by position (a single document, or
`--data.split_by position`), cut at a line boundary; and the check of the token shares they give."""

from __future__ import annotations

import re

import numpy as np

from lit_llm.errors import LitLLMError

SPLITS = ("train", "val", "test")
# a newline between two non-space characters: byte-level BPE (GPT-2's pre-tokenizer) encodes the text on
# either side of it exactly as the pieces of the whole, so a cut there changes no token
CLEAN_BREAK = re.compile(r"(?<=\S)\n(?=\S)")
SEARCH_CHARS = 1_000_000  # how far from the asked position a line boundary is looked for


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise LitLLMError("--data.val_fraction and --data.test_fraction must be in [0, 1) and sum below 1")


def assign_splits(keys: list[float], val_fraction: float, test_fraction: float) -> np.ndarray:
    """0/1/2 = train/val/test per document: the lowest seeded hashes are test, the next val, so the
    counts are exact, reproducible and independent of document order."""
    check_fractions(val_fraction, test_fraction)
    n = len(keys)
    n_test = max(1, round(test_fraction * n)) if test_fraction else 0
    n_val = max(1, round(val_fraction * n)) if val_fraction else 0
    if n_test + n_val >= n:
        raise LitLLMError(f"the corpus has {n} documents: too few to hold out val/test and still train "
                          "(--data.split_by position splits by position instead)")
    order = np.argsort(np.asarray(keys), kind="stable")
    splits = np.zeros(n, dtype=np.uint8)
    splits[order[:n_test]] = 2
    splits[order[n_test : n_test + n_val]] = 1
    return splits


def line_boundary(text: str, pos: int) -> int:
    """The cut nearest to pos just after a newline between two non-space characters (else after any
    newline, else pos itself): no line or word is cut in two."""
    if pos <= 0 or pos >= len(text):
        return pos
    lo, hi = max(0, pos - SEARCH_CHARS), min(len(text), pos + SEARCH_CHARS)
    for pattern in (CLEAN_BREAK, re.compile(r"\n")):
        cuts = [m.end() for m in pattern.finditer(text, lo, hi) if 0 < m.end() < len(text)]
        if cuts:
            return min(cuts, key=lambda c: (abs(c - pos), c))
    return pos


def position_cuts(total: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Character offsets where train ends and val ends, over a corpus of `total` characters."""
    check_fractions(val_fraction, test_fraction)
    return int(total * (1 - val_fraction - test_fraction)), int(total * (1 - test_fraction))


def split_by_position(text: str, start: int, cuts: tuple[int, int]):
    """Yield (split index, piece) of one document that begins at corpus offset `start`, cut at the corpus
    offsets `cuts` (each moved to a line boundary of the document it falls in)."""
    end = start + len(text)
    bounds = [0]
    for cut in cuts:
        local = line_boundary(text, cut - start) if start < cut < end else min(max(cut - start, 0), len(text))
        bounds.append(max(local, bounds[-1]))
    bounds.append(len(text))
    for j in range(3):
        if bounds[j + 1] > bounds[j]:
            yield j, text[bounds[j] : bounds[j + 1]]


def share_warnings(split_meta: dict, val_fraction: float, test_fraction: float, by: str) -> list[str]:
    """A warning per split whose share of the tokens misses the asked fraction by more than 2x."""
    total = sum(m["tokens"] for m in split_meta.values())
    warnings = []
    for split, asked in (("val", val_fraction), ("test", test_fraction)):
        share = split_meta[split]["tokens"] / total if total else 0.0
        if asked and not asked / 2 <= share <= asked * 2:
            hint = (" (documents are held out whole and differ in size: --data.split_by position splits the "
                    "corpus by position instead)" if by == "document" else "")
            warnings.append(f"the {split} split holds {share:.1%} of the tokens, asked {asked:.1%}{hint}")
    return warnings
