"""Reproducible calibration of the abstention threshold from a question set's support values.

The answer service abstains when the support for an answer falls below
``abstain_threshold``. A good threshold lies between the supports of off-topic questions
(which must be abstained on) and those of answerable ones (which must not be).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from eval.qa import QAResult


@dataclass(frozen=True)
class Extreme:
    value: float
    id: str
    question: str


@dataclass(frozen=True)
class Calibration:
    answerable_min: Extreme | None  # the weakest support among answerable questions
    off_topic_max: Extreme | None  # the strongest support among off-topic questions
    near_domain_max: Extreme | None
    proposed: float | None  # midpoint of the two above, when they are separable
    separable: bool  # every off-topic support is below every answerable one
    current: float | None  # the threshold in use, for comparison
    errors_at_proposed: dict[str, int]  # what the support rule alone would get wrong at ``proposed``
    errors_at_current: dict[str, int]
    supports: dict[str, list[float]]  # sorted support values per kind of question

    def to_dict(self) -> dict:
        return asdict(self)


def _extreme(results: Sequence[QAResult], highest: bool) -> Extreme | None:
    scored = [r for r in results if r.support is not None]
    if not scored:
        return None
    best = (max if highest else min)(scored, key=lambda r: (r.support, r.id))
    return Extreme(float(best.support), best.id, best.question)


def _errors(results: Sequence[QAResult], threshold: float | None) -> dict[str, int]:
    if threshold is None:
        return {}
    scored = [r for r in results if r.support is not None]
    return {
        "answerable_below": sum(1 for r in scored if r.answerable and r.support < threshold),
        "off_topic_above": sum(1 for r in scored if r.kind == "off-topic" and r.support >= threshold),
        "near_domain_above": sum(1 for r in scored if r.kind == "near-domain" and r.support >= threshold),
    }


def calibrate(results: Sequence[QAResult], current: float | None = None) -> Calibration:
    """Propose the midpoint between the highest off-topic support and the lowest answerable support.

    Near-domain questions (plausible for the domain, but not covered) are reported, not used:
    the service also abstains on them when few of their words are known to the corpus, and a
    threshold pushed above all of them would silence answerable questions.
    """
    answerable = [r for r in results if r.answerable and r.error is None]
    off_topic = [r for r in results if r.kind == "off-topic" and r.error is None]
    near = [r for r in results if r.kind == "near-domain" and r.error is None]
    low, high = _extreme(answerable, highest=False), _extreme(off_topic, highest=True)
    separable = low is not None and high is not None and high.value < low.value
    proposed = round((low.value + high.value) / 2, 4) if low is not None and high is not None else None
    supports = {}
    for name, group in (("answerable", answerable), ("off-topic", off_topic), ("near-domain", near)):
        supports[name] = sorted(round(float(r.support), 4) for r in group if r.support is not None)
    return Calibration(
        answerable_min=low,
        off_topic_max=high,
        near_domain_max=_extreme(near, highest=True),
        proposed=proposed,
        separable=separable,
        current=current,
        errors_at_proposed=_errors(results, proposed),
        errors_at_current=_errors(results, current),
        supports=supports,
    )


def describe(cal: Calibration) -> str:
    """The calibration as a few readable lines."""

    def line(label: str, e: Extreme | None) -> str:
        return f"{label:<28} {'n/a' if e is None else f'{e.value:.4f}  ({e.id}: {e.question})'}"

    out = [
        line("lowest answerable support", cal.answerable_min),
        line("highest off-topic support", cal.off_topic_max),
        line("highest near-domain support", cal.near_domain_max),
    ]
    if cal.proposed is None:
        out.append("no threshold proposed: the set needs answerable and off-topic questions")
    else:
        verdict = "separable" if cal.separable else "NOT separable: some off-topic question has more support than some answerable one"
        out.append(f"proposed threshold           {cal.proposed:.4f}  (midpoint; {verdict})")
        out.append(f"support-rule errors at it    {cal.errors_at_proposed}")
    if cal.current is not None:
        out.append(f"current threshold            {cal.current:.4f}  errors {cal.errors_at_current}")
    out.append("(the service also abstains when under half of a question's words are known; support alone is shown here)")
    return "\n".join(out)
