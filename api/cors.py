"""Cross-origin access for the embedded widget: only the origins the operator lists (``RAG_CORS_ORIGINS``).

With no origins configured the API answers its own page only: a browser on any other site gets
no ``Access-Control-Allow-Origin`` and refuses to hand the response to the page, and the JSON
``POST /ask`` needs a preflight that is refused before the question is even read.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response

from rag.settings import Settings

#: Headers a widget (or another browser client) may send: JSON bodies, SSE, API keys, a request id.
ALLOWED_HEADERS = ["Content-Type", "Accept", "Authorization", "X-API-Key", "X-Request-ID"]
#: Headers a cross-origin page may read: the request id, so a user can quote it when reporting a failure, and the build that answered.
EXPOSED_HEADERS = ["X-Request-ID", "X-Build-ID", "Retry-After"]


class JSONRefusalCORSMiddleware(CORSMiddleware):
    """Starlette's CORS handling, with a refused preflight answered in the API's JSON error shape."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        reason = response.body.decode("utf-8", "replace").strip().lower() or "disallowed cors request"
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
        return JSONResponse(
            {"detail": f"{reason}: a page on this origin may not call the API; the operator allows origins with RAG_CORS_ORIGINS"},
            status_code=response.status_code,
            headers=headers,
        )


def add_cors(app: FastAPI, settings: Settings) -> None:
    """Install CORS outermost, so refusals from inner layers (401, 413, 429) also reach the widget readably."""
    app.add_middleware(
        JSONRefusalCORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_methods=["GET", "POST"],
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        allow_credentials=False,  # the widget sends no cookies; keys travel in headers
        max_age=600,
    )
