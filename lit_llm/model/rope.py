"""Rotary position embeddings (RoPE, `GPTConfig.pos = "rope"`): the cos/sin tables and the rotation of q and k."""

from __future__ import annotations

import torch


def rope_cache(config, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape (block_size, head_size // 2) for a GPTConfig."""
    hs = config.head_size
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, hs, 2, device=device, dtype=torch.float32) / hs))
    t = torch.arange(config.block_size, device=device, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)
    return freqs.cos(), freqs.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of the head dimension. x: (B, nh, T, hs); cos/sin: (T, hs/2)."""
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.type_as(x)
