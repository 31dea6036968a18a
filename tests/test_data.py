import json

import numpy as np
import pytest

from lit_llm.data.clean import CleanConfig
from lit_llm.data.datamodule import TextDataModule
from lit_llm.data.samplers import RandomWindows, SequentialWindows, sample_offsets
from lit_llm.data.prepare import PrepareConfig, PreparedData, prepare
from lit_llm.data.tokenizer import EOS, build_tokenizer
from lit_llm.errors import LitLLMError


def decode_split(prepared: PreparedData, split: str) -> str:
    return prepared.tokenizer().decode(prepared.tokens(split).tolist(), skip_special_tokens=False)


@pytest.mark.parametrize("tokenizer", ["char", "bpe"])
def test_prepare_round_trip_single_document(tiny_text, tmp_path, tokenizer):
    text = tiny_text.read_text()
    prepared = prepare(PrepareConfig(str(tiny_text), tokenizer, vocab_size=300), tmp_path / "cache")
    # a single document splits contiguously, the last 10% is validation, cut at the nearest line boundary
    # between two non-space characters; one EOS at the document's end, none at the seam
    cut = min((i + 1 for i, c in enumerate(text[:-1]) if c == "\n" and not text[i - 1].isspace()
               and not text[i + 1].isspace()), key=lambda c: abs(c - int(len(text) * 0.9)))
    assert decode_split(prepared, "train") == text[:cut]
    assert decode_split(prepared, "val") == text[cut:] + EOS
    meta = json.loads((prepared.path / "meta.json").read_text())
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == prepared.tokenizer().get_vocab_size()
    assert meta["splits"]["train"]["tokens"] == len(prepared.tokens("train"))
    assert meta["splits"]["test"]["tokens"] == 0 and meta["split"]["by"] == "position"


def test_char_ids_follow_sorted_characters(tiny_text, tmp_path):
    prepared = prepare(PrepareConfig(str(tiny_text), "char"), tmp_path / "cache")
    chars = sorted(set(tiny_text.read_text()))
    tok = prepared.tokenizer()
    assert tok.encode("".join(chars)).ids == list(range(len(chars)))
    assert prepared.vocab_size == len(chars) + 4  # + EOS, PAD, MASK, UNK


def test_documents_split_whole_and_keep_eos(tmp_path):
    corpus = tmp_path / "docs"
    corpus.mkdir()
    texts = {f"d{i:02d}.txt": f"document {i} " * (5 + i) for i in range(20)}
    for name, text in texts.items():
        (corpus / name).write_text(text)
    prepared = prepare(PrepareConfig(str(corpus), "char", val_fraction=0.2, test_fraction=0.1), tmp_path / "c")
    pieces = {s: decode_split(prepared, s).split(EOS)[:-1] for s in ("train", "val", "test")}
    assert sorted(sum(pieces.values(), [])) == sorted(texts.values())  # every document exactly once
    assert [len(pieces[s]) for s in ("train", "val", "test")] == [14, 4, 2]  # exact shares of documents
    assert prepared.meta["splits"]["val"]["documents"] == 4 and prepared.meta["split"]["by"] == "document"
    again = prepare(PrepareConfig(str(corpus), "char", val_fraction=0.2, test_fraction=0.1, split_seed=2),
                    tmp_path / "c")
    assert decode_split(again, "val") != decode_split(prepared, "val")  # the split seed changes the split


def test_prepare_is_cached_and_keyed(tiny_text, tmp_path):
    a = prepare(PrepareConfig(str(tiny_text), "char"), tmp_path / "cache")
    stamp = (a.path / "train-00000.bin").stat().st_mtime_ns
    b = prepare(PrepareConfig(str(tiny_text), "char"), tmp_path / "cache")
    assert b.path == a.path and (b.path / "train-00000.bin").stat().st_mtime_ns == stamp
    c = prepare(PrepareConfig(str(tiny_text), "bpe", vocab_size=300), tmp_path / "cache")
    assert c.path != a.path
    # a prepared directory is itself a corpus
    assert prepare(PrepareConfig(str(a.path), "bpe"), tmp_path / "cache").path == a.path


def test_prepare_refuses_to_overwrite_foreign_directory(tiny_text, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(LitLLMError, match="exists"):
        prepare(PrepareConfig(str(tiny_text), "char"), tmp_path / "cache", out=out)
    assert (out / "keep.txt").read_text() == "mine"


def test_gpt2_tokenizer_reproduces_gpt2_ids(gpt2_files):
    tok = build_tokenizer(str(gpt2_files), 0, [])
    assert tok.encode("Hello world").ids == [15496, 995]
    assert tok.token_to_id(EOS) == 50256
    assert tok.decode(tok.encode(" naïve café\n").ids) == " naïve café\n"


@pytest.mark.parametrize(
    "corpus, tokenizer, vocab, message",
    [
        ("missing.txt", "char", 100, "not found"),
        ("empty.txt", "char", 100, "empty"),
        ("binary.bin", "char", 100, "binary"),
        ("ok.txt", "bpe", 258, "too small"),
        ("ok.txt", "nope", 100, "unknown tokenizer"),
    ],
)
def test_bad_inputs_raise_clear_errors(tmp_path, corpus, tokenizer, vocab, message):
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "binary.bin").write_bytes(b"\x00\x01\x02" * 100)
    (tmp_path / "ok.txt").write_text("hello world " * 100)
    with pytest.raises(LitLLMError, match=message):
        prepare(PrepareConfig(str(tmp_path / corpus), tokenizer, vocab), tmp_path / "cache")


def test_sample_offsets_are_deterministic_and_spread():
    ids = np.arange(100_000)
    a, b = sample_offsets(7, ids, 1000), sample_offsets(7, ids, 1000)
    assert np.array_equal(a, b) and a.min() >= 0 and a.max() < 1000
    counts = np.bincount(a, minlength=1000)
    assert counts.min() > 50 and counts.max() < 160  # ~100 each: roughly uniform
    assert not np.array_equal(a, sample_offsets(8, ids, 1000))


def test_random_windows_are_rank_disjoint_and_world_size_invariant():
    tokens = np.arange(5000, dtype=np.uint16)
    single = RandomWindows(tokens, 16, 4, seed=1)
    ranks = [RandomWindows(tokens, 16, 4, seed=1, rank=r, world_size=2) for r in range(2)]
    for k in range(5):
        r0, r1 = ranks[0].batch(k), ranks[1].batch(k)
        assert not set(r0["sample_ids"].tolist()) & set(r1["sample_ids"].tolist())
        # global micro-batches 2k and 2k+1 of one process are what the two ranks read at step k
        assert np.array_equal(r0["tokens"], single.batch(2 * k)["tokens"])
        assert np.array_equal(r1["tokens"], single.batch(2 * k + 1)["tokens"])
    b = single.batch(3)["tokens"].numpy()
    assert b.shape == (4, 17) and (np.diff(b, axis=1) == 1).all()  # contiguous windows of T+1
    resumed = iter(RandomWindows(tokens, 16, 4, seed=1, start=3))
    assert np.array_equal(next(resumed)["tokens"], single.batch(3)["tokens"])


def test_sequential_windows_cover_split_once_across_ranks():
    tokens = np.arange(103, dtype=np.uint16)
    targets = []
    for rank in range(3):
        for item in SequentialWindows(tokens, 10, rank, 3):
            y = item["target"]
            targets += y[y >= 0].tolist()
            x = item["input"][: int((y >= 0).sum())]
            assert (y[y >= 0] == x + 1).all()  # each target follows its input
    assert sorted(targets) == list(range(1, 103))  # every token but the first, exactly once


def test_datamodule_block_size_must_fit(tiny_text):
    dm = TextDataModule(str(tiny_text), "char", block_size=40_000)
    with pytest.raises(LitLLMError, match="too few"):
        dm.setup("fit")
    with pytest.raises(LitLLMError, match="positive"):
        TextDataModule(str(tiny_text), "char", batch_size=0)


def test_tinyshakespeare_offline_error_names_the_fix(monkeypatch, tmp_path):
    import urllib.request

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(LitLLMError, match="--data.corpus PATH"):
        prepare(PrepareConfig("tinyshakespeare", "char"), tmp_path / "cache")
    # a cached copy is used without the network
    cached = tmp_path / "cache" / "corpora" / "tinyshakespeare.txt"
    cached.parent.mkdir(parents=True)
    cached.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 50)
    prepared = prepare(PrepareConfig("tinyshakespeare", "char"), tmp_path / "cache")
    assert prepared.meta["sources"][0]["documents"] == 1


def test_python_stdlib_corpus_excludes_tests():
    from lit_llm.data.corpus import python_stdlib_files

    files = python_stdlib_files()
    names = {f.name for f in files}
    assert {"os.py", "json/__init__.py".split("/")[1]} <= names
    assert not any(f.name.startswith("test_") or "test" in f.parent.parts[-1:] for f in files)
    assert not any("site-packages" in f.parts for f in files)


# --- issue #14 items 8 and 9: exact GPT-2 ids, cleaning and skipped-file reports, split shares -------------
RAW = ("Caf\u0065\u0301 costs 5\u20ac\u0085 today.  \r\nSecond line\x9c here\r\n\n\n\n\n\nThird:\tmore "
       "text\nand words enough to split " * 40 + "the end\n")
GPT2_EXACT = {"clean": CleanConfig(nfc=False, strip_control=False, normalize_whitespace=False)}


def test_gpt2_ids_are_byte_exact_with_cleaning_off(gpt2_files, tmp_path, monkeypatch):
    from tokenizers import Tokenizer, models, pre_tokenizers

    monkeypatch.setenv("LIT_LLM_GPT2_DIR", str(gpt2_files))
    corpus = tmp_path / "raw.txt"
    corpus.write_bytes(RAW.encode("utf-8"))
    reference = Tokenizer(models.BPE.from_file(str(gpt2_files / "vocab.json"), str(gpt2_files / "merges.txt")))
    reference.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    expected = reference.encode(corpus.read_bytes().decode("utf-8")).ids
    dm = TextDataModule(str(corpus), "gpt2", cache_dir=str(tmp_path / "c"), **GPT2_EXACT)
    prepared = dm.prepare_once()
    train, val = prepared.tokens("train").tolist(), prepared.tokens("val").tolist()
    assert val[-1] == prepared.meta["eos_id"] == 50256 and prepared.meta["eos_id"] not in train  # none at the seam
    assert train + val[:-1] == expected
    assert not any(prepared.meta["cleaning"].get(k) for k in ("control_chars_removed", "whitespace_chars_removed"))


def test_prepare_summary_counts_every_cleaning_change_by_kind(tmp_path, capsys):
    corpus = tmp_path / "raw.txt"
    corpus.write_bytes(RAW.encode("utf-8"))
    from lit_llm.cli.prepare import main as prepare_main

    prepared = tmp_path / "my data"  # a space: the printed option must still paste into a shell
    prepare_main(["--data.corpus", str(corpus), "--data.tokenizer", "char", "--out", str(prepared)])
    out = capsys.readouterr().out
    import shlex

    assert shlex.split(out.strip().splitlines()[-1].removeprefix("use it with: ")) == ["--data.corpus", str(prepared)]
    line = next(x for x in out.splitlines() if x.strip().startswith("cleaning:"))
    n = 40  # the repeats of RAW's body, counted independently of the cleaning code
    assert f"C1 control characters (U+0080-U+009F) removed {RAW.count(chr(0x85)) + RAW.count(chr(0x9c)):,}" in line
    assert f"CRLF -> LF {RAW.count(chr(13) + chr(10)):,}" in line and "documents NFC-normalised 1" in line
    # per repeat: two spaces before CRLF; a run of 6 newlines (CRLF + 5 LF) folded to 3
    assert f"trailing spaces/tabs removed {2 * n}" in line and f"newlines of 4+ blank lines folded {3 * n}" in line
    assert "NUL" not in line  # kinds that did not occur are not listed


def test_directory_reports_skipped_files_and_warns_on_split_shares(tmp_path, capsys):
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "big.txt").write_text("a large document line\n" * 3000)
    for i in range(9):
        (corpus / f"small{i}.txt").write_text(f"small document {i}\n" * 5)
    (corpus / "binary.txt").write_bytes(b"\x00\x01" * 100)
    (corpus / "empty.md").write_text("")
    (corpus / "image.png").write_bytes(b"\x89PNG")
    (corpus / "notes.jsonx").write_text("x")
    prepared = prepare(PrepareConfig(str(corpus), "char", val_fraction=0.1), tmp_path / "c", log=print)
    assert prepared.meta["skipped_files"] == {"binary": 1, "empty": 1, "other_type": 2}
    captured = capsys.readouterr()
    assert "skipped files: binary (NUL bytes) 1, empty 1, other file types" in captured.out
    splits = prepared.meta["splits"]
    share = splits["val"]["tokens"] / sum(s["tokens"] for s in splits.values())
    assert not 0.05 <= share <= 0.2  # one document of ten holds most of the tokens: the shares miss
    warning = f"lit-llm: warning: the val split holds {share:.1%} of the tokens, asked 10.0%"
    assert warning in captured.err and "--data.split_by position" in captured.err
    by_position = prepare(PrepareConfig(str(corpus), "char", val_fraction=0.1, split_by="position"),
                          tmp_path / "c", log=print)
    splits = by_position.meta["splits"]
    share = splits["val"]["tokens"] / sum(s["tokens"] for s in splits.values())
    assert share == pytest.approx(0.1, abs=0.01) and not by_position.meta["warnings"]
    assert "warning" not in capsys.readouterr().err
    text = decode_split(by_position, "train") + decode_split(by_position, "val")
    assert text.count(EOS) == 10  # every document once, one EOS each: none where a document was cut
