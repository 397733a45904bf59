"""Metrics: IR measures over a run (computed by ir-measures, never by hand) and the QA checks.

Everything here is a pure function of its arguments, so the figures a report prints can be
recomputed from the files the harness writes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

#: qid -> {docid: graded relevance}
Qrels = Mapping[str, Mapping[str, int]]
#: qid -> [(docid, score)], best first, scores strictly decreasing
Run = Mapping[str, Sequence[tuple[str, float]]]

#: The names the reports use, mapped to ir-measures notation (RR is MRR, AP is MAP, R is recall).
IR_MEASURES = {"nDCG@10": "nDCG@10", "Recall@100": "R@100", "MRR@10": "RR@10", "MAP@100": "AP@100"}


@dataclass(frozen=True)
class IRScores:
    """Mean of each measure over the judged queries, and each query's own values."""

    aggregate: dict[str, float]
    per_query: dict[str, dict[str, float]]


def ir_scores(qrels: Qrels, run: Run, measures: Mapping[str, str] = IR_MEASURES) -> IRScores:
    """nDCG@10, Recall@100, MRR@10 and MAP@100 of ``run`` against ``qrels`` with ir-measures.

    As in ir-measures (and trec_eval with ``-c``), a judged query missing from the run counts
    as zero; queries of the run without judgements are ignored.
    """
    import ir_measures

    parsed = {name: ir_measures.parse_measure(spec) for name, spec in measures.items()}
    name_of = {measure: name for name, measure in parsed.items()}
    qrels_dict = {q: {d: int(r) for d, r in docs.items()} for q, docs in qrels.items()}
    run_dict = {q: {d: float(s) for d, s in docs} for q, docs in run.items() if q in qrels_dict}
    aggregate = ir_measures.calc_aggregate(list(parsed.values()), qrels_dict, run_dict)
    per_query: dict[str, dict[str, float]] = {q: {name: 0.0 for name in parsed} for q in qrels_dict}
    for metric in ir_measures.iter_calc(list(parsed.values()), qrels_dict, run_dict):
        per_query[metric.query_id][name_of[metric.measure]] = float(metric.value)
    return IRScores({name: float(aggregate[m]) for name, m in parsed.items()}, per_query)


# ----------------------------------------------------------------------------------- QA checks


_MARKER_RE = re.compile(r"\[(\d+)\]")


def normalise_text(text: str) -> str:
    """Case-folded, with every run of whitespace one space (how answer keys are matched)."""
    return " ".join(text.casefold().split())


def strip_markers(answer: str) -> str:
    return _MARKER_RE.sub("", answer)


def answer_key_groups(answer: str, answer_key: Sequence[Sequence[str]]) -> list[bool]:
    """For each group of the key, whether any of its alternatives occurs in the answer."""
    text = normalise_text(strip_markers(answer))
    return [any(normalise_text(alt) in text for alt in group) for group in answer_key]


def answer_key_match(answer: str, answer_key: Sequence[Sequence[str]]) -> bool:
    """The answer states the fact: every group of the key matches (an empty key never does)."""
    groups = answer_key_groups(answer, answer_key)
    return bool(groups) and all(groups)


def same_section(a: Sequence[str], b: Sequence[str]) -> bool:
    """Breadcrumbs are equal, ignoring case and spacing (a gold section is matched exactly, not by prefix)."""
    return len(a) == len(b) and all(normalise_text(x) == normalise_text(y) for x, y in zip(a, b))


def first_hit(ranked: Sequence[Sequence[str]], gold: Iterable[Sequence[str]]) -> int | None:
    """1-based rank of the first breadcrumb in ``ranked`` that is a gold section, or None."""
    gold = list(gold)
    for rank, section in enumerate(ranked, start=1):
        if any(same_section(section, g) for g in gold):
            return rank
    return None


def hit_at(rank: int | None, k: int) -> bool:
    return rank is not None and rank <= k


def reciprocal_rank(rank: int | None) -> float:
    return 0.0 if rank is None else 1.0 / rank


def citation_problems(answer: str, abstained: bool, citations: Sequence[Mapping], passage_texts: Mapping[str, str]) -> list[str]:
    """Everything wrong with an answer's citations; an empty list means they are valid.

    Checked: each quote is ``passage.text[start:end]`` of a passage that exists; every ``[n]``
    names a citation; citations are numbered 1..m in order of first use and each is used;
    an abstention cites nothing.
    """
    problems = []
    numbers = [int(c["n"]) for c in citations]
    markers = [int(m) for m in _MARKER_RE.findall(answer)]
    if abstained:
        if citations or markers:
            problems.append("an abstention carries citations")
        return problems
    for c in citations:
        text = passage_texts.get(c["passage_id"])
        if text is None:
            problems.append(f"[{c['n']}] cites unknown passage {c['passage_id']}")
        elif not (0 <= c["start"] <= c["end"] <= len(text)) or text[c["start"] : c["end"]] != c["quote"]:
            problems.append(f"[{c['n']}] quote is not passage text[{c['start']}:{c['end']}]")
        elif not c["quote"].strip():
            problems.append(f"[{c['n']}] quote is empty")
    unresolved = sorted(set(markers) - set(numbers))
    if unresolved:
        problems.append(f"marker [{unresolved[0]}] names no citation")
    first_use = list(dict.fromkeys(markers))
    if numbers != list(range(1, len(numbers) + 1)) or first_use != numbers:
        problems.append(f"citations are not numbered 1..n in order of first use (markers {first_use}, citations {numbers})")
    if not citations:
        problems.append("an answer without citations")
    return problems


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile, ``q`` from 0 to 100 (as numpy: linear interpolation between the
    closest ranks); None for no values, reported as n/a, never as a figure that looks measured.

    The one percentile of the harness: the QA summary, the benchmarks and the load test use it.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q={q} is outside 0..100 (p95 is q=95)")
    if not len(values):
        return None
    import numpy as np

    return float(np.percentile(values, q))


def summary_ms(seconds: Sequence[float], digits: int = 2) -> dict:
    """Count, p50, p95, p99 and mean of durations in seconds, in milliseconds (None where there are none)."""
    ms = [s * 1000 for s in seconds]
    at = lambda q: None if not ms else round(percentile(ms, q), digits)  # noqa: E731
    return {"n": len(ms), "p50": at(50), "p95": at(95), "p99": at(99), "mean": round(sum(ms) / len(ms), digits) if ms else None}


def ratio(numerator: int, denominator: int) -> float | None:
    """numerator / denominator, or None when nothing was counted (reported as n/a, never as 0 or 1)."""
    return numerator / denominator if denominator else None


@dataclass(frozen=True)
class Abstention:
    """Abstention as a classifier whose positive class is "the corpus does not cover this"."""

    precision: float | None  # abstentions that were right
    recall: float | None  # unanswerable questions that were abstained on
    true_abstained: int
    abstained: int
    unanswerable: int


def abstention(outcomes: Iterable[tuple[bool, bool]]) -> Abstention:
    """From (answerable, abstained) pairs."""
    outcomes = list(outcomes)
    tp = sum(1 for answerable, abstained in outcomes if abstained and not answerable)
    predicted = sum(1 for _, abstained in outcomes if abstained)
    actual = sum(1 for answerable, _ in outcomes if not answerable)
    return Abstention(ratio(tp, predicted), ratio(tp, actual), tp, predicted, actual)
