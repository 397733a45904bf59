"""``rag serve --workers 2`` with the real model: SIGHUP after a re-index makes every worker serve the
new build, while questions keep being answered (none fails)."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from pathlib import Path

import httpx
import pytest

from conftest import EXTRA_ARTICLE, builds_by_worker, wait_until
from corpus import DEFAULT_CORPUS_DIR, load_corpus
from eval.live_server import LiveServer

pytestmark = [pytest.mark.model, pytest.mark.slow]


def build(corpus: Path, index_dir: Path, encoder, cache_path: Path):
    from embeddings.cache import EmbeddingCache
    from rag.index import build_index

    cache = EmbeddingCache(cache_path)
    try:
        return build_index(load_corpus(corpus), index_dir, encoder, cache=cache)
    finally:
        cache.close()


def cites_dirigibles(response: httpx.Response) -> bool:
    """Whether an answer's passages include the article only the second build holds."""
    return any(p["title"] == "Dirigibles" for p in response.json()["passages"])


def test_sighup_reloads_every_worker_and_no_question_fails(tmp_path, bundled_index):
    corpus = tmp_path / "corpus"
    shutil.copytree(DEFAULT_CORPUS_DIR, corpus)
    cache = tmp_path / "cache" / "embeddings.sqlite"
    cache.parent.mkdir()
    shutil.copy(bundled_index.cache_path, cache)  # the article's vectors: the builds below embed only the new one
    first = build(corpus, tmp_path / "index", bundled_index.encoder, cache)

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(RAG_INDEX_DIR=str(tmp_path / "index"), RAG_CACHE_DIR=str(tmp_path / "cache"), RAG_RATE_LIMIT="")
    server = LiveServer(env, args=["--workers", "2"]).launch(tmp_path / "server.log")
    stop = threading.Event()
    outcomes: list[str] = []
    # What is asked, and what a right answer holds: the old article's fact, then (once every worker
    # serves the new build) something only the new build holds.
    asking = [("When was NASA established?", lambda response: "1958" in response.text, False)]
    on_new_build: list[str] = []

    def ask_questions() -> None:
        while not stop.is_set():
            question, right, new = asking[-1]
            try:  # a fresh connection each time, so the questions reach both workers
                response = httpx.post(f"{server.url}/ask", json={"question": question}, timeout=60)
                outcomes.append("ok" if response.status_code == 200 and right(response) else response.text[:200])
                if new:
                    on_new_build.append(outcomes[-1])
            except httpx.HTTPError as exc:
                outcomes.append(f"{type(exc).__name__}: {exc}")

    try:
        workers = builds_by_worker(server.url, 2, lambda seen: True, timeout=300)
        assert len(workers) == 2 and set(workers.values()) == {first.build_id}, (workers, server.log()[-3000:])

        asker = threading.Thread(target=ask_questions)
        asker.start()
        (corpus / "dirigibles.md").write_text(EXTRA_ARTICLE)
        second = build(corpus, tmp_path / "index", bundled_index.encoder, cache)
        server.signal(signal.SIGHUP)  # the supervisor: it passes the signal on to its workers
        after = builds_by_worker(
            server.url, 2, lambda seen: all(seen.get(pid) == second.build_id for pid in workers), timeout=120
        )
        asking.append(("What is a dirigible?", cites_dirigibles, True))
        wait_until(lambda: len(on_new_build) >= 5, 120, "questions answered from the new build")
        stop.set()
        asker.join(timeout=120)

        assert {pid: after.get(pid) for pid in workers} == {pid: second.build_id for pid in workers}, server.log()[-3000:]
        assert set(after) == set(workers)  # reloaded in place: the same processes, their model kept
        failures = [outcome for outcome in outcomes if outcome != "ok"]
        assert failures == [] and len(outcomes) >= 5, (failures[:5], len(outcomes))
        found = httpx.get(f"{server.url}/search", params={"q": "zeppelins", "mode": "bm25"}).json()["results"]
        assert found and found[0]["article"] == "dirigibles"
        assert "not ready in time" not in server.log() and "died" not in server.log()
    finally:
        stop.set()
        server.stop()
