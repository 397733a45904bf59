"""Cited answers: the service that takes a question to a cited, extractive answer or an honest abstention.

The steps live in their own modules: candidate units and their scores (:mod:`rag.answer.candidates`), what each
unit holds (:mod:`rag.answer.unit_cache`), whether units answer the question (:mod:`rag.answer.judge`,
:mod:`rag.answer.answerability`), abstentions and their reasons (:mod:`rag.answer.abstention`), and the quotes with their
numbered citations (:mod:`rag.answer.compose`). Support for an answer is measured per unit as a mix of embedding
similarity and IDF-weighted overlap with the question's terms; below ``abstain_threshold`` the service
says the corpus does not cover the question instead of citing the nearest unrelated text.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from core.errors import QueryError
from rag.answer.abstention import (
    ABSTAIN_MESSAGE,
    NEEDS_CONTEXT_MESSAGE,
    REFERENCES_MESSAGE,
    Abstention,
    known_share,
    partial_note,
    verdict_abstention,
)
from rag.answer.config import AnswerConfig
from rag.answer.answerability import AnswerabilityModel, Evidence, Verdict, message
from rag.answer.candidates import Candidate, score_units
from rag.answer.compose import AnswerSentence, Citation, Generator, ShortAnswer, choose, cite, renumber
from rag.faults import checkpoint
from rag.search.filters import Filters
from rag.answer.judge import Judge, feature_rows
from rag.search.modes import Mode
from rag.answer.reader import Reader, Reading, Span
from rag.answer.question import YESNO, QuestionAnalysis, analyze_question, contextual_query, dangling_reference, needs_context, question_parts
from rag.search.retrieve import Retriever, SearchResult
from rag.answer.unit_cache import UnitCache, listed_work_named

__all__ = [
    "ABSTAIN_MESSAGE", "NEEDS_CONTEXT_MESSAGE", "REFERENCES_MESSAGE", "Abstention", "Answer", "AnswerConfig",
    "AnswerSentence", "AnswerService", "Citation", "Generator", "Retrieval", "ShortAnswer", "contextual_query",
    "dangling_reference", "needs_context", "renumber",
]


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
    short_answer: ShortAnswer | None = None  # the reader's span inside one of the citations; None when abstained or none fits
    reader: str | None = None  # the reader that judged the answer (its name and fingerprint prefix); None without one


@dataclass
class Retrieval:
    question: str
    query: str  # what was searched: the question, with context for a follow-up
    qvec: np.ndarray | None
    results: list[SearchResult]
    timings_ms: dict[str, float]
    history: tuple[str, ...] = ()
    evidence: object | None = None  # what composing reads besides the results (a sharded build's evidence index)


@dataclass
class _Judgement:
    """The candidate units of one question and the verdicts on them."""

    whole: QuestionAnalysis  # the question as asked (in the context of the one before, for a follow-up)
    mask: list[bool]  # per candidate: citable (it lists no source)
    every_unit: list[Evidence]  # every candidate ...
    citable: list[Candidate]  # ... and the citable ones, with their evidence
    evidence: list[Evidence]
    computed: tuple  # features of every candidate
    overall: Verdict  # on the whole question, over the citable units
    parts: list[QuestionAnalysis]  # the separate questions, when it asks two things
    verdicts: list[Verdict]  # one per part


@dataclass
class _Reading:
    """What the reader found in the top passages: its answer (None: they do not answer), and the citable unit
    that holds the whole span (None when no citable unit does, e.g. a span across two sentences)."""

    span: Span | None
    unit: int | None  # index into the judgement's ``citable``
    look: Reading  # the model's run, to point inside the quotes chosen later
    threshold: float  # the reader's threshold in use (its own, or AnswerConfig.reader_threshold)


def short_answer(span: Span | None, citations: Sequence[Citation], results: list[SearchResult]) -> ShortAnswer | None:
    """The reader's ``span`` as a short answer inside the citation whose quote holds it; None when none does."""
    if span is None or span.passage >= len(results):
        return None
    passage = results[span.passage].chunk.id
    for c in citations:
        if c.passage_id == passage and c.start <= span.start and span.end <= c.end:
            return ShortAnswer(span.text, c.n, span.start, span.end)
    return None


def pointed_answer(
    reading: _Reading | None, factoid: bool, citations: Sequence[Citation], results: list[SearchResult], margin: float
) -> ShortAnswer | None:
    """The short answer of an answered question: the reader's own answer when a quote holds it; otherwise, for
    a question a span can answer (``factoid``), the span the reader scores best inside the quotes themselves,
    if its margin over the null answer exceeds the threshold in use by ``margin`` (the answer is decided; the
    reader points at its words)."""
    if reading is None:
        return None
    if (found := short_answer(reading.span, citations, results)) is not None or not factoid:
        return found
    rows = {r.chunk.id: i for i, r in enumerate(results[: len(reading.look.passages)])}
    ranges = [(rows[c.passage_id], c.start, c.end) for c in citations if c.passage_id in rows]
    span = reading.look.best_within(ranges)
    return short_answer(span, citations, results) if span is not None and span.margin > reading.threshold + margin else None


class AnswerService:
    """Question in, cited answer (or abstention) out. Holds no state beyond its parts."""

    def __init__(
        self, retriever: Retriever, config: AnswerConfig = AnswerConfig(), generator: Generator | None = None, reader: Reader | None = None
    ):
        self.retriever = retriever
        self.config = config
        self.generator = generator
        self.reader = reader  # loaded (Reader.load) by whoever opens the service, so a bad reader fails at start

    @property
    def reader_label(self) -> str | None:
        """Which reader judges answers (its name and fingerprint prefix); None without one."""
        return self.reader.label if self.reader is not None else None

    @property
    def index(self):
        return self.retriever.index

    @property
    def units(self) -> UnitCache:
        """The parts of the index's answer units (kept with the loaded index)."""
        return UnitCache(self.index)

    @property
    def judge(self) -> Judge:
        """The answerability check with the current configuration (fitting tools replace ``config``)."""
        return Judge(self.index, self.retriever.encoder, self.units, self.config.answerability)

    def retrieve(
        self,
        question: str,
        *,
        top_k: int = 5,
        mode: Mode = "hybrid",
        history: Sequence[str] = (),
        filters: Filters | None = None,
    ) -> Retrieval:
        """First half of :meth:`ask`: the passages (streamed before the answer is composed)."""
        t0 = time.perf_counter()
        if not isinstance(question, str) or not question.strip():
            raise QueryError("the question is empty; ask something about the corpus")
        history = [h for h in history if h and h.strip()][-self.config.max_history :] if self.config.max_history else []
        query = contextual_query(question, history)
        # composition scores units by meaning in every mode, bm25 included
        qvec = self.retriever.encode(query) if self.retriever.encoder is not None else None
        t1 = time.perf_counter()
        results, evidence = self._search(question, query, qvec, top_k, mode, filters)
        t2 = time.perf_counter()
        timings = {"encode": (t1 - t0) * 1000, "retrieve": (t2 - t1) * 1000}
        return Retrieval(question, query, qvec, results, timings, tuple(history), evidence)

    def _search(self, question: str, query: str, qvec, top_k: int, mode: Mode, filters: Filters | None) -> tuple[list[SearchResult], object]:
        """The passages, and what composing reads besides them (nothing more for one index)."""
        return self.retriever.search(query, k=top_k, mode=mode, filters=filters, query_vector=qvec), None

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
        mode: Mode = "hybrid",
        history: Sequence[str] = (),
        filters: Filters | None = None,
    ) -> Answer:
        """A cited answer to ``question``, or an abstention."""
        return self.finish(self.retrieve(question, top_k=top_k, mode=mode, history=history, filters=filters))

    # ------------------------------------------------------------------ composition

    def compose(
        self, question: str, query: str, qvec: np.ndarray | None, results: list[SearchResult], history: Sequence[str] = ()
    ) -> Answer:
        """The cited answer, a partial answer that says what is missing, or an abstention with its reason."""

        reader = self.reader_label

        def abstain(why: Abstention, support: float = 0.0) -> Answer:
            return Answer(question, why.message, True, [], [], results, round(support, 4), query, abstention=why, reader=reader)

        if not history and (word := dangling_reference(question)):
            return abstain(Abstention("needs_context", NEEDS_CONTEXT_MESSAGE.format(word=word)))
        candidates, support = self._candidates(query, qvec, results)
        if self._off_topic(question, candidates, support):
            return abstain(Abstention("off_topic", ABSTAIN_MESSAGE), support)
        judged = self._judge(question, query, candidates, results)
        if self._only_in_references(judged):
            if (listed := self._listed_work(question, judged)) is None:
                return abstain(Abstention("references_only", REFERENCES_MESSAGE), support)
            # A question about a listed work itself (who wrote it, when, where) is answered by its entry.
            cited = cite(question, [candidates[listed]], results, self.generator)
            return Answer(question, cited.text, False, cited.citations, cited.sentences, results, round(support, 4), query, reader=reader)
        reading = self._read(judged, results)
        answered = [v for v in (judged.overall, *judged.verdicts) if v.answerable]
        if reading is not None and self._reader_decides(judged, reading):
            # The reader decides this kind of question: it answers only with a span it found, and never for
            # a question whose names the passages lack (however well a span reads).
            if reading.span is None or not self.judge.names_quoted(judged.whole, list(range(len(judged.evidence))), judged.evidence):
                return abstain(self._unread(judged), support)
            chosen, gaps = self._quotes(judged, answered, results, False) if answered else ([], ())
            lead = judged.citable[reading.unit]
            chosen = [lead, *(c for c in chosen if c is not lead)][: self.config.max_sentences]
            cited = cite(question, chosen, results, self.generator, lead_first=True)
            note = partial_note(judged.whole, judged.parts, judged.verdicts, gaps) if answered else None
        else:
            if not answered:
                return abstain(verdict_abstention(judged.whole, judged.overall), support)
            yes_no = judged.whole.expects == YESNO and not judged.parts
            chosen, gaps = self._quotes(judged, answered, results, yes_no)
            cited = cite(question, chosen, results, self.generator, lead_first=yes_no)
            note = partial_note(judged.whole, judged.parts, judged.verdicts, gaps)
        answer = Answer(question, cited.text, False, cited.citations, cited.sentences, results, round(support, 4), query, reader=reader)
        answer.abstention = note
        answer.short_answer = pointed_answer(reading, judged.whole.factoid and not judged.parts, cited.citations, results, self.config.pointed_margin)
        return answer

    def _read(self, judged: _Judgement, results: list[SearchResult]) -> _Reading | None:
        """The reader over the top passages (None without a reader): its answer and the citable unit holding it."""
        if self.reader is None or not results:
            return None
        checkpoint("read")
        top = results[: self.config.reader_passages]
        look = self.reader.look(judged.whole.question, [r.chunk.text for r in top])
        threshold = look.threshold(self.config.reader_threshold)
        span = look.answer(threshold)
        if span is None:
            return _Reading(None, None, look, threshold)
        unit = next(
            (n for n, c in enumerate(judged.citable) if c.row == span.passage and c.start <= span.start and span.end <= c.end), None
        )
        return _Reading(span, unit, look, threshold)

    def _reader_decides(self, judged: _Judgement, reading: _Reading) -> bool:
        """Whether the reader decides this question: a kind it was made for (``reader_kinds``), asked as one
        question, and not a span it found outside every citable unit (then the passages' words decide)."""
        if judged.parts or judged.whole.expects not in self.config.reader_kinds:
            return False
        return reading.span is None or reading.unit is not None

    def _unread(self, judged: _Judgement) -> Abstention:
        """The abstention when the reader finds no answer: what the passages do and do not hold."""
        whole, best = judged.whole, judged.overall.best
        reason, missing, mentioned = self.judge.explain(whole, judged.evidence, best)
        return Abstention(reason, message(whole, reason, missing, mentioned), tuple(missing), tuple(mentioned))

    def _candidates(self, query: str, qvec: np.ndarray | None, results: list[SearchResult]) -> tuple[list[Candidate], float]:
        return score_units(self.index, self.retriever.encoder, self.config, query, qvec, results)

    def _off_topic(self, question: str, candidates: list[Candidate], support: float) -> bool:
        """The gates before answerability: nothing retrieved, too little support, or mostly unknown words."""
        cfg = self.config
        return not candidates or support < cfg.abstain_threshold or self._known_share(question) < cfg.min_known_words

    def _known_share(self, question: str) -> float:
        encoder = self.retriever.encoder
        return known_share(question, encoder.vocabulary() if encoder is not None else None, self.index.lexical.vocabulary())

    def _judge(self, question: str, query: str, candidates: list[Candidate], results: list[SearchResult]) -> _Judgement:
        """Verdicts on the whole question and on its parts, over the units that may be quoted."""
        judge, units = self.judge, self.units
        every_unit = units.evidence(candidates, results)
        mask = units.citable(candidates, results)
        citable = [c for c, keep in zip(candidates, mask) if keep]
        evidence = [ev for ev, keep in zip(every_unit, mask) if keep]
        # Follow-ups are judged on what was searched (the question in the context of the one before).
        asked = query if query != question else question
        whole = analyze_question(asked)
        computed = judge.features(whole, every_unit)
        overall = judge.decide(whole, evidence, feature_rows(computed, mask))
        if not overall.answerable and judge.has_unindexed_words(whole):
            # A second look before abstaining: the question's words that the corpus does not use ("arms" for
            # "military") are embedded, so that a paraphrase can still be matched. The probability only
            # grows with closer matches, so an answered question never needs it (its note on what the
            # quotes do not hold reads the words as they are).
            computed = judge.features(whole, every_unit, embed=True)
            overall = judge.decide(whole, evidence, feature_rows(computed, mask))
        parts = self._parts(asked)
        # Each part must be answered surely: a part that only resembles a passage is said to be missing.
        confident = self.config.answerability.confident
        verdicts = [judge.decide(part, evidence, judge.features(part, evidence, embed=True), confident) for part in parts]
        return _Judgement(whole, mask, every_unit, citable, evidence, computed, overall, parts, verdicts)

    @staticmethod
    def _parts(asked: str) -> list[QuestionAnalysis]:
        """A question that asks two things is judged part by part, so that each part is answered or said missing."""
        pieces = question_parts(asked)
        pieces = [analyze_question(p) for p in pieces] if len(pieces) > 1 else []
        return pieces if all(len(p.focus) >= 2 for p in pieces) else []

    def _only_in_references(self, judged: _Judgement) -> bool:
        """Whether the unit that fits the question best lists a source: the articles say this only in their references."""
        if all(judged.mask):
            return False
        every = self.judge.decide(judged.whole, judged.every_unit, judged.computed)
        return every.best is not None and not judged.mask[every.best] and every.probability > max(judged.overall.probability, 0.05)

    @staticmethod
    def _listed_work(question: str, judged: _Judgement) -> int | None:
        """The listed source the question asks about by name (who wrote it, when, where), if one is: the
        entry whose title it names most fully (then with the most words), at least three fifths of it."""
        named = [(listed_work_named(question, ev.text), n) for n, (ev, keep) in enumerate(zip(judged.every_unit, judged.mask)) if not keep]
        (share, _), best = max(named, default=((0.0, 0), None))
        return best if share >= 0.6 else None

    def _quotes(
        self, judged: _Judgement, answered: list[Verdict], results: list[SearchResult], yes_no: bool
    ) -> tuple[list[Candidate], tuple[str, ...]]:
        """The units to quote, and the question's focus they leave out when the answer is not sure."""
        cfg = self.config
        whole, overall, citable, evidence = judged.whole, judged.overall, judged.citable, judged.evidence
        ranked = sorted(range(len(citable)), key=lambda n: (-citable[n].score, citable[n].row, citable[n].start))
        complete = self.judge.complete(whole, answered[0], ranked, evidence)
        chosen = choose(cfg, citable, results, ranked, answered, yes_no, complete, whole_answered=overall.answerable)
        if judged.parts or not overall.answerable:
            return chosen, ()
        quoted = [n for n, c in enumerate(citable) if any(c is q for q in chosen)]
        if not self.judge.names_quoted(whole, quoted, evidence):
            # however likely the answer, quotes from passages that do not name what was asked about say so
            return chosen, self.judge.gaps(whole, overall, quoted, evidence)
        if overall.probability >= cfg.answerability.confident:
            return chosen, ()
        # answered, but not surely: say which of the question's focus the quotes do not hold, and
        # quote only the best few (uncertain_sentences) rather than pile up passages that do not answer either
        gaps = self.judge.gaps(whole, overall, quoted, evidence)
        if gaps and len(chosen) > cfg.uncertain_sentences:
            chosen = chosen[: cfg.uncertain_sentences]
            quoted = [n for n, c in enumerate(citable) if any(c is q for q in chosen)]
            gaps = self.judge.gaps(whole, overall, quoted, evidence)
        return chosen, gaps

    def answerability_features(self, question: str, *, top_k: int = 5, mode: Mode = "hybrid"):
        """For fitting (``rag eval fit-answerability``): the features of every citable unit for ``question``
        as asked alone, with the units' texts and breadcrumbs. Empty when the off-topic gates abstain."""
        retrieval = self.retrieve(question, top_k=top_k, mode=mode)
        candidates, support = self._candidates(retrieval.query, retrieval.qvec, retrieval.results)
        if self._off_topic(question, candidates, support):
            return np.zeros((0, len(AnswerabilityModel.FEATURES))), []
        results = retrieval.results
        citable = [c for c, keep in zip(candidates, self.units.citable(candidates, results)) if keep]
        x, _, _ = self.judge.features(analyze_question(question), self.units.evidence(citable, results), embed=True)
        units = [(results[c.row].chunk.text[c.start : c.end], results[c.row].chunk.section) for c in citable]
        return x, units
