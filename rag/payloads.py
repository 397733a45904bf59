"""What crosses the edge of the library: questions cleaned and bounded alike on every interface, and
answers and search hits as the JSON bodies that ``POST /ask`` and ``GET /search``, ``rag ask --json`` and
``rag search --json``, and the evaluation harness all read and write (explicit pydantic models: the contract).

Here, below the interfaces, so that the command line and the harness need not import the HTTP API.
"""

from __future__ import annotations

import re
import unicodedata

from pydantic import BaseModel, Field

from rag.answer.markers import strip_markers
from rag.answer.service import Abstention, Answer, Citation, ShortAnswer
from rag.search.retrieve import SearchResult, result_dict

#: Longest question, in characters, after normalisation. The widget enforces the same limit.
MAX_QUESTION_CHARS = 2000
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")


def clean_text(value: str) -> str:
    """NFC-normalise, drop control and zero-width characters, collapse whitespace."""
    value = unicodedata.normalize("NFC", value)
    value = _CONTROL_RE.sub("", value)
    return " ".join(value.split())


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


class ShortAnswerModel(BaseModel):
    """The few words that answer the question (a date, a name), as a reading model found them in one citation's quote."""

    text: str = Field(description="The span itself: exactly the passage text at start:end.")
    citation: int = Field(description="The n of the citation whose quote holds the span.")
    start: int = Field(description="Start offset of the span in the passage text (the same space as the citation's start and end).")
    end: int = Field(description="End offset (exclusive) of the span; citation.start <= start < end <= citation.end.")

    @classmethod
    def of(cls, s: ShortAnswer | None) -> ShortAnswerModel | None:
        if s is None:
            return None
        return cls(text=s.text, citation=s.citation, start=s.start, end=s.end)


def short_answer_line(body: dict) -> str:
    """The short answer of an ``/ask`` body as the line that leads a text answer, its citation's marker
    after it ("1969 [2]"); "" when there is none. On one line, and without any bracket of the source
    that a reader would take for a marker, so that the only marker is the citation's."""
    short = body.get("short_answer")
    if not short or body.get("abstained"):
        return ""
    text = " ".join(strip_markers(short["text"]).split())
    return f"{text} [{short['citation']}]" if text else ""


class AskResponse(BaseModel):
    question: str
    answer: str = Field(description="The answer with [n] citation markers, or the abstention message.")
    short_answer: ShortAnswerModel | None = Field(
        None,
        description="The span of one quote that answers the question in a few words (a date, a name), found by the "
        "reader; null when the answer abstained, without a reader, or when no span lies inside a quote.",
    )
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
    reader: str | None = Field(None, description="The reader that judged the answer (its name and fingerprint prefix); null without one.")

    @classmethod
    def of(cls, a: Answer) -> AskResponse:
        return cls(
            question=a.question,
            answer=a.answer,
            short_answer=None if a.abstained else ShortAnswerModel.of(a.short_answer),
            abstained=a.abstained,
            abstention=AbstentionModel.of(a.abstention),
            citations=[CitationModel.of(c) for c in a.citations],
            passages=[PassageModel.of(r, low_confidence=a.abstained) for r in a.passages],
            search_query=a.search_query,
            support=a.support,
            timings_ms=a.timings_ms,
            reader=a.reader,
        )
