"""The one place a network is built from a `GPTConfig`: its `arch` picks the Transformer (gpt.py) or a
recurrent LM (recurrent.py); both have the same interface (forward, hidden_states, num_params,
flops_per_token, generate)."""

from __future__ import annotations

import torch

from lit_llm.errors import LitLLMError
from lit_llm.model.gpt import GPT, GPTConfig
from lit_llm.model.recurrent import RecurrentLM

LanguageNetwork = GPT | RecurrentLM


def build_model(config: GPTConfig) -> LanguageNetwork:
    return GPT(config) if config.arch == "transformer" else RecurrentLM(config)


def shapes_only(config: GPTConfig) -> LanguageNetwork:
    """The network on the meta device: no memory, for counting parameters and FLOPs before it is built."""
    with torch.device("meta"):
        return build_model(config)


def params_with_head(net: LanguageNetwork, config: GPTConfig) -> int:
    """Non-embedding parameters plus a tied output head: every weight a token's matmuls use (Porian et al.'s N
    for scaling laws; the head is a large share of a small model's compute). An untied head is counted already."""
    return net.num_params(non_embedding=True) + (config.vocab_size * config.n_embd if config.tie_embeddings else 0)


def width(n_layer: int, n_embd: int, aspect_ratio: int) -> int:
    """The shape rule of scaling studies: aspect_ratio > 0 makes the width aspect_ratio x n_layer, so one
    integer, the depth, sets the size (as nanochat's depth); 0 keeps n_embd."""
    if aspect_ratio < 0:
        raise LitLLMError(f"--model.aspect_ratio must be >= 0 (0: use n_embd), got {aspect_ratio}")
    return aspect_ratio * n_layer or n_embd
