"""The search modes: one type for every place that declares or checks a mode (API schemas, CLI, retrieval)."""

from __future__ import annotations

from typing import Literal, get_args

from core.errors import QueryError

#: dense + BM25 fused, dense (FAISS) only, or BM25 only.
Mode = Literal["hybrid", "dense", "bm25"]
MODES: tuple[Mode, ...] = get_args(Mode)


def check_mode(mode: str) -> Mode:
    """``mode`` as a :data:`Mode`, or a QueryError that lists the modes."""
    if mode not in MODES:
        raise QueryError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    return mode  # type: ignore[return-value]
