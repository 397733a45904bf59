"""Abstentions: why the service gives no answer (or answers only part of a question), the gates that stop
a question before its evidence is judged, and the note a partial answer carries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rag.answer.answerability import Verdict, message
from rag.text.lexical import STOPWORDS, analyze, fold
from rag.answer.question import QuestionAnalysis
from rag.text.words import plain_words

ABSTAIN_MESSAGE = "The corpus does not cover this question, so there is no cited answer to give."
NEEDS_CONTEXT_MESSAGE = (
    "This question refers to something said before it; ask it in full (name what “{word}” stands for)."
)
REFERENCES_MESSAGE = (
    "The articles list this only among their sources and references, which are not quoted as answers; "
    "see the related passages."
)


@dataclass(frozen=True)
class Abstention:
    """Why the service did not answer (or answered only part): machine-readable and as a sentence."""

    reason: str  # off_topic | not_mentioned | not_answered | references_only | needs_context | partial
    message: str
    missing: tuple[str, ...] = ()  # what the question asks that the passages do not contain, as asked
    mentioned: tuple[str, ...] = ()  # names of the question that the passages do contain


def known_share(question: str, vocabulary, lexicon) -> float:
    """Share of the question's words that the encoder's ``vocabulary`` (None: no encoder) or the corpus'
    BM25 ``lexicon`` knows."""
    words = [w for w in (fold(w.strip("'’")) for w in plain_words(question)) if w and not w.isdigit()]
    if not words:
        return 0.0
    known = 0
    for word in words:
        stems = analyze(word)
        if (vocabulary is not None and word in vocabulary) or word in STOPWORDS or (stems and stems[0] in lexicon):
            known += 1
    return known / len(words)


def verdict_abstention(question: QuestionAnalysis, verdict: Verdict) -> Abstention:
    """The abstention for a question no unit answers, with the verdict's reason and what is missing."""
    text = message(question, verdict.reason, verdict.missing, verdict.mentioned)
    return Abstention(verdict.reason, text, tuple(verdict.missing), tuple(verdict.mentioned))


def partial_note(
    whole: QuestionAnalysis, parts: Sequence[QuestionAnalysis], verdicts: Sequence[Verdict], gaps: Sequence[str]
) -> Abstention | None:
    """What an answer leaves out: the parts of the question it does not answer, and the focus its quotes
    do not hold (``gaps``); None when it leaves nothing out."""
    notes: list[str] = []
    missing: list[str] = []
    mentioned: list[str] = []
    for part, v in zip(parts, verdicts):
        if not v.answerable:
            notes.append(message(part, v.reason, v.missing, v.mentioned))
            missing += v.missing
            mentioned += v.mentioned
    if gaps:
        notes.append(message(whole, "partial", gaps, ()))
        missing += gaps
    if not notes:
        return None
    return Abstention("partial", " ".join(notes), tuple(dict.fromkeys(missing)), tuple(dict.fromkeys(mentioned)))
