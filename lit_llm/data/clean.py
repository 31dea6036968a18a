"""Document cleaning: each step switchable, each counted (the counts go into meta.json)."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

# C0/C1 control characters except tab, newline and carriage return
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
C1 = re.compile(r"[\x80-\x9f]")
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


CHANGE_KINDS = {  # the counters of changes to kept text, as the prepare summary names them
    "nfc_changed_documents": "documents NFC-normalised", "nul_removed": "NUL characters removed",
    "c1_controls_removed": "C1 control characters (U+0080-U+009F) removed",
    "other_controls_removed": "other control characters removed", "crlf_to_lf": "CRLF -> LF",
    "cr_to_lf": "CR -> LF", "trailing_spaces_removed": "trailing spaces/tabs removed",
    "blank_lines_folded": "newlines of 4+ blank lines folded", "invalid_utf8_replaced": "invalid UTF-8 bytes replaced",
}


def describe_changes(counts: dict) -> str:
    """One line naming every change cleaning made, with its count ("no changes" when none)."""
    changes = [f"{label} {counts[k]:,}" for k, label in CHANGE_KINDS.items() if counts.get(k)]
    return ", ".join(changes) or "no changes"


def clean_text(text: str, cfg: CleanConfig, counts: Counter) -> str | None:
    """The cleaned document, or None when a length filter drops it; counts what each step changed."""
    if cfg.nfc and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
        counts["nfc_changed_documents"] += 1
    if cfg.strip_control:
        nul, c1 = text.count("\x00"), len(C1.findall(text))
        text, n = CONTROL.subn("", text)
        counts["control_chars_removed"] += n  # by kind:
        counts["nul_removed"] += nul
        counts["c1_controls_removed"] += c1
        counts["other_controls_removed"] += n - nul - c1
    if cfg.normalize_whitespace:
        before = len(text)
        crlf = text.count("\r\n")
        text = text.replace("\r\n", "\n")
        counts["crlf_to_lf"] += crlf
        counts["cr_to_lf"] += text.count("\r")
        text = text.replace("\r", "\n")
        n = len(text)
        text = TRAILING_SPACE.sub("", text)
        counts["trailing_spaces_removed"] += n - len(text)
        n = len(text)
        text = BLANK_RUNS.sub("\n\n\n", text)
        counts["blank_lines_folded"] += n - len(text)
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
