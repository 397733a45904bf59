"""Cited answers: extractive composition from retrieved passages, or an honest abstention.

Every answer sentence is a quote from a passage with a ``[n]`` marker after it, so the
citation invariants hold by construction:

* ``citation.quote == passage.text[citation.start:citation.end]`` (quotes are slices, never rewritten);
* every ``[n]`` in the answer names citation ``n`` and citations are numbered 1..n in order of first use
  (:func:`renumber` enforces this for any composer, including a future generative one).

Support for an answer is measured per sentence as a mix of embedding similarity and
IDF-weighted overlap with the question's terms; below ``abstain_threshold`` the service
says the corpus does not cover the question instead of citing the nearest unrelated text.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from rag.answerability import (
    AnswerabilityModel,
    Evidence,
    Verdict,
    answer_type_present,
    decide,
    defined_acronyms,
    features,
    message,
    present,
    uncovered,
)
from core.errors import QueryError
from rag.faults import checkpoint
from rag.lexical import STOPWORDS, analyze, fold
from rag.markers import strip_markers
from rag.question import YESNO, QuestionAnalysis, analyze_question, content_words, question_parts
from rag.retrieve import Filters, Retriever, SearchResult

ABSTAIN_MESSAGE = "The corpus does not cover this question, so there is no cited answer to give."
NEEDS_CONTEXT_MESSAGE = (
    "This question refers to something said before it; ask it in full (name what “{word}” stands for)."
)
REFERENCES_MESSAGE = (
    "The articles list this only among their sources and references, which are not quoted as answers; "
    "see the related passages."
)

# Sections that list sources rather than state facts: searchable, never quoted as an answer.
_REFERENCE_SECTION_RE = re.compile(
    r"\b(?:references?|bibliograph\w*|sources|further\s+reading|external\s+links|see\s+also|works\s+cited|literature|notes)\b",
    re.I,
)
# A bibliography entry: 'Author, First. "Title." Venue, 2023.'
_CITATION_ENTRY_RE = re.compile(r"^\s*(?:\d{1,3}[.)]\s+)?[^\s\"“]+,\s[^\"“]{1,80}[.\"“].*\b(?:1[5-9]|20)\d{2}\b[^\w]*$", re.S)
_LIST_PREFIX_RE = re.compile(r"\s*(?:\d{1,3}[.)]|[-*\u2022])\s+")
_LABEL_RE = re.compile(r"^\s*(?:\d{1,3}[.)]\s+)?([^:\n]{2,80}):\s")

_MARKER_RE = re.compile(r"\[(\d+)\]")
_WS_RE = re.compile(r"\s+")
_CONNECTIVE_RE = re.compile(r"^\s*(?:and|but|also|so|then|what about|how about|and what about)\b", re.I)
_ANAPHORA = frozenset(
    "it its it's they them their theirs this that these those he him his she her there such former latter".split()
)
_WORD_RE = re.compile(r"[\w'’]+", re.UNICODE)


@dataclass(frozen=True)
class AnswerConfig:
    """Knobs of answer composition; defaults calibrated on eval/data/qa.jsonl (see eval/RESULTS.md)."""

    max_sentences: int = 4
    relative_cutoff: float = 0.5  # extra sentences must score at least this share of the best one
    dense_weight: float = 0.65  # sentence score: similarity to the question ...
    lexical_weight: float = 0.35  # ... and IDF-weighted share of the question's terms it contains
    context_weight: float = 0.3  # sentence vectors are read in the context of their passage
    centering: float = 1.0  # share of the corpus' mean unit vector removed before comparing (0 = plain cosine)
    redundancy: float = 0.88  # cosine above which a sentence repeats one already chosen
    abstain_threshold: float = 0.24  # below this support the service abstains
    min_known_words: float = 0.5  # share of question words a dictionary or the corpus must know
    max_history: int = 5
    answerability: AnswerabilityModel = AnswerabilityModel()  # does a unit answer the question (rag/answerability.py)
    yes_no_sentences: int = 2  # a yes/no question is settled by its best quote, and one more at most
    extra_share: float = 0.5  # quotes after the first need this share of the answerability threshold
    uncertain_sentences: int = 4  # most quotes in an answer that says part of the question is not covered


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
class AnswerSentence:
    text: str  # the sentence as it appears in the answer, markers included
    citations: tuple[int, ...]  # the n of each citation it rests on


@dataclass(frozen=True)
class Abstention:
    """Why the service did not answer (or answered only part): machine-readable and as a sentence."""

    reason: str  # off_topic | not_mentioned | not_answered | references_only | needs_context | partial
    message: str
    missing: tuple[str, ...] = ()  # what the question asks that the passages do not contain, as asked
    mentioned: tuple[str, ...] = ()  # names of the question that the passages do contain


@dataclass
class Answer:
    question: str
    answer: str
    abstained: bool
    citations: list[Citation]
    sentences: list[AnswerSentence]
    passages: list[SearchResult]
    support: float
    search_query: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    abstention: Abstention | None = None  # set when abstained, and for a partial answer


@dataclass
class Retrieval:
    question: str
    query: str  # what was searched: the question, with context for a follow-up
    qvec: np.ndarray | None
    results: list[SearchResult]
    timings_ms: dict[str, float]
    history: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Candidate:
    row: int  # index into the results list
    start: int
    end: int
    score: float
    cosine: float
    coverage: float
    vector: np.ndarray | None
    passage_cosine: float = 0.0
    unit: int = -1  # row of index.sentence_spans, when stored


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


def needs_context(question: str) -> bool:
    """Whether a question leans on the conversation before it ("And who took part in it?")."""
    if _CONNECTIVE_RE.match(question):
        return True
    words = _WORD_RE.findall(question)
    if not words:
        return False
    content = analyze(question)
    names = [w for w in words[1:] if w[:1].isupper() or (len(w) > 1 and w.isupper())]
    anaphoric = any(w.casefold() in _ANAPHORA for w in words)
    return (anaphoric and not names and len(content) <= 4) or len(content) <= 1


def contextual_query(question: str, history: Sequence[str]) -> str:
    """The text to search with: the question, preceded by the last question when it depends on it."""
    if history and needs_context(question):
        return f"{history[-1].strip()} {question.strip()}"
    return question


def _term_hits(table, rows: list[int], term_ids: np.ndarray) -> np.ndarray:
    """``hits[n, j]``: whether stored row ``rows[n]`` of ``table`` (a rag.index.TermTable) holds term id ``term_ids[j]``."""
    hits = np.zeros((len(rows), len(term_ids)), dtype=bool)
    if not len(rows) or not len(term_ids):
        return hits
    pieces = [table.row(r) for r in rows]
    ids = np.concatenate(pieces)
    owner = np.repeat(np.arange(len(rows)), [len(p) for p in pieces])
    for j, term in enumerate(term_ids):
        if term >= 0:
            hits[owner[ids == term], j] = True
    return hits


def _contains(term_sets: Iterable[set[str]], terms: list[str], rows: int) -> np.ndarray:
    """``hits[n, j]``: whether the ``n``-th set holds ``terms[j]`` (``rows`` sets; the shape holds for no terms)."""
    return np.array([[t in present for t in terms] for present in term_sets], dtype=bool).reshape(rows, len(terms))


def _fold_word(word: str) -> str:
    return fold(word.strip("'’"))


def _answer_text(quote: str) -> str:
    # Quotes stay exact in citations; in the answer, whitespace is tidied and bracketed
    # numbers from the source are dropped so that every [n] in the answer is ours.
    return _WS_RE.sub(" ", strip_markers(quote)).strip()


class AnswerService:
    """Question in, cited answer (or abstention) out. Holds no state beyond its parts."""

    def __init__(self, retriever: Retriever, config: AnswerConfig = AnswerConfig(), generator: Generator | None = None):
        self.retriever = retriever
        self.config = config
        self.generator = generator

    @property
    def index(self):
        return self.retriever.index

    def retrieve(
        self,
        question: str,
        *,
        top_k: int = 5,
        mode: str = "hybrid",
        history: Sequence[str] = (),
        filters: Filters | None = None,
    ) -> Retrieval:
        """First half of :meth:`ask`: the passages (streamed before the answer is composed)."""
        t0 = time.perf_counter()
        if not isinstance(question, str) or not question.strip():
            raise QueryError("the question is empty; ask something about the corpus")
        history = [h for h in history if h and h.strip()][-self.config.max_history :] if self.config.max_history else []
        query = contextual_query(question, history)
        # composition scores sentences by meaning in every mode, bm25 included
        qvec = self.retriever.encode(query) if self.retriever.encoder is not None else None
        t1 = time.perf_counter()
        results = self.retriever.search(query, k=top_k, mode=mode, filters=filters, query_vector=qvec)
        t2 = time.perf_counter()
        timings = {"encode": (t1 - t0) * 1000, "retrieve": (t2 - t1) * 1000}
        return Retrieval(question, query, qvec, results, timings, tuple(history))

    def finish(self, retrieval: Retrieval) -> Answer:
        """Second half of :meth:`ask`: compose the cited answer from retrieved passages."""
        t0 = time.perf_counter()
        checkpoint("compose")
        answer = self.compose(retrieval.question, retrieval.query, retrieval.qvec, retrieval.results, retrieval.history)
        timings = {**retrieval.timings_ms, "compose": (time.perf_counter() - t0) * 1000}
        timings["total"] = sum(timings.values())
        answer.timings_ms = {k: round(v, 2) for k, v in timings.items()}
        return answer

    def ask(
        self,
        question: str,
        *,
        top_k: int = 5,
        mode: str = "hybrid",
        history: Sequence[str] = (),
        filters: Filters | None = None,
    ) -> Answer:
        """A cited answer to ``question``, or an abstention."""
        return self.finish(self.retrieve(question, top_k=top_k, mode=mode, history=history, filters=filters))

    # ------------------------------------------------------------------ composition

    def _candidates(self, query: str, qvec: np.ndarray | None, results: list[SearchResult]) -> tuple[list[_Candidate], float]:
        """Scored answer units of the retrieved passages, and the support for answering at all.

        Vectorised over all candidate units: the work per question is a handful of numpy
        operations on vectors and term ids stored at index time, not a Python loop over text.
        """
        cfg = self.config
        index = self.index
        terms = list(dict.fromkeys(analyze(query)))
        weights = index.lexical.idf(terms) if terms else np.zeros(0)
        total = float(weights.sum()) or 1.0

        pending: list[tuple[int, int, int]] = []
        units: list[int] = []  # rows of index.sentence_spans, when the index stores them
        vectors: list[np.ndarray | None] = []
        rows = [index.row_of[r.chunk.id] for r in results]
        for i, row in enumerate(rows):
            spans, vecs = index.sentences_of(row)
            first = int(index.sentence_first[row]) if index.sentence_first is not None else 0
            for j, (s, e) in enumerate(spans):
                pending.append((i, int(s), int(e)))
                units.append(first + j)
                vectors.append(None if vecs is None else vecs[j])
        if not pending:
            return [], 0.0
        owner = np.fromiter((i for i, _, _ in pending), dtype=np.int64, count=len(pending))

        # Which question terms each unit and each passage contains (a unit also "contains" its heading).
        headings = [set(analyze(r.chunk.section[-1])) if len(r.chunk.section) > 1 else set() for r in results]
        heading_hits = _contains(headings, terms, len(results))
        if index.sentence_terms is not None and index.chunk_terms is not None:
            vocabulary = index.lexical.vocabulary()
            term_ids = np.array([vocabulary.get(t, -1) for t in terms], dtype=np.int64)
            unit_hits = _term_hits(index.sentence_terms, units, term_ids)
            passage_hits = _term_hits(index.chunk_terms, rows, term_ids)
        else:  # an index built before term ids were stored: analyse the text now
            unit_hits = _contains((set(analyze(results[i].chunk.text[s:e])) for i, s, e in pending), terms, len(pending))
            passage_hits = _contains((set(analyze(r.chunk.text + " " + " ".join(r.chunk.section))) for r in results), terms, len(results))
        covers = ((unit_hits | heading_hits[owner]) @ weights) / total if terms else np.zeros(len(pending))
        passage_cover = (passage_hits @ weights) / total if terms else np.zeros(len(results))

        if qvec is None:
            out = [_Candidate(i, s, e, float(c), 0.0, float(c), None, 0.0, units[n]) for n, ((i, s, e), c) in enumerate(zip(pending, covers))]
            return out, float(max(passage_cover, default=0.0))

        if any(v is None for v in vectors):
            # an index built without sentence vectors: embed the candidates now
            unit_vectors = np.asarray(self.retriever.encoder.embed_batch([results[i].chunk.text[s:e] for i, s, e in pending]), dtype=np.float32)
        else:
            unit_vectors = np.asarray(np.stack(vectors), dtype=np.float32)
        qvec = np.asarray(qvec, dtype=np.float32)
        passage_vectors = index.vectors.vectors(np.array(rows, dtype=np.int64))
        cosines = unit_vectors @ qvec
        # A sentence read alone loses its subject ("This development ... NASA"); mixing in
        # its passage's vector lets the passage's context speak for it.
        mixed = unit_vectors + cfg.context_weight * passage_vectors[owner]
        query = qvec
        centroid = index.unit_centroid
        if cfg.centering and centroid is not None:
            # Every passage of a corpus shares its topic, so generic sentences ("Space diplomacy
            # represents a rapidly evolving dimension ...") resemble every question about it.
            # Comparing after removing the corpus' mean direction lets the specific content count.
            shift = cfg.centering * centroid
            mixed = mixed / np.maximum(np.linalg.norm(mixed, axis=1, keepdims=True), 1e-12) - shift
            query = qvec - shift
            query = query / (np.linalg.norm(query) or 1.0)
        norms = np.linalg.norm(mixed, axis=1)
        contextual = (mixed @ query) / np.where(norms == 0, 1.0, norms)
        scores = cfg.dense_weight * contextual + cfg.lexical_weight * covers
        passage_cosines = passage_vectors @ qvec
        out = [
            _Candidate(i, s, e, float(score), float(cos), float(cover), unit_vectors[n], float(passage_cosines[i]), units[n])
            for n, ((i, s, e), score, cos, cover) in enumerate(zip(pending, scores, cosines, covers))
        ]
        best_cosine = max(0.0, float(cosines.max()))
        best_passage = float(max(passage_vectors @ qvec, default=0.0))
        support = 0.5 * best_cosine + 0.2 * best_passage + 0.3 * float(max(passage_cover, default=0.0))
        return out, support

    def known_share(self, question: str) -> float:
        """Share of the question's words that the corpus or the encoder's vocabulary knows."""
        words = [w for w in (_fold_word(w) for w in _WORD_RE.findall(question)) if w and not w.isdigit()]
        if not words:
            return 0.0
        vocabulary = self.retriever.encoder.vocabulary() if self.retriever.encoder is not None else None
        lexicon = self.index.lexical.vocabulary()
        known = 0
        for word in words:
            stems = analyze(word)
            if (vocabulary is not None and word in vocabulary) or word in STOPWORDS or (stems and stems[0] in lexicon):
                known += 1
        return known / len(words)

    def compose(
        self, question: str, query: str, qvec: np.ndarray | None, results: list[SearchResult], history: Sequence[str] = ()
    ) -> Answer:
        """The cited answer, a partial answer that says what is missing, or an abstention with its reason."""
        cfg = self.config

        def abstain(reason: str, text: str, support: float = 0.0, missing=(), mentioned=()) -> Answer:
            why = Abstention(reason, text, tuple(missing), tuple(mentioned))
            return Answer(question, text, True, [], [], results, round(support, 4), query, abstention=why)

        if not history and (word := dangling_reference(question)):
            return abstain("needs_context", NEEDS_CONTEXT_MESSAGE.format(word=word))
        candidates, support = self._candidates(query, qvec, results)
        if self._off_topic(question, candidates, support):
            return abstain("off_topic", ABSTAIN_MESSAGE, support)

        every_unit = self._evidence(candidates, results)
        mask = self._citable(candidates, results)
        citable = [c for c, keep in zip(candidates, mask) if keep]
        evidence = [ev for ev, keep in zip(every_unit, mask) if keep]
        # Follow-ups are judged on what was searched (the question in the context of the one before).
        asked = query if query != question else question
        whole = analyze_question(asked)
        computed = self._features(whole, every_unit)
        overall = self._decide(whole, evidence, _rows(computed, mask))
        if not overall.answerable and self._has_unindexed_words(whole):
            # A second look before abstaining: the question's words that the corpus does not use ("arms" for
            # "military") are embedded, so that a paraphrase can still be matched. The probability only
            # grows with closer matches, so an answered question never needs it (its note on what the
            # quotes do not hold reads the words as they are).
            computed = self._features(whole, every_unit, embed=True)
            overall = self._decide(whole, evidence, _rows(computed, mask))
        pieces = question_parts(asked)
        pieces = [analyze_question(p) for p in pieces] if len(pieces) > 1 else []
        # A question that asks two things is judged part by part, so that each part is answered or said missing.
        parts = pieces if all(len(p.focus) >= 2 for p in pieces) else []
        # Each part must be answered surely: a part that only resembles a passage is said to be missing.
        verdicts = [self._decide(part, evidence, self._features(part, evidence, embed=True), cfg.answerability.confident) for part in parts]
        if not all(mask):
            # the unit that fits the question best lists a source: the articles say this only in their references
            every = self._decide(whole, every_unit, computed)
            if every.best is not None and not mask[every.best] and every.probability > max(overall.probability, 0.05):
                return abstain("references_only", REFERENCES_MESSAGE, support)
        answered = [v for v in (overall, *verdicts) if v.answerable]
        if not answered:
            return abstain(overall.reason, message(whole, overall.reason, overall.missing, overall.mentioned), support, overall.missing, overall.mentioned)

        yes_no = whole.expects == YESNO and not parts
        ranked = sorted(range(len(citable)), key=lambda n: (-citable[n].score, citable[n].row, citable[n].start))
        complete = self._complete(whole, answered[0], ranked, evidence)
        chosen = self._choose(citable, results, ranked, answered, yes_no, complete, whole_answered=overall.answerable)
        quoted = [n for n, c in enumerate(citable) if any(c is q for q in chosen)]
        gaps = ()
        if not parts and overall.answerable and not self._names_quoted(whole, quoted, evidence):
            # however likely the answer, quotes from passages that do not name what was asked about say so
            gaps = uncovered(whole, overall, quoted, evidence, self._acronyms(), cfg.answerability.min_credit)
        elif not parts and overall.answerable and overall.probability < cfg.answerability.confident:
            # answered, but not surely: say which of the question's focus the quotes do not hold, and
            # quote only the best few (uncertain_sentences) rather than pile up passages that do not answer either
            gaps = uncovered(whole, overall, quoted, evidence, self._acronyms(), cfg.answerability.min_credit)
            if gaps and len(chosen) > cfg.uncertain_sentences:
                chosen = chosen[: cfg.uncertain_sentences]
                quoted = [n for n, c in enumerate(citable) if any(c is q for q in chosen)]
                gaps = uncovered(whole, overall, quoted, evidence, self._acronyms(), cfg.answerability.min_credit)
        answer = self._cite(question, query, chosen, results, support, lead_first=yes_no)
        notes, missing, mentioned = [], [], []
        for part, v in zip(parts, verdicts):
            if not v.answerable:
                notes.append(message(part, v.reason, v.missing, v.mentioned))
                missing += v.missing
                mentioned += v.mentioned
        if gaps:
            notes.append(message(whole, "partial", gaps, ()))
            missing += gaps
        if notes and not answer.abstained:
            answer.abstention = Abstention("partial", " ".join(notes), tuple(dict.fromkeys(missing)), tuple(dict.fromkeys(mentioned)))
        return answer

    def _off_topic(self, question: str, candidates: list[_Candidate], support: float) -> bool:
        """The gates before answerability: nothing retrieved, too little support, or mostly unknown words."""
        cfg = self.config
        return not candidates or support < cfg.abstain_threshold or self.known_share(question) < cfg.min_known_words

    def _citable(self, candidates: list[_Candidate], results: list[SearchResult]) -> list[bool]:
        """Per candidate: may it be quoted (it does not list a source)?"""
        return [not self._unit(results[c.row].chunk, c)[6] for c in candidates]

    def _names_quoted(self, question: QuestionAnalysis, quoted: list[int], evidence: list[Evidence]) -> bool:
        terms = frozenset().union(*(evidence[u].passage_terms for u in quoted)) if quoted else frozenset()
        text = " ".join(evidence[u].passage_text for u in quoted)
        return all(present(n, terms, self._acronyms(), text) for n in question.names)

    def _complete(self, question: QuestionAnalysis, verdict: Verdict, ranked: list[int], evidence: list[Evidence]) -> bool:
        """Whether the best-scoring unit that answers for ``verdict`` (``ranked``: units by score) holds every
        name and word of the question, and its kind of answer."""
        model = self.config.answerability
        lead = next(n for n in ranked if verdict.probabilities[n] >= model.threshold)
        typed = answer_type_present(question.expects, evidence[lead].text, [n.text for n in question.names])
        # names and numbers must be in the sentence itself: "1967 and 1979" are not both in one list item
        named = all(present(n, evidence[lead].unit_terms, self._acronyms(), evidence[lead].text) for n in question.names)
        return typed and named and not uncovered(question, verdict, [lead], evidence, self._acronyms(), model.min_credit)

    def answerability_features(self, question: str, *, top_k: int = 5, mode: str = "hybrid"):
        """For fitting (``rag eval fit-answerability``): the features of every citable unit for ``question``
        as asked alone, with the units' texts and breadcrumbs. Empty when the off-topic gates abstain."""
        retrieval = self.retrieve(question, top_k=top_k, mode=mode)
        candidates, support = self._candidates(retrieval.query, retrieval.qvec, retrieval.results)
        if self._off_topic(question, candidates, support):
            return np.zeros((0, len(AnswerabilityModel.FEATURES))), []
        results = retrieval.results
        citable = [c for c, keep in zip(candidates, self._citable(candidates, results)) if keep]
        x, _, _ = self._features(analyze_question(question), self._evidence(citable, results), embed=True)
        units = [(results[c.row].chunk.text[c.start : c.end], results[c.row].chunk.section) for c in citable]
        return x, units

    def _evidence(self, candidates: list[_Candidate], results: list[SearchResult]) -> list[Evidence]:
        """What the answerability check reads of each unit. The text-derived parts are computed once per
        unit and kept with the loaded index (they depend on nothing else), so a question costs lookups."""
        out = []
        for c in candidates:
            text, unit_terms, passage_terms, words, passage_text, rows, _ = self._unit(results[c.row].chunk, c)
            out.append(Evidence(text, unit_terms, passage_terms, c.cosine, c.passage_cosine, words, passage_text, rows))
        return out

    def _unit(self, chunk, c: _Candidate) -> tuple:
        """The kept parts of one unit: text, terms (with its heading), passage terms, words, passage text,
        word-table rows, and whether it lists a source."""
        cache = self._unit_cache()
        key = (chunk.id, c.start, c.end)
        parts = cache.get(key)
        if parts is None:
            if len(cache) >= _UNIT_CACHE_SIZE:
                cache.clear()
            parts = cache[key] = self._unit_parts(chunk, c)
        return parts

    def _unit_cache(self) -> dict:
        index = self.index
        cache = getattr(index, "_unit_parts", None)
        if cache is None:
            cache = index._unit_parts = {}
        return cache

    def _unit_parts(self, chunk, c: _Candidate) -> tuple:
        index = self.index
        text = chunk.text[c.start : c.end]
        heading = chunk.section[-1] if len(chunk.section) > 1 else ""
        if index.sentence_terms is not None and c.unit >= 0:
            terms = self._terms_of(index.sentence_terms.row(c.unit))
        else:
            terms = frozenset(analyze(text))
        passages = self._unit_cache()
        passage = passages.get(chunk.id)
        if passage is None:
            passage = passages[chunk.id] = (self._passage_terms(chunk), chunk.title + " " + chunk.text)
        words = content_words(text + " " + heading)
        rows = _WordVectors(index).rows(words) if index.word_vectors is not None else None
        reference = _is_reference(chunk, text)
        return text, terms | frozenset(analyze(heading)), passage[0], words, passage[1], rows, reference

    def _passage_terms(self, chunk) -> frozenset[str]:
        index = self.index
        row = index.row_of.get(chunk.id)
        if index.chunk_terms is not None and row is not None:
            terms = self._terms_of(index.chunk_terms.row(row))
        else:
            terms = frozenset(analyze(chunk.text + " " + " ".join(chunk.section)))
        return terms | frozenset(analyze(chunk.title))

    def _terms_of(self, ids: np.ndarray) -> frozenset[str]:
        index = self.index
        names = getattr(index, "_term_names", None)
        if names is None:
            vocabulary = index.lexical.vocabulary()
            names = [""] * (max(vocabulary.values(), default=-1) + 1)
            for term, i in vocabulary.items():
                names[i] = term
            index._term_names = names
        return frozenset(names[int(i)] for i in ids)

    def _acronyms(self) -> dict:
        index = self.index
        table = getattr(index, "_acronyms", None)
        if table is None:
            table = index._acronyms = defined_acronyms([c.text for c in index.chunks])
        return table

    def _idf(self, question: QuestionAnalysis) -> dict[str, float]:
        terms = list(dict.fromkeys(t for f in question.focus for t in f.terms))
        return dict(zip(terms, self.index.lexical.idf(terms).tolist())) if terms else {}

    def _features(self, question: QuestionAnalysis, evidence: list[Evidence], embed: bool = False):
        return features(question, evidence, self._idf(question), self._acronyms(), self._word_vectors(embed))

    def _has_unindexed_words(self, question: QuestionAnalysis) -> bool:
        known = self.index.words or {}
        return self.retriever.encoder is not None and any(f.text.casefold() not in known for f in question.words)

    def _decide(self, question: QuestionAnalysis, evidence: list[Evidence], computed, threshold: float | None = None) -> Verdict:
        model = self.config.answerability
        if threshold is not None:
            model = replace(model, threshold=threshold)
        return decide(question, evidence, computed, self._idf(question), self._acronyms(), model)

    def _word_vectors(self, embed: bool = False) -> _WordVectors | None:
        """The index's word table; with ``embed``, words it lacks are embedded by the model (and remembered)."""
        if self.index.word_vectors is None:
            return None
        return _WordVectors(self.index, self.retriever.encoder if embed else None)

    def _choose(
        self,
        citable: list[_Candidate],
        results: list[SearchResult],
        ranked: list[int],
        answered: list[Verdict],
        yes_no: bool,
        complete: bool,
        whole_answered: bool = True,
    ) -> list[_Candidate]:
        """The units to quote: for each answering verdict, its best-scoring unit that answers; then the
        strongest others that are judged to answer at least in part."""
        cfg = self.config
        model = cfg.answerability
        limit = min(cfg.max_sentences, cfg.yes_no_sentences) if yes_no else cfg.max_sentences
        chosen: list[_Candidate] = []
        labels: set[str] = set()

        def take(cand: _Candidate) -> None:
            if len(chosen) >= limit or any(c.row == cand.row and c.start < cand.end and cand.start < c.end for c in chosen):
                return
            if cand.vector is not None and any(c.vector is not None and float(c.vector @ cand.vector) >= cfg.redundancy for c in chosen):
                return
            label = _label(results[cand.row].chunk.text[cand.start : cand.end]) if yes_no else ""
            if label and label in labels:  # a yes/no question: the same item ("1967 Outer Space Treaty: ...") once
                return
            chosen.append(cand)
            if label:
                labels.add(label)

        # The whole question's lead is its best-scoring unit that answers; a part's is the unit that answers it best.
        leads = [
            next(n for n in ranked if verdict.probabilities[n] >= model.threshold) if i == 0 and whole_answered else verdict.best
            for i, verdict in enumerate(answered)
        ]
        for n in leads:
            take(citable[n])
        best = max(c.score for c in chosen)
        lead = answered[0]
        # Once the first quote holds everything the question asks, a further quote must answer as well as it
        # does: one that only restates the topic ("Space diplomacy refers to ...") is not appended.
        floor = lead.probabilities[leads[0]] if complete else model.threshold * cfg.extra_share
        for n in ranked:
            cand = citable[n]
            if cand.score < best * cfg.relative_cutoff:
                break
            if lead.probabilities[n] >= floor:
                take(cand)
        return chosen

    def _cite(self, question, query, chosen: list[_Candidate], results, support: float, lead_first: bool = False) -> Answer:
        # Reading order: passages by their best-scoring sentence, sentences in the passage's own order;
        # a yes/no question leads with the quote that settles it.
        lead = chosen[0]
        first_rank: dict[int, int] = {}
        for pos, cand in enumerate(sorted(chosen, key=lambda c: -c.score)):
            first_rank.setdefault(cand.row, pos)
        chosen = sorted(chosen, key=lambda c: (not (lead_first and c is lead), first_rank[c.row], c.start))

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
                Citation(
                    n, chunk.id, chunk.title, chunk.section, chunk.url, quote, start, cand.end, chunk.page_at(start), chunk.anchor
                )
            )
            sentences.append(AnswerSentence(f"{_answer_text(quote)} [{n}]", (n,)))

        text = " ".join(s.text for s in sentences)
        if self.generator is not None:
            try:
                generated, cited = renumber(self.generator.generate(question, results, evidence), evidence)
                if cited:
                    streamed = [AnswerSentence(generated, tuple(c.n for c in cited))]
                    return Answer(question, generated, False, cited, streamed, results, round(support, 4), query)
            except Exception:  # a failing generator never costs the user the extractive answer
                pass
        text, evidence = renumber(text, evidence)
        return Answer(question, text, False, evidence, sentences, results, round(support, 4), query)


def _label(text: str) -> str:
    """The item a list entry describes ("1967 Outer Space Treaty" in "1. 1967 Outer Space Treaty: ..."), folded."""
    m = _LABEL_RE.match(text)
    return " ".join(analyze(m.group(1))) if m else ""


class _WordVectors:
    """Vectors of single words: the index's embedded word table, and for a question's words the corpus
    does not use, the model's (one small batch, remembered with the index) when an encoder is given;
    without one, such words have no vector (zeros)."""

    def __init__(self, index, encoder=None):
        self.index, self.encoder = index, encoder

    def rows(self, words) -> np.ndarray:
        """Rows of the words the table holds (the others are left out)."""
        table = self.index.words or {}
        found = np.fromiter((table.get(w, -1) for w in words), dtype=np.int64, count=len(words))
        return found[found >= 0]

    def table(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.index.word_vectors[rows], dtype=np.float32)

    def vectors(self, words: list[str]) -> np.ndarray:
        table, rows = self.index.word_vectors, self.index.words or {}
        found = np.fromiter((rows.get(w, -1) for w in words), dtype=np.int64, count=len(words))
        out = np.zeros((len(words), table.shape[1]), dtype=np.float32)
        known = found >= 0
        out[known] = table[found[known]]
        if self.encoder is not None and not known.all():
            remembered = _embedded_words(self.index)
            new = [w for w in dict.fromkeys(w for w, k in zip(words, known) if not k) if w not in remembered]
            if new:
                if len(remembered) + len(new) > _UNIT_CACHE_SIZE:
                    remembered.clear()
                remembered.update(zip(new, np.asarray(self.encoder.embed_batch(new), dtype=np.float32)))
            for n, (word, k) in enumerate(zip(words, known)):
                if not k:
                    out[n] = remembered[word]
        return out


def _embedded_words(index) -> dict:
    table = getattr(index, "_embedded_words", None)
    if table is None:
        table = index._embedded_words = {}
    return table


_UNIT_CACHE_SIZE = 200_000  # answer units whose analysed parts are kept with a loaded index


def _rows(computed, mask: list[bool]):
    """The rows of ``features(...)`` output for the units ``mask`` keeps."""
    keep = np.array(mask, dtype=bool)
    x, names_ok, credit = computed
    return x[keep], names_ok[keep], credit[keep]


def _is_reference(chunk, text: str) -> bool:
    """Whether a unit lists a source (a references section, or a bibliography-shaped entry)."""
    if any(_REFERENCE_SECTION_RE.search(h) for h in chunk.section[1:]):
        return True
    return bool(_CITATION_ENTRY_RE.match(text))


def dangling_reference(question: str) -> str | None:
    """The pronoun a question leans on when it cannot stand alone ("And who took part in it?" -> "it")."""
    words = _WORD_RE.findall(question)
    if not words:
        return None
    content = analyze(question)
    names = [w for w in words[1:] if w[:1].isupper() or (len(w) > 1 and w.isupper())]
    pronouns = [w for w in words if w.casefold() in _ANAPHORA - {"there", "this", "that", "these", "those", "such"}]
    if names or not pronouns:
        return None
    if _CONNECTIVE_RE.match(question) or len(content) <= 3:
        return pronouns[-1]
    return None
