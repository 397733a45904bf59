"""Composition of a cited answer: which units to quote, and the answer text with its numbered citations.

Every answer sentence is a quote from a passage with a ``[n]`` marker after it, so the citation
invariants hold by construction:

* ``citation.quote == passage.text[citation.start:citation.end]`` (quotes are slices, never rewritten);
* every ``[n]`` in the answer names citation ``n`` and citations are numbered 1..n in order of first use
  (:func:`renumber` enforces this for any composer, including a future generative one).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from rag.answer.config import AnswerConfig
from rag.answer.answerability import Verdict
from rag.answer.candidates import Candidate
from rag.text.lexical import analyze
from rag.answer.markers import strip_markers
from rag.search.retrieve import SearchResult

_MARKER_RE = re.compile(r"\[(\d+)\]")
_WS_RE = re.compile(r"\s+")
_LIST_PREFIX_RE = re.compile(r"\s*(?:\d{1,3}[.)]|[-*\u2022])\s+")
_LABEL_RE = re.compile(r"^\s*(?:\d{1,3}[.)]\s+)?([^:\n]{2,80}):\s")


@dataclass(frozen=True)
class Citation:
    n: int
    passage_id: str
    title: str
    section: tuple[str, ...]
    url: str
    quote: str
    start: int  # offsets into the passage text
    end: int
    page: int | None = None  # page the quote starts on (PDF sources)
    anchor: str = ""  # id of the quote's section in the source (HTML, rst)


@dataclass(frozen=True)
class ShortAnswer:
    """The reader's span: ``text`` is exactly the passage text of citation ``citation`` at ``start:end``
    (offsets in the same space as that citation's quote offsets, inside its quote)."""

    text: str
    citation: int  # the n of the citation it lies in
    start: int
    end: int


@dataclass(frozen=True)
class AnswerSentence:
    text: str  # the sentence as it appears in the answer, markers included
    citations: tuple[int, ...]  # the n of each citation it rests on


class Cited(NamedTuple):
    """An answer's text, its citations and its sentences, numbered consistently."""

    text: str
    citations: list[Citation]
    sentences: list[AnswerSentence]


class Generator(Protocol):
    """A seam for a generative model: it receives the question and numbered evidence and
    returns answer text whose ``[n]`` markers refer to that evidence. Its output is checked
    by :func:`renumber`; on any failure the extractive answer is used instead."""

    def generate(self, question: str, passages: Sequence[SearchResult], evidence: Sequence[Citation]) -> str: ...


def renumber(answer: str, evidence: Sequence[Citation]) -> tuple[str, list[Citation]]:
    """Renumber ``[n]`` markers 1..m in order of first use and keep only the cited evidence.

    Raises ``ValueError`` when a marker names evidence that does not exist.
    """
    by_n = {c.n: c for c in evidence}
    order: dict[int, int] = {}
    for m in _MARKER_RE.finditer(answer):
        old = int(m.group(1))
        if old not in by_n:
            raise ValueError(f"marker [{old}] names no citation")
        order.setdefault(old, len(order) + 1)
    text = _MARKER_RE.sub(lambda m: f"[{order[int(m.group(1))]}]", answer)
    citations = [
        Citation(new, c.passage_id, c.title, c.section, c.url, c.quote, c.start, c.end, c.page, c.anchor)
        for old, new in order.items()
        for c in [by_n[old]]
    ]
    return text, citations


def answer_text(quote: str) -> str:
    """A quote as it reads in the answer.

    Quotes stay exact in citations; in the answer, whitespace is tidied and bracketed
    numbers from the source are dropped so that every [n] in the answer is ours."""
    return _WS_RE.sub(" ", strip_markers(quote)).strip()


def _label(text: str) -> str:
    """The item a list entry describes ("1967 Outer Space Treaty" in "1. 1967 Outer Space Treaty: ..."), folded."""
    m = _LABEL_RE.match(text)
    return " ".join(analyze(m.group(1))) if m else ""


class _Quotes:
    """Units chosen so far, refusing overlaps, repeats in meaning, and (yes/no) a second entry on one item."""

    def __init__(self, config: AnswerConfig, results: list[SearchResult], limit: int, yes_no: bool):
        self.config, self.results, self.limit, self.yes_no = config, results, limit, yes_no
        self.chosen: list[Candidate] = []
        self.labels: set[str] = set()

    def take(self, cand: Candidate) -> None:
        chosen = self.chosen
        if len(chosen) >= self.limit or any(c.row == cand.row and c.start < cand.end and cand.start < c.end for c in chosen):
            return
        if cand.vector is not None and any(c.vector is not None and float(c.vector @ cand.vector) >= self.config.redundancy for c in chosen):
            return
        label = _label(self.results[cand.row].chunk.text[cand.start : cand.end]) if self.yes_no else ""
        if label and label in self.labels:  # a yes/no question: the same item ("1967 Outer Space Treaty: ...") once
            return
        chosen.append(cand)
        if label:
            self.labels.add(label)


def choose(
    config: AnswerConfig,
    citable: list[Candidate],
    results: list[SearchResult],
    ranked: list[int],
    answered: list[Verdict],
    yes_no: bool,
    complete: bool,
    whole_answered: bool = True,
) -> list[Candidate]:
    """The units to quote: for each answering verdict, its best-scoring unit that answers; then the
    strongest others that are judged to answer at least in part."""
    model = config.answerability
    limit = min(config.max_sentences, config.yes_no_sentences) if yes_no else config.max_sentences
    quotes = _Quotes(config, results, limit, yes_no)
    # The whole question's lead is its best-scoring unit that answers; a part's is the unit that answers it best.
    leads = [
        next(n for n in ranked if verdict.probabilities[n] >= model.threshold) if i == 0 and whole_answered else verdict.best
        for i, verdict in enumerate(answered)
    ]
    for n in leads:
        quotes.take(citable[n])
    best = max(c.score for c in quotes.chosen)
    lead = answered[0]
    # Once the first quote holds everything the question asks, a further quote must answer as well as it
    # does: one that only restates the topic ("Space diplomacy refers to ...") is not appended.
    floor = lead.probabilities[leads[0]] if complete else model.threshold * config.extra_share
    for n in ranked:
        cand = citable[n]
        if cand.score < best * config.relative_cutoff:
            break
        if lead.probabilities[n] >= floor:
            quotes.take(cand)
    return quotes.chosen


def _reading_order(chosen: list[Candidate], lead_first: bool) -> list[Candidate]:
    """Passages by their best-scoring unit, units in the passage's own order; with ``lead_first`` (a yes/no
    question) the quote that settles it comes first."""
    lead = chosen[0]
    first_rank: dict[int, int] = {}
    for pos, cand in enumerate(sorted(chosen, key=lambda c: -c.score)):
        first_rank.setdefault(cand.row, pos)
    return sorted(chosen, key=lambda c: (not (lead_first and c is lead), first_rank[c.row], c.start))


def _quoted(chosen: list[Candidate], results: list[SearchResult]) -> tuple[list[Citation], list[AnswerSentence]]:
    evidence: list[Citation] = []
    sentences: list[AnswerSentence] = []
    for cand in chosen:
        chunk = results[cand.row].chunk
        start = cand.start
        if (prefix := _LIST_PREFIX_RE.match(chunk.text, start, cand.end)) and prefix.end() < cand.end:
            start = prefix.end()  # list numbering never starts an answer sentence
        quote = chunk.text[start : cand.end]
        n = len(evidence) + 1
        evidence.append(
            Citation(n, chunk.id, chunk.title, chunk.section, chunk.url, quote, start, cand.end, chunk.page_at(start), chunk.anchor)
        )
        sentences.append(AnswerSentence(f"{answer_text(quote)} [{n}]", (n,)))
    return evidence, sentences


def cite(
    question: str, chosen: list[Candidate], results: list[SearchResult], generator: Generator | None = None, lead_first: bool = False
) -> Cited:
    """The answer quoting ``chosen``: extractive, or the ``generator``'s text when it cites valid evidence."""
    evidence, sentences = _quoted(_reading_order(chosen, lead_first), results)
    text = " ".join(s.text for s in sentences)
    if generator is not None:
        try:
            generated, cited = renumber(generator.generate(question, results, evidence), evidence)
            if cited:
                return Cited(generated, cited, [AnswerSentence(generated, tuple(c.n for c in cited))])
        except Exception:  # a failing generator never costs the user the extractive answer
            pass
    text, evidence = renumber(text, evidence)
    return Cited(text, evidence, sentences)
