"""The ASGI layer every request passes: request id, limits on what a client may send, headers, metrics."""

from __future__ import annotations

import json
import logging
import time

import anyio
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.context import new_request_id, request_id_var
from api.security import security_headers

log = logging.getLogger("rag.api")

#: HTML pages that are ours (the widget); API docs pages keep FastAPI's own markup.
_DOC_PATHS = ("/docs", "/redoc")


#: Paths whose bodies are document uploads, limited by RAG_MAX_UPLOAD_BYTES instead of RAG_MAX_BODY_BYTES.
UPLOAD_PATHS = ("/admin/documents",)


def body_limit(path: str, settings) -> int:
    return settings.max_upload_bytes if path in UPLOAD_PATHS else settings.max_body_bytes


class _Refused(HTTPException):
    """A request refused at the edge. It is an HTTPException so that, raised while the app reads
    the body, FastAPI passes it through to the JSON error handler instead of wrapping it."""

    def __init__(self, status: int, detail: str):
        super().__init__(status_code=status, detail=detail)
        self.status = status


class RequestContextMiddleware:
    """Request id, limits on query string, body size and body pace, security headers, metrics, access log."""

    def __init__(self, app: ASGIApp, state):
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = self.state.settings
        headers = dict(scope.get("headers") or [])
        rid = new_request_id(headers.get(b"x-request-id", b"").decode("latin-1"))
        token = request_id_var.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        sent = {"status": 0}
        path = scope.get("path", "")
        page = not path.startswith(_DOC_PATHS)

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
                response_headers = list(message.get("headers", []))
                content_type = next((v.decode("latin-1") for k, v in response_headers if k.lower() == b"content-type"), "")
                response_headers.append((b"x-request-id", rid.encode()))
                build = scope["state"].get("build_id")  # set by the service dependency: the build this answer came from
                if build:
                    response_headers.append((b"x-build-id", build.encode()))
                response_headers.extend(security_headers(content_type, page))
                message = {**message, "headers": response_headers}
            await send(message)

        received = {"bytes": 0}
        limit = body_limit(path, settings)

        async def receive_limited() -> Message:
            # A client that trickles its body cannot hold the connection forever,
            # and one that sends too much is stopped before the body is buffered.
            try:
                with anyio.fail_after(settings.receive_timeout_s):
                    message = await receive()
            except TimeoutError:
                raise _Refused(408, f"the request body did not arrive within {settings.receive_timeout_s:g} s") from None
            if message["type"] == "http.request":
                received["bytes"] += len(message.get("body", b""))
                if received["bytes"] > limit:
                    raise _Refused(413, f"the request body is larger than {limit} bytes")
            return message

        try:
            refusal = self._precheck(scope, headers, settings, limit)
            if refusal:
                raise refusal
            await self.app(scope, receive_limited, send_wrapped)
        except _Refused as exc:
            if sent["status"]:
                raise
            await self._refuse(exc, rid, send_wrapped, openai_shape=path.startswith("/v1/"))
        finally:
            self._record(scope, path, sent["status"], time.perf_counter() - started)
            request_id_var.reset(token)

    def _record(self, scope: Scope, path: str, status: int, elapsed: float) -> None:
        """Count and time the request under its route template, and log it."""
        route = scope.get("route")
        # Route templates keep the label set small; FastAPI's own pages (/docs, /openapi.json)
        # carry no route in the scope, so a path that was served is its own label.
        label = getattr(route, "path", None) or (path if status and status != 404 else "unmatched")
        method = scope.get("method", "")
        status = status or 500
        self.state.metrics.requests.labels(route=label, method=method, status=str(status)).inc()
        self.state.metrics.latency.labels(route=label, method=method).observe(elapsed)
        log.info("%s %s %s %.1fms", method, path, status, elapsed * 1000)

    @staticmethod
    def _precheck(scope: Scope, headers: dict, settings, limit: int) -> _Refused | None:
        if len(scope.get("query_string", b"")) > settings.max_query_bytes:
            return _Refused(414, f"the query string is longer than {settings.max_query_bytes} bytes")
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return _Refused(400, "the Content-Length header is not a number")
            if declared > limit:
                return _Refused(413, f"the request body is larger than {limit} bytes")
        return None

    @staticmethod
    async def _refuse(exc: _Refused, rid: str, send: Send, openai_shape: bool = False) -> None:
        payload = {"detail": exc.detail, "request_id": rid}
        if openai_shape:  # the OpenAI-compatible API answers in OpenAI's error shape as well
            from api.chat import error_body

            payload = {**error_body(exc.status, exc.detail), **payload}
        body = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": exc.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})
