"""The chat widget: the product page at ``/``, the embeddable ``/widget.js`` + ``/widget.css``, its config.

The files are plain JavaScript, CSS and HTML from ``api/static`` (no build step). They are served
under fixed top-level names because those names are the embed snippet operators paste into their
sites: ``<script src="https://host/widget.js" data-api="https://host" defer></script>``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from api.deps import StateDep
from api.schemas import MAX_HISTORY_ITEMS, MAX_QUESTION_CHARS
from rag import __version__

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

router = APIRouter(tags=["widget"])

#: Page and config are revalidated on every load so a new release shows at once; the embed assets may
#: be cached for a few minutes (host sites load them on every page view) and are revalidated by ETag.
_NO_CACHE = "no-cache"
_ASSET_CACHE = "public, max-age=300"

#: URL path -> (file in api/static, media type, cache policy). Only these files are served.
ASSETS: dict[str, tuple[str, str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8", _NO_CACHE),
    "/widget.js": ("widget.js", "text/javascript; charset=utf-8", _ASSET_CACHE),
    "/widget.css": ("widget.css", "text/css; charset=utf-8", _ASSET_CACHE),
    "/page.css": ("page.css", "text/css; charset=utf-8", _ASSET_CACHE),
    "/favicon.svg": ("favicon.svg", "image/svg+xml", _ASSET_CACHE),
}


class WidgetConfig(BaseModel):
    """What the widget needs to know about this server, so no limit is duplicated in JavaScript."""

    max_question_chars: int = Field(description="Longest question /ask accepts, in characters after whitespace is collapsed.")
    max_history: int = Field(description="Earlier questions worth sending with a follow-up.")
    source_base_url: str = Field("", description="Base URL for relative source URLs in links (RAG_SOURCE_BASE_URL), or empty.")
    version: str
    key_required: bool = Field(description="Whether the question endpoints need a key (RAG_API_KEYS is set).")
    page_token: str | None = Field(
        None,
        description="With keys required, a short-lived token for the service's own page (same-origin requests only); "
        "send it as 'Authorization: Bearer TOKEN'.",
    )


def _etag_matches(request: Request, etag: str | None) -> bool:
    """Whether the client's If-None-Match names the file's current ETag (so a 304 will do)."""
    if not etag:
        return False
    wanted = request.headers.get("if-none-match", "")
    tags = {tag.strip().removeprefix("W/") for tag in wanted.split(",")}
    return etag in tags or "*" in tags


def _asset_route(path: str, filename: str, media_type: str, cache: str):
    async def serve(request: Request) -> Response:
        file = STATIC_DIR / filename
        # Stat up front so the ETag exists before the body is sent, and a matching one gets a 304.
        response = FileResponse(file, media_type=media_type, headers={"Cache-Control": cache}, stat_result=file.stat())
        if _etag_matches(request, response.headers.get("etag")):
            keep = {k: v for k, v in response.headers.items() if k in ("etag", "cache-control", "last-modified")}
            return Response(status_code=304, headers=keep)
        return response

    serve.__name__ = f"widget_{filename.replace('.', '_')}"
    serve.__doc__ = f"The widget's {filename}."
    # The page and its assets are not part of the API contract; keep them out of the OpenAPI schema.
    router.add_api_route(path, serve, methods=["GET", "HEAD"], include_in_schema=False)


for _path, (_file, _type, _cache) in ASSETS.items():
    _asset_route(_path, _file, _type, _cache)


@router.get("/widget-config.json", response_model=WidgetConfig, summary="Limits the chat widget enforces in the browser")
async def widget_config(state: StateDep, request: Request) -> JSONResponse:
    # Browsers label a request from the service's own page "same-origin" (a page on another site
    # cannot change that); embeds on other sites bring their own key (data-api-key) instead.
    own_page = request.headers.get("sec-fetch-site") == "same-origin"
    token = state.page_tokens.issue() if state.page_tokens is not None and own_page else None
    config = WidgetConfig(
        max_question_chars=MAX_QUESTION_CHARS,
        max_history=min(MAX_HISTORY_ITEMS, state.settings.max_history),
        source_base_url=state.settings.source_base_url,
        version=__version__,
        key_required=state.keys.required,
        page_token=token,
    )
    return JSONResponse(config.model_dump(), headers={"Cache-Control": "no-store" if token else _NO_CACHE})
