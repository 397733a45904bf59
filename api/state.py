"""What the routes share, in one object: the settings, the answer service once loaded (and its reload),
metrics, keys and rate limits, and the bounded pool that CPU-bound work runs in.

Its own module, below both the app (which makes it) and the route dependencies (which read it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import anyio
from fastapi import HTTPException

from api.metrics import Metrics
from api.security import KeyRing, PageTokens, RateLimiter
from api.workers import Readiness, WorkerBoard, WorkerStatus
from rag.answer.service import AnswerService
from rag.settings import Settings

log = logging.getLogger("rag.api")
T = TypeVar("T")


POOL_PER_CORE = 4
#: How long a client should wait before asking a server that is still loading again.
LOADING_RETRY_AFTER_S = 5


class AppState:
    """What the routes share: settings, the answer service once loaded, metrics, a thread limiter."""

    def __init__(self, settings: Settings, service: AnswerService | None = None):
        self.settings = settings
        self.service = service
        self.metrics = Metrics()
        # CPU-bound work (encoding, scoring) runs in a bounded pool of threads, so the event loop
        # stays free to accept requests and stream responses. A few threads per core, not one: the
        # questions of requests waiting in the pool are encoded together in the next forward pass
        # (embeddings/batching.py), which a pool of one thread per core would never let queue up.
        self.limiter = anyio.CapacityLimiter(POOL_PER_CORE * max(1, settings.threads or os.cpu_count() or 1))
        self.keys = KeyRing.from_settings(settings)
        self.rate = RateLimiter(settings.rate_limit, settings.rate_limit_storage)
        # With keys required, the bundled page gets signed page tokens (its own rate limit).
        self.page_tokens = PageTokens(self.keys.page_secret()) if self.keys.required and settings.page_access else None
        self.page_rate = RateLimiter(settings.page_rate_limit, settings.rate_limit_storage)
        self.reload_lock = anyio.Lock()
        self.upload_lock = anyio.Lock()
        self.started = time.time()
        self.reload_pending = False  # a SIGHUP arrived while the first load was still running
        # Where a reload must reach other processes than this one (Ray Serve replicas,
        # api/ray_reload.py), the coroutine that reloads them all; None reloads this process.
        self.reload_everywhere: Callable[[], Awaitable[dict]] | None = None
        # The shards of a sharded build when they run elsewhere (Ray Serve deployments, api/ray_shards.py);
        # None opens them in this process.
        self.shards = None
        # The other workers of `rag serve --workers N` (api/workers.py): /ready answers for all of them.
        self.board = WorkerBoard.from_env()
        # Set once the first load is done (made in the lifespan, inside the event loop): a question
        # that reaches this worker before then waits for it, at most RAG_LOAD_WAIT_S.
        self.loaded: asyncio.Event | None = None

    def open_service(self, encoder=None) -> AnswerService:
        """Open the build the index link names and answer one question with it (fails here, not on a user's)."""
        from rag.service import make_encoder, open_service

        if encoder is None:
            encoder = make_encoder(self.settings)
            encoder.warm_up()
        # Memory-mapped: `rag serve --workers N` keeps one copy of the index in memory, not N.
        service = open_service(self.settings, encoder, shards=self.shards)
        service.ask("What is this corpus about?")  # fail here, not on a user's question
        return service

    def load(self) -> None:
        from rag.faults import checkpoint

        checkpoint("load")  # tests hold a worker here (RAG_FAULT_GATE=load:PATH) to see the others answer for it
        self.service = self.open_service()

    def readiness(self) -> Readiness:
        """Every worker's state from the board; with one worker, this process's own."""
        if self.board.shared:
            return self.board.readiness()
        service = self.service
        mine = WorkerStatus(os.getpid(), service is not None, service.index.build_id if service is not None else None)
        return Readiness(int(mine.loaded), 1, [mine])

    def loading_detail(self, readiness: Readiness | None = None) -> str:
        """What a request gets while a first load runs: a 503 that says why, how many workers are loaded, and for how long so far."""
        readiness = readiness or self.readiness()
        return (
            "the service is starting: the model and the index are not loaded yet "
            f"({readiness.loaded} of {readiness.total} workers loaded, {time.time() - self.started:.0f} s so far); "
            "retry in a few seconds"
        )

    async def loaded_service(self) -> AnswerService:
        """The service; while this worker is still loading, wait for it (at most RAG_LOAD_WAIT_S), then 503."""
        if self.service is None and self.loaded is not None and self.settings.load_wait_s > 0:
            log.info("a request waits for this worker to load (at most %g s)", self.settings.load_wait_s)
            with anyio.move_on_after(self.settings.load_wait_s):
                await self.loaded.wait()
        if self.service is None:
            raise HTTPException(status_code=503, detail=self.loading_detail(), headers={"Retry-After": str(LOADING_RETRY_AFTER_S)})
        return self.service

    def reload(self) -> dict:
        """Load the build the index link names now and swap it in; the old one serves until then.

        Requests already running keep the service object they started with, so they finish
        on the old index; a broken or incompatible new index raises and changes nothing.
        """
        old = self.service
        target = Path(self.settings.index_dir).resolve().name
        if old is not None and old.index.build_id == target:
            return {"status": "unchanged", "build_id": target}
        fresh = self.open_service(old.retriever.encoder if old is not None else None)
        self.service = fresh  # one reference assignment: atomic for every reader
        self.publish_build()
        log.info("reloaded the index: build %s -> %s", old.index.build_id if old else None, fresh.index.build_id)
        return {
            "status": "reloaded",
            "build_id": fresh.index.build_id,
            "previous_build_id": old.index.build_id if old else None,
            "articles": len(fresh.index.articles),
            "chunks": len(fresh.index),
        }

    async def reload_async(self) -> dict:
        if self.reload_everywhere is not None:
            return await self.reload_everywhere()
        async with self.reload_lock:  # one reload at a time; queries are not blocked meanwhile
            return await anyio.to_thread.run_sync(self.reload)

    async def reload_every_worker(self) -> dict:
        """POST /admin/reload and uploads: reload this worker, then every other one (through the supervisor),
        and wait until all serve this worker's build, at most RAG_LOAD_WAIT_S; ``pending`` names those that did not."""
        result = await self.reload_async()
        if self.reload_everywhere is None and self.board.ask_every_worker_to_reload():
            return {**result, **await self.wait_for_build(result["build_id"])}
        readiness = self.readiness()
        return {**result, "workers": [asdict(w) for w in readiness.workers], "workers_total": readiness.total, "pending": []}

    async def wait_for_build(self, build_id: str) -> dict:
        deadline = anyio.current_time() + self.settings.load_wait_s
        while True:
            readiness = self.readiness()
            behind = [w.pid for w in readiness.workers if w.build_id != build_id]
            if (not behind and len(readiness.workers) >= readiness.total) or anyio.current_time() >= deadline:
                break
            await anyio.sleep(0.05)  # the board is files; a reload takes seconds
        if behind:
            log.warning("workers %s did not serve build %s within %g s", behind, build_id, self.settings.load_wait_s)
        return {"workers": [asdict(w) for w in readiness.workers], "workers_total": readiness.total, "pending": behind}

    def publish_build(self) -> None:
        """Say which build this worker now serves: in the metrics and on the workers' board."""
        index = self.service.index
        model = (index.manifest.get("model") or {}).get("name", "")
        self.metrics.set_index(index.build_id, model, len(index.articles), len(index))
        self.board.publish(True, index.build_id)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run CPU-bound work in the bounded pool, giving up after the request timeout."""
        try:
            with anyio.fail_after(self.settings.request_timeout_s):
                return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=self.limiter, abandon_on_cancel=True)
        except TimeoutError:
            raise HTTPException(
                status_code=503,
                detail=f"the request took longer than {self.settings.request_timeout_s:g} s; try again shortly",
            ) from None
