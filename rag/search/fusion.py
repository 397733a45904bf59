"""Rank fusion: combine ranked lists from different retrievers into one ranking."""

from __future__ import annotations

from collections.abc import Sequence


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], k: int = 60, weights: Sequence[float] | None = None
) -> dict[int, float]:
    """RRF (Cormack et al., 2009): ``sum_i w_i / (k + rank_i(d))`` with ranks starting at 1.

    Returns fused scores by document id; documents absent from a list get nothing from it.
    """
    if k < 0:
        raise ValueError(f"RRF k must be >= 0 (got {k})")
    weights = weights or [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError("one weight per ranking is needed")
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, doc in enumerate(ranking, start=1):
            fused[doc] = fused.get(doc, 0.0) + weight / (k + rank)
    return fused


def top(scores: dict[int, float], n: int) -> list[int]:
    """The ``n`` best ids by score; ties go to the smaller id so results are deterministic."""
    return sorted(scores, key=lambda doc: (-scores[doc], doc))[:n]


def convex_combination(
    dense: dict[int, float], lexical: dict[int, float], alpha: float = 0.5
) -> dict[int, float]:
    """``alpha * dense' + (1 - alpha) * lexical'`` over the union of candidates.

    Dense cosines are min-max scaled over the candidates; BM25 scores are divided by the
    best one (BM25's floor is 0, a document with no query term). Unlike RRF this keeps the
    size of a lead: one passage that alone matches a rare term is not levelled with
    passages that match only common ones (Bruch et al., 2023).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1 (got {alpha})")
    docs = set(dense) | set(lexical)
    if not docs:
        return {}
    d_values = [dense.get(doc, 0.0) for doc in docs]
    d_lo, d_hi = min(d_values), max(d_values)
    d_span = d_hi - d_lo
    l_hi = max(lexical.values(), default=0.0)
    fused = {}
    for doc in docs:
        d = (dense.get(doc, d_lo) - d_lo) / d_span if d_span > 0 else (1.0 if doc in dense else 0.0)
        lex = lexical.get(doc, 0.0) / l_hi if l_hi > 0 else 0.0
        fused[doc] = alpha * d + (1.0 - alpha) * lex
    return fused
