"""Text in, text out around `GPT.generate` (and `RecurrentLM.generate`): prompt encoding with clear errors,
special tokens that are never sampled, and the sampling settings shared by `lit-llm generate`, `predict` and
validation samples."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tokenizers import Tokenizer

from lit_llm.data.tokenizer import EOS, MASK, PAD, UNK
from lit_llm.errors import LitLLMError
from lit_llm.model.build import LanguageNetwork


@dataclass
class SamplingSettings:
    max_new_tokens: int = 64
    """Tokens generated per prompt."""
    temperature: float = 0.8
    """Sampling temperature (0 = greedy)."""
    top_k: int | None = 200
    """Sample among the k most likely tokens (None = all)."""
    top_p: float | None = None
    """Nucleus sampling: the smallest set of tokens reaching this probability (None = off)."""
    seed: int = 1337
    """Seed of the sampling generator (never the global RNG, so training is unaffected)."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 0:
            raise LitLLMError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")


def encode_prompt(tokenizer: Tokenizer, prompt: str) -> list[int]:
    if not prompt:
        raise LitLLMError(f"the prompt is empty; give some text (or {EOS!r} for unconditional samples)")
    enc = tokenizer.encode(prompt)
    unk = tokenizer.token_to_id(UNK)
    if unk is not None and unk in enc.ids:
        missing = sorted({prompt[s:e] for i, (s, e) in zip(enc.ids, enc.offsets) if i == unk})
        raise LitLLMError(f"the prompt has characters the tokenizer does not know: {''.join(missing)!r}")
    return enc.ids


def generate_text(
    model: LanguageNetwork,
    tokenizer: Tokenizer,
    prompt: str,
    settings: SamplingSettings = SamplingSettings(),
    num_samples: int = 1,
    on_token: Callable[[int], None] | None = None,
) -> list[str]:
    """num_samples completions of prompt (the prompt included), decoded; on_token(n) after each new token."""
    if not model.config.causal:
        raise LitLLMError("this checkpoint is a masked LM (bidirectional attention): it cannot generate text")
    device = next(model.parameters()).device
    ids = torch.tensor([encode_prompt(tokenizer, prompt)] * num_samples, device=device)
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    was_training = model.training
    model.eval()
    never = [i for i in map(tokenizer.token_to_id, (PAD, MASK, UNK)) if i is not None]
    out = model.generate(ids, settings.max_new_tokens, settings.temperature, settings.top_k, settings.top_p,
                         generator=generator, suppress_ids=never, on_token=on_token)
    model.train(was_training)
    return [tokenizer.decode(row.tolist(), skip_special_tokens=False) for row in out]
