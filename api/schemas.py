"""Request and response bodies of the HTTP API, as explicit pydantic models (they are the contract)."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rag.answer import Abstention, Answer, Citation
from rag.filters import Filters, FilterValue  # noqa: F401  (the request schemas and routes use both)
from rag.modes import Mode
from rag.retrieve import SearchResult, result_dict

#: Longest question, in characters, after normalisation. The widget enforces the same limit.
MAX_QUESTION_CHARS = 2000
MAX_TOP_K = 50
MAX_HISTORY_ITEMS = 20
PASSAGE_ID_PATTERN = r"^[\w.~-]{1,200}$"

_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
#: A question must contain at least one visible character (documented in the schema too).
VISIBLE_PATTERN = r"[^\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]"


def clean_text(value: str) -> str:
    """NFC-normalise, drop control and zero-width characters, collapse whitespace."""
    value = unicodedata.normalize("NFC", value)
    value = _CONTROL_RE.sub("", value)
    return " ".join(value.split())


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


class CitationModel(BaseModel):
    n: int = Field(description="The number used by the [n] marker in the answer.")
    passage_id: str
    title: str = Field(description="Article title.")
    section: list[str] = Field(description="Section breadcrumb: article title, then headings.")
    url: str = Field(description="Source URL of the article.")
    quote: str = Field(description="Exact text quoted from the passage: passage.text[start:end].")
    start: int = Field(description="Start offset of the quote in the passage text.")
    end: int = Field(description="End offset (exclusive) of the quote in the passage text.")
    page: int | None = Field(None, description="Page of the source the quote starts on (PDF sources), else null.")
    anchor: str = Field("", description="Id of the quote's section in the source (HTML id), for a link '#anchor'.")

    @classmethod
    def of(cls, c: Citation) -> CitationModel:
        return cls(
            n=c.n, passage_id=c.passage_id, title=c.title, section=list(c.section), url=c.url, quote=c.quote,
            start=c.start, end=c.end, page=c.page, anchor=c.anchor,
        )


class SearchHit(BaseModel):
    """One ranked passage, field for field what ``rag search --json`` prints (``result_dict``)."""

    passage_id: str
    title: str
    section: list[str]
    url: str
    text: str
    score: float = Field(description="Retrieval score (fused score in hybrid mode).")
    rank: int
    dense_score: float | None = Field(None, description="Cosine similarity with the question.")
    bm25_score: float = Field(0.0, description="BM25 score for the question.")
    article: str = Field(description="Article slug.")
    start: int = Field(description="Start offset of the passage in the article's cleaned text.")
    end: int
    page: int | None = Field(None, description="Page the passage starts on (PDF sources), else null.")
    anchor: str = Field("", description="Id of the passage's section in the source (HTML id).")
    language: str = Field("", description="ISO 639-1 code of the passage's section, when known.")

    @classmethod
    def of(cls, r: SearchResult) -> SearchHit:
        return cls(**result_dict(r))


class PassageModel(SearchHit):
    """A passage an answer was drawn from: a search hit that also says whether it is evidence."""

    low_confidence: bool = Field(False, description="True when the answer abstained: related reading, not evidence.")

    @classmethod
    def of(cls, r: SearchResult, low_confidence: bool = False) -> PassageModel:
        return cls(**result_dict(r), low_confidence=low_confidence)


REASONS = "off_topic, not_mentioned, not_answered, references_only, needs_context, or partial"


class AbstentionModel(BaseModel):
    """Why there is no answer, or why the answer covers only part of the question."""

    reason: str = Field(description=f"One of: {REASONS}.")
    message: str = Field(description="What the articles do not cover, as one sentence for the reader.")
    missing: list[str] = Field(default_factory=list, description="What the question asks that the passages do not contain, as asked.")
    mentioned: list[str] = Field(default_factory=list, description="Names of the question that the passages do mention.")

    @classmethod
    def of(cls, a: Abstention | None) -> AbstentionModel | None:
        if a is None:
            return None
        return cls(reason=a.reason, message=a.message, missing=list(a.missing), mentioned=list(a.mentioned))


class AskResponse(BaseModel):
    question: str
    answer: str = Field(description="The answer with [n] citation markers, or the abstention message.")
    abstained: bool = Field(description="True when the corpus does not support an answer; then citations is empty.")
    abstention: AbstentionModel | None = Field(
        None,
        description="Set when abstained (why, and what is missing) and for a partial answer (reason `partial`: "
        "which part of the question the cited answer leaves out).",
    )
    citations: list[CitationModel]
    passages: list[PassageModel] = Field(description="Retrieved passages, best first.")
    search_query: str = Field(description="What was searched: the question, plus the previous one for a follow-up.")
    support: float = Field(description="How strongly the passages support an answer (compared with the abstention threshold).")
    timings_ms: dict[str, float]

    @classmethod
    def of(cls, a: Answer) -> AskResponse:
        return cls(
            question=a.question,
            answer=a.answer,
            abstained=a.abstained,
            abstention=AbstentionModel.of(a.abstention),
            citations=[CitationModel.of(c) for c in a.citations],
            passages=[PassageModel.of(r, low_confidence=a.abstained) for r in a.passages],
            search_query=a.search_query,
            support=a.support,
            timings_ms=a.timings_ms,
        )


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


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    pid: int = Field(description="The server process that answered (with several workers, each reports its own build).")
    build_id: str
    articles: int
    chunks: int
    model: str


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
