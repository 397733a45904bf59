"""``rag serve --workers``: ``auto`` (one per core, bounded by memory) is the default, and with
several workers ``/metrics`` reports the sum over all of them, whichever worker answers."""

from __future__ import annotations

import functools
import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import build_fake_index, builds_by_worker, rag_env
from corpus import DEFAULT_CORPUS_DIR
from eval.live_server import LiveServer, free_port
from rag.settings import WORKER_BYTES, auto_workers, load_settings, worker_count

GB = 1_000_000_000


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


def _search_total(metrics: str) -> float:
    pattern = r'^rag_http_requests_total\{[^}]*route="/search"[^}]*status="200"[^}]*\} ([0-9.e+]+)$'
    return sum(float(m) for m in re.findall(pattern, metrics, re.MULTILINE))


@pytest.mark.slow
def test_metrics_sum_over_workers(tmp_path):
    build_fake_index(tmp_path, DEFAULT_CORPUS_DIR)
    shared = tmp_path / "metrics"
    shared.mkdir()
    env = rag_env(tmp_path, RAG_RATE_LIMIT="", PROMETHEUS_MULTIPROC_DIR=shared)
    live = LiveServer(env, args=["--workers", "2"])
    live.started = lambda: live.log().count("Application startup complete") >= 2
    live.start(tmp_path / "server.log", timeout=120)
    try:
        # each worker loads on its own after startup: ask only once both say they are ready
        assert len(builds_by_worker(live.url, 2, lambda seen: True, timeout=120)) == 2
        n = 60

        def one(i: int) -> int:  # a connection each, so that both workers take requests
            return httpx.get(f"{live.url}/search", params={"q": f"Sputnik launch {i}", "k": 1}).status_code

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(one, range(n))) == [200] * n
        served_by = {p.name for p in shared.glob("counter_*.db")}
        assert len(served_by) >= 2, f"one worker took every request: {served_by}"
        # Every worker answers /metrics with the total of all workers.
        totals = {_search_total(httpx.get(f"{live.url}/metrics", headers={"connection": "close"}).text) for _ in range(10)}
        assert totals == {float(n)}
        assert 'rag_index_chunks' in httpx.get(f"{live.url}/metrics").text
        assert "Warning" not in live.log() and "Traceback" not in live.log()
    finally:
        live.stop()


@functools.cache
def fresh() -> httpx.Client:
    """A client that opens a new connection for every request, so that any worker may take each one."""
    return httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=60)


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
