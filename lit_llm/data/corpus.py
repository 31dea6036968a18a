"""Corpus sources -> a stream of documents.

A source is a text file (one document), a .jsonl file (one document per line, `text_field`), a
.parquet file (one per row, `text_field`), a directory or glob of those, a Hugging Face dataset
(`save_to_disk` directory, or `hf:NAME[:CONFIG][:SPLIT]` when online), or a built-in:
`python-stdlib` (this interpreter's standard library without tests) or `tinyshakespeare`.
Documents are streamed, never all held in memory.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import sysconfig
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lit_llm.errors import LitLLMError

TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TEXT_SUFFIXES = {".txt", ".md", ".py", ".rst", ".text", ""}
RECORD_SUFFIXES = {".jsonl", ".parquet"}
BUILTINS = ("python-stdlib", "tinyshakespeare")


@dataclass
class Document:
    name: str
    text: str


def default_cache_dir() -> Path:
    return Path(os.environ.get("LIT_LLM_CACHE", Path.home() / ".cache" / "lit_llm"))


def python_stdlib_files() -> list[Path]:
    """The running interpreter's standard-library .py files, without tests and site-packages."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip_dirs = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if skip_dirs.intersection(rel.parts[:-1]) or rel.name.startswith("test_"):
            continue
        files.append(path)
    if not files:
        raise LitLLMError(f"no standard-library sources found under {root}; pass --data.corpus PATH")
    return files


def tinyshakespeare_path(cache_dir: Path) -> Path:
    """The cached Tiny Shakespeare text, downloaded once when online."""
    path = cache_dir / "corpora" / "tinyshakespeare.txt"
    if path.exists():
        return path
    try:
        with urllib.request.urlopen(TINYSHAKESPEARE_URL, timeout=10) as response:
            data = response.read()
    except OSError as err:
        raise LitLLMError(
            f"cannot download tinyshakespeare ({err.__class__.__name__}: {err}); "
            "offline, pass a local copy with --data.corpus PATH"
        ) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def is_hf_dataset_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()
                              or (path / "state.json").exists())


def resolve_files(corpus: str, cache_dir: Path, counts: Counter | None = None) -> list[Path]:
    """Expand a file-based corpus spec into a sorted list of files; counts the directory's other files."""
    if corpus == "python-stdlib":
        return python_stdlib_files()
    if corpus == "tinyshakespeare":
        return [tinyshakespeare_path(cache_dir)]
    path = Path(corpus).expanduser()
    if path.is_file():
        return [path]
    wanted = TEXT_SUFFIXES | RECORD_SUFFIXES
    if path.is_dir():
        every = [p for p in path.rglob("*") if p.is_file()]
        files = sorted(p for p in every if p.suffix.lower() in wanted)
        if counts is not None:
            counts["skipped_files_other_type"] += len(every) - len(files)
        if not files:
            raise LitLLMError(f"directory {corpus} holds no text, .jsonl or .parquet files")
        return files
    matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(corpus), recursive=True) if Path(p).is_file())
    if matches:
        return matches
    raise LitLLMError(
        f"corpus {corpus!r} not found: give a file, a directory, a glob, hf:NAME, or one of {', '.join(BUILTINS)}"
    )


def decode(data: bytes, name: str, counts: Counter) -> str:
    if b"\x00" in data[:8192]:
        raise LitLLMError(f"{name} looks binary (it contains NUL bytes); give text files only")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # replaced, not fatal: one bad byte should not stop a large corpus; counted in meta.json
        text = data.decode("utf-8", errors="replace")
        counts["invalid_utf8_replaced"] += text.count("\ufffd") - data.count("\ufffd".encode())
        return text


def _field(record: dict, field: str, where: str) -> str:
    if field not in record:
        raise LitLLMError(f"{where} has no field {field!r} (fields: {', '.join(map(str, record))}); "
                          "set --data.text_field")
    value = record[field]
    return value if isinstance(value, str) else ("" if value is None else str(value))


def iter_jsonl(path: Path, field: str, counts: Counter) -> Iterator[Document]:
    with open(path, "rb") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(decode(line, str(path), counts))
            except json.JSONDecodeError as err:
                raise LitLLMError(f"{path}:{i} is not valid JSON ({err.msg} column {err.colno})") from None
            yield Document(f"{path}:{i}", _field(record, field, f"{path}:{i}"))


def iter_parquet(path: Path, field: str) -> Iterator[Document]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise LitLLMError("reading .parquet needs pyarrow: pip install pyarrow") from None
    pf = pq.ParquetFile(path)
    if field not in pf.schema_arrow.names:
        raise LitLLMError(f"{path} has no column {field!r} (columns: {', '.join(pf.schema_arrow.names)}); "
                          "set --data.text_field")
    row = 0
    for batch in pf.iter_batches(columns=[field], batch_size=1024):
        for text in batch.column(0).to_pylist():
            row += 1
            yield Document(f"{path}:{row}", text or "")


def iter_hf_dataset(spec: str, field: str) -> Iterator[Document]:
    try:
        import datasets
    except ImportError:
        raise LitLLMError("Hugging Face datasets need the `datasets` package: pip install datasets") from None
    if spec.startswith("hf:"):
        name, config, split = (spec[3:].split(":") + [None, None])[:3]
        try:
            ds = datasets.load_dataset(name, config, split=split or "train", streaming=True)
        except Exception as err:  # hub and network errors come in many types
            raise LitLLMError(f"cannot load {spec} ({err.__class__.__name__}); offline, use a save_to_disk "
                              "directory or a local file") from None
    else:
        ds = datasets.load_from_disk(spec)
        if isinstance(ds, datasets.DatasetDict):
            ds = ds["train"] if "train" in ds else next(iter(ds.values()))
    for i, record in enumerate(ds):
        yield Document(f"{spec}:{i}", _field(record, field, spec))


def iter_source(corpus: str, text_field: str, cache_dir: Path, counts: Counter) -> Iterator[Document]:
    """Stream the documents of one corpus spec."""
    if corpus.startswith("hf:") or is_hf_dataset_dir(Path(corpus).expanduser()):
        yield from iter_hf_dataset(corpus, text_field)
        return
    files = resolve_files(corpus, cache_dir, counts)
    member = len(files) > 1 or Path(corpus).expanduser().is_dir()  # of a directory or glob: skip bad files
    for path in files:
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            yield from iter_jsonl(path, text_field, counts)
        elif suffix == ".parquet":
            yield from iter_parquet(path, text_field)
        elif not member:
            yield Document(str(path), decode(path.read_bytes(), str(path), counts))
        elif (text := read_member(path, counts)) is not None:
            yield Document(str(path), text)


def read_member(path: Path, counts: Counter) -> str | None:
    """A text file of a directory or glob, or None when it is skipped (counted by reason)."""
    try:
        data = path.read_bytes()
    except OSError:
        counts["skipped_files_unreadable"] += 1
        return None
    if not data:
        counts["skipped_files_empty"] += 1
        return None
    if b"\x00" in data[:8192]:
        counts["skipped_files_binary"] += 1
        return None
    return decode(data, str(path), counts)


SKIP_REASONS = {"skipped_files_binary": "binary (NUL bytes)", "skipped_files_unreadable": "unreadable",
                "skipped_files_empty": "empty", "skipped_files_other_type": "other file types (not text, .jsonl or .parquet)"}


def describe_skipped(counts: dict) -> str | None:
    """The files of directory corpora that were skipped, by reason (None when none were)."""
    parts = [f"{label} {counts[k]:,}" for k, label in SKIP_REASONS.items() if counts.get(k)]
    return ", ".join(parts) if parts else None


def source_fingerprint(corpus: str, cache_dir: Path) -> str:
    """A cheap identity of a source for the cache key: names, sizes and modification times of its files
    (a changed file changes the key; the content checksum itself is recorded in meta.json)."""
    h = hashlib.sha256(corpus.encode())
    if corpus.startswith("hf:"):
        return h.hexdigest()
    path = Path(corpus).expanduser()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if is_hf_dataset_dir(path) else \
        resolve_files(corpus, cache_dir)
    for f in files:
        st = f.stat()
        h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()
