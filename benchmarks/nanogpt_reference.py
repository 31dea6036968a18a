"""nanoGPT's CPU "baby" Shakespeare-char run, re-implemented here independently of lit_llm, to measure what
that recipe reaches on this machine, seed by seed, both the way nanoGPT reports it and exactly.

    python benchmarks/nanogpt_reference.py --corpus ../shared/data/tinyshakespeare.txt [--seeds 1337,1,2] [--bias]

Follows nanoGPT's train.py + config/train_shakespeare_char.py with the README's CPU overrides (block 64,
batch 12, 4 layers, 4 heads, 128 wide, 2000 iterations, lr 1e-3 -> 1e-4 cosine, warmup 100, beta2 0.99,
weight decay 0.1, clip 1.0, dropout 0, eval_iters 20, eval every 250): character vocabulary of the text
alone (65), first 90% of characters train / last 10% val, exact GELU, no biases by default (nanoGPT's
train.py default), tied embeddings, N(0, 0.02) init with c_proj at 0.02/sqrt(2 n_layer), batches from
torch.randint on the global RNG, evaluation batches drawn from the same RNG, as nanoGPT does.

Prints, per seed, nanoGPT's own figure (mean loss of 20 random val batches at iteration 2000) and the val
loss over the whole split (every window once; what lit_llm logs as val/loss). Uses no lit_llm code.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

BLOCK, BATCH, N_LAYER, N_HEAD, N_EMBD = 64, 12, 4, 4, 128
LR, MIN_LR, WARMUP, BETAS, WEIGHT_DECAY, CLIP = 1e-3, 1e-4, 100, (0.9, 0.99), 0.1, 1.0
EVAL_INTERVAL, EVAL_ITERS = 250, 20


class LayerNorm(nn.Module):
    def __init__(self, dim: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class Block(nn.Module):
    def __init__(self, bias: bool) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = LayerNorm(N_EMBD, bias), LayerNorm(N_EMBD, bias)
        self.c_attn = nn.Linear(N_EMBD, 3 * N_EMBD, bias=bias)
        self.attn_proj = nn.Linear(N_EMBD, N_EMBD, bias=bias)
        self.c_fc = nn.Linear(N_EMBD, 4 * N_EMBD, bias=bias)
        self.mlp_proj = nn.Linear(4 * N_EMBD, N_EMBD, bias=bias)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, N_HEAD, C // N_HEAD).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))  # exact GELU, as nn.GELU()


class NanoGPT(nn.Module):
    def __init__(self, vocab: int, bias: bool) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, N_EMBD), nn.Embedding(BLOCK, N_EMBD)
        self.h = nn.ModuleList(Block(bias) for _ in range(N_LAYER))
        self.ln_f = LayerNorm(N_EMBD, bias)
        self.lm_head = nn.Linear(N_EMBD, vocab, bias=False)
        self.wte.weight = self.lm_head.weight  # tied
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        for name, p in self.named_parameters():
            if name.endswith(("attn_proj.weight", "mlp_proj.weight")):  # nanoGPT's c_proj
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * N_LAYER))

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1)))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def lr_at(it: int, max_iters: int) -> float:
    if it < WARMUP:
        return LR * (it + 1) / (WARMUP + 1)
    if it > max_iters:
        return MIN_LR
    ratio = (it - WARMUP) / (max_iters - WARMUP)
    return MIN_LR + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (LR - MIN_LR)


def run(text: str, seed: int, max_iters: int, bias: bool) -> dict:
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    n = int(len(data) * 0.9)
    splits = {"train": data[:n], "val": data[n:]}

    torch.manual_seed(seed)
    model = NanoGPT(len(chars), bias)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
                                   {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                                  lr=LR, betas=BETAS)

    def get_batch(split):
        d = splits[split]
        ix = torch.randint(len(d) - BLOCK, (BATCH,))
        return torch.stack([d[i:i + BLOCK] for i in ix]), torch.stack([d[i + 1:i + 1 + BLOCK] for i in ix])

    @torch.no_grad()
    def estimate_loss():
        model.eval()
        out = {}
        for split in ("train", "val"):
            losses = [F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
                      for x, y in (get_batch(split) for _ in range(EVAL_ITERS))]
            out[split] = sum(losses) / len(losses)
        model.train()
        return out

    x, y = get_batch("train")
    start, reported = time.perf_counter(), {}
    for it in range(max_iters + 1):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(it, max_iters)
        if it % EVAL_INTERVAL == 0 or it == max_iters:
            reported = estimate_loss()
        if it == max_iters:  # nanoGPT evaluates at iteration 2000 after 2000 steps (and then steps once more)
            break
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        x, y = get_batch("train")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start

    model.eval()  # the whole val split, every position predicted once (windows of BLOCK, the last short)
    val, nll, count = splits["val"], 0.0, 0
    with torch.no_grad():
        for i in range(0, len(val) - 1, BLOCK):
            chunk = val[i:i + BLOCK + 1]
            logits = model(chunk[None, :-1])
            nll += F.cross_entropy(logits[0], chunk[1:], reduction="sum").item()
            count += len(chunk) - 1
    return {"nanogpt_val": reported["val"], "exact_val": nll / count, "seconds": seconds,
            "tok_per_sec": max_iters * BATCH * BLOCK / seconds, "vocab": len(chars)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, help="tinyshakespeare.txt")
    parser.add_argument("--seeds", default="1337", help="comma-separated")
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--bias", action="store_true", help="biases in Linear/LayerNorm (GPT-2); nanoGPT's default is off")
    args = parser.parse_args()
    text = open(args.corpus, encoding="utf-8").read()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        r = run(text, seed, args.iters, args.bias)
        rows.append(r)
        print(f"seed {seed}: nanoGPT's val estimate {r['nanogpt_val']:.4f}  exact val {r['exact_val']:.4f}  "
              f"({r['tok_per_sec']:,.0f} tok/s, vocab {r['vocab']}, torch threads {torch.get_num_threads()})", flush=True)
    if len(rows) > 1:
        for key, name in (("nanogpt_val", "nanoGPT's estimate"), ("exact_val", "exact val")):
            values = [r[key] for r in rows]
            print(f"{name}: mean {statistics.mean(values):.4f}  sd {statistics.stdev(values):.4f}  "
                  f"min {min(values):.4f}  max {max(values):.4f}")


if __name__ == "__main__":
    main()
