"""The package's shape, checked from its source: import arrows run one way with no cycles and no imports
hidden in functions, Lightning's private names are used in one module only, no test scaffolding ships in
the package, and modules stay small."""

import ast
import inspect
from pathlib import Path

import lightning.pytorch

import lit_llm
from lit_llm.training.module import LanguageModel

PACKAGE = Path(lit_llm.__file__).parent
DOOR = PACKAGE / "training" / "lightning_internals.py"
FORBIDDEN = {  # layer -> layers it must not import
    "model": {"data.datamodule", "training", "cli", "studies", "tasks", "checkpoints"},
    "data": {"model", "training", "cli", "studies", "tasks", "checkpoints"},
    "checkpoints": {"training", "cli", "studies", "tasks"},
    "studies": {"model", "data", "training", "cli", "tasks", "checkpoints"},
    "training": {"cli", "studies", "tasks"},
    "tasks": {"cli", "studies"},
}


def modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        out[name] = ast.parse(path.read_text(), str(path))
    return out


def own_imports(tree: ast.Module, top_level_only: bool) -> list[tuple[str, int]]:
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lit_llm"):
            found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("lit_llm")]
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_import_arrows_run_one_way():
    bad = []
    for name, tree in modules().items():
        for target, line in own_imports(tree, top_level_only=False):
            rest = target.removeprefix("lit_llm.")
            if any(rest == f or rest.startswith(f + ".") for f in FORBIDDEN.get(layer(name), ())):
                bad.append(f"{name}:{line} imports {target}")
    assert not bad, bad


def test_no_import_of_the_package_is_hidden_in_a_function():
    hidden = []
    for name, tree in modules().items():
        top = set(own_imports(tree, top_level_only=True))
        hidden += [f"{name}:{line} {target}" for target, line in own_imports(tree, False) if (target, line) not in top]
    assert not hidden, hidden


def test_no_import_cycles():
    graph = {name: {t for t, _ in own_imports(tree, True)} for name, tree in modules().items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            assert state.get(nxt) != 1, "cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]) if nxt in path else nxt
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


def lightning_private_names() -> set[str]:
    """Every _name Lightning defines or assigns on an object (attributes and methods), from its source."""
    names = set()
    for path in Path(lightning.pytorch.__file__).parent.parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
                names.add(node.attr)
            elif isinstance(node, ast.FunctionDef):
                names.add(node.name)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_lightning_private_names_only_behind_the_door():
    private = lightning_private_names()
    assert {"_results", "_logger_connector", "_should_accumulate"} <= private  # the scan finds them
    used = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == DOOR:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = node.attr if isinstance(node, ast.Attribute) else node.name if isinstance(node, ast.FunctionDef) else None
            if name in private:
                used.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {name}")
    assert not used, used


def test_no_test_scaffolding_in_the_package():
    offenders = [str(p) for p in PACKAGE.rglob("*.py") if "LIT_LLM_TEST_" in p.read_text()]
    assert not offenders, offenders


def test_modules_stay_small():
    long = [f"{p.relative_to(PACKAGE)}: {n}" for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400 and p.name != "gpt.py"]
    assert not long, long
    assert len(inspect.getsource(LanguageModel).splitlines()) <= 250
