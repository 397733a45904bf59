"""Fit the answerability model (rag/answer/answerability.py) on labelled questions and measure it on others.

Every citable unit retrieved for a question gets the features the service computes at answer time.
Units of answerable questions that state the answer (they contain an alternative of the answer key,
in a gold section) are positives; every unit of an unanswerable question is a negative. A logistic
regression (scikit-learn) weighs the features; the threshold on a question's best unit is the highest
that keeps false abstentions on the fitting questions within ``max_false_abstention``. The figures on
a second question set, never used to fit, say whether the fit holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from eval.qa import QAItem
from rag.answer.answerability import AnswerabilityModel, unit_probabilities
from rag.answer.question import analyze_question


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
    """Each question's best unit probability, as the service computes it (0 when the off-topic gates abstain)."""
    return np.array(
        [float(unit_probabilities(analyze_question(r.item.question), r.x, model).max()) if len(r.x) else 0.0 for r in rows]
    )


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
    """The highest threshold whose false abstentions on answerable questions stay within half the limit:
    a threshold set at the limit on the fitting questions overshoots it on new ones."""
    scores = best_scores(model, rows)
    answerable = np.array([r.item.answerable for r in rows])
    ok = np.sort(scores[answerable & (scores > 0)])
    if not len(ok):
        return model.threshold
    allowed = int(np.floor(max_false_abstention * answerable.sum() / 2))
    # abstaining below ok[allowed] loses exactly `allowed` answerable questions; sit just under it
    return round(float(ok[min(allowed, len(ok) - 1)]) - 1e-4, 4)


@dataclass(frozen=True)
class Handling:
    """What the whole answer service does with a question set at one setting."""

    confident: float
    min_credit: float
    answerable: int
    false_abstentions: int
    marked_partial: int  # answerable questions answered with a "not covered" note
    near_domain: int
    near_domain_handled: int  # abstained, or answered with a note that names the missing part

    @property
    def handled_rate(self) -> float:
        return self.near_domain_handled / self.near_domain if self.near_domain else 0.0

    @property
    def partial_rate(self) -> float:
        return self.marked_partial / self.answerable if self.answerable else 0.0


def handling(service, items: Sequence[QAItem], model: AnswerabilityModel, *, top_k: int = 5) -> Handling:
    """Ask every question through the service with ``model`` and count outcomes (partial questions left out)."""
    from eval.askers import InProcessAsker
    from eval.qa import run_questions

    service.config = replace(service.config, answerability=model)
    results = run_questions([i for i in items if i.kind != "partial"], InProcessAsker(None, top_k=top_k, service=service), progress=False)
    answerable = [r for r in results if r.answerable]
    near = [r for r in results if r.kind == "near-domain"]
    return Handling(
        confident=model.confident,
        min_credit=model.min_credit,
        answerable=len(answerable),
        false_abstentions=sum(r.abstained for r in answerable),
        marked_partial=sum((not r.abstained) and r.abstention_reason == "partial" for r in answerable),
        near_domain=len(near),
        near_domain_handled=sum(r.handled for r in near),
    )


def choose_confident(
    service, items: Sequence[QAItem], model: AnswerabilityModel, *, max_partial: float, credits: Sequence[float] = (0.5, 0.6, 0.7)
) -> tuple[AnswerabilityModel, list[Handling]]:
    """The ``confident`` level and ``min_credit`` that handle most near-domain questions while at most
    ``max_partial`` of the answerable ones carry a "not covered" note (ties: the setting that notes less)."""
    levels = [round(model.threshold + (1 - model.threshold) * f, 4) for f in (0, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95)]
    tried = [handling(service, items, replace(model, confident=c, min_credit=m)) for m in credits for c in levels]
    ok = [h for h in tried if h.partial_rate <= max_partial] or tried[:1]
    best = max(ok, key=lambda h: (h.near_domain_handled, -h.marked_partial, -h.confident))
    return replace(model, confident=best.confident, min_credit=best.min_credit), tried
