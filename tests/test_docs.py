"""The documentation site: it builds in strict mode (a broken link fails it), its HTTP reference is
generated from the app, and every ``rag`` command the README and the docs show is one the real
command line accepts. The curl examples run against a live server in tests/test_readme.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from conftest import command_words, shell_lines

REPO = Path(__file__).resolve().parents[1]
MKDOCS = Path(sys.executable).parent / "mkdocs"
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
def rag_commands() -> list[tuple[str, str]]:
    """(document, command) for every ``rag ...`` line, with any ``VAR=value`` prefix."""
    found = []
    for path in DOC_FILES:
        for line in shell_lines(path.read_text(encoding="utf-8")):
            if command_words(line)[:1] == ["rag"]:
                found.append((path.relative_to(REPO).as_posix(), line))
    return found


def _leaf(args: list[str]):
    """The click command a ``rag`` argument list names, its context, and the arguments left for it."""
    from rag.cli import app

    command = typer.main.get_command(app)
    ctx = command.make_context("rag", [], resilient_parsing=True)
    while hasattr(command, "get_command") and args and not args[0].startswith("-"):
        sub = command.get_command(ctx, args[0])
        assert sub is not None, f"no command {args[0]!r}"
        ctx = sub.make_context(args[0], [], parent=ctx, resilient_parsing=True)
        command, args = sub, args[1:]
    return command, ctx, args


def check_command(line: str) -> None:
    """Raise if ``line`` is not a command ``rag`` accepts. A synopsis (``[--k 5]``, ``hybrid|dense``)
    must name only options its command has; a concrete line must parse, values and all."""
    words = command_words(line)
    synopsis = "[" in line or "|" in line or "..." in line
    head = [w for w in words[1:] if not w.startswith(("[", "-"))] if synopsis else words[1:]
    command, ctx, rest = _leaf(head if synopsis else words[1:])
    options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    named = set(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", " ".join(words[1:])))
    unknown = named - options - {"--help"}
    assert not unknown, f"{line!r}: {sorted(unknown)} are not options of 'rag {command.name}'"
    if not synopsis:
        command.make_context(command.name, list(rest), parent=ctx)


COMMANDS = rag_commands()


def test_the_docs_show_the_commands_people_run():
    shown = {command_words(line)[1] for _, line in COMMANDS if len(command_words(line)) > 1}
    assert {"index", "search", "ask", "serve", "add", "documents", "eval", "tune", "mcp"} <= shown, shown


def test_every_make_target_shown_exists():
    targets = set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), flags=re.M))
    shown = set()
    for path in DOC_FILES:
        for line in shell_lines(path.read_text(encoding="utf-8")):
            words = command_words(line)
            if len(words) > 1 and words[0] == "make":
                shown.add(words[1])
    assert {"run", "test", "docs"} <= shown and shown <= targets, shown - targets


@pytest.mark.parametrize(("document", "line"), COMMANDS, ids=[f"{d}:{line[:40]}" for d, line in COMMANDS])
def test_every_rag_command_shown_is_one_the_cli_accepts(document, line):
    check_command(line)


@pytest.mark.parametrize(
    "line",
    ["rag search 'q' --top 5", "rag serve --port many", "rag nonsense", "rag ask 'q' [--kk 5]"],
)
def test_the_command_check_refuses_what_the_cli_refuses(line):
    with pytest.raises((AssertionError, typer.BadParameter)):
        check_command(line)


def _build(config_dir: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(site)], cwd=config_dir, capture_output=True, text=True, timeout=300
    )


def test_the_site_builds_strictly_with_the_reference_generated_from_the_app(tmp_path):
    from api.app import create_app

    run = _build(REPO, tmp_path / "site")
    assert run.returncode == 0, run.stderr[-3000:]
    schema = json.loads((tmp_path / "site" / "openapi.json").read_text())
    assert schema == create_app(load_in_background=True).openapi()
    reference = (tmp_path / "site" / "http-api" / "index.html").read_text()
    for path, operations in schema["paths"].items():
        for method in operations:
            assert f"{method.upper()} {path}" in reference, (method, path)


def test_a_broken_link_fails_the_strict_build(tmp_path):
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    page = tmp_path / "docs" / "cli.md"
    page.write_text(page.read_text() + "\nSee [the missing page](no-such-page.md).\n")
    run = _build(tmp_path, tmp_path / "site")
    assert run.returncode != 0 and "no-such-page.md" in run.stderr


def test_every_setting_is_documented():
    """Each RAG_ variable the settings read is named somewhere in the docs (most in docs/settings.md)."""
    from rag.settings import Settings

    pages = "".join(path.read_text(encoding="utf-8") for path in DOC_FILES)
    missing = [f"RAG_{name.upper()}" for name in Settings.model_fields if f"RAG_{name.upper()}" not in pages]
    assert missing == [], f"settings no page names: {missing}"
