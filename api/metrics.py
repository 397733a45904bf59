"""Prometheus metrics: requests and latency per route, answers by outcome, the loaded index's size."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


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
        self.index_chunks = Gauge("rag_index_chunks", "Chunks (passages) in the loaded index.", registry=self.registry)
        self.index_articles = Gauge("rag_index_articles", "Articles in the loaded index.", registry=self.registry)
        self.index_info = Gauge(
            "rag_index_info", "The loaded index build (value 1).", ["build_id", "model"], registry=self.registry
        )

    def set_index(self, build_id: str, model: str, articles: int, chunks: int) -> None:
        self.index_chunks.set(chunks)
        self.index_articles.set(articles)
        self.index_info.clear()
        self.index_info.labels(build_id=build_id, model=model).set(1)
