"""``rag serve --workers``: ``auto`` (one per core, bounded by memory) is the default. With several workers
``/ready`` answers for all of them, so that after its 200 no question meets a worker still loading (and
one that reaches such a worker waits for it); SIGHUP and ``POST /admin/reload`` reach every worker;
``/metrics`` reports the sum over all of them and each one's loaded state; and a rate limit kept in Redis
holds across them. The fake encoder throughout: what is under test is the processes, not the model."""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conftest import EXTRA_ARTICLE, build_fake_index, rag_env, wait_until
from corpus import DEFAULT_CORPUS_DIR
from eval.live_server import LiveServer, free_port
from rag.settings import WORKER_BYTES, auto_workers, load_settings, worker_count

GB = 1_000_000_000
ADMIN_KEY = "admin-key-0123456789abcdef"
BALLOONS = """---
title: Hot-air balloons
slug: balloons
---

# Hot-air balloons

A hot-air balloon rises because the heated air in its envelope is lighter than the cooler air around it.
The Montgolfier brothers flew the first crewed hot-air balloon over Paris in 1783.
"""


def test_auto_is_one_worker_per_core_as_far_as_memory_goes():
    assert auto_workers("torch", cores=2, available=24 * GB) == 2
    assert auto_workers("torch", cores=16, available=4 * GB) == int(4 * GB * 0.75 // WORKER_BYTES["torch"])
    assert auto_workers("onnx-int8", cores=16, available=4 * GB) > auto_workers("torch", cores=16, available=4 * GB)
    assert auto_workers("torch", cores=8, available=100_000_000) == 1  # never zero
    assert auto_workers("torch", cores=3, available=None) == 3  # memory unknown: cores


def test_workers_setting_takes_a_number_or_auto(monkeypatch):
    monkeypatch.delenv("RAG_WORKERS", raising=False)
    assert load_settings().workers == "auto" and worker_count(load_settings()) >= 1
    assert worker_count(load_settings(workers="3")) == 3


def test_a_bad_workers_value_is_one_line(rag_cli):
    run = rag_cli(["serve", "--workers", "many"])
    assert run.returncode == 2 and run.stderr.count("\n") == 1
    assert "RAG_WORKERS" in run.stderr and "'auto'" in run.stderr


# ------------------------------------------------------------------------------------ several workers, one truth


@functools.cache
def fresh() -> httpx.Client:
    """A client that opens a new connection for every request, so that any worker may take each one
    (one client for all: a client of its own per request would cost more CPU than the server's answer)."""
    return httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=60)


def ready(url: str) -> httpx.Response:
    return fresh().get(f"{url}/ready")


def burst(url: str, question: str, n: int = 200, clients: int = 8) -> list[httpx.Response]:
    """``n`` questions from ``clients`` concurrent clients, each on a fresh connection (so every worker gets some)."""
    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(lambda _: fresh().post(f"{url}/ask", json={"question": question}), range(n)))


def failures(responses: list[httpx.Response], build_id: str, title: str) -> list[str]:
    """Every response that is not a 200 from ``build_id`` whose passages include the article ``title``."""
    return [
        f"{r.status_code} {r.headers.get('x-build-id')} {r.text[:160]}"
        for r in responses
        if r.status_code != 200 or r.headers.get("x-build-id") != build_id or title not in {p["title"] for p in r.json()["passages"]}
    ]


class Load:
    """Clients asking without pause on fresh connections, in the background, until the block ends."""

    def __init__(self, url: str, clients: int = 8):
        self.url, self.clients = url, clients
        self.stop = threading.Event()
        self.statuses: list[int | str] = []

    def _ask(self) -> None:
        while not self.stop.is_set():
            try:
                self.statuses.append(fresh().post(f"{self.url}/ask", json={"question": "When was NASA established?"}).status_code)
            except httpx.HTTPError as exc:
                self.statuses.append(f"{type(exc).__name__}: {exc}")

    def __enter__(self) -> Load:
        self.threads = [threading.Thread(target=self._ask) for _ in range(self.clients)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def failed(self) -> list:
        return [s for s in self.statuses if s != 200]


def hold_one_worker_loading(live: LiveServer, gates: Path, workers: int) -> int:
    """Every worker waits at the load gate (RAG_FAULT_GATE=load:GATES/open-{pid}); let all but one through. Returns the held pid."""
    markers = wait_until(lambda: (found := sorted(gates.glob("open-*.waiting"))) and len(found) == workers and found, 120, "every worker at the load gate")
    pids = [int(m.name.removeprefix("open-").removesuffix(".waiting")) for m in markers]
    for pid in pids[:-1]:
        (gates / f"open-{pid}").touch()
    return pids[-1]


def check_ready_waits_for_the_held_worker(url: str, workers: int, held: int) -> None:
    """While one worker loads, /ready says 503 and 'N-1 of N' whichever worker answers, the loaded ones included."""
    answered_by: set[int] = set()

    def every_worker_said_not_ready() -> bool:
        response = ready(url)
        assert response.status_code == 503, f"/ready said {response.status_code} while worker {held} was loading: {response.text}"
        body = response.json()
        assert body["workers_total"] == workers and not {w["pid"]: w["loaded"] for w in body["workers"]}.get(held), body
        assert f"({body['workers_loaded']} of {workers} workers loaded" in body["detail"], body["detail"]
        if body["workers_loaded"] == workers - 1:  # the others released have all loaded
            answered_by.add(body["pid"])
        return len(answered_by) == workers

    wait_until(every_worker_said_not_ready, 120, "a 503 from every worker while one loads")


def check_questions_wait_for_the_held_worker(live: LiveServer, gates: Path, held: int) -> None:
    """Questions that reach the worker still loading wait for its load (RAG_LOAD_WAIT_S) instead of a 503."""
    with Load(live.url) as load:
        wait_until(lambda: "a request waits for this worker to load" in live.log(), 120, "a question to reach the loading worker")
        (gates / f"open-{held}").touch()
        wait_until(lambda: ready(live.url).status_code == 200, 120, "the held worker to load")
    assert load.failed() == [] and len(load.statuses) >= 8, load.failed()[:5]


def on_build(url: str, build_id: str, workers: int) -> dict | None:
    """/ready's body when it says 200 and every one of the ``workers`` serves ``build_id``."""
    response = ready(url)
    body = response.json()
    if response.status_code == 200 and len(body["workers"]) == workers and {w["build_id"] for w in body["workers"]} == {build_id}:
        return body
    return None


def _search_total(metrics: str) -> float:
    pattern = r'^rag_http_requests_total\{[^}]*route="/search"[^}]*status="200"[^}]*\} ([0-9.e+]+)$'
    return sum(float(m) for m in re.findall(pattern, metrics, re.MULTILINE))


def check_metrics_sum_over_workers(url: str, shared: Path, workers: int) -> None:
    n = 60
    with ThreadPoolExecutor(8) as pool:  # a connection each, so that every worker takes requests
        statuses = list(pool.map(lambda i: fresh().get(f"{url}/search", params={"q": f"Sputnik launch {i}", "k": 1}).status_code, range(n)))
    assert statuses == [200] * n
    served_by = {p.name for p in shared.glob("counter_*.db")}
    assert len(served_by) >= 2, f"one worker took every request: {served_by}"
    # Every worker answers /metrics with the total of all workers, and every worker's loaded state.
    texts = [fresh().get(f"{url}/metrics").text for _ in range(10)]
    assert {_search_total(text) for text in texts} == {float(n)}
    loaded = re.findall(r'^rag_worker_loaded\{pid="(\d+)"\} ([0-9.]+)$', texts[0], re.MULTILINE)
    assert len(loaded) == workers and {value for _, value in loaded} == {"1.0"}, loaded
    assert f"rag_workers {float(workers)}" in texts[0]


def check_a_crashed_worker_is_replaced_on_the_board(live: LiveServer, gates: Path, build_id: str, workers: int) -> None:
    """A worker killed outright: uvicorn starts another, the dead one leaves the board, /ready says 503 while
    the new one loads (held at the load gate here) and 200 with the new one once it has."""
    before = {w["pid"] for w in ready(live.url).json()["workers"]}
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    marker = wait_until(lambda: next((m for m in gates.glob("open-*.waiting") if int(m.name[5:-8]) not in before), None), 120, "a replacement at the load gate")
    newcomer = int(marker.name[5:-8])
    loading = wait_until(lambda: (r := ready(live.url)).status_code == 503 and r.json(), 60, "/ready to see the replacement loading")
    assert {w["pid"]: w["loaded"] for w in loading["workers"]} == {**{pid: True for pid in before - {victim}}, newcomer: False}
    (gates / f"open-{newcomer}").touch()
    body = wait_until(lambda: on_build(live.url, build_id, workers), 120, "the replacement to load")
    assert {w["pid"] for w in body["workers"]} == before - {victim} | {newcomer} and f"Child process [{victim}] died" in live.log()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 4])
def test_every_worker_answers_once_ready_and_after_each_reload(tmp_path, workers):
    corpus = tmp_path / "corpus"
    shutil.copytree(DEFAULT_CORPUS_DIR, corpus)
    first = build_fake_index(tmp_path, corpus)
    gates, shared = tmp_path / "gates", tmp_path / "metrics"
    gates.mkdir()
    shared.mkdir()
    env = rag_env(
        tmp_path, RAG_RATE_LIMIT="100000/minute", RAG_ADMIN_KEYS=ADMIN_KEY, RAG_FAULT_GATE=f"load:{gates}/open-{{pid}}",
        PROMETHEUS_MULTIPROC_DIR=shared,
    )
    live = LiveServer(env, args=["--workers", str(workers)]).launch(tmp_path / "server.log")
    try:
        # Start: one worker held at its load, the others loaded.
        held = hold_one_worker_loading(live, gates, workers)
        check_ready_waits_for_the_held_worker(live.url, workers, held)
        check_questions_wait_for_the_held_worker(live, gates, held)
        # /ready said 200: every worker answers, from the same build.
        assert wait_until(lambda: on_build(live.url, first.build_id, workers), 60, "/ready to name every worker")["workers_loaded"] == workers
        assert failures(burst(live.url, "When was NASA established?"), first.build_id, "Space Diplomacy") == []

        # SIGHUP after a re-index, under load: /ready names the new build for every worker, and so do the answers.
        (corpus / "dirigibles.md").write_text(EXTRA_ARTICLE)
        second = build_fake_index(tmp_path, corpus)
        with Load(live.url) as load:
            live.signal(signal.SIGHUP)
            wait_until(lambda: on_build(live.url, second.build_id, workers), 60, "every worker to serve the build after SIGHUP")
        assert load.failed() == [], load.failed()[:5]
        assert failures(burst(live.url, "What is a dirigible?"), second.build_id, "Dirigibles") == []

        # POST /admin/reload under load: it answers once every worker serves the new build.
        (corpus / "balloons.md").write_text(BALLOONS)
        third = build_fake_index(tmp_path, corpus)
        with Load(live.url) as load:
            reply = httpx.post(f"{live.url}/admin/reload", headers={"X-API-Key": ADMIN_KEY}, timeout=120)
        assert reply.status_code == 200, reply.text
        assert reply.json()["pending"] == [] and [w["build_id"] for w in reply.json()["workers"]] == [third.build_id] * workers
        assert load.failed() == [], load.failed()[:5]
        assert failures(burst(live.url, "Who flew the first crewed hot-air balloon?"), third.build_id, "Hot-air balloons") == []

        check_metrics_sum_over_workers(live.url, shared, workers)
        log = live.log()
        assert f"rate limit 100000/minute per worker ({workers} workers: up to {100000 * workers}/minute per client;" in log
        assert "Traceback" not in log and "died" not in log
        if workers == 2:
            check_a_crashed_worker_is_replaced_on_the_board(live, gates, third.build_id, workers)
    finally:
        live.stop()


# ------------------------------------------------------------------------------------ rate limits across workers


def test_the_start_line_says_what_limit_a_client_really_gets():
    from api.security import describe_rate_limit

    assert describe_rate_limit("30/minute", "", 1) == "rate limit 30/minute per client"
    assert describe_rate_limit("30/minute", "", 2) == (
        "rate limit 30/minute per worker (2 workers: up to 60/minute per client; set RAG_RATE_LIMIT_STORAGE=redis://... to share it)"
    )
    assert describe_rate_limit("30/minute", "redis://:secret@db:6379", 2) == "rate limit 30/minute per client, shared by the 2 workers through redis://***@db:6379"
    assert describe_rate_limit("", "", 4) == "rate limit: off (RAG_RATE_LIMIT is empty)"


def test_limiters_count_together_in_redis_and_apart_in_memory(redis_url):
    from api.security import RateLimiter

    caller = f"addr:{uuid.uuid4()}"
    in_redis = [RateLimiter("5/minute", redis_url), RateLimiter("5/minute", redis_url)]  # two workers
    assert sum(in_redis[i % 2].check(caller) is None for i in range(10)) == 5
    assert 1 <= in_redis[0].check(caller) <= 60  # refused, with the seconds to wait
    in_memory = [RateLimiter("5/minute"), RateLimiter("5/minute")]
    assert sum(in_memory[i % 2].check(caller) is None for i in range(10)) == 10


def test_a_storage_that_stops_answering_lets_requests_through():
    from api.security import RateLimiter

    limiter = RateLimiter("1/minute", f"redis://127.0.0.1:{free_port()}")  # nothing listens there
    assert [limiter.check("addr:x") for _ in range(3)] == [None, None, None]


def test_rag_serve_refuses_a_bad_or_unreachable_storage_in_one_line(tmp_path, rag_cli):
    build_fake_index(tmp_path, DEFAULT_CORPUS_DIR)
    bad = rag_cli(["serve"], RAG_RATE_LIMIT_STORAGE="memcached://127.0.0.1:11211")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "RAG_RATE_LIMIT_STORAGE" in bad.stderr, bad.stderr
    down = rag_cli(["serve"], RAG_RATE_LIMIT_STORAGE=f"redis://user:secret@127.0.0.1:{free_port()}")
    assert down.returncode == 1 and down.stderr.count("\n") == 1, down.stderr
    assert down.stderr.startswith("error: cannot reach the rate-limit storage redis://***@127.0.0.1:") and "secret" not in down.stderr


@pytest.mark.slow
def test_a_rate_limit_in_redis_holds_across_workers(tmp_path, redis_url):
    build_fake_index(tmp_path, DEFAULT_CORPUS_DIR)
    env = rag_env(tmp_path, RAG_RATE_LIMIT="30/minute", RAG_RATE_LIMIT_STORAGE=redis_url)
    live = LiveServer(env, args=["--workers", "2"]).start(tmp_path / "server.log")
    try:
        with ThreadPoolExecutor(4) as pool:  # 90 requests of one client, each on a fresh connection: both workers take some
            responses = list(pool.map(lambda i: fresh().get(f"{live.url}/search", params={"q": f"treaty {i}", "k": 1}), range(90)))
        statuses = [r.status_code for r in responses]
        assert statuses.count(200) == 30 and statuses.count(429) == 60, statuses
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.json()["detail"].startswith("too many requests; retry in") and int(refused.headers["retry-after"]) >= 1
        assert f"rate limit 30/minute per client, shared by the 2 workers through {redis_url}" in live.log()
    finally:
        live.stop()
