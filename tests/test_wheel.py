"""The package as people install it away from this checkout: ``python -m build`` makes a wheel from a
copy of the sources; installed into a new venv in another folder (the locked versions, offline, from
the package cache the suite's own install filled), ``rag index``, ``rag serve`` and ``rag ask`` answer
from the bundled article with citations, and nothing is read from the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import threading
import tomllib
from pathlib import Path

import httpx
import pytest

from conftest import stop_process_group
from eval.live_server import free_port

pytestmark = [pytest.mark.model, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
UV = REPO / ".tools" / "bin" / "uv"
#: What a checkout holds at its top beside the sources (environments, builds, indexes, outputs).
NOT_SOURCES = {".git", ".venv", ".tools", "build", "dist", "site", "artifacts", ".reader-run", "models", ".pytest_cache"}


def _not_sources(folder: str, names: list[str]) -> set[str]:
    top = Path(folder) == REPO
    return {n for n in names if n == "__pycache__" or n.endswith(".egg-info") or (top and (n in NOT_SOURCES or n.startswith(".rag-")))}
QUESTION = "When did the Soviet Union launch Sputnik?"


def _run(args: list, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, f"{args[:4]} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done


def _local_wheels() -> list[str]:
    """``--find-links`` for the lock's local wheel folders (the CPU build of torch)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return [arg for index in config["tool"]["uv"].get("index", []) if index.get("format") == "flat" for arg in ("--find-links", index["url"])]


def install_wheel(tmp: Path) -> Path:
    """Build the wheel from a copy of the sources and install it with the locked versions into a new venv
    under ``tmp``; the venv's bin folder."""
    source = tmp / "source"
    shutil.copytree(REPO, source, ignore=_not_sources)
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", tmp / "dist", source])
    wheel = next((tmp / "dist").glob("*.whl"))
    requirements = tmp / "requirements.txt"
    _run([UV, "export", "--frozen", "--no-hashes", "--no-emit-project", "--no-header", "--output-file", requirements], cwd=REPO)
    venv = tmp / "venv"
    _run([UV, "venv", "--quiet", "--python", Path(sys.executable).resolve(), venv])
    install = [UV, "pip", "install", "--quiet", "--python", venv / "bin" / "python", *_local_wheels(), "-r", requirements, wheel]
    offline = subprocess.run([str(a) for a in [*install, "--offline"]], capture_output=True, text=True, timeout=600)
    if offline.returncode != 0:  # a package cache that lacks some locked version: the same versions from the registry
        _run(install)
    return venv / "bin"


class BackgroundInstall:
    """:func:`install_wheel` in a thread, so that the minute it takes (mostly compiling bytecode) overlaps
    tests that leave a core idle; started by conftest's hook when this module's tests are selected."""

    def __init__(self, tmp: Path):
        self.tmp, self.bin_dir, self.error = tmp, None, None
        self.thread = threading.Thread(target=self._work, name="wheel-install", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        try:
            self.bin_dir = install_wheel(self.tmp)
        except BaseException as exc:  # noqa: BLE001 - reported by the fixture that waits for it
            self.error = exc

    def result(self) -> Path:
        self.thread.join(timeout=1200)
        if self.error is not None:
            raise self.error
        assert self.bin_dir is not None, "the wheel install did not finish in 20 minutes"
        return self.bin_dir


BACKGROUND: list[BackgroundInstall] = []


def start_background_install(tmp: Path) -> None:
    if not BACKGROUND and UV.exists():
        BACKGROUND.append(BackgroundInstall(tmp))


@pytest.fixture(scope="module")
def installed(tmp_path_factory, bundled_index):
    """(venv's bin folder, a user folder outside the checkout, environment) with the built wheel installed."""
    if not UV.exists():
        pytest.fail(f"{UV} is missing: run make test, which installs the pinned uv the lock is read with")
    tmp = tmp_path_factory.mktemp("wheel")
    start_background_install(tmp)  # when the hook has not started it already
    bin_dir = BACKGROUND[0].result()
    user = tmp / "elsewhere"
    (user / ".rag-cache").mkdir(parents=True)
    # The article's vectors from the session's index, so that the build below embeds nothing new; the
    # model load, the question encoder's export, the build and the start are the installed package's own.
    shutil.copy(bundled_index.cache_path, user / ".rag-cache" / "embeddings.sqlite")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", RAG_WORKERS="1", RAG_RATE_LIMIT="")
    return bin_dir, user, env


def test_the_wheel_carries_what_runs_and_nothing_of_the_checkout(installed):
    bin_dir, user, env = installed
    where = _run([bin_dir / "python", "-c", "import rag, corpus, api, eval; print(rag.__file__, corpus.__file__, api.__file__, eval.__file__)"], cwd=user, env=env)
    assert str(REPO) not in where.stdout and "site-packages" in where.stdout
    files = _run([bin_dir / "python", "-c", (
        "import importlib.resources as r;"
        "print(sorted(p.name for p in r.files('corpus').joinpath('data').iterdir()));"
        "print(sorted(p.name for p in r.files('api').joinpath('static').iterdir()));"
        "print(sorted(p.name for p in r.files('eval').joinpath('data').iterdir()));"
        "print(sorted(p.name for p in r.files('rag').joinpath('answer/models/reader').iterdir()))"
    )], cwd=user, env=env).stdout
    assert "space-diplomacy.md" in files and "widget.js" in files and "test.jsonl" in files and "MODEL_CARD.md" in files
    version = _run([bin_dir / "rag", "--version"], cwd=user, env=env).stdout
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"] in version


def test_index_serve_and_ask_offline_from_another_folder(installed):
    bin_dir, user, env = installed
    built = _run([bin_dir / "rag", "index"], cwd=user, env=env)
    assert "the bundled corpus" in built.stdout and (user / ".rag-index" / "manifest.json").exists()

    asked = _run([bin_dir / "rag", "ask", QUESTION], cwd=user, env=env)
    assert "1957" in asked.stdout and "[1]" in asked.stdout and "Space Diplomacy" in asked.stdout

    port = free_port()
    log = (user / "serve.log").open("wb")
    server = subprocess.Popen([str(bin_dir / "rag"), "serve", "--port", str(port)], cwd=user, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 300
        while time.monotonic() < deadline:
            assert server.poll() is None, (user / "serve.log").read_text(errors="replace")
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        answer = httpx.post(f"{url}/ask", json={"question": QUESTION}, timeout=60).json()
        assert not answer["abstained"] and answer["citations"], answer
        passages = {p["passage_id"]: p["text"] for p in answer["passages"]}
        for citation in answer["citations"]:
            assert passages[citation["passage_id"]][citation["start"] : citation["end"]] == citation["quote"]
        assert httpx.get(f"{url}/", timeout=10).status_code == 200  # the widget's page comes from the wheel too
    finally:
        stop_process_group(server)
        log.close()
