"""Gradient clipping measures and clips by the global norm when the parameters are sharded: two gloo ranks
shard a GPT with PyTorch's fully_shard (FSDP2) on CPU, and the norm and the clipped gradients equal those of
the same model unsharded. (Lightning's FSDPStrategy, FSDP1, refuses CPU; benchmarks/gpu.py checks it.)"""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from lit_llm.model.gpt import GPT, GPTConfig
from lit_llm.training.optim import clip_global_norm

CONFIG = dict(vocab_size=97, block_size=16, n_layer=2, n_head=2, n_embd=32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, world: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    sharded = GPT(GPTConfig(**CONFIG))
    whole = GPT(GPTConfig(**CONFIG))
    whole.load_state_dict(sharded.state_dict())
    for block in sharded.h:
        fully_shard(block)
    fully_shard(sharded)
    idx = torch.randint(0, 97, (4, 16), generator=torch.Generator().manual_seed(1))  # the same batch on both ranks
    sharded(idx).float().pow(2).mean().backward()
    whole(idx).float().pow(2).mean().backward()
    local = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad.to_local()) for p in sharded.parameters()]))
    norm = clip_global_norm(list(sharded.parameters()), 0.01)
    expected = clip_global_norm(list(whole.parameters()), 0.01)
    clipped = {n: (p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad) for n, p in sharded.named_parameters()}
    out[rank] = {"norm": float(norm), "expected": float(expected), "local": float(local),
                 "max_grad_diff": max(float((clipped[n] - p.grad).abs().max()) for n, p in whole.named_parameters())}
    dist.destroy_process_group()


def test_clip_global_norm_under_fully_shard_on_two_cpu_ranks():
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(worker, args=(2, free_port(), out), nprocs=2)
        results = dict(out)
    for rank in (0, 1):
        r = results[rank]
        assert abs(r["norm"] - r["expected"]) <= 1e-5 * r["expected"], r
        assert r["max_grad_diff"] < 1e-7, r  # clipped by the same global factor on every shard
        assert abs(r["local"] - r["expected"]) > 1e-3 * r["expected"], r  # a shard's own norm would be wrong
