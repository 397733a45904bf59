"""SQuAD 2.0: its JSON layout read into typed records, the official metric (the evaluate-v2.0 script's
normalisation, exact match and F1, and summary keys), and the split of a file into training and validation
articles.

The metric is re-implemented rather than vendored so that it can be tested on hand-made cases here; the
rules are the official script's: lower case, no punctuation, no articles (a, an, the), single spaces; the best
score over the gold answers; an unanswerable question scores 1 only for an empty prediction.
"""

from __future__ import annotations

import collections
import json
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from eval.errors import EvalDataError

#: The split rule, fixed before any training: sort the article titles and hold out every sixth from the third
#: on (sorted positions 2, 8, 14, 20, 26 of the 30 articles of squad2-dev-train.json: five articles, a sixth).
VALIDATION_FIRST, VALIDATION_EVERY = 2, 6


@dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offset in the paragraph


@dataclass(frozen=True)
class Question:
    """One SQuAD 2.0 question with its paragraph (``answers`` is empty when it is unanswerable)."""

    id: str
    question: str
    context: str
    title: str
    answers: tuple[Answer, ...]
    is_impossible: bool


@dataclass(frozen=True)
class Split:
    train: tuple[Question, ...]
    validation: tuple[Question, ...]
    validation_titles: tuple[str, ...]


def load_squad(path: str | Path) -> list[Question]:
    """Every question of a SQuAD 2.0 JSON file (``data[].paragraphs[].qas[]``), in file order."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except FileNotFoundError:
        raise EvalDataError(f"{path}: no such file; pass a SQuAD 2.0 JSON file") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EvalDataError(f"{path}: not a SQuAD 2.0 JSON file ({exc.__class__.__name__}: {exc})") from None
    try:
        return [
            _question(qa, paragraph["context"], article["title"])
            for article in data
            for paragraph in article["paragraphs"]
            for qa in paragraph["qas"]
        ]
    except (KeyError, TypeError) as exc:
        raise EvalDataError(f"{path}: a question or paragraph lacks a field of the SQuAD 2.0 layout ({exc})") from None


def _question(qa: dict, context: str, title: str) -> Question:
    answers = tuple(Answer(a["text"], int(a["answer_start"])) for a in qa.get("answers", ()))
    impossible = bool(qa.get("is_impossible", not answers))
    return Question(qa["id"], qa["question"], context, title, () if impossible else answers, impossible)


# ----------------------------------------------------------------------------------- the official metric

_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation, the articles a/an/the and extra whitespace (as evaluate-v2.0 does)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def exact_score(gold: str, prediction: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(prediction))


def f1_score(gold: str, prediction: str) -> float:
    gold_tokens, pred_tokens = _tokens(gold), _tokens(prediction)
    if not gold_tokens or not pred_tokens:
        return float(gold_tokens == pred_tokens)  # both empty: 1; one empty: 0
    common = collections.Counter(gold_tokens) & collections.Counter(pred_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def gold_texts(question: Question) -> list[str]:
    """The gold answers the metric compares with: the normalised-nonempty texts, or [""] when unanswerable."""
    texts = [a.text for a in question.answers if normalize_answer(a.text)]
    return texts or [""]


def question_scores(question: Question, prediction: str) -> tuple[float, float]:
    """(exact, F1) of one prediction: the best over the gold answers."""
    golds = gold_texts(question)
    return max(exact_score(g, prediction) for g in golds), max(f1_score(g, prediction) for g in golds)


def summary(questions: Sequence[Question], predictions: Mapping[str, str]) -> dict[str, float | int]:
    """The official summary (percentages): exact, f1, total, HasAns_* and NoAns_* (NoAns_exact is the
    share of unanswerable questions left unanswered). A question without a prediction counts as answered ""."""
    exact: dict[str, float] = {}
    f1: dict[str, float] = {}
    for q in questions:
        exact[q.id], f1[q.id] = question_scores(q, predictions.get(q.id, ""))
    out: dict[str, float | int] = _part(exact, f1, [q.id for q in questions], "")
    has = [q.id for q in questions if q.answers]  # as the script's qid_to_has_ans: by the raw answers
    no = [q.id for q in questions if not q.answers]
    if has:
        out.update(_part(exact, f1, has, "HasAns_"))
    if no:
        out.update(_part(exact, f1, no, "NoAns_"))
    return out


def _part(exact: dict[str, float], f1: dict[str, float], ids: list[str], prefix: str) -> dict[str, float | int]:
    n = len(ids)
    return {
        f"{prefix}exact": 100.0 * sum(exact[i] for i in ids) / n if n else 0.0,
        f"{prefix}f1": 100.0 * sum(f1[i] for i in ids) / n if n else 0.0,
        f"{prefix}total": n,
    }


# ----------------------------------------------------------------------------------- the article split


def validation_titles(titles: Iterable[str]) -> tuple[str, ...]:
    """The held-out articles: in sorted order, positions 2, 8, 14, ... (every sixth from the third)."""
    ordered = sorted(set(titles))
    return tuple(ordered[VALIDATION_FIRST::VALIDATION_EVERY])


def split_by_article(questions: Sequence[Question]) -> Split:
    """Training and validation questions by article: no paragraph, and no article, is on both sides."""
    held = validation_titles(q.title for q in questions)
    return Split(
        tuple(q for q in questions if q.title not in held),
        tuple(q for q in questions if q.title in held),
        held,
    )
