"""The one place a network is built from a `GPTConfig`: its `arch` picks the Transformer (gpt.py) or a
recurrent LM (recurrent.py); both have the same interface (forward, hidden_states, num_params,
flops_per_token, generate)."""

from __future__ import annotations

from lit_llm.model.gpt import GPT, GPTConfig
from lit_llm.model.recurrent import RecurrentLM

LanguageNetwork = GPT | RecurrentLM


def build_model(config: GPTConfig) -> LanguageNetwork:
    return GPT(config) if config.arch == "transformer" else RecurrentLM(config)
