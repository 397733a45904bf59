"""Prometheus metrics: requests and latency per route, answers by outcome, the loaded index's size.

With several server processes (``rag serve --workers N``) every process writes its figures to
files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, which ``rag serve``
sets up) and ``/metrics`` reports their sum, whichever process answers.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """One registry per app, so tests and several apps in one process never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rag_http_requests_total", "HTTP requests by route, method and status.", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "rag_http_request_duration_seconds",
            "Time from request to the end of the response, by route.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.answers = Counter("rag_answers_total", "Answers by outcome.", ["outcome"], registry=self.registry)
        # Every process holds the same index: across processes the latest value is the one to report.
        self.index_chunks = Gauge(
            "rag_index_chunks", "Chunks (passages) in the loaded index.", registry=self.registry, multiprocess_mode="mostrecent"
        )
        self.index_articles = Gauge(
            "rag_index_articles", "Articles in the loaded index.", registry=self.registry, multiprocess_mode="mostrecent"
        )
        self.index_info = Gauge(
            "rag_index_info",
            "The loaded index build (value 1).",
            ["build_id", "model"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self._index_labels: dict | None = None

    def set_index(self, build_id: str, model: str, articles: int, chunks: int) -> None:
        self.index_chunks.set(chunks)
        self.index_articles.set(articles)
        if self._index_labels is not None:
            if os.environ.get(MULTIPROC_ENV):  # labels cannot be removed there: the old build reads 0
                self.index_info.labels(**self._index_labels).set(0)
            else:
                self.index_info.clear()
        self._index_labels = {"build_id": build_id, "model": model}
        self.index_info.labels(**self._index_labels).set(1)

    def exposition(self, readiness=None) -> bytes:
        """The text exposition: of this app, or of every server process in multiprocess mode; with
        ``readiness`` (api/workers.py), each worker's loaded state too."""
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            text = generate_latest(registry)
        else:
            text = generate_latest(self.registry)
        if readiness is None:
            return text
        workers = CollectorRegistry()
        workers.register(_WorkersCollector(readiness))
        return text + generate_latest(workers)


class _WorkersCollector:
    """The workers' board as gauges, read when /metrics is asked (it is the board, not a copy, that is current)."""

    def __init__(self, readiness):
        self.readiness = readiness

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        loaded = GaugeMetricFamily(
            "rag_worker_loaded", "Whether each server process has loaded the model and the index (1) or is still loading (0).", labels=["pid"]
        )
        for worker in self.readiness.workers:
            loaded.add_metric([str(worker.pid)], 1.0 if worker.loaded else 0.0)
        yield loaded
        yield GaugeMetricFamily("rag_workers", "Server processes the service runs (rag serve --workers).", value=self.readiness.total)
