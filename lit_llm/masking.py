"""Masked-LM corruption (BERT, Devlin et al. 2018) and its evaluation.

Each valid position is selected with probability mask_prob (15%); a selected token becomes MASK with
probability 0.8, a uniformly random token id with 0.1, and stays unchanged with 0.1. The loss is the
cross-entropy at selected positions only: the targets hold the original token there and IGNORE_INDEX
everywhere else. All draws come from a torch.Generator, so a seed fixes the corruption exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -1
MASK_FRACTION, RANDOM_FRACTION = 0.8, 0.1  # of the selected positions; the rest stay unchanged


def mask_tokens(
    tokens: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    generator: torch.Generator,
    mask_prob: float = 0.15,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens (B, T) -> (inputs, targets), both (B, T). valid (B, T) bool limits the selection (e.g. not
    padding). Random replacements are drawn uniformly from [0, vocab_size)."""
    device = tokens.device
    selected = torch.rand(tokens.shape, generator=generator, device=device) < mask_prob
    if valid is not None:
        selected &= valid
    action = torch.rand(tokens.shape, generator=generator, device=device)
    random_ids = torch.randint(vocab_size, tokens.shape, generator=generator, device=device)
    inputs = torch.where(selected & (action < MASK_FRACTION), torch.full_like(tokens, mask_id), tokens)
    replace = selected & (action >= MASK_FRACTION) & (action < MASK_FRACTION + RANDOM_FRACTION)
    inputs = torch.where(replace, random_ids, inputs)
    targets = torch.where(selected, tokens, torch.full_like(tokens, IGNORE_INDEX))
    return inputs, targets


def seeded_generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed % 2**63)


def masked_lm_scores(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed NLL, number of scored (selected) positions and correct argmax predictions among them."""
    scored = targets != IGNORE_INDEX
    nll_sum = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX,
                              reduction="sum")
    correct = ((logits.argmax(dim=-1) == targets) & scored).sum()
    return nll_sum, scored.sum(), correct
