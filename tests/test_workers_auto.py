"""``rag serve --workers``: ``auto`` (one per core, bounded by memory) is the default, and with
several workers ``/metrics`` reports the sum over all of them, whichever worker answers."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import build_fake_index, builds_by_worker, rag_env
from corpus import DEFAULT_CORPUS_DIR
from eval.live_server import LiveServer
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
