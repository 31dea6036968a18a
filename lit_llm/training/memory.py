"""What one training step needs in memory, by part, and what the device has free.

`estimate()` is a pure function of the model config, the micro-batch, the precision and the strategy. The
parts (bytes, per device):
  parameters   the weights (fp32 under mixed precision, the precision's dtype under *-true)
  gradients    one per weight, same dtype (DDP adds its gradient buckets: one more copy)
  optimizer    AdamW's two moments per weight (FSDP shards weights, gradients and moments over ranks)
  activations  what backward keeps per token and layer (fused attention: no T x T scores), in the
               activations' dtype (16 bits under mixed or half precision)
  logits       the head's output and its gradient (padded vocabulary), and the fp32 softmax of the loss
               (one chunk of LOSS_CHUNK_ROWS positions when the loss is chunked)
It is a model of the peak, not a measurement: tests/test_memory.py checks it against the growth of a real
step's peak memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from lit_llm.model.gpt import GPT, GPTConfig
from lit_llm.training.objectives import LOSS_CHUNK_ROWS

GIB = 2**30


def human(n: int) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / 2**20:.1f} MiB"


def dtype_bytes(precision: str) -> tuple[int, int]:
    """(bytes per weight, bytes per activation) under a Lightning precision setting."""
    precision = str(precision)
    if precision in ("64", "64-true"):
        return 8, 8
    half = "16" in precision and not precision.startswith(("32", "64"))
    if half and "true" in precision:
        return 2, 2
    return 4, 2 if half else 4


def param_count(config: GPTConfig) -> int:
    """Stored parameters (tied tables once, vocabulary padding included), counted on the meta device."""
    with torch.device("meta"):
        model = GPT(config)
    return sum(p.numel() for p in model.parameters())


def activation_elements(config: GPTConfig, checkpointing: bool = False) -> int:
    """Elements backward keeps per token for the blocks and the final norm (saved inputs of each op)."""
    C, F, L = config.n_embd, config.n_ff, config.n_layer
    # ln_1 in/out, q k v, attention out (+ re-assembled copy), ln_2 in/out: 9C; the MLP: 2F (gelu: fc out
    # and gelu out) or 4F (swiglu: gate, silu, fc, product); the residual stream adds nothing
    per_layer = 9 * C + (4 * F if config.mlp == "swiglu" else 2 * F)
    backward = 2 * F + 6 * C  # the gradients flowing through one block in backward
    if checkpointing:  # each block keeps its input; one block's activations exist again in backward
        return L * C + per_layer + backward + 3 * C
    return L * per_layer + backward + 3 * C  # + the embedding sum and the final norm's input and output


@dataclass
class MemoryEstimate:
    parts: dict[str, int]  # bytes by part
    batch_size: int

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        parts = ", ".join(f"{k} {human(v)}" for k, v in self.parts.items())
        return f"{human(self.total)} ({parts})"


def estimate(config: GPTConfig, batch_size: int, precision: str = "32-true", world_size: int = 1,
             strategy: str = "auto", activation_checkpointing: bool = False) -> MemoryEstimate:
    """The estimate for one device of a training step with AdamW on micro-batches of (batch_size, block)."""
    weight_bytes, act_bytes = dtype_bytes(precision)
    n = param_count(config)
    shards = world_size if "fsdp" in strategy.lower() else 1
    weights = n * weight_bytes // shards
    grads = weights * (2 if "ddp" in strategy.lower() and world_size > 1 else 1)
    tokens = batch_size * config.block_size
    activations = tokens * activation_elements(config, activation_checkpointing) * act_bytes
    V = config.padded_vocab_size
    chunked = act_bytes != 4 or tokens > LOSS_CHUNK_ROWS
    softmax_rows = min(tokens, LOSS_CHUNK_ROWS) if chunked else tokens
    # logits + their gradient in the activations' dtype; the loss's fp32 upcast, log-softmax and its gradient
    logits = 2 * tokens * V * act_bytes + softmax_rows * V * 4 * (3 if chunked else 1)
    parts = {"parameters": weights, "gradients": grads, "optimizer": 2 * weights, "activations": activations,
             "logits": logits}
    return MemoryEstimate(parts, batch_size)


def largest_batch(available: int, config: GPTConfig, batch_size: int, **kwargs) -> int:
    """The largest micro-batch up to batch_size whose estimate fits in `available` bytes (0: none)."""
    low, high = 0, batch_size  # the estimate grows with the batch: bisect
    while low < high:
        mid = (low + high + 1) // 2
        if estimate(config, mid, **kwargs).total <= available:
            low = mid
        else:
            high = mid - 1
    return low


def cgroup_free() -> int | None:
    """Memory left under this process's cgroup (v2) limit, or None without a limit."""
    base = Path("/sys/fs/cgroup")
    try:
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((base / "memory.current").read_text())
    except (OSError, ValueError):
        return None


def available_bytes(device: torch.device) -> int | None:
    """Free memory where the step runs: CUDA's free memory, else MemAvailable (and the cgroup's limit)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free
    if device.type != "cpu":
        return None
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return None
    free = next((int(line.split()[1]) * 1024 for line in lines if line.startswith("MemAvailable:")), None)
    limit = cgroup_free()
    return free if limit is None else limit if free is None else min(free, limit)


def cpu_ranks_here(world_size: int) -> int:
    """Training processes sharing this machine's memory (LOCAL_WORLD_SIZE when a launcher sets it)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
