"""Exact search over shards: every shard gives its best candidates, merged and fused as one index would be.

A shard returns its dense and BM25 top candidates with corpus rows (:func:`shard_candidates`); the
merge (:func:`merge`) keeps the global top of each list, ties broken by corpus row as the local
retriever breaks them, and fuses them with the same functions (``rag.search.fusion``). Because BM25 shards
score with corpus-wide statistics and each shard is asked for as many candidates as one index would
take, the merged ranking equals the single-index ranking. The same two functions serve an in-process
search (:class:`ShardedRetriever`) and shards on other machines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rag.search.fusion import convex_combination, reciprocal_rank_fusion, top
from rag.index import Index
from rag.search.retrieve import Filters


@dataclass(frozen=True)
class Candidates:
    """One shard's candidates for one query, named by corpus row (the shard number and its local row ride along)."""

    shard: int
    dense_rows: np.ndarray  # corpus rows of the dense top, best first
    bm25_rows: np.ndarray  # corpus rows of the BM25 top (positive scores), best first
    rows: np.ndarray  # every candidate's corpus row
    local: np.ndarray  # its row within the shard
    cosine: np.ndarray  # its cosine with the query (NaN without a query vector)
    bm25: np.ndarray  # its BM25 score (corpus-wide statistics)
    allowed: int  # rows of this shard that pass the filters


def shard_candidates(
    index: Index, rows: np.ndarray, shard: int, query: str, qvec: np.ndarray | None, pool: int, mode: str, filters: Filters | None
) -> Candidates:
    """The ``pool`` best dense and BM25 candidates of one shard, as the local retriever picks them."""
    n = len(index)
    allowed = None
    if filters:
        allowed = index.rows_matching(filters.articles, filters.categories, filters.tags, filters.languages)
    size = n if allowed is None else len(allowed)
    empty = np.zeros(0, dtype=np.int64)
    if not size:
        return Candidates(shard, empty, empty, empty, empty, np.zeros(0, np.float32), np.zeros(0, np.float32), 0)
    bm25_all = index.lexical.scores(query)
    if allowed is not None:
        mask = np.zeros(n, dtype=bool)
        mask[allowed] = True
        bm25_all = np.where(mask, bm25_all, 0.0)
    bm25_local = empty
    if mode in ("hybrid", "bm25"):
        positive = np.flatnonzero(bm25_all > 0)
        # Ties go to the smaller corpus row, as in one index.
        bm25_local = positive[np.lexsort((rows[positive], -bm25_all[positive]))][:pool]
    dense_local = empty
    if mode in ("hybrid", "dense") and qvec is not None:
        _, ids = index.vectors.search(qvec, min(pool, size), allowed=allowed)
        dense_local = np.array([int(i) for i in ids[0] if i >= 0], dtype=np.int64)
    local = np.array(sorted(set(dense_local.tolist()) | set(bm25_local.tolist())), dtype=np.int64)
    cosine = index.vectors.scores(qvec, local) if qvec is not None and len(local) else np.full(len(local), np.nan, np.float32)
    return Candidates(
        shard=shard,
        dense_rows=rows[dense_local],
        bm25_rows=rows[bm25_local],
        rows=rows[local],
        local=local,
        cosine=np.asarray(cosine, dtype=np.float32),
        bm25=np.asarray(bm25_all[local], dtype=np.float32),
        allowed=size,
    )


@dataclass(frozen=True)
class Hit:
    """One merged result: where its chunk lives and the evidence for its rank."""

    row: int  # corpus row
    shard: int
    local: int  # row within the shard
    rank: int
    score: float
    dense_score: float | None
    bm25_score: float
    dense_rank: int | None
    bm25_rank: int | None


def _best(rows: list[int], key: dict[int, float], pool: int) -> list[int]:
    return sorted(rows, key=lambda r: (-key[r], r))[:pool]


def merge(
    parts: list[Candidates], k: int, mode: str, pool: int, *, fusion: str = "convex", alpha: float = 0.5, rrf_k: int = 60, with_dense: bool = True
) -> list[Hit]:
    """The ``k`` best hits over all shards, fused exactly as :class:`rag.search.retrieve.Retriever` fuses one index."""
    where: dict[int, tuple[int, int]] = {}
    cosine: dict[int, float] = {}
    bm25: dict[int, float] = {}
    dense_rows: list[int] = []
    bm25_rows: list[int] = []
    for part in parts:
        for row, local, c, b in zip(part.rows.tolist(), part.local.tolist(), part.cosine.tolist(), part.bm25.tolist()):
            where[row] = (part.shard, local)
            cosine[row] = c
            bm25[row] = b
        dense_rows.extend(part.dense_rows.tolist())
        bm25_rows.extend(part.bm25_rows.tolist())
    dense_ranking = _best(dense_rows, cosine, pool)
    bm25_ranking = _best(bm25_rows, bm25, pool)
    if mode == "dense":
        chosen, scores = dense_ranking[:k], None
    elif mode == "bm25":
        chosen, scores = bm25_ranking[:k], None
    elif fusion == "rrf":
        scores = reciprocal_rank_fusion([dense_ranking, bm25_ranking], k=rrf_k)
        chosen = top(scores, k)
    else:
        union = sorted(set(dense_ranking) | set(bm25_ranking))
        scores = convex_combination({r: cosine[r] for r in union}, {r: bm25[r] for r in union if bm25[r] > 0}, alpha=alpha)
        chosen = top(scores, k)
    dense_pos = {row: r for r, row in enumerate(dense_ranking, start=1)}
    bm25_pos = {row: r for r, row in enumerate(bm25_ranking, start=1)}
    hits = []
    for rank, row in enumerate(chosen, start=1):
        dense = cosine[row] if with_dense and not np.isnan(cosine[row]) else None
        score = scores[row] if scores is not None else (dense if mode == "dense" else bm25[row])
        shard, local = where[row]
        hits.append(Hit(row, shard, local, rank, float(score), dense, float(bm25[row]), dense_pos.get(row), bm25_pos.get(row)))
    return hits
