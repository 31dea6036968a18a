"""The docs stay honest, cheaply: every `lit-llm CMD --flag` in README.md and docs/*.md names a command that
exists and flags that `lit-llm CMD --help` lists; every relative link points to an existing file and
anchor; every path the docs name under configs/, sweeps/, benchmarks/, lit_llm/ or tests/ exists (and
every `tests/x.py::name` names a test there). docs/LOG.md is a dated log: only its links are checked.

Whether the commands also *run* as written was audited by hand (issue #12); this test keeps the names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import io
import re
import shlex
from functools import cache
from pathlib import Path

import pytest

from lit_llm.cli.main import COMMANDS, LIGHTNING_COMMANDS, main
from lit_llm.training.module import SystemOptions

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CURRENT = [p for p in PAGES if p.name != "LOG.md"]  # LOG.md quotes the commands of its day
SUBCOMMANDS = {"classify": ("make-data", "fit", "validate", "test"), "scaling": ("fit", "study"),
               "convert": ("import-hf", "export-hf", "export-safetensors")}
FLAG = re.compile(r"(?<![\w-])--[A-Za-z][\w.\-]*")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# --- commands and flags ------------------------------------------------------------------------------
def doc_commands() -> list[tuple[str, str]]:
    """(file:line, command text) for every `lit-llm ...` in code blocks (continuations joined) and inline code."""
    found = []
    for page in CURRENT:
        lines = page.read_text().splitlines()
        in_block, joined, start = False, "", 0
        for n, line in enumerate(lines, 1):
            if line.strip().startswith("```"):
                in_block = not in_block
                continue
            if in_block:
                text = line.split(" # ")[0].strip()
                joined, start = (joined + " " + text, start) if joined else (text, n)
                if joined.endswith("\\"):
                    joined = joined[:-1]
                    continue
                for cmd in re.findall(r"(?:lit-llm|-m lit_llm)\s.*", joined):
                    found.append((f"{rel(page)}:{start}", cmd))
                joined = ""
            else:
                for code in re.findall(r"`([^`]+)`", line):
                    if code.startswith("lit-llm "):
                        found.append((f"{rel(page)}:{n}", code))
    return found


def command_key(words: list[str]) -> str:
    """`fit`, `classify fit`, `convert export-hf`, ... from the words after lit-llm; raises KeyError if none."""
    first = words[0]
    if first not in LIGHTNING_COMMANDS and first not in COMMANDS:
        raise KeyError(f"no command `lit-llm {first}`")
    if first in SUBCOMMANDS and len(words) > 1 and not words[1].startswith("-"):
        if words[1] not in SUBCOMMANDS[first]:
            raise KeyError(f"no command `lit-llm {first} {words[1]}`")
        return f"{first} {words[1]}"
    return first


@cache
def help_flags(key: str) -> frozenset[str]:
    """The flags `lit-llm KEY --help` prints (run in this process: one parser build per command)."""
    buf = io.StringIO()
    args = key.split() if key.split()[0] != "scaling" else ["scaling"]  # one parser for `scaling ACTION`
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf), pytest.raises(SystemExit) as exit_:
        main([*args, "--help"])
    assert exit_.value.code in (0, None), buf.getvalue()[-500:]
    return frozenset(f.rstrip("+") for f in FLAG.findall(buf.getvalue()))


def nested_ok(flag: str, known: frozenset[str], words: list[str]) -> bool:
    """`--model.system.X` and the init args of a class given on the line (`--trainer.callbacks+=CLASS`
    then `--trainer.callbacks.X`): options of class-typed values, which the help lists as `--P.help`."""
    prefix, _, field = flag.rpartition(".")
    if f"{prefix}.help" not in known:
        return False
    if prefix == "--model.system":
        return field in {f.name for f in dataclasses.fields(SystemOptions)}
    classes = [w.split("=", 1)[1] for w in words if re.match(re.escape(prefix) + r"\+?=", w)]
    for path in classes:
        module, _, name = path.rpartition(".")
        if field in inspect.signature(getattr(importlib.import_module(module), name)).parameters:
            return True
    return False


def command_problems(cmd: str) -> list[str]:
    """What is wrong with one documented `lit-llm ...` line: an unknown command, or options its help lacks."""
    text = cmd.replace("…", "").replace("$(", "(")
    words = shlex.split(text.split("lit_llm", 1)[1] if text.startswith("-m lit_llm") else text[len("lit-llm"):])
    words = [w for w in words if w != "..."]
    if not words or words[0].startswith("-"):
        return []  # a bare `lit-llm` or `lit-llm --help`
    try:
        key = command_key(words)
    except KeyError as err:
        return [err.args[0]]
    known = help_flags(key)
    flags = [FLAG.match(w).group(0).rstrip(".-") for w in words if w.startswith("--")]
    return [f"`lit-llm {key}` has no option {flag}" for flag in flags
            if flag not in known and not nested_ok(flag, known, words)]


def test_doc_commands_use_existing_commands_and_flags():
    commands = doc_commands()
    assert len(commands) > 60  # the extraction itself works (README + docs hold ~100)
    problems = [f"{where}: {problem}" for where, cmd in commands for problem in command_problems(cmd)]
    assert not problems, problems


def test_the_check_catches_a_renamed_flag_and_command():
    assert command_problems("lit-llm fit --model.n_layers 4 --trainer.max_steps 5") == [
        "`lit-llm fit` has no option --model.n_layers"]
    assert command_problems("lit-llm classify train --config x.yaml") == ["no command `lit-llm classify train`"]
    assert command_problems("lit-llm fit --model.system.compile true --model.system.compiles true") == [
        "`lit-llm fit` has no option --model.system.compiles"]
    assert command_problems("lit-llm fit --trainer.callbacks+=lit_llm.training.callbacks.pruning.GPTPruning "
                            "--trainer.callbacks.amount=0.3 --trainer.callbacks.amounts=0.3") == [
        "`lit-llm fit` has no option --trainer.callbacks.amounts"]


@cache
def script_flags(script: str) -> frozenset[str]:
    """The options a benchmark script declares (`add_argument("--x", ...)`), read from its source."""
    return frozenset(re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", (ROOT / script).read_text()))


def benchmark_commands() -> list[tuple[str, str]]:
    """(file:line, `python benchmarks/X.py ...`), continuation lines joined."""
    found = []
    for page in CURRENT:
        lines = page.read_text().splitlines()
        for n, line in enumerate(lines, 1):
            for match in re.finditer(r"python (benchmarks/\w+\.py)[^`]*", line):
                cmd, k = match.group(0), n
                while cmd.rstrip().endswith("\\") and k < len(lines):
                    cmd, k = cmd.rstrip()[:-1] + " " + lines[k].strip(), k + 1
                found.append((f"{rel(page)}:{n}", cmd))
    return found


def test_doc_benchmark_commands_use_existing_scripts_and_flags():
    commands = benchmark_commands()
    assert len(commands) > 5
    problems = []
    for where, cmd in commands:
        script = cmd.split()[1]
        if not (ROOT / script).exists():
            problems.append(f"{where}: no {script}")
            continue
        flags = {FLAG.match(w).group(0) for w in cmd.split(" # ")[0].split() if w.startswith("--")}
        problems += [f"{where}: {script} has no {flag}" for flag in sorted(flags - script_flags(script) - {"--help"})]
    assert not problems, problems


NANOGPT_FLAGS = {"--eval_iters", "--bias", "--compile"}  # nanoGPT's train.py, quoted in performance.md
FOREIGN = {"wandb", "hf", "pip", "huggingface-cli"}  # other programs' command lines


def test_inline_flags_exist_somewhere():
    """Flags named in prose (`--data.clean.min_chars`, `--dry-run`, ...) exist in some lit-llm command's
    help, a benchmark script, or (performance.md) nanoGPT's train.py."""
    known = frozenset().union(*(help_flags(key) for key in (
        "fit", "classify fit", "prepare", "generate", "sweep", "scaling", "report", "convert import-hf")))
    known |= frozenset().union(*(script_flags(str(p.relative_to(ROOT))) for p in (ROOT / "benchmarks").glob("*.py")))
    unknown = []
    for page in CURRENT:
        for n, line in enumerate(page.read_text().splitlines(), 1):
            for code in re.findall(r"`([^`]+)`", line):
                if code.split()[0] in FOREIGN:
                    continue
                for flag in FLAG.findall(code):
                    flag = flag.rstrip(".-")
                    if flag not in known | NANOGPT_FLAGS and not nested_ok(flag, known, code.split()):
                        unknown.append(f"{rel(page)}:{n}: {flag}")
    assert not unknown, unknown


# --- links -----------------------------------------------------------------------------------------
def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return frozenset(slug(m) for m in re.findall(r"^#{1,6}\s+(.*)$", text, flags=re.M))


def test_relative_links_point_to_existing_files_and_anchors():
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{rel(page)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{rel(page)}: {target} (no heading #{anchor} in {rel(dest)})")
    assert not broken, broken


# --- paths -----------------------------------------------------------------------------------------
PATH = re.compile(r"(?<![\w/.\-])((?:configs|sweeps|benchmarks|lit_llm|tests)/[\w./\-*]*[\w*])(::\w+)?")


def test_named_paths_exist():
    missing = []
    for page in CURRENT:
        for n, line in enumerate(page.read_text().splitlines(), 1):
            for path, test in PATH.findall(line):
                hits = list(ROOT.glob(path)) if "*" in path else [ROOT / path] if (ROOT / path).exists() else []
                if not hits and not (ROOT / (path + ".py")).exists():  # `lit_llm/tasks/classify/` etc.
                    missing.append(f"{rel(page)}:{n}: {path}")
                elif test and f"def {test[2:]}(" not in (ROOT / path).read_text():
                    missing.append(f"{rel(page)}:{n}: {path}{test}")
    assert not missing, missing


def test_anchor_slugs_follow_github():
    assert slug("Sweeps under `wandb agent`") == "sweeps-under-wandb-agent"
    assert slug("Resuming a W&B run") == "resuming-a-wb-run"
    assert slug("CPU steps against nanoGPT's train.py (issue #13, item 6)") == (
        "cpu-steps-against-nanogpts-trainpy-issue-13-item-6")
