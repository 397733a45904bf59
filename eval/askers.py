"""What answers the questions of an evaluation: the answer service in this process, or a running
server through its HTTP API (``POST /ask``, ``GET /passages/{id}``), both returning the ``/ask`` JSON body."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from core.errors import RagError


class ServerError(RagError):
    """The server under evaluation cannot be reached or is not ready."""



class Asker(Protocol):
    """Something that answers questions the way ``POST /ask`` does (its JSON body)."""

    target: str

    def ask(self, question: str) -> dict: ...

    def passage_text(self, passage_id: str) -> str | None: ...


class InProcessAsker:
    """The answer service in this process, over the configured index."""

    def __init__(self, settings, *, top_k: int = 5, mode: str = "hybrid", service=None):
        from rag.service import open_service

        self.service = service or open_service(settings)  # one index or a sharded build
        self.top_k, self.mode = top_k, mode
        self.target = f"in-process index {self.service.index.path} (build {self.service.index.build_id})"
        if self.service.retriever.encoder is not None:
            self.service.retriever.encoder.warm_up()  # latency figures should not include loading the model

    def ask(self, question: str) -> dict:
        from rag.payloads import AskResponse

        answer = self.service.ask(question, top_k=self.top_k, mode=self.mode)
        return AskResponse.of(answer).model_dump(mode="json")

    def passage_text(self, passage_id: str) -> str | None:
        chunk = self.service.index.chunk(passage_id)
        return None if chunk is None else chunk.text


class HttpAsker:
    """A running server, through ``POST /ask`` and ``GET /passages/{id}``."""

    def __init__(
        self,
        url: str,
        *,
        top_k: int = 5,
        mode: str = "hybrid",
        api_key: str | None = None,
        timeout: float = 60.0,
        wait: float = 60.0,
        on_wait: Callable[[str], None] = lambda message: None,
    ):
        import httpx

        self.url = url.rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise ServerError(f"--url must start with http:// or https:// (got {url!r})")
        self.top_k, self.mode = top_k, mode
        headers = {"X-API-Key": api_key} if api_key else {}
        self.client = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)
        self.target = f"server {self.url}"
        self._wait_ready(wait, on_wait)

    def _wait_ready(self, wait: float, on_wait: Callable[[str], None]) -> None:
        """Wait up to ``wait`` seconds for a server that is still starting (not listening yet, or 503)."""
        import httpx

        started = time.monotonic()
        deadline = started + wait
        told = False
        while True:
            if not told and time.monotonic() - started > 1.0:  # say so only when it is a real wait
                on_wait(f"waiting up to {wait:.0f} s for {self.url} to be ready ...")
                told = True
            try:
                response = self.client.get("/ready")
            except httpx.HTTPError as exc:
                if isinstance(exc, httpx.ConnectError) and time.monotonic() < deadline:
                    time.sleep(1.0)
                    continue
                raise ServerError(
                    f"cannot reach {self.url} ({exc.__class__.__name__}); start the server (make run) or fix --url"
                ) from None
            if response.status_code == 200:
                ready = response.json()
                self.target = f"server {self.url} (build {ready.get('build_id')}, {ready.get('chunks')} chunks)"
                return
            if response.status_code != 503 or time.monotonic() > deadline:
                raise ServerError(f"{self.url}/ready answered HTTP {response.status_code}; is this the question-answering service?")
            time.sleep(0.5)

    def ask(self, question: str) -> dict:
        import httpx

        body = {"question": question, "top_k": self.top_k, "mode": self.mode}
        for attempt in range(6):
            try:
                response = self.client.post("/ask", json=body)
            except httpx.HTTPError as exc:
                raise ServerError(f"{self.url}/ask failed ({exc.__class__.__name__}: {exc}); is the server still running?") from None
            if response.status_code != 429 or attempt == 5:
                break
            # Rate limited: wait as told (the wait is not part of any latency, which is measured per call).
            time.sleep(min(float(response.headers.get("Retry-After") or 1), 60.0))
        if response.status_code == 401:
            raise ServerError(f"{self.url} needs an API key for /ask; pass --api-key (or set RAG_EVAL_API_KEY)")
        if response.status_code != 200:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:200]
            return {"error": f"HTTP {response.status_code}: {detail}"}
        return response.json()

    def passage_text(self, passage_id: str) -> str | None:
        response = self.client.get(f"/passages/{passage_id}")
        return response.json()["text"] if response.status_code == 200 else None

    def close(self) -> None:
        self.client.close()
