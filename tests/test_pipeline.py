"""The corpus pipeline: cleaning, dedup, sources, shards, atomic prepare, bad inputs."""

import hashlib
import json
import random
import subprocess
import sys
import textwrap
from collections import Counter

import numpy as np
import pytest

from lit_llm.cli.main import main
from lit_llm.data.clean import CleanConfig, clean_text
from lit_llm.data.samplers import TokenStream
from lit_llm.data.dedup import DedupConfig, Deduplicator
from lit_llm.data.prepare import PrepareConfig, prepare
from lit_llm.data.tokenizer import EOS


def test_each_cleaning_step_and_its_counter():
    counts = Counter()
    text = "Cafe\u0301\x07 ok  \r\nline\r\n\n\n\n\n\nend\x1b\n"
    out = clean_text(text, CleanConfig(), counts)
    assert out == "Café ok\nline\n\n\nend\n"
    assert counts["nfc_changed_documents"] == 1 and counts["control_chars_removed"] == 2
    assert counts["whitespace_chars_removed"] == len("Café ok  \r\nline\r\n\n\n\n\n\nend\n") - len(out)
    # every step can be switched off
    off = CleanConfig(nfc=False, strip_control=False, normalize_whitespace=False)
    assert clean_text(text, off, Counter()) == text
    counts = Counter()
    assert clean_text("\t\x00 \n", CleanConfig(), counts) is None and counts["dropped_empty"] == 1
    assert clean_text("short", CleanConfig(min_chars=10), counts) is None and counts["dropped_too_short"] == 1
    assert clean_text("x" * 20, CleanConfig(max_chars=10), counts) is None and counts["dropped_too_long"] == 1
    assert clean_text("\tindented\n", CleanConfig(), Counter()) == "\tindented\n"  # code keeps its indentation


def test_invalid_utf8_is_replaced_and_counted(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"good text \xff\xfe and more text " * 20)
    prepared = prepare(PrepareConfig(str(tmp_path / "bad.txt"), "char"), tmp_path / "cache")
    assert prepared.meta["cleaning"]["invalid_utf8_replaced"] == 40
    assert "\ufffd" in prepared.tokenizer().get_vocab()


def planted_corpus(seed: int = 0):
    """(name, text, group): 60 distinct documents of random words (group = own index), plus 10 exact
    and 10 edited copies (~3% of words changed) carrying their original's group."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(3000)]
    base = [" ".join(rng.choice(words) for _ in range(300)) for _ in range(60)]
    docs = [(f"base{i}", t, i) for i, t in enumerate(base)]
    docs += [(f"exact{i}", base[i], i) for i in rng.sample(range(60), 10)]
    for i in rng.sample(range(60), 10):
        doc = base[i].split()
        for j in rng.sample(range(len(doc)), 9):
            doc[j] = rng.choice(words)
        docs.append((f"near{i}", " ".join(doc), i))
    rng.shuffle(docs)  # a copy may come before its original: then the original is the one dropped
    return docs


def test_exact_and_near_dedup_recall_and_precision():
    docs = planted_corpus()
    counts = Counter()
    dedup = Deduplicator(DedupConfig(exact=True, near=True, near_threshold=0.7), counts)
    flagged = [group for name, text, group in docs if dedup.is_duplicate(name, text)]
    sizes = Counter(group for _, _, group in docs)
    should = sum(n - 1 for n in sizes.values())  # 20: all but one member of each group
    correct = sum(min(flagged.count(g), sizes[g] - 1) for g in set(flagged))
    recall, precision = correct / should, correct / max(1, len(flagged))
    assert recall >= 0.9 and precision >= 0.95, (recall, precision)
    assert counts["exact_duplicates"] + counts["near_duplicates"] == len(flagged)
    only_exact = Deduplicator(DedupConfig(exact=True, near=False), Counter())
    assert sum(only_exact.is_duplicate(n, t) for n, t, _ in docs) == 10  # exact only: edited copies stay


def test_jsonl_parquet_and_hf_dataset_sources(tmp_path):
    rows = [{"text": f"document number {i} says hello", "id": i} for i in range(30)]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": [r["text"] for r in rows]}), tmp_path / "b.parquet")
    import datasets

    datasets.Dataset.from_dict({"text": [r["text"] for r in rows]}).save_to_disk(str(tmp_path / "hf"))
    expected = sorted(r["text"] for r in rows)
    for corpus, field in [("a.jsonl", "text"), ("b.parquet", "body"), ("hf", "text")]:
        prepared = prepare(PrepareConfig(str(tmp_path / corpus), "char", text_field=field, val_fraction=0.2),
                           tmp_path / "cache")
        texts = []
        for split in ("train", "val"):
            decoded = prepared.tokenizer().decode(prepared.tokens(split).tolist(), skip_special_tokens=False)
            texts += decoded.split(EOS)[:-1]
        assert sorted(texts) == expected, corpus
        assert prepared.meta["sources"][0]["documents"] == 30


def test_shards_round_trip_and_stream_across_boundaries(tmp_path):
    corpus = tmp_path / "docs"
    corpus.mkdir()
    texts = [f"doc {i}: " + "lorem ipsum dolor " * (i + 3) for i in range(40)]
    for i, t in enumerate(texts):
        (corpus / f"{i:03d}.txt").write_text(t)
    prepared = prepare(PrepareConfig(str(corpus), "bpe", vocab_size=300, shard_tokens=500, val_fraction=0.1),
                       tmp_path / "cache")
    shards = prepared.meta["splits"]["train"]["shards"]
    assert len(shards) > 3 and all(s["tokens"] <= 500 for s in shards)
    for s in shards:  # checksums in meta.json match the files
        assert hashlib.sha256((prepared.path / s["file"]).read_bytes()).hexdigest() == s["sha256"]
    whole = prepared.tokens("train")
    stream = TokenStream(prepared.shards("train"))
    assert len(stream) == len(whole)
    for start in (0, 499, 500, 1234, len(whole) - 70):
        assert np.array_equal(stream.read(start, 70), whole[start : start + 70])
    docs = prepared.tokenizer().decode(whole.tolist(), skip_special_tokens=False).split(EOS)[:-1]
    assert len(docs) == 36 and set(docs) <= set(texts)


KILLED_PREPARE = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import lit_llm.data.prepare
    p = sys.modules["lit_llm.data.prepare"]
    original = p.SplitWriter.flush
    def flush_then_die(self):
        original(self)
        if self.tokens:
            os.kill(os.getpid(), signal.SIGKILL)
    p.SplitWriter.flush = flush_then_die
    p.ENCODE_CHUNK_CHARS = 1000
    p.prepare(p.PrepareConfig(sys.argv[1], "bpe", vocab_size=300), Path(sys.argv[2]))
""")


def test_killed_prepare_then_rerun_gives_identical_shards(tmp_path):
    corpus = tmp_path / "docs"
    corpus.mkdir()
    for i in range(50):
        (corpus / f"{i}.txt").write_text(f"text {i} " + "some words here " * 50)
    cache = tmp_path / "cache"
    out = subprocess.run([sys.executable, "-c", KILLED_PREPARE, str(corpus), str(cache)], capture_output=True)
    assert out.returncode == -9
    prepared_dir = cache / "prepared"
    assert not [p for p in prepared_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]  # nothing trusted
    again = prepare(PrepareConfig(str(corpus), "bpe", vocab_size=300), cache)
    clean = prepare(PrepareConfig(str(corpus), "bpe", vocab_size=300), tmp_path / "other-cache")
    assert again.meta["splits"] == clean.meta["splits"]  # same shard checksums
    assert not [p for p in prepared_dir.iterdir() if p.name.startswith(".") and p.suffix != ".lock"]  # stale build removed


def test_corpus_weights_steer_sampling(tmp_path):
    (tmp_path / "a.txt").write_text("a" * 20000)
    (tmp_path / "b.txt").write_text("b" * 20000)
    from lit_llm.data.datamodule import TextDataModule

    dm = TextDataModule([str(tmp_path / "a.txt"), str(tmp_path / "b.txt")], "char", block_size=8,
                        batch_size=50, corpus_weights=[0.9, 0.1], val_fraction=0.0)
    a_id = dm.prepare_once().tokenizer().token_to_id("a")
    tokens = next(iter(dm.train_dataloader()))["tokens"]
    dm.train_batches_consumed = 1
    tokens = np.concatenate([tokens.numpy(), next(iter(dm.train_dataloader()))["tokens"].numpy()])
    share_a = float((tokens[:, 0] == a_id).mean())
    assert 0.8 <= share_a <= 0.98


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data.corpus", "missing.txt"], "not found"),
        (["--data.corpus", "empty.txt"], "empty"),
        (["--data.corpus", "binary.txt"], "binary"),
        (["--data.corpus", "rows.jsonl", "--data.text_field", "body"], "no field 'body'"),
        (["--data.corpus", "ok.txt", "--data.tokenizer", "bpe", "--data.vocab_size", "100"], "too small"),
    ],
)
def test_prepare_bad_inputs_exit_with_one_line_and_keep_existing_data(args, message, tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("\n \n")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "rows.jsonl").write_text('{"text": "hello"}\n')
    (tmp_path / "ok.txt").write_text("hello world " * 100)
    assert main(["prepare", "--data.corpus", "ok.txt", "--data.tokenizer", "char"]) == 0
    before = {p: p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["prepare", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lit-llm: error:") and message in err[0]
    after = {p: p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.suffix != ".lock"}
    assert {p: b for p, b in before.items() if p.suffix != ".lock"} == after
