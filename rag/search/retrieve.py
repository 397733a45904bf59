"""Retrieval: dense (FAISS) and lexical (BM25) rankers behind one protocol, and a hybrid that fuses them
by normalised scores or reciprocal rank (:mod:`rag.search.fusion`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from core.errors import QueryError
from embeddings.base import Encoder
from rag.text.chunking import Chunk
from rag.search.filters import FILTER_KEYS, Filters
from rag.search.fusion import convex_combination, reciprocal_rank_fusion, top
from rag.index import Index
from rag.search.modes import MODES, Mode, check_mode

__all__ = [
    "FILTER_KEYS", "FUSIONS", "MODES", "DenseRanker", "Filters", "HybridRanker", "LexicalRanker", "Mode", "Query",
    "Ranker", "Ranking", "Retriever", "SearchResult", "check_query", "check_settings", "encode_query", "filter_values",
    "result_dict", "unmatched_filters",
]

FUSIONS = ("rrf", "convex")


@dataclass(frozen=True)
class SearchResult:
    """One ranked passage with the evidence for its rank."""

    chunk: Chunk
    rank: int
    score: float  # what ranked it: fused score (hybrid), cosine (dense) or BM25 (bm25)
    dense_score: float | None  # cosine similarity of question and passage (None in bm25 mode)
    bm25_score: float  # BM25 score of the passage for the question (0 when no term matches)
    dense_rank: int | None  # rank among dense candidates, if it was one
    bm25_rank: int | None  # rank among BM25 candidates, if it was one


def filter_values(articles: Mapping[str, dict]) -> dict[str, list[str]]:
    """The values each filter can take in an index: article slugs, category names, tags."""
    categories = {c.get("name") or c.get("slug", "") for meta in articles.values() for c in meta.get("categories", [])}
    tags = {t for meta in articles.values() for t in meta.get("tags", [])}
    return {
        "article": sorted(articles),
        "category": sorted(c for c in categories if c),
        "tag": sorted(t for t in tags if t),
    }


def _listing(values: list[str], most: int = 15) -> str:
    if not values:
        return "none"
    shown = ", ".join(repr(v) for v in values[:most])
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")


def _allowed_rows(index: Index, filters: Filters) -> np.ndarray:
    return index.rows_matching(filters.articles, filters.categories, filters.tags, filters.languages)


def unmatched_filters(index: Index, filters: Filters) -> str | None:
    """Why no passage of ``index`` can match ``filters`` (naming the values that exist), or None.

    A question under such filters has nothing to search; the caller says so instead of abstaining
    as if the corpus did not cover the question.
    """
    if not filters or len(_allowed_rows(index, filters)):
        return None
    existing = {**filter_values(index.articles), "language": index.languages()}
    wanted = {"article": filters.articles, "category": filters.categories, "tag": filters.tags, "language": filters.languages}
    for key, values in wanted.items():
        if not values:
            continue
        known = {v.casefold() for v in existing[key]}
        if key == "category":  # categories also match by slug
            known |= {c.get("slug", "").casefold() for m in index.articles.values() for c in m.get("categories", [])}
        if not values & known:
            asked = ", ".join(repr(v) for v in sorted(values))
            return f"no document matches the filter {key} {asked}; the values that exist are: {_listing(existing[key])}"
    used = "; ".join(f"{key} {', '.join(sorted(values))}" for key, values in wanted.items() if values)
    return f"no document matches all the filters together ({used}); each matches some documents, but not the same ones"


def result_dict(result: SearchResult) -> dict:
    """The public JSON shape of one search result (CLI ``--json`` and ``GET /search``)."""
    chunk = result.chunk
    return {
        "passage_id": chunk.id,
        "title": chunk.title,
        "section": list(chunk.section),
        "url": chunk.url,
        "text": chunk.text,
        "score": result.score,
        "rank": result.rank,
        "dense_score": result.dense_score,
        "bm25_score": result.bm25_score,
        "article": chunk.article,
        "start": chunk.start,
        "end": chunk.end,
        "page": chunk.page,
        "anchor": chunk.anchor,
        "language": chunk.language,
    }


# ------------------------------------------------------------------ rankers


@dataclass
class Query:
    """One search as the rankers see it: its text, the rows it may return, how many candidates each
    ranker gives, the BM25 score of every row, and the question's vector (encoded on first need)."""

    text: str
    allowed: np.ndarray | None  # rows the filters allow (None: every row)
    pool: int
    bm25: np.ndarray  # BM25 score of every row for the text (0 outside ``allowed``)
    vector: np.ndarray | None
    encode: Callable[[str], np.ndarray] = field(repr=False)

    def dense_vector(self) -> np.ndarray:
        if self.vector is None:
            self.vector = self.encode(self.text)
        return self.vector


@dataclass(frozen=True)
class Ranking:
    """Candidate rows, best first, with the candidate lists they came from and what scored them."""

    rows: list[int]
    by: Literal["dense", "bm25", "fused"]  # which score ranked them
    dense: list[int] = field(default_factory=list)  # the dense candidates, best first
    lexical: list[int] = field(default_factory=list)  # the BM25 candidates, best first
    fused: dict[int, float] = field(default_factory=dict)  # fused score of each candidate (hybrid)


class Ranker(Protocol):
    """One way to order the passages of an index for a query."""

    def rank(self, query: Query) -> Ranking: ...


@dataclass(frozen=True)
class LexicalRanker:
    """BM25: the rows that hold a query term, by score (ties to the smaller row)."""

    def rank(self, query: Query) -> Ranking:
        scores = query.bm25
        positive = np.flatnonzero(scores > 0)
        rows: list[int] = []
        if len(positive):
            order = positive[np.lexsort((positive, -scores[positive]))]
            rows = [int(i) for i in order[: query.pool]]
        return Ranking(rows, "bm25", lexical=rows)


@dataclass(frozen=True)
class DenseRanker:
    """Nearest passages to the question's vector in the index's vector store."""

    index: Index

    def rank(self, query: Query) -> Ranking:
        _, ids = self.index.vectors.search(query.dense_vector(), query.pool, allowed=query.allowed)
        rows = [int(i) for i in ids[0] if i >= 0]
        return Ranking(rows, "dense", dense=rows)


@dataclass(frozen=True)
class HybridRanker:
    """The dense and BM25 candidates together, ordered by a fusion of the two (convex or RRF)."""

    index: Index
    fusion: str = "convex"
    alpha: float = 0.5
    rrf_k: int = 60

    def rank(self, query: Query) -> Ranking:
        dense = DenseRanker(self.index).rank(query).rows
        lexical = LexicalRanker().rank(query).rows
        fused = self._rrf(dense, lexical) if self.fusion == "rrf" else self._convex(query, dense, lexical)
        return Ranking(top(fused, len(fused)), "fused", dense=dense, lexical=lexical, fused=fused)

    def _rrf(self, dense: list[int], lexical: list[int]) -> dict[int, float]:
        return reciprocal_rank_fusion([dense, lexical], k=self.rrf_k)

    def _convex(self, query: Query, dense: list[int], lexical: list[int]) -> dict[int, float]:
        pool_ids = np.array(sorted(set(dense) | set(lexical)), dtype=np.int64)
        cosines = self.index.vectors.scores(query.dense_vector(), pool_ids) if len(pool_ids) else []
        return convex_combination(
            {int(i): float(c) for i, c in zip(pool_ids, cosines)},
            {int(i): float(query.bm25[i]) for i in pool_ids if query.bm25[i] > 0},
            alpha=self.alpha,
        )


# ------------------------------------------------------------------ the retriever


def check_settings(rrf_k: int, candidates: int, fusion: str, alpha: float) -> None:
    """Refuse retrieval settings no ranking can use (one index or a sharded build alike)."""
    if rrf_k < 0:
        raise QueryError(f"rrf_k must be >= 0 (got {rrf_k})")
    if fusion not in FUSIONS:
        raise QueryError(f"unknown fusion {fusion!r}; choose one of: {', '.join(FUSIONS)}")
    if not 0.0 <= alpha <= 1.0:
        raise QueryError(f"alpha must be between 0 and 1 (got {alpha})")
    if candidates < 1:
        raise QueryError(f"candidates must be >= 1 (got {candidates})")


def check_query(query: str, k: int, mode: str) -> Mode:
    """The search's mode, once the query, ``k`` and the mode are known to be usable."""
    if not isinstance(query, str) or not query.strip():
        raise QueryError("the query is empty; ask a question")
    mode = check_mode(mode)
    if k < 1:
        raise QueryError(f"k must be at least 1 (got {k})")
    return mode


def encode_query(encoder: Encoder | None, query: str) -> np.ndarray:
    """The query's vector, or a QueryError when there is no encoder to make one."""
    if encoder is None:
        raise QueryError("dense search needs an encoder; use mode 'bm25' or configure one")
    return encoder.embed_batch([query])[0]


class Retriever:
    """Searches one loaded index. Cheap to construct; the encoder loads on first dense query."""

    def __init__(
        self,
        index: Index,
        encoder: Encoder | None,
        *,
        rrf_k: int = 60,
        candidates: int = 100,
        fusion: str = "convex",
        alpha: float = 0.5,
    ):
        check_settings(rrf_k, candidates, fusion, alpha)
        self.index = index
        self.encoder = encoder
        self.candidates = candidates
        self.rankers: dict[Mode, Ranker] = {
            "hybrid": HybridRanker(index, fusion=fusion, alpha=alpha, rrf_k=rrf_k),
            "dense": DenseRanker(index),
            "bm25": LexicalRanker(),
        }

    def encode(self, query: str) -> np.ndarray:
        return encode_query(self.encoder, query)

    def search(
        self,
        query: str,
        k: int = 5,
        mode: Mode = "hybrid",
        filters: Filters | None = None,
        query_vector: np.ndarray | None = None,
    ) -> list[SearchResult]:
        """The ``k`` best passages for ``query``."""
        mode = check_query(query, k, mode)
        allowed = _allowed_rows(self.index, filters) if filters else None
        if allowed is not None and not len(allowed):
            return []
        q = self._query(query, k, mode, allowed, query_vector)
        ranking = self.rankers[mode].rank(q)
        return self._results(q, ranking, ranking.rows[:k])

    def _query(self, text: str, k: int, mode: Mode, allowed: np.ndarray | None, query_vector: np.ndarray | None) -> Query:
        """The search's shared inputs: BM25 scores of the allowed rows, the candidate pool, the vector.

        A vector given with a bm25 search still yields each result's cosine, when there is an encoder."""
        n = len(self.index)
        pool = min(max(self.candidates, k), n if allowed is None else len(allowed))
        bm25 = self.index.lexical.scores(text)
        if allowed is not None:
            mask = np.full(n, False)
            mask[allowed] = True
            bm25 = np.where(mask, bm25, 0.0)
        vector = query_vector if mode != "bm25" or self.encoder is not None else None
        return Query(text, allowed, pool, bm25, vector, self.encode)

    def _results(self, query: Query, ranking: Ranking, chosen: list[int]) -> list[SearchResult]:
        """The chosen rows as results, with both signals' scores and ranks."""
        qvec = query.vector
        ids = np.array(chosen, dtype=np.int64)
        dense_scores = self.index.vectors.scores(qvec, ids) if qvec is not None and len(ids) else [None] * len(ids)
        dense_pos = {doc: r for r, doc in enumerate(ranking.dense, start=1)}
        bm25_pos = {doc: r for r, doc in enumerate(ranking.lexical, start=1)}
        results = []
        for rank, (row, dense) in enumerate(zip(chosen, dense_scores), start=1):
            bm25 = float(query.bm25[row])
            score = ranking.fused[row] if ranking.by == "fused" else dense if ranking.by == "dense" else bm25
            results.append(
                SearchResult(
                    chunk=self.index.chunks[row],
                    rank=rank,
                    score=float(score),
                    dense_score=None if dense is None else float(dense),
                    bm25_score=bm25,
                    dense_rank=dense_pos.get(row),
                    bm25_rank=bm25_pos.get(row),
                )
            )
        return results
