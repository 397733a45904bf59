"""HTTP load against a real ``rag serve`` process: ``/ask`` and ``/search`` at several concurrencies,
the ``/health`` floor, ``/v1/chat/completions`` paired with ``/ask``, and the memory of the serving processes."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from eval.bench.memory import mapping_mb, rollup_mb, status_mb
from eval.bench.workloads import questions
from eval.live_server import LiveServer
from eval.metrics import summary_ms


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Server(LiveServer):
    """``rag serve --workers N`` in a subprocess on a free port, ready once every worker has loaded."""

    def __init__(self, env: dict[str, str], workers: int, log_path: Path):
        super().__init__(env, args=["--workers", str(workers)])
        self.workers, self.bench_log = workers, log_path

    def start(self, timeout: float = 600) -> Server:
        super().start(self.bench_log, timeout)
        return self

    def started(self) -> bool:
        # Each worker logs "ready: N passages ..." once its model and index are loaded (api/app.py).
        return self.log().count("ready: ") >= self.workers

    def pids(self) -> list[int]:
        """The serving processes: the one process, or the workers under uvicorn's supervisor."""
        assert self.proc is not None
        kids = _children(self.proc.pid)
        return kids if self.workers > 1 and kids else [self.proc.pid]

    def memory(self, index_dir: Path | None = None) -> list[dict]:
        """Per serving process: peak and current RSS, PSS, and what the mapped index files take (shared between workers)."""
        out = []
        for pid in self.pids():
            entry = {"pid": pid, "peak_rss_mb": status_mb(pid, "VmHWM"), "rss_mb": status_mb(pid, "VmRSS"), **rollup_mb(pid)}
            if index_dir is not None:
                mapped = mapping_mb(str(Path(index_dir).resolve()), pid)
                entry.update(index_map_rss_mb=round(mapped["rss"], 1), index_map_pss_mb=round(mapped["pss"], 1))
            out.append(entry)
        return out

    def stop(self, timeout: float = 60) -> int | None:
        return super().stop(timeout)


async def load_level(url: str, endpoint: str, concurrency: int, n: int, qs: list[str]) -> dict:
    """``n`` requests from ``concurrency`` clients that each send their next request as soon as one returns."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(n))  # shared: every request number is taken by exactly one client
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:

        async def client() -> None:
            for i in counter:
                q = qs[i % len(qs)]
                started = time.perf_counter()
                try:
                    if endpoint == "ask":
                        response = await http.post("/ask", json={"question": q, "top_k": 5})
                    elif endpoint == "search":
                        response = await http.get("/search", params={"q": q, "k": 5})
                    else:  # the floor: an endpoint that does no work, so the rest is HTTP and the client
                        response = await http.get("/health")
                except httpx.HTTPError as exc:
                    errors.append(f"{exc.__class__.__name__}: {exc}")
                    continue
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors.append(f"HTTP {response.status_code}: {response.text[:160]}")

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {
        "endpoint": endpoint,
        "concurrency": concurrency,
        "requests": n,
        "ok": len(latencies),
        "errors": len(errors),
        "seconds": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 2),
        "latency_ms": summary_ms(latencies),
        "error_samples": errors[:5],
    }


def paired_ask_chat(url: str, n: int, qs: list[str]) -> list[dict]:
    """One client asking each question through ``/ask`` and then ``/v1/chat/completions``, ``n`` times
    each: alternating keeps drift in the machine's speed off the comparison."""
    import httpx

    latencies: dict[str, list[float]] = {"ask": [], "chat": []}
    errors: dict[str, int] = {"ask": 0, "chat": 0}
    with httpx.Client(base_url=url, timeout=120) as http:
        for i in range(n):
            q = qs[i % len(qs)]
            for name, path, body in (
                ("ask", "/ask", {"question": q, "top_k": 5}),
                ("chat", "/v1/chat/completions", {"model": "space-diplomacy-rag", "messages": [{"role": "user", "content": q}], "top_k": 5}),
            ):
                started = time.perf_counter()
                ok = http.post(path, json=body).status_code == 200
                if ok:
                    latencies[name].append(time.perf_counter() - started)
                else:
                    errors[name] += 1
    return [
        {"endpoint": f"{name} (paired)", "concurrency": 1, "requests": n, "ok": len(latencies[name]), "errors": errors[name],
         "requests_per_s": None, "latency_ms": summary_ms(latencies[name])}  # fmt: skip
        for name in ("ask", "chat")
    ]


def bench_http(backend: str, index_dir: Path, settings, levels: list[int], requests: int, workers: int, tmp: Path, log) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        RAG_INDEX_DIR=str(index_dir),
        RAG_CACHE_DIR=str(Path(settings.cache_dir).resolve()),
        RAG_ENCODER_BACKEND=backend,
        RAG_THREADS=str(settings.threads),
        RAG_RATE_LIMIT="",  # the benchmark is one client sending as fast as it can
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    server = Server(env, workers, tmp / f"server-{backend}-{workers}.log")
    t = time.perf_counter()
    server.start()
    startup = time.perf_counter() - t
    qs = questions()
    try:
        asyncio.run(load_level(server.url, "ask", 4, 20, qs))  # warm connections and code paths
        floor = asyncio.run(load_level(server.url, "health", 1, max(100, requests // 2), qs))
        log(f"  /health c=1   p50 {floor['latency_ms']['p50']:7.2f} ms (HTTP and client alone)")
        runs = []
        for endpoint, endpoint_levels in (("ask", levels), ("search", levels)):
            for c in endpoint_levels:
                run = asyncio.run(load_level(server.url, endpoint, c, max(requests, 10 * c), qs))
                runs.append(run)
                lat = run["latency_ms"]
                log(
                    f"  /{endpoint:<6} c={c:<3} {run['requests_per_s']:7.1f} req/s  p50 {lat['p50']:7.1f} ms  "
                    f"p95 {lat['p95']:7.1f} ms  p99 {lat['p99']:7.1f} ms  errors {run['errors']}"
                )
        # /v1/chat/completions against /ask: one client, the two requests in alternation, same questions.
        pair = paired_ask_chat(server.url, max(requests, 20), qs)
        runs.extend(pair)
        log(f"  /ask vs /v1/chat/completions c=1 alternating: p50 {pair[0]['latency_ms']['p50']} vs {pair[1]['latency_ms']['p50']} ms")
        memory = server.memory(index_dir)
    finally:
        server.stop()
    return {
        "backend": backend,
        "workers": workers,
        "startup_s": round(startup, 1),
        "floor": floor,
        "runs": runs,
        "server_memory": memory,
    }
