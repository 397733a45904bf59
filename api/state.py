"""What the routes share, in one object: the settings, the answer service once loaded (and its reload),
metrics, keys and rate limits, and the bounded pool that CPU-bound work runs in.

Its own module, below both the app (which makes it) and the route dependencies (which read it).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
from fastapi import HTTPException

from api.metrics import Metrics
from api.security import KeyRing, PageTokens, RateLimiter
from rag.answer.service import AnswerService
from rag.settings import Settings

log = logging.getLogger("rag.api")
T = TypeVar("T")


POOL_PER_CORE = 4


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
        self.service = self.open_service()

    def loading_detail(self) -> str:
        """What a request gets while the first load runs: a 503 that says why and for how long so far."""
        return (
            f"the service is starting: the model and the index are not loaded yet ({time.time() - self.started:.0f} s "
            "so far); retry in a few seconds"
        )

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
        self.publish_index_metrics()
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

    def publish_index_metrics(self) -> None:
        index = self.service.index
        model = (index.manifest.get("model") or {}).get("name", "")
        self.metrics.set_index(index.build_id, model, len(index.articles), len(index))

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
