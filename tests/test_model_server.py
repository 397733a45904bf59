"""A real ``rag serve`` with the bundled model over an index it does not own: reloads over HTTP,
by SIGHUP and under load, and an answer stream whose first event arrives before the answer exists.

The index holds the bundled article and three small ones; tests add and remove one more article
and check, with the model's own cosine, that the server searches the new build with the real
encoder. Composition waits at a gate (``RAG_FAULT_GATE``) that the streaming test closes.
"""

from __future__ import annotations

import queue
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from answer_checks import Event, check_answer_dict, iter_sse
from conftest import BUNDLED_ARTICLE_PATH, SMALL_CORPUS, model_env, wait_until, write_files
from corpus import load_corpus
from embeddings.cache import EmbeddingCache
from eval.live_server import LiveServer
from rag.text.chunking import embed_text
from rag.index import build_index, load_index

pytestmark = [pytest.mark.model, pytest.mark.slow]

ADMIN_KEY = "admin-key-0123456789abcdef"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DIRIGIBLES = """---
title: Dirigibles
slug: dirigibles
categories: [Transport]
---

# Dirigibles

A dirigible is a lighter-than-air craft that can be steered. Zeppelins were rigid dirigibles with a metal frame.
"""
#: Shares no content word with the article: only the model's sense of meaning finds it.
PARAPHRASE = "Which gas-filled balloons could a pilot navigate?"


class Served(NamedTuple):
    server: LiveServer
    root: Path
    corpus: Path
    gate: Path  # composition waits while this file is missing
    encoder: object

    def rebuild(self, with_dirigibles: bool) -> str:
        """Index the corpus with or without the extra article (in this process, real model); the new build id."""
        target = self.corpus / "dirigibles.md"
        if with_dirigibles:
            target.write_text(DIRIGIBLES)
        else:
            target.unlink(missing_ok=True)
        cache = EmbeddingCache(self.root / "cache" / "embeddings.sqlite")
        try:
            return build_index(load_corpus(self.corpus), self.root / "index", self.encoder, cache=cache).build_id
        finally:
            cache.close()

    def build_id(self) -> str:
        return httpx.get(f"{self.server.url}/ready", timeout=30).json()["build_id"]


@pytest.fixture(scope="module")
def served(tmp_path_factory, bundled_index):
    root = tmp_path_factory.mktemp("model-server")
    corpus = write_files(root / "corpus", SMALL_CORPUS)
    shutil.copy(BUNDLED_ARTICLE_PATH, corpus / BUNDLED_ARTICLE_PATH.name)
    (root / "cache").mkdir()
    shutil.copy(bundled_index.cache_path, root / "cache" / "embeddings.sqlite")  # the bundled article is embedded already
    gate = root / "compose.gate"
    gate.touch()
    env = model_env(root, RAG_RATE_LIMIT="", RAG_ADMIN_KEYS=ADMIN_KEY, RAG_FAULT_GATE=f"compose:{gate}")
    state = Served(LiveServer(env), root, corpus, gate, bundled_index.encoder)
    state.rebuild(with_dirigibles=False)
    state.server.start(root / "server.log", timeout=300)
    try:
        yield state
    finally:
        gate.touch()
        state.server.stop()
    assert state.server.stopped_cleanly()


def dense_hits(served: Served, query: str = PARAPHRASE) -> list[dict]:
    response = httpx.get(f"{served.server.url}/search", params={"q": query, "mode": "dense", "k": 3}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def assert_model_scores(served: Served, hits: list[dict], query: str = PARAPHRASE) -> None:
    """Each dense score is the bundled model's cosine of query and passage, read from the build on disk."""
    index = load_index(served.root / "index", served.encoder)
    query_vector = served.encoder.embed_batch([query])[0]
    for hit in hits:
        chunk = index.chunks[index.row_of[hit["passage_id"]]]
        cosine = float(served.encoder.embed_batch([embed_text(chunk)])[0] @ query_vector)
        assert hit["dense_score"] == pytest.approx(cosine, abs=1e-3), hit["passage_id"]


def reload(served: Served) -> httpx.Response:
    return httpx.post(f"{served.server.url}/admin/reload", headers={"X-API-Key": ADMIN_KEY}, timeout=120)


def test_http_reload_serves_the_new_build_with_the_model(served):
    if "dirigibles" in {h["article"] for h in dense_hits(served)}:  # another test left it in
        served.rebuild(with_dirigibles=False)
        assert reload(served).status_code == 200
    before = served.build_id()
    new_build = served.rebuild(with_dirigibles=True)
    reloaded = reload(served)
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json()["previous_build_id"] == before and reloaded.json()["build_id"] == new_build
    ready = httpx.get(f"{served.server.url}/ready", timeout=30).json()
    assert ready["build_id"] == new_build and ready["model"] == MODEL
    hits = dense_hits(served)
    assert hits[0]["article"] == "dirigibles", [h["article"] for h in hits]
    assert_model_scores(served, hits)


def test_sighup_reloads_the_index_with_the_model(served):
    if "dirigibles" not in {h["article"] for h in dense_hits(served)}:
        served.rebuild(with_dirigibles=True)
        served.server.signal(signal.SIGHUP)
        wait_until(lambda: "dirigibles" in {h["article"] for h in dense_hits(served)}, 120, "the first SIGHUP reload")
    new_build = served.rebuild(with_dirigibles=False)
    served.server.signal(signal.SIGHUP)
    wait_until(lambda: served.build_id() == new_build, 120, f"build {new_build} after SIGHUP")
    hits = dense_hits(served)
    assert "dirigibles" not in {h["article"] for h in hits}
    assert_model_scores(served, hits)
    assert served.server.proc.poll() is None  # SIGHUP did not end the process


def test_reloads_under_load_fail_no_request(served):
    """Clients keep asking while the index is reloaded three times: every answer is whole and valid."""
    stop = threading.Event()
    failures: list[str] = []
    done: list[int] = [0, 0, 0, 0]  # successful requests per client

    def client(worker: int) -> None:
        with httpx.Client(base_url=served.server.url, timeout=120) as http:
            while not stop.is_set():
                try:
                    if worker % 2:
                        response = http.post("/ask", json={"question": "What do aardvarks eat?", "top_k": 3})
                        if response.status_code == 200:
                            check_answer_dict(response.json())  # passages and citations of one build
                    else:
                        response = http.get("/search", params={"q": PARAPHRASE, "mode": "dense", "k": 5})
                except Exception as exc:  # noqa: BLE001 - any failure is the finding
                    failures.append(f"client {worker}: {exc!r}")
                    return
                if response.status_code != 200:
                    failures.append(f"client {worker}: {response.status_code} {response.text[:200]}")
                done[worker] += 1

    builds = [served.build_id()]
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(len(done))]
    for t in threads:
        t.start()
    try:
        for add in (True, False, True):
            # every client gets two requests through before each swap, and again after the last
            marks = list(done)
            wait_until(lambda: all(d >= m + 2 for d, m in zip(done, marks)) or failures, 120, "every client to be served")
            served.rebuild(with_dirigibles=add)
            reloaded = reload(served)
            assert reloaded.status_code == 200, reloaded.text
            builds.append(reloaded.json()["build_id"])
        marks = list(done)
        wait_until(lambda: all(d >= m + 2 for d, m in zip(done, marks)) or failures, 120, "every client to be served")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    assert failures == []
    assert len(set(builds)) == 4
    assert "dirigibles" in {h["article"] for h in dense_hits(served)}  # the last build is the one served


def test_the_first_event_arrives_while_the_answer_is_still_being_composed(served):
    """Composition is held at a gate; the passages event must reach the client before the gate opens."""
    events: queue.Queue[tuple[Event | BaseException, float]] = queue.Queue()

    def read() -> None:
        try:
            with httpx.Client(timeout=120) as http:
                with http.stream(
                    "POST",
                    f"{served.server.url}/ask",
                    json={"question": "When did the Soviet Union launch its first satellite?"},
                    headers={"Accept": "text/event-stream"},
                ) as response:
                    assert response.status_code == 200
                    for event in iter_sse(response.iter_lines()):
                        events.put((event, time.monotonic()))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            events.put((exc, time.monotonic()))

    waits_before = served.server.log().count("rag: waiting at compose")
    served.gate.unlink()
    reader = threading.Thread(target=read, daemon=True)
    try:
        reader.start()
        try:
            first, _ = events.get(timeout=60)
        except queue.Empty:
            pytest.fail("no event arrived while the answer was being composed: the stream is buffered")
        assert not isinstance(first, BaseException), first
        assert first.event == "passages", first
        assert first.json()["passages"], "the passages come first"
        # the answer did not exist yet: composition is waiting at the gate, and nothing else has arrived
        wait_until(lambda: served.server.log().count("rag: waiting at compose") > waits_before, 30, "composition to wait")
        assert events.empty()
    finally:
        opened = time.monotonic()
        served.gate.touch()
    reader.join(timeout=120)
    rest = []
    while not events.empty():
        item, at = events.get()
        assert not isinstance(item, BaseException), item
        assert at >= opened  # everything after the passages came once composition could go on
        rest.append(item)
    kinds = [e.event for e in rest]
    assert kinds[-1] == "done" and set(kinds[:-1]) <= {"sentence", "abstained"}, kinds
    check_answer_dict(rest[-1].json())
