"""Fit the answerability model (rag/answerability.py) on labelled questions and measure it on others.

Every citable unit retrieved for a question gets the features the service computes at answer time.
Units of answerable questions that state the answer (they contain an alternative of the answer key,
in a gold section) are positives; every unit of an unanswerable question is a negative. A logistic
regression (scikit-learn) weighs the features; the threshold on a question's best unit is the highest
that keeps false abstentions on the fitting questions within ``max_false_abstention``. The figures on
a second question set, never used to fit, say whether the fit holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from eval.qa import QAItem
from rag.answerability import AnswerabilityModel


@dataclass
class QuestionRows:
    item: QAItem
    x: np.ndarray  # features of the question's citable units
    positive: np.ndarray  # bool per unit: states the answer


def _states_answer(item: QAItem, text: str, section: tuple[str, ...]) -> bool:
    folded = " ".join(text.split()).casefold()
    in_gold = not item.gold_sections or tuple(section) in {tuple(g) for g in item.gold_sections}
    return in_gold and any(any(" ".join(a.split()).casefold() in folded for a in group) for group in item.answer_key)


def collect(service, items: Sequence[QAItem], *, top_k: int = 5) -> list[QuestionRows]:
    """Features of every question's units (questions of kind ``partial`` are left out: they are both)."""
    rows = []
    for item in items:
        if item.kind == "partial":
            continue
        x, units = service.answerability_features(item.question, top_k=top_k)
        positive = np.array([item.answerable and _states_answer(item, t, s) for t, s in units], dtype=bool)
        rows.append(QuestionRows(item, x, positive))
    return rows


def best_scores(model: AnswerabilityModel, rows: Sequence[QuestionRows]) -> np.ndarray:
    """Each question's best unit probability (0 when the off-topic gates already abstain)."""
    return np.array([float(model.probability(r.x).max()) if len(r.x) else 0.0 for r in rows])


@dataclass(frozen=True)
class Outcome:
    answerable: int
    false_abstentions: int
    unanswerable: int
    abstained: int
    near_domain: int
    near_domain_abstained: int

    @property
    def false_abstention_rate(self) -> float:
        return self.false_abstentions / self.answerable if self.answerable else 0.0

    @property
    def near_domain_rate(self) -> float:
        return self.near_domain_abstained / self.near_domain if self.near_domain else 0.0


def outcome(model: AnswerabilityModel, rows: Sequence[QuestionRows]) -> Outcome:
    scores = best_scores(model, rows)
    abstains = scores < model.threshold
    ans = [r.item.answerable for r in rows]
    near = [r.item.kind == "near-domain" for r in rows]
    return Outcome(
        answerable=sum(ans),
        false_abstentions=int(sum(a and b for a, b in zip(ans, abstains))),
        unanswerable=len(rows) - sum(ans),
        abstained=int(sum((not a) and b for a, b in zip(ans, abstains))),
        near_domain=sum(near),
        near_domain_abstained=int(sum(n and b for n, b in zip(near, abstains))),
    )


def fit(rows: Sequence[QuestionRows], *, max_false_abstention: float = 0.02, regularisation: float = 1.0) -> AnswerabilityModel:
    """Weights by logistic regression on units, then the question-level threshold."""
    from sklearn.linear_model import LogisticRegression

    xs, ys = [], []
    for r in rows:
        if r.item.answerable:
            if r.positive.any():
                xs.append(r.x[r.positive])
                ys.append(np.ones(int(r.positive.sum())))
        elif len(r.x):
            xs.append(r.x)
            ys.append(np.zeros(len(r.x)))
    if not xs or len({int(y[0]) for y in ys}) < 2:
        raise ValueError("fitting needs answerable questions whose answer key is found and unanswerable questions")
    x, y = np.concatenate(xs), np.concatenate(ys)
    clf = LogisticRegression(C=regularisation, class_weight="balanced", max_iter=1000).fit(x, y)
    weights = dict(zip(AnswerabilityModel.FEATURES, (round(float(w), 4) for w in clf.coef_[0])))
    model = AnswerabilityModel(bias=round(float(clf.intercept_[0]), 4), **weights)
    return replace(model, threshold=choose_threshold(model, rows, max_false_abstention))


def choose_threshold(model: AnswerabilityModel, rows: Sequence[QuestionRows], max_false_abstention: float) -> float:
    """The highest threshold whose false abstentions on answerable questions stay within the limit."""
    scores = best_scores(model, rows)
    answerable = np.array([r.item.answerable for r in rows])
    ok = np.sort(scores[answerable & (scores > 0)])
    if not len(ok):
        return model.threshold
    allowed = int(np.floor(max_false_abstention * answerable.sum()))
    # abstaining below ok[allowed] loses exactly `allowed` answerable questions; sit just under it
    return round(float(ok[min(allowed, len(ok) - 1)]) - 1e-4, 4)


def describe(model: AnswerabilityModel) -> dict:
    return {k: v for k, v in asdict(model).items()}
