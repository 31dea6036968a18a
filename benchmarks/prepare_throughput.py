"""Prepare throughput, peak memory and data-loader wait. Prints figures; not a test.

    python benchmarks/prepare_throughput.py [--sizes-mb 50,100,200] [--vocab 8192]

1. Throughput on python-stdlib with an 8192-token BPE: `prepare` MB/s (a) end to end, BPE training
   included, and (b) with that trained tokenizer.json given, so the work equals (c) raw `tokenizers`
   encode_batch over the same (cleaned) documents held in memory, measured in the same run. Ratio b / c.
2. Peak RSS of `prepare` (own process, ru_maxrss) on generated corpora of growing size: python-stdlib
   repeated with mutations (a header line, dropped lines) so that dedup keeps them.
3. Data-loader wait: time to produce a training batch vs the training step time of the small presets.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PREPARE_AND_REPORT = """
import json, resource, sys, time
from pathlib import Path
from lit_llm.data.prepare import PrepareConfig, prepare
t = time.perf_counter()
p = prepare(PrepareConfig(sys.argv[1], sys.argv[2], vocab_size=int(sys.argv[3])), Path(sys.argv[4]), log=lambda *a: None)
print(json.dumps({"seconds": time.perf_counter() - t, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "bytes": sum(s["bytes"] for s in p.meta["sources"]), "meta_seconds": p.meta["seconds"],
                  "tokens": sum(v["tokens"] for v in p.meta["splits"].values()), "path": str(p.path)}))
"""


def run_prepare(corpus: str, tokenizer: str, vocab: int, cache: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", PREPARE_AND_REPORT, corpus, tokenizer, str(vocab), str(cache)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def raw_encode_batch(tokenizer_json: Path, method: str = "encode_batch") -> tuple[float, int]:
    """Seconds and bytes for plain encode_batch over the stdlib documents (already read and cleaned)."""
    from collections import Counter

    from tokenizers import Tokenizer

    from lit_llm.data.clean import CleanConfig, clean_text
    from lit_llm.data.corpus import default_cache_dir, iter_source

    docs = [clean_text(d.text, CleanConfig(), Counter()) for d in iter_source("python-stdlib", "text",
                                                                             default_cache_dir(), Counter())]
    docs = [d for d in docs if d]
    tok = Tokenizer.from_file(str(tokenizer_json))
    size = sum(len(d.encode()) for d in docs)
    encode = getattr(tok, method)
    t = time.perf_counter()
    for i in range(0, len(docs), 256):
        encode(docs[i : i + 256], add_special_tokens=False)
    return time.perf_counter() - t, size


def make_corpus(directory: Path, target_mb: int) -> Path:
    from lit_llm.data.corpus import python_stdlib_files

    files = python_stdlib_files()
    rng = random.Random(0)
    directory.mkdir(parents=True, exist_ok=True)
    written, k = 0, 0
    with open(directory / "corpus.jsonl", "w") as out:
        while written < target_mb * 2**20:
            for f in files:
                lines = f.read_text(errors="replace").splitlines()
                kept = [line for line in lines if rng.random() > 0.05]
                text = f"# copy {k} of {f.name}\n" + "\n".join(kept)
                out.write(json.dumps({"text": text}) + "\n")
                written += len(text.encode())
                if written >= target_mb * 2**20:
                    break
            k += 1
    return directory / "corpus.jsonl"


def loader_wait(preset_block: int, preset_batch: int, steps: int = 200) -> float:

    from lit_llm.data.datamodule import TextDataModule

    dm = TextDataModule("python-stdlib", "bpe", 4096, block_size=preset_block, batch_size=preset_batch)
    it = iter(dm.train_dataloader())
    next(it)
    t = time.perf_counter()
    for _ in range(steps):
        next(it)
    return (time.perf_counter() - t) / steps


def step_time(block: int, batch: int, n_layer: int, n_embd: int, steps: int = 20) -> float:
    import torch

    from lit_llm.model.gpt import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=4096, block_size=block, n_layer=n_layer, n_head=4, n_embd=n_embd))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, 4096, (batch, block + 1))
    for i in range(steps + 3):
        if i == 3:
            t = time.perf_counter()
        logits = model(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad()
    return (time.perf_counter() - t) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mb", default="50,100,200")
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--only", choices=["throughput", "memory", "loader"])
    args = parser.parse_args()
    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))
    work = Path(tempfile.mkdtemp(prefix="lit-llm-bench-"))
    os.environ["LIT_LLM_CACHE"] = str(work / "cache")

    if args.only in (None, "throughput"):
        e2e = run_prepare("python-stdlib", "bpe", args.vocab, work / "c1")
        tok_json = Path(e2e["path"]) / "tokenizer.json"
        given = run_prepare("python-stdlib", str(tok_json), args.vocab, work / "c2")
        raw_s, raw_bytes = raw_encode_batch(tok_json)
        fast_s, _ = raw_encode_batch(tok_json, "encode_batch_fast")
        mb = e2e["bytes"] / 2**20
        print(f"\n1. python-stdlib ({mb:.1f} MB, {e2e['tokens']:,} tokens), BPE {args.vocab}")
        print(f"   prepare end to end (BPE training included): {mb / e2e['seconds']:6.2f} MB/s "
              f"({e2e['seconds']:.1f} s; tokenizer {e2e['meta_seconds']['tokenizer']:.1f} s)")
        print(f"   prepare with the trained tokenizer.json:     {mb / given['seconds']:6.2f} MB/s ({given['seconds']:.1f} s)")
        print(f"   raw encode_batch, same documents in memory:  {raw_bytes / 2**20 / raw_s:6.2f} MB/s ({raw_s:.1f} s)")
        print(f"   raw encode_batch_fast (what prepare calls):  {raw_bytes / 2**20 / fast_s:6.2f} MB/s ({fast_s:.1f} s)")
        print(f"   ratio prepare (tokenizer given) / raw encode_batch: "
              f"{(mb / given['seconds']) / (raw_bytes / 2**20 / raw_s):.2f}  (goal >= 0.8); "
              f"/ raw encode_batch_fast: {(mb / given['seconds']) / (raw_bytes / 2**20 / fast_s):.2f}")

    if args.only in (None, "memory"):
        print("\n2. peak RSS of prepare (BPE 8192, generated corpora)")
        for size in [int(s) for s in args.sizes_mb.split(",")]:
            corpus = make_corpus(work / f"corpus{size}", size)
            r = run_prepare(str(corpus), "bpe", args.vocab, work / f"m{size}")
            print(f"   {r['bytes'] / 2**20:7.1f} MB corpus: peak RSS {r['rss_mb']:7.1f} MB, "
                  f"{r['seconds']:6.1f} s, {r['bytes'] / 2**20 / r['seconds']:.2f} MB/s")
            corpus.unlink()

    if args.only in (None, "loader"):
        print("\n3. data-loader wait per batch vs training step (python-stdlib, BPE 4096)")
        for name, block, batch, layers, width in [("toy", 256, 16, 2, 64), ("default/baby", 256, 16, 4, 128)]:
            wait, step = loader_wait(block, batch), step_time(block, batch, layers, width)
            print(f"   {name:12s} batch {batch}x{block}: loader {wait * 1e3:.3f} ms, step {step * 1e3:.1f} ms, "
                  f"wait/step {wait / step:.2%}  (goal <= 1%)")


if __name__ == "__main__":
    main()
