"""The memory estimate (lit_llm/training/memory.py) against the peak-RSS growth of real AdamW steps on CPU.

    OMP_NUM_THREADS=1 python benchmarks/memory_estimate.py

For each model and vocabulary: one child process per batch size runs two training steps of a GPT (block 64)
and reports the growth of its peak RSS (VmHWM) over its RSS before the model existed; the table compares
what the larger batch adds with what the estimate adds (the fixed overhead of the allocator and thread
pools is not modelled, so totals are compared only as a note).
"""

import os
import subprocess
import sys

STEP = """
import sys, torch
from pathlib import Path
from lit_llm.model.gpt import GPT, GPTConfig
from lit_llm.training.objectives import token_nll
def status(field):
    return next(int(l.split()[1]) * 1024 for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field))
B, T, V, L, C = map(int, sys.argv[1:6])
x = torch.randint(V, (B, T + 1), generator=torch.Generator().manual_seed(0))
base = status("VmRSS:")
model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=4, n_embd=C))
opt = torch.optim.AdamW(model.parameters(), fused=True)
for _ in range(2):
    nll, n = token_nll(model(x[:, :-1]), x[:, 1:])
    (nll / n).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
print(status("VmHWM:") - base)
"""


def measured(*args: int) -> int:
    out = subprocess.run([sys.executable, "-c", STEP, *map(str, args)], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    return int(out.stdout)


def main() -> None:
    from lit_llm.model.gpt import GPTConfig
    from lit_llm.training.memory import estimate

    block, small, large = 64, 8, 64
    print("| layers x width | vocab | measured growth MB (B 8 -> 64) | estimated MB | ratio | measured / estimated total at B 64 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for L, C in ((2, 64), (4, 128)):
        for V in (65, 4096):
            m = [measured(b, block, V, L, C) for b in (small, large)]
            cfg = GPTConfig(vocab_size=V, block_size=block, n_layer=L, n_head=4, n_embd=C)
            e = [estimate(cfg, b).total for b in (small, large)]
            print(f"| {L} x {C} | {V} | {(m[1] - m[0]) / 1e6:.1f} | {(e[1] - e[0]) / 1e6:.1f} | "
                  f"{(e[1] - e[0]) / (m[1] - m[0]):.2f} | {m[1] / 1e6:.1f} / {e[1] / 1e6:.1f} |", flush=True)


if __name__ == "__main__":
    main()
