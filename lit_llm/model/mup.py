"""µP, the maximal update parametrization (Yang et al., "Tensor Programs V"): hyper-parameters tuned on a
narrow model transfer to wider ones. `GPTConfig.parametrization = "mup"` with `mup_base_width` (the n_embd
the hyper-parameters were tuned at) and the width multiplier m = n_embd / mup_base_width:

- init: the matrices inside the blocks (attention and MLP, residual projections included) get GPT-2's std
  divided by sqrt(m), i.e. std ∝ 1/sqrt(fan_in); embeddings, norms and biases keep GPT-2's init.
- attention scale: sqrt(base_head_size) / head_size (1/d instead of 1/sqrt(d)), where base_head_size =
  mup_base_width / n_head, so it equals the standard 1/sqrt(head_size) at the base width.
- output multiplier: the final hidden states are multiplied by 1/m before the (tied or untied) head.
- Adam: the block matrices train at lr / m with weight decay x m (their decay step lr * wd stays the base
  one, as the mup package's AdamW); embeddings, the head, norms and biases train at the base lr.

At m = 1 every rule is the identity and µP is the standard parametrization exactly: same weights, same
logits, same optimizer steps. A `GPT` calls these functions; they only read the config's fields, so this
module imports nothing from gpt.py.
"""

from __future__ import annotations

import math

import torch

BLOCK_MATRICES = ("c_attn", "c_proj", "c_fc", "c_gate")  # the Linear layers inside the blocks


def check_parametrization(cfg) -> None:
    """Validate the µP fields of a GPTConfig (ValueError); under the standard parametrization the base width
    is meaningless and set to 0, so configs that compute the same function compare equal."""
    if cfg.parametrization not in ("standard", "mup"):
        raise ValueError(f"parametrization must be standard or mup, got {cfg.parametrization!r}")
    if cfg.parametrization == "standard":
        cfg.mup_base_width = 0
    elif cfg.mup_base_width <= 0:
        raise ValueError("parametrization mup needs mup_base_width (--model.mup_base_width): the n_embd its "
                         f"hyper-parameters were tuned at, e.g. {cfg.n_embd} (this width)")


def width_multiplier(cfg) -> float:
    """m = n_embd / mup_base_width under µP, 1 under the standard parametrization."""
    return cfg.n_embd / cfg.mup_base_width if cfg.parametrization == "mup" else 1.0


def attention_scale(cfg) -> float | None:
    """The softmax scale of the attention scores; None is scaled_dot_product_attention's 1/sqrt(head_size)."""
    if width_multiplier(cfg) == 1.0:
        return None
    return math.sqrt(cfg.mup_base_width / cfg.n_head) / cfg.head_size


def output_multiplier(cfg) -> float:
    return 1.0 / width_multiplier(cfg)


def scale_output(hidden: torch.Tensor, cfg) -> torch.Tensor:
    """The final hidden states times the output multiplier (untouched at m = 1)."""
    m = width_multiplier(cfg)
    return hidden if m == 1.0 else hidden * (1.0 / m)


def scale_hidden_init(model) -> None:
    """Divide the init std of every Linear inside the blocks by sqrt(m). Only the `std` attribute changes
    (reset_parameters draws with it, also when FSDP materialises from the meta device), so the random draws
    are the standard parametrization's, scaled."""
    m = width_multiplier(model.config)
    if m == 1.0:
        return
    for module in model.h.modules():
        if isinstance(module, torch.nn.Linear) and hasattr(module, "std"):
            module.std = module.std / math.sqrt(m)


def lr_multiplier(name: str, param: torch.Tensor, cfg) -> float:
    """The factor on the base learning rate of a parameter: 1/m for the block matrices, 1 for the rest
    (embeddings, head, norms, biases: one dimension or none grows with width). By name alone, any prefix
    (`model.`, FSDP's wrappers) and pruning's `weight_orig` included, so a flattened shard is classified too."""
    *path, leaf = name.split(".")
    if path and path[-1] in BLOCK_MATRICES and leaf in ("weight", "weight_orig"):
        return 1.0 / width_multiplier(cfg)
    return 1.0


def fold_into_weights(sd: dict[str, torch.Tensor], cfg) -> dict[str, torch.Tensor]:
    """The state dict of a standard-parametrized model that computes what the µP model computes, for
    exports to architectures without µP (Hugging Face GPT-2 and Llama): the attention scale goes into the
    query rows of c_attn (weight and bias; RoPE is a rotation, so it commutes), the output multiplier into
    the final norm's weight and bias, which feed only the head (tied embeddings stay tied). Exact up to
    float rounding."""
    m = width_multiplier(cfg)
    if m == 1.0:
        return sd
    sd = dict(sd)
    q_factor = attention_scale(cfg) * math.sqrt(cfg.head_size)  # relative to the standard 1/sqrt(head_size)
    C = cfg.n_embd
    for i in range(cfg.n_layer):
        for suffix in ("weight", "bias"):
            key = f"h.{i}.attn.c_attn.{suffix}"
            if key in sd:
                w = sd[key].clone()
                w[:C] *= q_factor
                sd[key] = w
    for suffix in ("weight", "bias"):
        if f"ln_f.{suffix}" in sd:
            sd[f"ln_f.{suffix}"] = sd[f"ln_f.{suffix}"] / m
    return sd
