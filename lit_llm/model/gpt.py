"""A decoder-only Transformer in one file (RoPE's tables in rope.py), in the spirit of nanoGPT.

Design choices, each a `GPTConfig` switch:
- norm: "layernorm" (GPT-2) or "rmsnorm" (Llama); pre-norm blocks, a final norm before the head.
- pos: "learned" absolute position embeddings (GPT-2) or "rope" rotary embeddings on q and k.
- mlp: "gelu" (GPT-2's tanh-approximate GELU, 4x wide), "gelu_exact" (the exact erf GELU of
  nanoGPT and nn.GELU(), 4x wide; on CPU ~3x cheaper than the tanh form) or "swiglu" (gated, ~8/3x wide
  so the parameter count matches).
- bias in every Linear and norm, tied input/output embeddings, dropout.
- causal attention (GPT), or bidirectional (`causal=False`, the masked-LM objective; no generation).
- parametrization: "standard" (GPT-2's) or "mup" (µP, from mup_base_width; model/mup.py).
GPT-2-exact: layernorm + learned + gelu + bias + tied; modern: rmsnorm + rope + swiglu, no bias.

Attention is PyTorch's scaled_dot_product_attention (flash / memory-efficient kernels where the device
has them). Weights are created in `__init__` and initialised by `init_weights()`, so the model can be
built on the meta device and materialised later (FSDP). `GPT.generate` samples with a KV cache.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from lit_llm.model.mup import attention_scale, check_parametrization, scale_hidden_init, scale_output
from lit_llm.model.rope import apply_rope, rope_cache


@dataclass
class GPTConfig:
    vocab_size: int = 50257
    """Number of token ids the embedding and the head cover."""
    block_size: int = 1024
    """Longest sequence the model attends over (positions 0..block_size-1)."""
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    n_ff: int = 0
    """Feed-forward hidden width; 0 picks 4*n_embd for the GELUs, and 8/3*n_embd rounded up to 8 for swiglu."""
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    pos: Literal["learned", "rope"] = "learned"
    mlp: Literal["gelu", "gelu_exact", "swiglu"] = "gelu"
    bias: bool = True
    tie_embeddings: bool = True
    dropout: float = 0.0
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    causal: bool = True
    """False: bidirectional attention (masked LM); KV-cache generation needs causal attention."""
    pad_vocab_to: int = 64
    """The embedding and head get rows up to a multiple of this (faster matmuls: GPT-2's 50257 -> 50304).
    Padding rows are zero, never scored and never sampled; 1 = no padding. Invisible outside the model:
    logits have vocab_size columns, and weights load and export at any padding."""
    parametrization: Literal["standard", "mup"] = "standard"
    """mup: µP's init, attention scale, output multiplier and Adam learning rates (model/mup.py)."""
    mup_base_width: int = 0
    """µP: the n_embd the hyper-parameters were tuned at (width multiplier n_embd / mup_base_width)."""
    arch: Literal["transformer", "lstm", "gru"] = "transformer"
    """transformer (this file) or a recurrent LM (model/recurrent.py; n_head, pos, mlp, n_ff unused)."""

    def __post_init__(self) -> None:
        if self.arch == "transformer" and self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.arch == "transformer" and self.pos == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"rope needs an even head size, got {self.n_embd // self.n_head}")
        if self.arch != "transformer" and not self.causal:
            raise ValueError(f"a recurrent LM ({self.arch}) reads left to right: no bidirectional (masked LM) mode")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "pad_vocab_to"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.n_ff:
            self.n_ff = 4 * self.n_embd if self.mlp != "swiglu" else 8 * math.ceil(8 * self.n_embd / 3 / 8)
        check_parametrization(self)

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def padded_vocab_size(self) -> int:
        return -(-self.vocab_size // self.pad_vocab_to) * self.pad_vocab_to


# What a model's weights and function depend on, so checkpoints, fine-tuning sources and the CLI compare
# these (dropout is a training setting; norm_eps and causal are fixed by the objective and mode).
ARCH_FIELDS = tuple(f.name for f in fields(GPTConfig)
                    if f.name not in ("dropout", "norm_eps", "causal", "pad_vocab_to"))
VOCAB_ROWS = ("wte.weight", "lm_head.weight")  # the weights with one row per token id


def resize_vocab_rows(state_dict: dict, rows: int, prefix: str = "") -> None:
    """Pad (with zeros) or cut the token rows of a GPT state dict in place to `rows`: weights saved at one
    vocabulary padding load at another, and exports hold exactly vocab_size rows."""
    for key in (prefix + k for k in VOCAB_ROWS):
        if key in state_dict and state_dict[key].size(0) != rows:
            w = state_dict[key]
            state_dict[key] = w[:rows] if w.size(0) > rows else torch.cat((w, w.new_zeros(rows - w.size(0), *w.shape[1:])))


class Linear(nn.Linear):
    """nn.Linear with GPT-2's init, N(0, std) weights and zero bias, in reset_parameters (which FSDP calls
    to materialise weights built on the meta device). Rows from `real_rows` on (vocabulary padding) are zero."""

    std = 0.02

    def __init__(self, n_in: int, n_out: int, bias: bool = True, real_rows: int | None = None) -> None:
        self.real_rows = real_rows  # before nn.Linear's __init__, which already calls reset_parameters
        super().__init__(n_in, n_out, bias=bias)

    def reset_parameters(self) -> None:
        init_rows(self.weight, self.real_rows, self.std)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


class Embedding(nn.Embedding):
    def __init__(self, rows: int, dim: int, real_rows: int | None = None) -> None:
        self.real_rows = real_rows
        super().__init__(rows, dim)

    def reset_parameters(self) -> None:
        init_rows(self.weight, self.real_rows, 0.02)


def init_rows(weight: torch.Tensor, real_rows: int | None, std: float) -> None:
    """N(0, std) on the first real_rows rows (all when None), zeros after: the random draws are those of an
    unpadded weight, so padding changes no other parameter's init."""
    real = weight[:real_rows] if real_rows is not None else weight
    nn.init.normal_(real, mean=0.0, std=std)
    if real_rows is not None:
        nn.init.zeros_(weight[real_rows:])


def residual_linear(n_in: int, n_out: int, config: GPTConfig) -> Linear:
    """A projection into the residual stream: std scaled by 1/sqrt(2 * n_layer) (GPT-2)."""
    layer = Linear(n_in, n_out, bias=config.bias)
    layer.std = 0.02 / math.sqrt(2 * config.n_layer)
    layer.reset_parameters()
    return layer


def make_norm(config: GPTConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.n_embd, eps=config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)


class KVCache:
    """Preallocated keys and values for one layer: (B, nh, block_size, hs)."""

    def __init__(self, batch_size: int, config: GPTConfig, device: torch.device, dtype: torch.dtype) -> None:
        shape = (batch_size, config.n_head, config.block_size, config.head_size)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)

    def update(self, pos: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = k.size(2)
        self.k[:, :, pos : pos + t] = k
        self.v[:, :, pos : pos + t] = v
        return self.k[:, :, : pos + t], self.v[:, :, : pos + t]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = residual_linear(config.n_embd, config.n_embd, config)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.scale = attention_scale(config)  # None: 1/sqrt(head_size); µP: 1/head_size (model/mup.py)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        cache: KVCache | None = None,
        pos: int = 0,
    ) -> torch.Tensor:
        B, T, C = x.size()
        nh, hs = self.config.n_head, self.config.head_size
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nh, hs).transpose(1, 2)
        v = v.view(B, T, nh, hs).transpose(1, 2)
        if rope is not None:
            cos, sin = rope[0][pos : pos + T], rope[1][pos : pos + T]
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(pos, k, v)  # (B, nh, pos+T, hs)
        dropout = self.config.dropout if self.training else 0.0
        if not self.config.causal:  # bidirectional: every position attends to the whole sequence
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=self.scale)
        elif pos == 0 or T == 1:
            # a fresh sequence is plain causal; one new token attends to everything cached
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=T > 1,
                                               scale=self.scale)
        else:
            mask = torch.ones(T, pos + T, dtype=torch.bool, device=x.device).tril(diagonal=pos)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=self.scale)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble heads
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.swiglu = config.mlp == "swiglu"
        self.approximate = "tanh" if config.mlp == "gelu" else "none"  # GPT-2 used the tanh approximation
        self.c_fc = Linear(config.n_embd, config.n_ff, bias=config.bias)
        if self.swiglu:
            self.c_gate = Linear(config.n_embd, config.n_ff, bias=config.bias)
        self.c_proj = residual_linear(config.n_ff, config.n_embd, config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.swiglu:
            h = F.silu(self.c_gate(x)) * self.c_fc(x)
        else:
            h = F.gelu(self.c_fc(x), approximate=self.approximate)
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(self, x, rope=None, cache: KVCache | None = None, pos: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope, cache, pos)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        V, padded = config.vocab_size, config.padded_vocab_size
        self.wte = Embedding(padded, config.n_embd, real_rows=V)
        self.wpe = Embedding(config.block_size, config.n_embd) if config.pos == "learned" else None
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = make_norm(config)
        self.lm_head = Linear(config.n_embd, padded, bias=False, real_rows=V)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.checkpoint_blocks = False  # activation checkpointing: recompute each block in backward
        if config.pos == "rope":
            cos, sin = rope_cache(config)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.register_load_state_dict_pre_hook(self._fit_vocab_rows)
        scale_hidden_init(self)  # µP: block matrices' std / sqrt(width multiplier)
        self.init_weights()

    def _fit_vocab_rows(self, module, state_dict, prefix, *args) -> None:
        resize_vocab_rows(state_dict, self.config.padded_vocab_size, prefix)

    @torch.no_grad()
    def init_weights(self) -> None:
        """GPT-2 init: N(0, 0.02) everywhere, residual projections N(0, 0.02 / sqrt(2 * n_layer)), norms at
        one (µP: block matrices / sqrt(width multiplier)). Each layer's reset_parameters holds its part, so
        FSDP's meta-device path inits the same."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The model's own state: the RoPE tables (buffers are not materialised from the meta device)."""
        if self.config.pos == "rope":
            self.rope_cos, self.rope_sin = rope_cache(self.config, self.wte.weight.device)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count. non_embedding drops the token and position tables (Kaplan et al.'s N);
        an untied lm_head is kept, a tied one is the token table. Vocabulary padding rows are not counted."""
        n = sum(p.numel() for p in self.parameters()) - self.padding_params()
        if non_embedding:
            n -= self.config.vocab_size * self.config.n_embd
            if self.wpe is not None:
                n -= self.wpe.weight.numel()
        return n

    def padding_params(self) -> int:
        """Parameters in the vocabulary padding rows (zero, never used)."""
        per_table = (self.config.padded_vocab_size - self.config.vocab_size) * self.config.n_embd
        return per_table * (1 if self.config.tie_embeddings else 2)

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token (forward + backward), as in PaLM appendix B / nanoGPT:
        6 * N_matmul + 12 * n_layer * n_embd * seq_len, where N_matmul counts every weight used in a
        matmul (the output head included, embedding lookups excluded) and the second term is the
        attention scores and weighted sum (causal masking not discounted). Model FLOPs: the vocabulary
        padding's extra head columns are not counted."""
        cfg = self.config
        n_matmul = sum(p.numel() for p in self.parameters()) - self.padding_params()
        if self.wpe is not None:
            n_matmul -= self.wpe.weight.numel()
        if not cfg.tie_embeddings:
            n_matmul -= cfg.vocab_size * cfg.n_embd  # the lookup is free; the untied head is counted
        T = seq_len or cfg.block_size
        return 6 * n_matmul + 12 * cfg.n_layer * cfg.n_embd * T

    def forward(self, idx: torch.Tensor, caches: list[KVCache] | None = None, pos: int = 0) -> torch.Tensor:
        """idx (B, T) token ids -> logits (B, T, vocab_size). With caches, idx continues at position pos.
        With vocabulary padding the logits are a view that leaves the padding columns out (no copy)."""
        logits = self.lm_head(scale_output(self.hidden_states(idx, caches, pos), self.config))  # µP: / m
        return logits[..., : self.config.vocab_size] if self.config.pad_vocab_to > 1 else logits

    def hidden_states(
        self, idx: torch.Tensor, caches: list[KVCache] | None = None, pos: int = 0
    ) -> torch.Tensor:
        """idx (B, T) -> the final hidden states (B, T, n_embd), after the last norm (classifiers pool them)."""
        B, T = idx.size()
        if pos + T > self.config.block_size:
            raise ValueError(f"sequence of {pos + T} tokens exceeds block_size {self.config.block_size}")
        x = self.wte(idx)  # (B, T, C)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(pos, pos + T, device=idx.device))
        x = self.drop(x)
        rope = (self.rope_cos, self.rope_sin) if self.config.pos == "rope" else None
        for i, block in enumerate(self.h):
            if self.checkpoint_blocks and self.training and caches is None:
                x = torch.utils.checkpoint.checkpoint(block, x, rope, use_reentrant=False)
            else:
                x = block(x, rope, caches[i] if caches is not None else None, pos)
        return self.ln_f(x)
    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
        eos_id: int | None = None,
        generator: torch.Generator | None = None,
        suppress_ids: list[int] | None = None,
        on_token: Callable[[int], None] | None = None,
    ) -> torch.Tensor:
        """Extend idx (B, T) by max_new_tokens. temperature 0 is greedy. Once the context is full the
        window slides and the cache is rebuilt each step, so results equal uncached generation.
        on_token(n) is called after the n-th new token (progress display)."""
        if not self.config.causal:
            raise ValueError("generation needs a causal model; this one attends bidirectionally (masked LM)")
        block = self.config.block_size
        caches: list[KVCache] | None = None
        pos = 0  # number of tokens held in the cache
        for step in range(max_new_tokens):
            if not use_cache or idx.size(1) > block:
                logits = self(idx[:, -block:])[:, -1, :]
            elif caches is None or pos >= block:
                dtype = self.wte.weight.dtype
                caches = [KVCache(idx.size(0), self.config, idx.device, dtype) for _ in self.h]
                logits = self(idx, caches, 0)[:, -1, :]
                pos = idx.size(1)
            else:
                logits = self(idx[:, -1:], caches, pos)[:, -1, :]
                pos += 1
            if suppress_ids:  # tokens that are never text (padding, mask, unknown)
                logits[:, suppress_ids] = float("-inf")
            next_id = sample_next(logits.float(), temperature, top_k, top_p, generator)
            idx = torch.cat((idx, next_id), dim=1)
            if on_token is not None:
                on_token(step + 1)
            if eos_id is not None and bool((next_id == eos_id).all()):
                break
        return idx


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one id per row of logits (B, V) -> (B, 1)."""
    if temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cum - sorted_logits.softmax(dim=-1) > top_p  # keep the smallest prefix reaching top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)
