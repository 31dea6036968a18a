"""What prepare tells the user: the summary of a prepared directory, and its warnings (on stderr)."""

from __future__ import annotations

import sys
from pathlib import Path

from lit_llm.data.clean import describe_changes
from lit_llm.data.corpus import SKIP_REASONS


def warn(message: str) -> None:
    print(f"lit-llm: warning: {message}", file=sys.stderr, flush=True)


def print_summary(path: Path, meta: dict, log) -> None:
    c, d = meta["cleaning"], meta["dedup"]
    log(f"prepared {path} (built in {meta['seconds']['total']:.1f}s)")
    log(f"  documents {c.get('documents_in', 0):,} in, {c.get('documents_kept', 0):,} kept "
        f"(exact duplicates {d['exact_duplicates']:,}, near duplicates {d['near_duplicates']:,}, "
        f"dropped by filters {sum(v for k, v in c.items() if k.startswith('dropped')):,})")
    log(f"  cleaning: {describe_changes(c)}")
    skipped = meta.get("skipped_files") or {}
    if skipped:
        reasons = [(k.removeprefix("skipped_files_"), label) for k, label in SKIP_REASONS.items()]
        log(f"  skipped files: {', '.join(f'{label} {skipped[k]:,}' for k, label in reasons if k in skipped)}")
    log(f"  vocab {meta['vocab_size']:,} ({meta['dtype']}), {meta['bytes_per_token']} bytes/token")
    for split, info in meta["splits"].items():
        if info["tokens"]:
            log(f"  {split:5s} {info['tokens']:>13,} tokens {info['documents']:>9,} documents "
                f"{len(info['shards'])} shard(s)")
    log(f"  split by {meta['split']['by']}")
    for line in meta.get("warnings", []):
        log(f"  warning: {line}")
