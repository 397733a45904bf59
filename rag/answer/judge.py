"""The answerability check applied to one loaded index: features of the candidate units, verdicts for a
question (or one of its parts), and what quoted units leave out of it (rules in rag/answer/answerability.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from rag.answer.answerability import AnswerabilityModel, Evidence, Verdict, answer_type_present, decide, explain, features, present, uncovered
from rag.answer.question import QuestionAnalysis
from rag.answer.unit_cache import UnitCache, WordVectors


def feature_rows(computed, mask: list[bool]):
    """The rows of ``features(...)`` output for the units ``mask`` keeps."""
    keep = np.array(mask, dtype=bool)
    x, names_ok, credit = computed
    return x[keep], names_ok[keep], credit[keep]


class Judge:
    """Verdicts on whether retrieved units answer a question, read with the index's tables."""

    def __init__(self, index, encoder, units: UnitCache, model: AnswerabilityModel):
        self.index, self.encoder, self.units, self.model = index, encoder, units, model

    def features(self, question: QuestionAnalysis, evidence: list[Evidence], embed: bool = False):
        """``features(...)`` of the units; with ``embed``, question words the index lacks are embedded."""
        return features(question, evidence, self._idf(question), self.units.acronyms(), self._word_vectors(embed))

    def decide(self, question: QuestionAnalysis, evidence: list[Evidence], computed, threshold: float | None = None) -> Verdict:
        model = self.model if threshold is None else replace(self.model, threshold=threshold)
        return decide(question, evidence, computed, self._idf(question), self.units.acronyms(), model)

    def explain(self, question: QuestionAnalysis, evidence: list[Evidence], best: int | None) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        """Why ``evidence`` does not answer ``question``: the reason, the focus missing and the names mentioned."""
        return explain(question, evidence, self._idf(question), self.units.acronyms(), best)

    def has_unindexed_words(self, question: QuestionAnalysis) -> bool:
        known = self.index.words or {}
        return self.encoder is not None and any(f.text.casefold() not in known for f in question.words)

    def complete(self, question: QuestionAnalysis, verdict: Verdict, ranked: list[int], evidence: list[Evidence]) -> bool:
        """Whether the best-scoring unit that answers for ``verdict`` (``ranked``: units by score) holds every
        name and word of the question, and its kind of answer."""
        lead = next(n for n in ranked if verdict.probabilities[n] >= self.model.threshold)
        typed = answer_type_present(question.expects, evidence[lead].text, [n.text for n in question.names])
        # names and numbers must be in the unit itself: "1967 and 1979" are not both in one list item
        acronyms = self.units.acronyms()
        named = all(present(n, evidence[lead].unit_terms, acronyms, evidence[lead].text) for n in question.names)
        return typed and named and not self.gaps(question, verdict, [lead], evidence)

    def names_quoted(self, question: QuestionAnalysis, quoted: list[int], evidence: list[Evidence]) -> bool:
        """Whether the passages of the ``quoted`` units name everything the question names."""
        terms = frozenset().union(*(evidence[u].passage_terms for u in quoted)) if quoted else frozenset()
        text = " ".join(evidence[u].passage_text for u in quoted)
        return all(present(n, terms, self.units.acronyms(), text) for n in question.names)

    def gaps(self, question: QuestionAnalysis, verdict: Verdict, quoted: list[int], evidence: list[Evidence]) -> tuple[str, ...]:
        """The question's focus that none of the ``quoted`` units holds."""
        return uncovered(question, verdict, quoted, evidence, self.units.acronyms(), self.model.min_credit)

    def _idf(self, question: QuestionAnalysis) -> dict[str, float]:
        terms = list(dict.fromkeys(t for f in question.focus for t in f.terms))
        return dict(zip(terms, self.index.lexical.idf(terms).tolist())) if terms else {}

    def _word_vectors(self, embed: bool = False) -> WordVectors | None:
        """The index's word table; with ``embed``, words it lacks are embedded by the model (and remembered)."""
        if self.index.word_vectors is None:
            return None
        return WordVectors(self.index, self.encoder if embed else None)
