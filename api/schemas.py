"""Request and response bodies of the HTTP API, as explicit pydantic models (they are the contract)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rag import __version__
from rag.search.filters import Filters, FilterValue  # noqa: F401  (the request schemas and routes use both)
from rag.search.modes import Mode
from rag.payloads import (  # noqa: F401  (re-exported: the API's schema names them)
    MAX_QUESTION_CHARS,
    REASONS,
    AbstentionModel,
    AskResponse,
    CitationModel,
    PassageModel,
    SearchHit,
    ShortAnswerModel,
    clean_text,
)
from rag.search.retrieve import SearchResult

MAX_TOP_K = 50
MAX_HISTORY_ITEMS = 20
PASSAGE_ID_PATTERN = r"^[\w.~-]{1,200}$"

#: A question must contain at least one visible character (documented in the schema too).
VISIBLE_PATTERN = r"[^\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]"


def _question(value: str) -> str:
    value = clean_text(value)
    if not value:
        raise ValueError("is empty; send some words to search for")
    if len(value) > MAX_QUESTION_CHARS:
        raise ValueError(f"is {len(value)} characters long; the limit is {MAX_QUESTION_CHARS}")
    return value


class AskRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"question": "When did the Soviet Union launch its first satellite?"},
                {"question": "And who took part in it?", "history": ["When was the International Space Station initiated?"]},
                {"question": "What does the Moon Agreement say?", "top_k": 3, "mode": "hybrid", "filters": {"category": "Law"}},
            ]
        },
    )

    question: str = Field(
        min_length=1,
        max_length=MAX_QUESTION_CHARS,
        pattern=VISIBLE_PATTERN,
        description=f"The question, 1 to {MAX_QUESTION_CHARS} characters.",
    )
    top_k: int = Field(5, ge=1, le=MAX_TOP_K, description="Passages to retrieve and draw the answer from.")
    mode: Mode = Field("hybrid", description="Retrieval: dense + BM25 fused (hybrid), dense only, or BM25 only.")
    history: list[Annotated[str, Field(max_length=MAX_QUESTION_CHARS)]] = Field(
        default_factory=list,
        max_length=MAX_HISTORY_ITEMS,
        description="Earlier questions of the conversation, most recent last; a follow-up is searched with them.",
    )
    filters: Filters = Field(default_factory=Filters)

    @field_validator("question")
    @classmethod
    def _check_question(cls, value: str) -> str:
        return _question(value)

    @field_validator("history")
    @classmethod
    def _check_history(cls, value: list[str]) -> list[str]:
        return [item for item in (clean_text(entry) for entry in value) if item]


class SearchResponse(BaseModel):
    """The body of ``GET /search``: the same shape as ``rag search --json``."""

    query: str
    results: list[SearchHit]

    @classmethod
    def of(cls, query: str, results: list[SearchResult]) -> SearchResponse:
        return cls(query=query, results=[SearchHit.of(r) for r in results])


class ArticleModel(BaseModel):
    slug: str
    title: str
    url: str = ""
    format: str = ""
    page_count: int = 0
    categories: list[dict] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    author: str = ""
    created_at: str = ""
    updated_at: str = ""
    language: str = ""
    description: str = ""


class PassageRef(BaseModel):
    passage_id: str
    section: list[str]
    text: str


class PassageDetail(BaseModel):
    passage_id: str
    title: str
    section: list[str]
    url: str
    text: str
    start: int
    end: int
    n_tokens: int
    page: int | None = Field(None, description="Page the passage starts on (PDF sources), else null.")
    pages: list[list[int]] = Field(default_factory=list, description="[offset in text, page] where each page of the passage begins.")
    anchor: str = Field("", description="Id of the passage's section in the source (HTML id).")
    language: str = Field("", description="ISO 639-1 code of the passage's section, when known.")
    article: ArticleModel
    previous: PassageRef | None = Field(None, description="The passage before this one in the same article.")
    next: PassageRef | None = Field(None, description="The passage after this one in the same article.")

    @classmethod
    def of(cls, index, passage_id: str) -> PassageDetail | None:
        """The passage ``passage_id`` of ``index`` with its article and neighbours, or None."""
        chunk = index.chunk(passage_id)
        if chunk is None:
            return None
        meta = index.articles.get(chunk.article, {})
        prev, nxt = index.neighbours(passage_id)

        def ref(c):
            return None if c is None else PassageRef(passage_id=c.id, section=list(c.section), text=c.text)

        return cls(
            passage_id=chunk.id,
            title=chunk.title,
            section=list(chunk.section),
            url=chunk.url,
            text=chunk.text,
            start=chunk.start,
            end=chunk.end,
            n_tokens=chunk.n_tokens,
            page=chunk.page,
            pages=[list(p) for p in chunk.pages],
            anchor=chunk.anchor,
            language=chunk.language,
            article=ArticleModel(**{k: v for k, v in meta.items() if k in ArticleModel.model_fields}),
            previous=ref(prev),
            next=ref(nxt),
        )


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str = Field(__version__, description="The version of the service (as `rag --version` prints it).")


class WorkerModel(BaseModel):
    """One server process of ``rag serve --workers N``, as it last said."""

    pid: int
    loaded: bool = Field(description="Whether it has loaded the model and the index and answers questions.")
    build_id: str | None = Field(description="The build it serves (null while it loads).")


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    pid: int = Field(description="The server process that answered.")
    build_id: str = Field(description="The build the answering process serves (`workers` lists every process's).")
    articles: int
    chunks: int
    model: str
    workers_loaded: int = Field(description="Server processes loaded (every one, when /ready says 200).")
    workers_total: int = Field(description="Server processes of the service (`rag serve --workers`).")
    workers: list[WorkerModel] = Field(description="Every server process and the build it serves: after a reload, all name the new build once each serves it.")


class NotReady(BaseModel):
    """/ready while some server process is still loading: how many of how many are loaded."""

    detail: str
    request_id: str | None = None
    pid: int = Field(description="The server process that answered.")
    workers_loaded: int
    workers_total: int
    workers: list[WorkerModel]


class ErrorBody(BaseModel):
    detail: str
    request_id: str | None = None


_ERROR_DESCRIPTIONS = {
    400: "Malformed request (invalid JSON, a bad header).",
    401: "An API key is required (when the service is configured with keys) or the key is not valid.",
    403: "The key may not use this endpoint.",
    404: "Not found.",
    408: "The request body did not arrive in time.",
    409: "Conflict.",
    413: "The request body is too large.",
    414: "The query string is too long.",
    415: "The body is not labelled as JSON; send it with 'Content-Type: application/json'.",
    422: "A field is missing, empty, too long, out of range or of the wrong type; `detail` names it.",
    429: "Too many requests from this client; see the Retry-After header.",
    503: "The index is not loaded yet, or the request took too long.",
}


def error_responses(*codes: int) -> dict:
    """OpenAPI entries for error statuses; every error body is ``{"detail", "request_id"}``."""
    return {code: {"model": ErrorBody, "description": _ERROR_DESCRIPTIONS[code]} for code in codes}


#: Refusals that can come from the edge of the service for any route.
EDGE_ERRORS = error_responses(400, 408, 413, 414, 415, 422)
#: What the question endpoints add: keys, rate limits, loading or timeouts.
CLIENT_ERRORS = error_responses(401, 429, 503)


class SentenceEvent(BaseModel):
    index: int
    text: str
    citations: list[CitationModel]


class DocumentModel(BaseModel):
    """One indexed document."""

    slug: str = Field(description="Article slug: the value of the `article` filter.")
    title: str
    format: str = Field(description="markdown, text, pdf, html, docx, rst or beir.")
    url: str = Field(description="Source URL, when the document names one.")
    pages: int = Field(description="Pages (PDF), 0 for formats without pages.")
    sections: int = Field(description="Sections (distinct breadcrumbs).")
    chunks: int = Field(description="Passages indexed.")
    languages: list[str] = Field(description="Languages of its sections, most text first (ISO 639-1).")
    indexed_at: str = Field(description="When this version of the document was first indexed (UTC, ISO 8601).")
    source: str = Field(description="File name in the corpus folder.")


class DocumentList(BaseModel):
    build_id: str
    documents: list[DocumentModel]


class AddedDocumentModel(BaseModel):
    file: str
    slug: str
    title: str
    format: str
    replaced: bool = Field(description="True when a file of the same name was replaced.")


class UploadResponse(BaseModel):
    added: list[AddedDocumentModel]
    build_id: str = Field(description="The build now served.")
    articles: int
    chunks: int
    embedded: int = Field(description="Passages embedded for this build (the rest came from the cache).")
    workers: list[WorkerModel] = Field(description="Every server process and the build it serves when the response was sent.")
    workers_total: int = Field(description="Server processes of the service.")
    pending: list[int] = Field(description="Server processes (pids) not yet serving the new build after RAG_LOAD_WAIT_S; empty when all do.")
