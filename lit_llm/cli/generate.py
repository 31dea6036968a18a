"""Sample text from a checkpoint (the checkpoint alone rebuilds the model and its tokenizer)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Literal

from jsonargparse import ArgumentParser
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from lit_llm.checkpoints import load_model
from lit_llm.errors import LitLLMError
from lit_llm.model.generation import SamplingSettings, generate_text
from lit_llm.model.quantize import quantize_int8


MAX_NEW_TOKENS = 100_000  # a bound that no sampling run of ours needs; past it, a typo is likelier
PROGRESS_TOKENS = 500  # longer outputs show a progress bar on stderr (a terminal only)


@contextmanager
def token_progress(total: int, stream=None):
    """A progress bar of new tokens on stderr when it is a terminal and the output is long; yields the
    on_token callback (None: no bar)."""
    stream = stream or sys.stderr
    if total < PROGRESS_TOKENS or not stream.isatty():
        yield None
        return
    with Progress(TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(file=stream), transient=True) as bar:
        task = bar.add_task("generate", total=total)
        yield lambda n: bar.update(task, completed=n)


def main(args: list[str]) -> None:
    """lit-llm generate --checkpoint CKPT --prompt TEXT [...]"""
    parser = ArgumentParser(prog="lit-llm generate", description="Sample text from a checkpoint.")
    parser.add_argument("--checkpoint", type=str, required=True, help="a lit_llm .ckpt file")
    parser.add_argument("--prompt", type=str, default="\n", help="text to continue")
    parser.add_argument("--max_new_tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    parser.add_argument("--top_k", type=int | None, default=200)
    parser.add_argument("--top_p", type=float | None, default=None)
    parser.add_argument("--num_samples", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--device", type=str, default="cpu")
    parser.add_argument("--quantize", type=Literal["none", "int8"], default="none",
                        help="int8: dynamic int8 quantization of the Linear layers (CPU)")
    cfg = parser.parse_args(args)
    if cfg.max_new_tokens < 0 or cfg.num_samples < 1:
        raise LitLLMError("--max_new_tokens must be >= 0 and --num_samples >= 1")
    if cfg.max_new_tokens > MAX_NEW_TOKENS:
        raise LitLLMError(f"--max_new_tokens {cfg.max_new_tokens} is more than {MAX_NEW_TOKENS:,}; generate in parts")
    if cfg.temperature < 0:
        raise LitLLMError(f"--temperature must be >= 0 (0 = greedy), got {cfg.temperature}")
    if cfg.top_k is not None and cfg.top_k < 1 or cfg.top_p is not None and not 0 < cfg.top_p <= 1:
        raise LitLLMError("--top_k must be >= 1 and --top_p in (0, 1]")
    model, tokenizer = load_model(cfg.checkpoint)
    model.to(cfg.device)
    if cfg.quantize == "int8":
        if cfg.device != "cpu":
            raise LitLLMError("--quantize int8 runs on the CPU: drop --device")
        model = quantize_int8(model)
    settings = SamplingSettings(cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p, cfg.seed)
    with token_progress(cfg.max_new_tokens) as on_token:
        texts = generate_text(model, tokenizer, cfg.prompt, settings, cfg.num_samples, on_token)
    for i, text in enumerate(texts):
        if len(texts) > 1:
            print(f"--- sample {i + 1}")
        print(text)
