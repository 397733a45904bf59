"""The FastAPI application: loads the model and index once, serves answers, search and the widget."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.context import configure_logging, new_request_id, request_id_var
from api.metrics import Metrics
from rag import __version__
from rag.answer import AnswerService
from rag.errors import QueryError, RagError
from rag.settings import Settings, load_settings

log = logging.getLogger("rag.api")
T = TypeVar("T")


class AppState:
    """What the routes share: settings, the answer service once loaded, metrics, a thread limiter."""

    def __init__(self, settings: Settings, service: AnswerService | None = None):
        self.settings = settings
        self.service = service
        self.metrics = Metrics()
        # CPU-bound work (encoding, scoring) runs in threads, at most one per core at a time,
        # so the event loop stays free to accept requests and stream responses.
        self.limiter = anyio.CapacityLimiter(max(1, settings.threads or os.cpu_count() or 1))
        self.started = time.time()

    def load(self) -> None:
        from rag.service import make_encoder, open_answer_service, open_index

        encoder = make_encoder(self.settings)
        encoder.warm_up()
        index = open_index(self.settings, encoder)
        service = open_answer_service(self.settings, index, encoder)
        service.ask("What is this corpus about?")  # fail here, at start-up, rather than on a user's question
        self.service = service

    def publish_index_metrics(self) -> None:
        index = self.service.index
        model = (index.manifest.get("model") or {}).get("name", "")
        self.metrics.set_index(index.build_id, model, len(index.articles), len(index))

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=self.limiter)


class RequestContextMiddleware:
    """Request id, access log and per-route metrics for every HTTP request (streaming included)."""

    def __init__(self, app: ASGIApp, state: AppState):
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        rid = new_request_id(headers.get(b"x-request-id", b"").decode("latin-1"))
        token = request_id_var.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = {"code": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.state.metrics.requests.labels(route=label, method=method, status=str(status["code"])).inc()
            self.state.metrics.latency.labels(route=label, method=method).observe(elapsed)
            log.info("%s %s %s %.1fms", method, scope.get("path"), status["code"], elapsed * 1000)
            request_id_var.reset(token)


def _error(status: int, detail: str, request: Request, headers: dict | None = None) -> JSONResponse:
    rid = getattr(request.state, "request_id", None) or request_id_var.get()
    return JSONResponse({"detail": detail, "request_id": rid}, status_code=status, headers=headers)


def _describe(errors: list[dict]) -> tuple[int, str]:
    """One readable sentence for a validation failure, and the status it deserves."""
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx") or {}
        return 400, f"request body is not valid JSON ({ctx.get('error', 'parse error')}); send a JSON object"
    parts = []
    for err in errors[:3]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        where = ".".join(loc) or "request body"
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        if err.get("type") == "missing":
            msg = "is required"
        elif err.get("type") == "extra_forbidden":
            msg = "is not a known field"
        elif err.get("type") == "model_attributes_type" or err.get("type") == "dict_type":
            msg = "must be a JSON object"
        parts.append(f"{where}: {msg}")
    return 422, "; ".join(parts)


def create_app(settings: Settings | None = None, service: AnswerService | None = None) -> FastAPI:
    """The app. Without ``service`` the model and index load at start-up (lifespan)."""
    settings = settings or load_settings()
    state = AppState(settings, service)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        configure_logging(settings.log_level)
        if state.service is None:
            log.info("loading the model and the index at %s", settings.index_dir)
            await anyio.to_thread.run_sync(state.load)
        state.publish_index_metrics()
        log.info("ready: %d passages from %d articles", len(state.service.index), len(state.service.index.articles))
        yield

    app = FastAPI(
        title="Space diplomacy answers",
        version=__version__,
        summary="Cited, extractive answers from encyclopedia articles, with quotes a reader can check.",
        description=(
            "Ask a question (`POST /ask`) and get an answer whose every sentence carries a `[n]` marker that "
            "points to a citation: article title, section breadcrumb, source URL and the exact quote with its "
            "offsets in the passage. When the corpus does not cover the question the answer says so "
            "(`abstained: true`). `Accept: text/event-stream` streams the same answer as server-sent events."
        ),
        lifespan=lifespan,
    )
    app.state.ctx = state

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        status, detail = _describe(exc.errors())
        return _error(status, detail, request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        return _error(exc.status_code, detail, request, headers=getattr(exc, "headers", None))

    @app.exception_handler(QueryError)
    async def _query(request: Request, exc: QueryError):
        return _error(400, str(exc), request)

    @app.exception_handler(RagError)
    async def _rag(request: Request, exc: RagError):
        log.error("service error: %s", exc)
        return _error(503, "the service cannot answer right now; try again shortly", request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error")
        return _error(500, "internal error; quote the request id when reporting it", request)

    from api.routes import ask, health, metrics, passages, search

    for module in (ask, search, passages, health, metrics):
        app.include_router(module.router)

    app.add_middleware(RequestContextMiddleware, state=state)
    return app
