"""The lower layers import downward only: read from the source (imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = {"core", "corpus", "embeddings", "rag", "api", "eval"}
#: What each package may import of the project's packages (itself aside).
ALLOWED = {"core": set(), "corpus": {"core"}, "embeddings": {"core"}}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every project module ``path`` imports, at any depth of the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] in PROJECT}


def graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports."""
    files = {_module_name(p): p for p in (ROOT / package).rglob("*.py")}
    return {name: {i for i in imports_of(path) if i in files and i != name} for name, path in files.items()}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_lower_package_imports_only_the_layers_below_it(package):
    wrong = {
        f"{_module_name(path)} imports {name}"
        for path in (ROOT / package).rglob("*.py")
        for name in imports_of(path)
        if name.split(".")[0] not in ALLOWED[package] | {package}
    }
    assert not wrong, sorted(wrong)


@pytest.mark.parametrize("package", ["core", "corpus", "embeddings", "rag/index"])
def test_no_import_cycle_between_the_modules_of_a_package(package):
    edges = graph(package)
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError(" -> ".join(path[path.index(module) :] + [module]))
        if module in done:
            return
        for target in sorted(edges.get(module, ())):
            visit(target, path + [module])
        done.add(module)

    for module in sorted(edges):
        visit(module, [])


def test_the_index_package_reads_no_retrieval_answer_or_interface_module():
    forbidden = {"rag.search.retrieve", "rag.answer.service", "rag.answer.answerability", "rag.service", "rag.cli", "rag.search.fusion"}
    found = {
        f"{_module_name(path)} imports {name}"
        for path in (ROOT / "rag" / "index").glob("*.py")
        for name in imports_of(path)
        if name.split(".")[0] in {"api", "eval"} or any(name == f or name.startswith(f + ".") for f in forbidden)
    }
    assert not found, sorted(found)
