"""``rag serve --engine ray`` on a real local Ray cluster: Ray Serve runs the same app as ``rag serve``.

Few and quick (a 2-core machine): one Serve application with two replicas over the bundled article
(real model, ONNX), shared by the tests of this module and removed at the end.
"""

from __future__ import annotations

import socket
import threading

import httpx
import pytest

from conftest import BUNDLED_ARTICLE_PATH, EXTRA_ARTICLE, wait_until, write_files
from rag.settings import load_settings

pytestmark = [pytest.mark.ray, pytest.mark.slow]

QUESTIONS = [
    "When was Sputnik launched?",
    "What does the Outer Space Treaty forbid?",
    "Who negotiates the use of outer space?",
    "What is the Artemis Accords?",
    "How do I bake sourdough bread?",
]
ADMIN_KEY = "admin-key-for-the-ray-tests-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _comparable(body: dict) -> dict:
    """A response without what differs between any two calls (the request id, the timings)."""
    return {k: v for k, v in body.items() if k not in ("request_id", "timings_ms")}


@pytest.fixture(scope="module")
def ray_app(ray_cluster, tmp_path_factory, onnx_cache):
    """The Serve application of ``rag serve --engine ray --replicas 2`` on the session cluster; yields (settings, url)."""
    from ray import serve

    from api.ray_serving import start, stop_serving
    from rag.service import index_corpus

    root = tmp_path_factory.mktemp("ray-serve")
    corpus = write_files(root / "corpus", {"space-diplomacy.md": BUNDLED_ARTICLE_PATH.read_text(encoding="utf-8")})
    settings = load_settings(
        corpus_dir=corpus, index_dir=root / "index", cache_dir=onnx_cache, encoder_backend="onnx",
        threads=1, port=_free_port(), replicas=2, admin_keys=[ADMIN_KEY],
    )
    index_corpus(settings)
    try:
        coordinator = start(settings)  # noqa: F841 (kept alive while the application serves)
        url = f"http://127.0.0.1:{settings.port}"
        wait_until(lambda: _get(url + "/ready") == 200, 120, "the Ray Serve app to answer /ready")
        yield settings, url
    finally:
        stop_serving()
        serve.shutdown()


def _get(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=10).status_code
    except httpx.HTTPError:
        return None


def test_ray_serving_answers_as_local_serving(ray_app):
    """/ask and /search through Ray Serve's proxy equal the same app served in-process."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    settings, url = ray_app
    with TestClient(create_app(settings)) as local, httpx.Client(base_url=url, timeout=60) as remote:
        for question in QUESTIONS:
            want, got = local.post("/ask", json={"question": question}), remote.post("/ask", json={"question": question})
            assert got.status_code == want.status_code == 200, got.text
            assert _comparable(got.json()) == _comparable(want.json()), question
            for mode in ("hybrid", "bm25"):
                params = {"q": question, "k": 5, "mode": mode}
                want, got = local.get("/search", params=params), remote.get("/search", params=params)
                assert got.status_code == want.status_code == 200, got.text
                assert _comparable(got.json()) == _comparable(want.json()), (mode, question)
        assert sum(1 for q in QUESTIONS if not local.post("/ask", json={"question": q}).json()["abstained"]) >= 3
        stream = remote.post("/ask", json={"question": QUESTIONS[0]}, headers={"Accept": "text/event-stream"})
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        assert "event: passages" in stream.text and "event: done" in stream.text


class Load:
    """Clients asking in a loop on threads until stopped; every failed request is kept."""

    def __init__(self, url: str, clients: int = 2):
        self.url, self.failures, self.answered, self.stop = url, [], 0, threading.Event()
        self.threads = [threading.Thread(target=self._ask, args=(i,)) for i in range(clients)]

    def _ask(self, n: int) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self.stop.is_set():
                n += 1
                try:
                    reply = client.post("/ask", json={"question": QUESTIONS[n % len(QUESTIONS)]})
                    if reply.status_code != 200:
                        self.failures.append((reply.status_code, reply.text[:200]))
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self.answered += 1

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=120)


def _builds_served(url: str) -> dict[int, str]:
    """The build each replica serves, by process id, once /ready has been answered by two replicas."""
    seen: dict[int, str] = {}

    def both() -> bool:
        ready = httpx.get(url + "/ready", timeout=10).json()
        seen[ready["pid"]] = ready["build_id"]
        return len(seen) == 2

    wait_until(both, 60, "/ready from both replicas", interval=0)
    return seen


def test_reload_under_load_reaches_every_replica_and_a_broken_build_none(ray_app):
    """A new build: /admin/reload switches both replicas, 0 failed requests around it. A damaged
    build: refused with 409, every replica still serves the previous build."""
    from rag.service import index_corpus

    settings, url = ray_app
    before = set(_builds_served(url).values())
    assert len(before) == 1
    body, failures = reload_with_a_new_article(url, settings)
    assert body["status"] == "reloaded" and body["replicas"] == 2 and body["previous_build_id"] in before
    assert not failures, failures
    new = body["build_id"]
    assert set(_builds_served(url).values()) == {new}
    answer = httpx.post(url + "/ask", json={"question": "What is a dirigible?"}, timeout=60).json()
    assert any(p["title"] == "Dirigibles" for p in answer["passages"])

    write_files(settings.corpus_dir, {"zeppelins.md": "# Zeppelins\n\nZeppelins were rigid airships built in Germany.\n"})
    index_corpus(settings)
    damaged = next(p for p in settings.index_dir.resolve().rglob("*") if p.is_file() and p.name != "manifest.json")
    reply, failures = reload_with_damage(url, damaged)
    assert reply.status_code == 409 and f"still serving build {new}" in reply.json()["detail"], reply.text
    assert not failures, failures
    assert set(_builds_served(url).values()) == {new}


def reload_with_a_new_article(url: str, settings) -> tuple[dict, list]:
    """Add an article, index, and POST /admin/reload, all under load: the reply (200) and the requests that failed."""
    from rag.service import index_corpus

    with Load(url) as load:
        write_files(settings.corpus_dir, {"dirigibles.md": EXTRA_ARTICLE})
        index_corpus(settings)
        reply = httpx.post(url + "/admin/reload", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=300)
        assert reply.status_code == 200, reply.text
        wait_until(lambda: load.answered > 10, 120, "requests after the reload")
    return reply.json(), load.failures


def reload_with_damage(url: str, damaged) -> tuple[httpx.Response, list]:
    """POST /admin/reload under load while the file ``damaged`` of the new build is corrupted (repaired
    afterwards): the reply, and the requests that failed meanwhile."""
    intact = damaged.read_bytes()
    damaged.write_bytes(intact + b"damage")
    try:
        with Load(url) as load:
            reply = httpx.post(url + "/admin/reload", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=300)
            wait_until(lambda: load.answered > 5, 120, "requests after the refused reload")
    finally:
        damaged.write_bytes(intact)  # a replica started later opens this build
    return reply, load.failures


def _replicas(ray) -> list[str]:
    from api.ray_serving import APP_NAME, DEPLOYMENT

    prefix = f"SERVE_REPLICA::{APP_NAME}#{DEPLOYMENT}#"
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix))


def test_a_killed_replica_fails_no_request(ray_app):
    """With two replicas, ray.kill on one between requests: every request of the loop around it succeeds
    while Serve replaces it. (A request in flight on the killed replica fails: Serve does not retry it.)"""
    import ray

    _, url = ray_app
    replicas = wait_until(lambda: len(r := _replicas(ray)) == 2 and r, 60, "two replicas")
    failures, answered = [], 0
    with httpx.Client(base_url=url, timeout=60) as client:

        def ask(i: int) -> None:
            nonlocal answered
            reply = client.post("/ask", json={"question": QUESTIONS[i % len(QUESTIONS)]})
            answered += 1
            if reply.status_code != 200:
                failures.append((reply.status_code, reply.text[:200]))

        for i in range(10):
            ask(i)
        ray.kill(ray.get_actor(replicas[0], namespace="serve"), no_restart=True)
        # Ask on until Serve has replaced the killed replica and both answer again.
        i = 10
        while not (len(now := _replicas(ray)) == 2 and replicas[0] not in now and _ready_replicas() == 2):
            ask(i)
            i += 1
            assert i < 2000, "Serve did not replace the killed replica"
        for j in range(10):
            ask(i + j)
    assert not failures, failures
    assert answered >= 20


def _ready_replicas() -> int:
    from ray import serve

    from api.ray_serving import APP_NAME, DEPLOYMENT

    status = serve.status().applications[APP_NAME].deployments[DEPLOYMENT]
    return status.replica_states.get("RUNNING", 0)
