"""The layout rules, read from the code's own imports: packages import downward only, the rooms inside
``rag`` import along the pipeline only, no module imports itself back through others, and modules and
functions stay a readable size."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Each package and the project packages it may import (docs/architecture.md, "Layout").
LAYERS: dict[str, set[str]] = {
    "core": set(),
    "corpus": {"core"},
    "embeddings": {"core"},
    "rag": {"core", "corpus", "embeddings"},
    "api": {"core", "corpus", "embeddings", "rag"},
    "eval": {"core", "corpus", "embeddings", "rag"},
}

#: Inside ``rag``: each room (a sub-package, one job of the pipeline) and the rooms it may import
#: (docs/architecture.md, "Layout"). Text <- index <- search <- answer <- shards; a room may also import itself.
ROOMS: dict[str, set[str]] = {
    "rag.text": set(),
    "rag.index": {"rag.text"},
    "rag.search": {"rag.text", "rag.index"},
    "rag.answer": {"rag.text", "rag.index", "rag.search"},
    "rag.shards": {"rag.text", "rag.index", "rag.search", "rag.answer"},
}
#: ``rag``'s top: what every room may import (the package itself for ``__version__``; the fault hooks).
RAG_SHARED = {"rag", "rag.faults"}
#: ``rag``'s top: the wiring, which may import every room and which no room imports.
RAG_WIRING = {"rag.cli", "rag.commands", "rag.documents", "rag.origins", "rag.payloads", "rag.remote", "rag.service", "rag.settings"}
#: Imports from a room up into the wiring, each allowed by name with its reason (rag/shards/__init__.py).
RAG_UPWARD = {
    ("rag.shards.ray_build", "rag.service"): "a Ray build makes its encoder and build options as a local build does",
}

MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources(root: Path = ROOT) -> dict[str, Path]:
    return {_module_name(p, root): p for package in LAYERS for p in sorted((root / package).rglob("*.py"))}


def _imports(name: str, path: Path, modules: set[str]) -> set[str]:
    """Project modules that ``name`` imports anywhere in its file (module level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # "from pkg import mod" imports the module pkg.mod when there is one.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph(root: Path = ROOT) -> dict[str, set[str]]:
    sources = _sources(root)
    modules = set(sources)
    return {name: _imports(name, path, modules) for name, path in sources.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_the_imports_it_must_see():
    """The reader itself: known edges are found, so an empty list of violations means something."""
    graph = _graph()
    assert "core.errors" in graph["rag.settings"] or any(m.startswith("core") for m in graph["rag.settings"])
    assert any(m.startswith("rag.") for m in graph["api.app"])
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert "rag.search.retrieve" in graph["rag.answer.service"] and "rag.index" in graph["rag.search.retrieve"]
    assert _room("rag.answer.service") == "rag.answer" and _room("rag.service") is None


def _upward(graph: dict[str, set[str]]) -> list[str]:
    """Imports of a package its layer does not allow, as "source -> target"."""
    return sorted(
        f"{source} -> {target}"
        for source, targets in graph.items()
        for target in targets
        if (top := target.split(".")[0]) != (home := source.split(".")[0]) and top not in LAYERS[home]
    )


def test_the_checks_report_an_upward_import_and_a_cycle_in_a_small_tree(tmp_path):
    """The checks on a tree that breaks each rule once: both breaks are reported, the allowed import is not."""
    files = {
        "core/__init__.py": "",
        "core/util.py": "from rag.answer import answer\n",  # upward: core may import nothing
        "embeddings/__init__.py": "",
        "embeddings/model.py": "from core import util\n",  # downward: allowed
        "rag/__init__.py": "",
        "rag/answer.py": "def answer(): ...\n",
        "rag/a.py": "import rag.b\n",
        "rag/b.py": "def f():\n    from . import a\n",  # a cycle closed inside a function
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    graph = _graph(tmp_path)
    assert _upward(graph) == ["core.util -> rag.answer"]
    assert _cycles(graph) == [["rag.a", "rag.b"]]


def test_packages_import_downward_only():
    wrong = _upward(_graph())
    assert wrong == [], "imports against the layers (docs/architecture.md, Layout):\n" + "\n".join(wrong)


def _room(module: str) -> str | None:
    """The room of a ``rag`` module: its sub-package in :data:`ROOMS`, or None at ``rag``'s top."""
    return next((room for room in ROOMS if module == room or module.startswith(room + ".")), None)


def test_every_module_of_rag_has_a_place():
    """A new module goes into a room, or is named as shared or wiring at the top: nothing lands by default."""
    homeless = sorted(
        m for m in _graph() if m.startswith("rag.") and _room(m) is None and m not in RAG_SHARED | RAG_WIRING
    )
    assert homeless == [], "rag modules in no room and not named at rag's top (tests/test_architecture.py): " + ", ".join(homeless)


def test_rooms_of_rag_import_along_the_pipeline_only():
    graph = _graph()
    wrong = []
    for source, targets in sorted(graph.items()):
        if (home := _room(source)) is None:
            continue  # the top of rag: the wiring may import every room
        for target in sorted(targets):
            if target.split(".")[0] != "rag" or target in RAG_SHARED or (source, target) in RAG_UPWARD:
                continue
            room = _room(target)
            if room != home and room not in ROOMS[home]:
                wrong.append(f"{source} -> {target}" + ("  (rag's wiring)" if room is None else ""))
    assert wrong == [], "imports against the rooms of rag (docs/architecture.md, Layout):\n" + "\n".join(wrong)


def test_the_upward_exceptions_are_still_needed():
    graph = _graph()
    stale = [f"{s} -> {t}" for s, t in RAG_UPWARD if t not in graph.get(s, set())]
    assert stale == [], "allowed imports that the code no longer makes; remove them from RAG_UPWARD: " + ", ".join(stale)


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert cycles == [], "modules that import each other: " + "; ".join(" <-> ".join(c) for c in cycles)


def _function_lengths(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
                body = body[1:] or body  # the docstring is documentation, not length
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            yield node.name, node.lineno, node.end_lineno - start + 1 - (body[0].lineno - node.body[0].lineno)


def test_functions_stay_short():
    long = [
        f"{path.relative_to(ROOT)}:{line} {name}() has {length} lines"
        for path in _sources().values()
        for name, line, length in _function_lengths(path)
        if length > MAX_FUNCTION_LINES
    ]
    assert long == [], f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(sorted(long))


def test_long_modules_say_why_they_are_one_thing():
    """A module over the size limit is allowed only when its docstring says why it is one cohesive thing."""
    unexplained = []
    for path in _sources().values():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") <= MAX_MODULE_LINES:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if "one cohesive" not in doc.lower():
            unexplained.append(f"{path.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    assert unexplained == [], f"modules over {MAX_MODULE_LINES} lines whose docstring does not say why they are one cohesive thing: " + ", ".join(unexplained)


@pytest.mark.parametrize("package", sorted(LAYERS) + sorted(ROOMS))
def test_each_package_says_what_it_is_for_and_what_it_may_import(package):
    init = ROOT.joinpath(*package.split("."), "__init__.py")
    doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
    assert len(doc) > 40, f"{package}/__init__.py needs a docstring: what the package is for, what it may import"
    assert "import" in doc.lower(), f"{package}/__init__.py's docstring does not say what it may import"
