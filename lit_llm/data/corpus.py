"""Corpus sources: a file, a directory, a glob, or a built-in name -> documents (name, text)."""

from __future__ import annotations

import glob
import hashlib
import os
import sysconfig
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lit_llm.errors import LitLLMError

TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TEXT_SUFFIXES = {".txt", ".md", ".py", ".rst", ".text", ""}
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


def resolve_files(corpus: str, cache_dir: Path) -> list[Path]:
    """Expand a corpus spec into a sorted list of files."""
    if corpus == "python-stdlib":
        return python_stdlib_files()
    if corpus == "tinyshakespeare":
        return [tinyshakespeare_path(cache_dir)]
    path = Path(corpus).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise LitLLMError(f"directory {corpus} holds no text files ({', '.join(sorted(TEXT_SUFFIXES - {''}))})")
        return files
    matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(corpus), recursive=True) if Path(p).is_file())
    if matches:
        return matches
    raise LitLLMError(
        f"corpus {corpus!r} not found: give a file, a directory, a glob, or one of {', '.join(BUILTINS)}"
    )


def read_document(path: Path) -> Document:
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise LitLLMError(f"{path} looks binary (it contains NUL bytes); give text files only")
    # invalid UTF-8 is replaced rather than fatal: one bad byte should not stop a large corpus
    return Document(name=str(path), text=data.decode("utf-8", errors="replace"))


def load_documents(corpus: str, cache_dir: Path) -> list[Document]:
    docs = [read_document(p) for p in resolve_files(corpus, cache_dir)]
    docs = [d for d in docs if d.text.strip()]
    if not docs:
        raise LitLLMError(f"corpus {corpus!r} is empty: it has no non-blank text")
    return docs


def corpus_checksum(docs: list[Document]) -> str:
    """Content hash of the documents (names excluded, so moving a corpus keeps its cache)."""
    h = hashlib.sha256()
    for doc in docs:
        data = doc.text.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()
