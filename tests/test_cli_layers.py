"""The command line is assembled at the top: ``rag --help`` and ``rag search`` load neither the HTTP API
(``api``) nor the evaluation harness (``eval``), and the commands that live there are listed with their own
one-line help and load when they are run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer

from conftest import build_fake_index, rag_env
from corpus import DEFAULT_CORPUS_DIR

#: ``rag`` exactly as its entry point runs it, which writes the modules it loaded to a file at exit.
WRAPPER = """
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = "rag"
from rag.cli import main
main()
"""


def loaded_packages(args: list[str], env: dict[str, str], tmp: Path) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run ``rag ARGS`` in a fresh interpreter; its result and the top-level packages it imported."""
    out = tmp / "modules.json"
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(out), *args], env=env, capture_output=True, text=True, timeout=120
    )
    return proc, {name.split(".")[0] for name in json.loads(out.read_text())}


@pytest.mark.slow
def test_help_search_and_ask_import_neither_the_api_nor_the_harness(tmp_path):
    build_fake_index(tmp_path, DEFAULT_CORPUS_DIR)
    env = rag_env(tmp_path)
    runs = (["--help"], ["search", "Outer Space Treaty", "--json", "-k", "2"], ["search", "Sputnik", "--mode", "bm25"], ["ask", "When was Sputnik launched?"])
    for args in runs:
        proc, packages = loaded_packages(args, env, tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "rag" in packages and "typer" in packages  # the wrapper sees what the command loaded
        assert not packages & {"api", "eval", "fastapi", "uvicorn", "ray"}, (args, sorted(packages & {"api", "eval", "fastapi", "uvicorn", "ray"}))
    # The registered commands are listed all the same, each with its one-line help.
    help_text = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(tmp_path / "m.json"), "--help"], env=env, capture_output=True, text=True
    ).stdout
    for name in ("index", "add", "documents", "search", "ask", "serve", "mcp", "eval", "bench", "tune"):
        assert f"\n  {name} " in help_text, name


def test_a_moved_command_loads_its_package_when_run(tmp_path):
    env = rag_env(tmp_path)
    proc, packages = loaded_packages(["eval", "--help"], env, tmp_path)
    assert proc.returncode == 0 and "Usage: rag eval [OPTIONS] COMMAND [ARGS]..." in proc.stdout, proc.stderr
    assert "eval" in packages and "api" not in packages
    proc, packages = loaded_packages(["serve", "--help"], env, tmp_path)
    assert proc.returncode == 0 and "Usage: rag serve [OPTIONS]" in proc.stdout and "--build-if-missing" in proc.stdout
    assert "api" in packages and "eval" not in packages
    assert "ray" not in packages  # only --engine ray loads it (api/ray_serving.py)


def test_local_serving_does_not_import_ray():
    """What local `rag serve` runs (the command, the app, uvicorn's runner) loads no Ray."""
    code = "import sys, api.cli, api.app, api.serving; print('ray' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr


def test_each_registered_command_is_listed_with_its_own_help():
    """The one line ``rag --help`` shows without importing a command is the command's own short help."""
    from rag.cli import app
    from rag.commands import LAZY_COMMANDS

    group = typer.main.get_command(app)
    with click.Context(group, info_name="rag") as ctx:
        for name, lazy in LAZY_COMMANDS.items():
            command = lazy.load(name)
            assert command.name == name
            own = (command.help or "").split("\n\n")[0].strip()
            assert " ".join(own.split()) == lazy.help, name
            assert name in group.list_commands(ctx)
