"""The Model Context Protocol server behind ``rag mcp``: tools ``search`` and ``ask``, passages as resources.

Built on the official ``mcp`` SDK. Tool inputs are those of ``GET /search`` and ``POST /ask`` and are
validated by the same models; outputs are the HTTP bodies as structured content (with a readable
text version for clients that show text). The index loads on the first call, with the question
encoder that needs no PyTorch, so an agent starts the server in a fraction of a second.
"""

from __future__ import annotations

import threading
from typing import Annotated

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp_types import CallToolResult, TextContent
from pydantic import Field, ValidationError

from api.schemas import (
    MAX_HISTORY_ITEMS,
    MAX_QUESTION_CHARS,
    MAX_TOP_K,
    AskRequest,
    AskResponse,
    Filters,
    Mode,
    PassageDetail,
    SearchResponse,
    clean_text,
)
from core.errors import QueryError
from rag.payloads import short_answer_line
from rag.settings import Settings

PASSAGE_URI = "passage://{passage_id}"

INSTRUCTIONS = (
    "Answers questions from encyclopedia articles about space diplomacy with exact, cited quotes. "
    "Use `ask` for an answer: every sentence ends with [n] markers that refer to `citations` (article "
    "title, section breadcrumb, url, and the quote with its offsets in the passage); `short_answer`, when "
    "set, is the few words of citation `short_answer.citation` that answer the question. When `abstained` is "
    "true the articles do not cover the question: say so instead of answering. Use `search` for ranked "
    "passages, and read a passage in full as the resource passage://<passage_id>."
)


class _Service:
    """The answer service, loaded once on first use (thread-safe)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._service = None
        self._lock = threading.Lock()

    def get(self):
        if self._service is None:
            with self._lock:
                if self._service is None:
                    from rag.service import make_query_encoder, open_service

                    encoder = make_query_encoder(self.settings)
                    self._service = open_service(self.settings, encoder)
        return self._service


def _problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "input"
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") in ("string_pattern_mismatch", "string_too_short"):
        message = "is empty; send some words to search for"
    return f"{where}: {message}"


def answer_text(body: dict) -> str:
    """An answer body as text: the short answer with its marker and a blank line when there is one (as
    the OpenAI-compatible content leads), the answer, then each citation with its source and quote."""
    lead = short_answer_line(body)
    lines = [lead, "", body["answer"]] if lead else [body["answer"]]
    if body["abstained"]:
        lines.append("(The articles do not cover this question.)")
    for c in body["citations"]:
        lines.append(f'[{c["n"]}] {" > ".join(c["section"])} ({c["url"] or c["title"]}; passage {c["passage_id"]}): "{c["quote"]}"')
    return "\n".join(lines)


def create_server(settings: Settings) -> MCPServer:
    """An MCP server over the index that ``settings`` names."""
    service = _Service(settings)
    server = MCPServer("space-diplomacy-answers", title="Space diplomacy answers", instructions=INSTRUCTIONS)
    _add_ask(server, service)
    _add_search(server, service)
    _add_passages(server, service)
    return server


def _add_ask(server: MCPServer, service: _Service) -> None:
    """The tool ``ask``: the body of ``POST /ask`` as structured content, and as text."""

    @server.tool(
        title="Answer a question with cited quotes",
        description="A cited, extractive answer from the articles, or an abstention when they do not cover the question.",
    )
    async def ask(
        question: Annotated[str, Field(min_length=1, max_length=MAX_QUESTION_CHARS, description="The question.")],
        top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K, description="Passages to retrieve and draw the answer from.")] = 5,
        mode: Annotated[Mode, Field(description="hybrid (dense + BM25), dense or bm25.")] = "hybrid",
        history: Annotated[
            list[str], Field(max_length=MAX_HISTORY_ITEMS, description="Earlier questions of the conversation, most recent last.")
        ] = [],  # noqa: B006 - MCPServer reads the default into the schema; it is never mutated
        filters: Annotated[Filters | None, Field(description="Restrict to articles, categories or tags.")] = None,
    ) -> AskResponse:
        try:
            request = AskRequest(question=question, top_k=top_k, mode=mode, history=history, filters=filters or Filters())
        except ValidationError as exc:
            raise ToolError(_problem(exc)) from None
        def run() -> dict:
            answer = service.get().ask(
                request.question,
                top_k=request.top_k,
                mode=request.mode,
                history=request.history,
                filters=request.filters,
            )
            return AskResponse.of(answer).model_dump(mode="json")

        try:
            body = await anyio.to_thread.run_sync(run)
        except QueryError as exc:
            raise ToolError(str(exc)) from None
        return CallToolResult(content=[TextContent(type="text", text=answer_text(body))], structured_content=body)


def _add_search(server: MCPServer, service: _Service) -> None:
    """The tool ``search``: the body of ``GET /search``."""

    @server.tool(title="Search the articles", description="Ranked passages for a query, with breadcrumbs and scores.")
    async def search(
        query: Annotated[str, Field(min_length=1, max_length=MAX_QUESTION_CHARS, description="The query.")],
        k: Annotated[int, Field(ge=1, le=MAX_TOP_K, description="Number of passages.")] = 5,
        mode: Annotated[Mode, Field(description="hybrid (dense + BM25), dense or bm25.")] = "hybrid",
        filters: Annotated[Filters | None, Field(description="Restrict to articles, categories or tags.")] = None,
    ) -> SearchResponse:
        text = clean_text(query)
        if not text:
            raise ToolError("query: is empty; send some words to search for")
        def run() -> SearchResponse:
            results = service.get().retriever.search(text, k=k, mode=mode, filters=filters)
            return SearchResponse.of(text, results)

        try:
            return await anyio.to_thread.run_sync(run)
        except QueryError as exc:
            raise ToolError(str(exc)) from None


def _add_passages(server: MCPServer, service: _Service) -> None:
    """Passages as resources, ``passage://<passage_id>``: the body of ``GET /passages/{id}``."""

    @server.resource(
        PASSAGE_URI,
        name="passage",
        title="A passage of an article",
        description="A passage by the id that search results and citations carry, with its article and neighbours.",
        mime_type="application/json",
    )
    async def passage(passage_id: str) -> str:
        detail = await anyio.to_thread.run_sync(lambda: PassageDetail.of(service.get().index, passage_id))
        if detail is None:
            raise ResourceNotFoundError(f"no passage with id '{passage_id}'")
        return detail.model_dump_json()
