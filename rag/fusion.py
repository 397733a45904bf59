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
