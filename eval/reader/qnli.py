"""GLUE QNLI pairs (question, sentence, entailment or not) and their split by the SQuAD articles.

QNLI was built from SQuAD 1.1, so its questions and sentences come from the same Wikipedia articles as the
SQuAD 2.0 file: a pair belongs to the article whose question it repeats, or else whose paragraph holds its
sentence. Pairs of a validation article never reach training; pairs that match no article train.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eval.errors import EvalDataError
from eval.reader.squad import Question


@dataclass(frozen=True)
class QnliPair:
    index: str
    question: str
    sentence: str
    entailment: bool  # the sentence holds the answer to the question
    title: str | None = None  # the SQuAD article it came from, when one matches


def load_qnli(path: str | Path) -> list[QnliPair]:
    """The pairs of a GLUE QNLI TSV file (``index, question, sentence, label``)."""
    path = Path(path)
    csv.field_size_limit(sys.maxsize)
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    except FileNotFoundError:
        raise EvalDataError(f"{path}: no such file; pass the GLUE QNLI TSV file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalDataError(f"{path}: cannot be read ({exc})") from None
    if not rows or rows[0][:4] != ["index", "question", "sentence", "label"]:
        raise EvalDataError(f"{path}: not a QNLI file (the header must be index, question, sentence, label)")
    pairs = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != 4 or row[3] not in ("entailment", "not_entailment"):
            raise EvalDataError(f"{path}, line {number}: expected index, question, sentence and entailment/not_entailment")
        pairs.append(QnliPair(row[0], row[1], row[2], row[3] == "entailment"))
    return pairs


def _key(text: str) -> str:
    return " ".join(text.split()).lower()


def assign_articles(pairs: Sequence[QnliPair], questions: Sequence[Question]) -> list[QnliPair]:
    """Each pair with the title of the SQuAD article it came from: by its question's text, else by its sentence
    inside a paragraph; ``title`` stays None when neither matches."""
    by_question = {_key(q.question): q.title for q in questions}
    contexts = {}
    for q in questions:
        contexts.setdefault(q.context, q.title)
    by_context = [(_key(context), title) for context, title in contexts.items()]
    out = []
    for pair in pairs:
        title = by_question.get(_key(pair.question))
        if title is None:
            sentence = _key(pair.sentence)
            title = next((t for context, t in by_context if sentence and sentence in context), None)
        out.append(QnliPair(pair.index, pair.question, pair.sentence, pair.entailment, title))
    return out


def training_pairs(pairs: Sequence[QnliPair], questions: Sequence[Question], held_titles: Sequence[str]) -> list[QnliPair]:
    """The pairs that may be trained on: every pair except those of a held-out (validation) article."""
    held = set(held_titles)
    return [p for p in assign_articles(pairs, questions) if p.title not in held]
