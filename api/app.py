"""The FastAPI application: loads the model and index once, serves answers, search and the widget."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.chat import error_body
from api.context import configure_logging, request_id_var
from api.cors import add_cors
from api.middleware import RequestContextMiddleware
from api.routes import admin, ask, chat, documents, health, metrics, passages, search, widget
from api.schemas import PASSAGE_ID_PATTERN, VISIBLE_PATTERN
from api.state import AppState
from rag import __version__
from rag.answer.service import AnswerService
from core.errors import QueryError, RagError
from rag.settings import Settings, load_settings

log = logging.getLogger("rag.api")


def _install_sighup(state: AppState) -> bool:
    """SIGHUP reloads the index, like POST /admin/reload (main thread of a server process only)."""
    loop = asyncio.get_running_loop()

    async def reload() -> None:
        if state.service is None:  # still loading: check the index link again once loaded
            state.reload_pending = True
            log.info("SIGHUP while loading: the build the index link names then is served once loaded")
            return
        await _reload_logged(state)

    try:
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload()))
    except (RuntimeError, ValueError, NotImplementedError):  # not the main thread (e.g. a test client)
        return False
    return True


async def _load_in_background(state: AppState) -> None:
    """The first load, off the event loop, while the port already answers (/ready 503 until it ends).

    A failure ends the worker process with uvicorn's start-up failure code, as a failed start-up
    did before: a supervisor stops rather than restarting a worker that cannot load.
    """
    try:
        await anyio.to_thread.run_sync(state.load, abandon_on_cancel=True)
    except RagError as exc:
        log.error("cannot load the index, stopping: %s", exc)
        _exit_startup_failure()
    except Exception:
        log.exception("cannot load the model or the index, stopping")
        _exit_startup_failure()
    await _after_first_load(state)


def _exit_startup_failure() -> None:
    from uvicorn.config import STARTUP_FAILURE

    logging.shutdown()
    os._exit(STARTUP_FAILURE)


async def _after_first_load(state: AppState) -> None:
    """Say the service is ready, then honour a SIGHUP that arrived while it loaded."""
    state.publish_build()
    if state.loaded is not None:
        state.loaded.set()  # questions that waited for the load go on
    index = state.service.index
    log.info("ready: %d passages from %d articles (build %s)", len(index), len(index.articles), index.build_id)
    while state.reload_pending:
        state.reload_pending = False
        await _reload_logged(state)


async def _reload_logged(state: AppState) -> None:
    """A reload asked for by a signal: no one to answer, so the outcome goes to the log."""
    try:
        result = await state.reload_async()
        log.info("SIGHUP reload: %s (build %s)", result["status"], result["build_id"])
    except RagError as exc:
        log.error("SIGHUP reload refused, still serving the previous index: %s", exc)


def _deployment_openapi(app: FastAPI, state: AppState) -> dict:
    """The schema of this deployment: without client keys the question endpoints are open,
    so they declare no security requirement (admin endpoints always do)."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        if not state.keys.required:
            for path, operations in schema.get("paths", {}).items():
                if not path.startswith("/admin/"):
                    for operation in operations.values():
                        operation.pop("security", None)
        app.openapi_schema = schema
    return app.openapi_schema


def _error(status: int, detail: str, request: Request, headers: dict | None = None, param: str | None = None) -> JSONResponse:
    rid = getattr(request.state, "request_id", None) or request_id_var.get()
    body = {"detail": detail, "request_id": rid}
    if request.url.path.startswith("/v1/"):  # the OpenAI-compatible API: OpenAI's error shape too
        status = 400 if status == 422 else status  # OpenAI answers invalid parameters with 400
        body = {**error_body(status, detail, param), **body}
    return JSONResponse(body, status_code=status, headers=headers)


#: What each pattern of the schema means, in words (pydantic would quote the regular expression).
_PATTERN_MESSAGES = {
    VISIBLE_PATTERN: "is empty (only spaces or invisible characters); send some words",
    PASSAGE_ID_PATTERN: "may hold only letters, digits, '.', '~', '-' and '_' (1 to 200 of them), as in ids from /search",
}


def _describe(errors: list[dict], content_type: str = "") -> tuple[int, str]:
    """One readable sentence for a validation failure, and the status it deserves."""
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx") or {}
        return 400, f"request body is not valid JSON ({ctx.get('error', 'parse error')}); send a JSON object"
    if tuple(first.get("loc", ())) == ("body",) and isinstance(first.get("input"), bytes):
        # FastAPI reads a body as JSON only when it is labelled JSON (a defence against cross-site
        # form posts), so an unlabelled JSON object arrives here as bytes: say what to change.
        sent = f"as {content_type.split(';')[0].strip()!r}" if content_type else "without a Content-Type header"
        return 415, f"the request body was sent {sent}; send it as JSON with the header 'Content-Type: application/json'"
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
        elif err.get("type") == "string_pattern_mismatch":
            msg = _PATTERN_MESSAGES.get((err.get("ctx") or {}).get("pattern"), "has characters that are not allowed")
        parts.append(f"{where}: {msg}")
    return 422, "; ".join(parts)


def create_served_app() -> FastAPI:
    """The app ``rag serve`` runs: the port answers at once while the model and index load behind it."""
    return create_app(load_in_background=True)


def create_app(
    settings: Settings | None = None, service: AnswerService | None = None, *, load_in_background: bool = False
) -> FastAPI:
    """The app. Without ``service`` the model and index load at start-up (lifespan); with
    ``load_in_background`` start-up ends at once and ``/ready`` says 503 until they are loaded."""
    settings = settings or load_settings()
    state = AppState(settings, service)
    app = _new_app(_lifespan(state, load_in_background))
    app.state.ctx = state
    _add_error_handlers(app)
    for module in ROUTERS:
        app.include_router(module.router)
    app.add_middleware(RequestContextMiddleware, state=state)
    app.openapi = lambda: _deployment_openapi(app, state)
    add_cors(app, settings)  # added last = outermost: every response, refusals included, gets CORS headers
    return app


#: The routes, in the order the schema lists them; the chat widget's page and assets at / come last.
ROUTERS = (ask, search, passages, health, metrics, admin, chat, documents, widget)


def _lifespan(state: AppState, load_in_background: bool):
    """Start-up and shut-down: logging, SIGHUP, and the first load of the model and the index."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        configure_logging(state.settings.log_level)
        hangup = _install_sighup(state)  # first: from here on a SIGHUP (passed on by the supervisor) reloads, it does not end the worker
        state.loaded = asyncio.Event()
        state.board.publish(False, None)
        loader = None
        if state.service is not None:
            await _after_first_load(state)
        elif load_in_background:
            log.info("loading the model and the index at %s; /ready answers 503 until done", state.settings.index_dir)
            loader = asyncio.get_running_loop().create_task(_load_in_background(state))
        else:
            log.info("loading the model and the index at %s", state.settings.index_dir)
            await anyio.to_thread.run_sync(state.load)
            await _after_first_load(state)
        yield
        state.board.withdraw()
        if loader is not None and not loader.done():
            loader.cancel()
        if hangup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    return lifespan


def _new_app(lifespan) -> FastAPI:
    """The application with its title and description; /docs and /redoc serve Swagger UI and ReDoc
    from the installed fastapi-offline package, not a CDN."""
    return FastAPIOffline(
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


def _add_error_handlers(app: FastAPI) -> None:
    """Every refusal as ``{"detail", "request_id"}`` with the status it deserves; never a stack trace."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        status, detail = _describe(exc.errors(), request.headers.get("content-type", ""))
        loc = (exc.errors() or [{}])[0].get("loc", ())
        param = ".".join(str(p) for p in loc if p not in ("body", "query", "path")) or None
        return _error(status, detail, request, param=param)

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
        # Starlette answers unhandled errors outside every middleware, after the request
        # context has ended: restore the request id for the log line and set its header here.
        rid = getattr(request.state, "request_id", None)
        token = request_id_var.set(rid)
        try:
            log.exception("unhandled error")
        finally:
            request_id_var.reset(token)
        headers = {"X-Request-ID": rid} if rid else None
        return _error(500, "internal error; quote the request id when reporting it", request, headers=headers)
