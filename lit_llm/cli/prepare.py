"""Tokenize a corpus into shards (clean, dedup, train or load a tokenizer) and print what was built."""

from __future__ import annotations

import shlex
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser

from lit_llm.data.datamodule import TextDataModule
from lit_llm.data.prepare import prepare
from lit_llm.data.report import print_summary


def main(args: list[str]) -> None:
    """lit-llm prepare --data.corpus ... [--out DIR]: build (or find) the prepared data and report it."""
    parser = ArgumentParser(prog="lit-llm prepare", description="Tokenize a corpus into shards.")
    parser.add_argument("-c", "--config", action=ActionConfigFile)
    parser.add_class_arguments(TextDataModule, "data")
    parser.add_argument("--out", type=str | None, default=None, help="output directory (default: the cache)")
    cfg = parser.instantiate_classes(parser.parse_args(args))
    dm: TextDataModule = cfg.data
    prepared = prepare(dm.prepare_config, dm.cache_dir, Path(cfg.out) if cfg.out else None, log=lambda *_: None)
    print_summary(prepared.path, prepared.meta, print)
    print(f"use it with: --data.corpus {shlex.quote(str(prepared.path))}")
