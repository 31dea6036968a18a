"""Document cleaning: each step switchable, each counted (the counts go into meta.json)."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

# C0/C1 control characters except tab, newline and carriage return
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
TRAILING_SPACE = re.compile(r"[ \t]+(?=\n)")
BLANK_RUNS = re.compile(r"\n{4,}")


@dataclass
class CleanConfig:
    nfc: bool = True
    """Unicode NFC normalisation (composed accents; visually identical text gets identical tokens)."""
    strip_control: bool = True
    """Remove control characters other than tab and newlines."""
    normalize_whitespace: bool = True
    """CRLF/CR -> LF, trailing spaces removed, 4+ blank lines folded to 3; indentation is kept."""
    min_chars: int = 1
    """Drop documents shorter than this after cleaning."""
    max_chars: int = 0
    """Drop documents longer than this (0: no limit)."""


def clean_text(text: str, cfg: CleanConfig, counts: Counter) -> str | None:
    """The cleaned document, or None when a length filter drops it; counts what each step changed."""
    if cfg.nfc and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
        counts["nfc_changed_documents"] += 1
    if cfg.strip_control:
        text, n = CONTROL.subn("", text)
        counts["control_chars_removed"] += n
    if cfg.normalize_whitespace:
        before = len(text)
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        text = TRAILING_SPACE.sub("", text)
        text = BLANK_RUNS.sub("\n\n\n", text)
        counts["whitespace_chars_removed"] += before - len(text)
    if not text.strip():
        counts["dropped_empty"] += 1
        return None
    if len(text) < cfg.min_chars:
        counts["dropped_too_short"] += 1
        return None
    if cfg.max_chars and len(text) > cfg.max_chars:
        counts["dropped_too_long"] += 1
        return None
    return text
