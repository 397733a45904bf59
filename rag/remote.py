"""Ask a running server instead of loading anything: what ``rag search`` and ``rag ask`` do with
``--url`` (or ``RAG_URL``). The answers are the server's JSON bodies, the same shapes the commands
print with ``--json`` when they answer locally."""

from __future__ import annotations

import os

from core.errors import QueryError, RagError

#: A key for a server that requires one (``RAG_API_KEYS`` on the server side).
API_KEY_ENV = "RAG_API_KEY"
TIMEOUT_S = 60.0


class RemoteError(RagError):
    """The server could not be reached or could not answer."""


def _request(method: str, url: str, path: str, **kwargs) -> dict:
    import httpx

    headers = {"accept": "application/json"}
    key = os.environ.get(API_KEY_ENV, "").strip()
    if key:
        headers["authorization"] = f"Bearer {key}"
    base = url.rstrip("/")
    try:
        response = httpx.request(method, base + path, headers=headers, timeout=TIMEOUT_S, **kwargs)
    except httpx.InvalidURL:
        raise RemoteError(f"{url!r} is not a server URL; use one like http://127.0.0.1:8000 (--url or RAG_URL)") from None
    except httpx.HTTPError as exc:
        raise RemoteError(
            f"cannot reach the server at {base} ({exc.__class__.__name__}); start it with 'rag serve' or unset RAG_URL"
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        detail = body.get("detail") if isinstance(body, dict) else None
        detail = detail or f"HTTP {response.status_code}"
        if response.status_code in (400, 404, 422):
            raise QueryError(f"the server refused the request: {detail}")
        if response.status_code in (401, 403):
            raise RemoteError(f"the server refused the key: {detail} (set {API_KEY_ENV})")
        raise RemoteError(f"the server at {base} could not answer: {detail}")
    if not isinstance(body, dict):
        raise RemoteError(f"the server at {base} did not answer with JSON; is it a 'rag serve'?")
    return body


def search(url: str, query: str, *, k: int, mode: str, filters: dict[str, list[str]]) -> dict:
    """``GET /search``: ``{"query", "results"}``, as ``rag search --json`` prints it."""
    params: list[tuple[str, str | int]] = [("q", query), ("k", k), ("mode", mode)]
    for name, values in filters.items():
        params += [(name, value) for value in values or []]
    return _request("GET", url, "/search", params=params)


def ask(url: str, question: str, *, top_k: int, mode: str, history: list[str]) -> dict:
    """``POST /ask``: the answer body, as ``rag ask --json`` prints it."""
    return _request("POST", url, "/ask", json={"question": question, "top_k": top_k, "mode": mode, "history": history})
