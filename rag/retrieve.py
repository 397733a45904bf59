"""Hybrid retrieval: dense (FAISS) and lexical (BM25) candidates, fused by normalised scores or reciprocal rank."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from embeddings.base import Encoder
from rag.chunking import Chunk
from core.errors import QueryError
from rag.fusion import convex_combination, reciprocal_rank_fusion, top
from rag.index import Index

MODES = ("hybrid", "dense", "bm25")
FUSIONS = ("rrf", "convex")
FILTER_KEYS = ("article", "category", "tag", "language")


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


@dataclass(frozen=True)
class Filters:
    """Restrict results to articles by slug, category (name or slug) or tag, and to passages by language; case-insensitive."""

    articles: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    languages: frozenset[str] = frozenset()  # ISO 639-1 codes of the passages' sections

    @classmethod
    def from_mapping(cls, raw: Mapping[str, object] | None) -> Filters:
        raw = raw or {}
        unknown = set(raw) - set(FILTER_KEYS)
        if unknown:
            raise QueryError(f"unknown filter {sorted(unknown)[0]!r}; filters are: {', '.join(FILTER_KEYS)}")

        def values(key: str) -> frozenset[str]:
            value = raw.get(key)
            if value is None:
                return frozenset()
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, (list, tuple, set, frozenset)) or not all(isinstance(v, str) for v in items):
                raise QueryError(f"filter {key!r} must be a string or a list of strings")
            return frozenset(v.strip().casefold() for v in items if v.strip())

        from corpus.language import language_code

        languages = frozenset(language_code(v) for v in values("language"))
        return cls(values("article"), values("category"), values("tag"), languages)

    def __bool__(self) -> bool:
        return bool(self.articles or self.categories or self.tags or self.languages)


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


def unmatched_filters(index: Index, filters: Filters) -> str | None:
    """Why no passage of ``index`` can match ``filters`` (naming the values that exist), or None.

    A question under such filters has nothing to search; the caller says so instead of abstaining
    as if the corpus did not cover the question.
    """
    if not filters or len(index.rows_matching(filters.articles, filters.categories, filters.tags, filters.languages)):
        return None
    existing = {**filter_values(index.articles), "language": sorted({c.language for c in index.chunks if c.language})}
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
        if rrf_k < 0:
            raise QueryError(f"rrf_k must be >= 0 (got {rrf_k})")
        if fusion not in FUSIONS:
            raise QueryError(f"unknown fusion {fusion!r}; choose one of: {', '.join(FUSIONS)}")
        if not 0.0 <= alpha <= 1.0:
            raise QueryError(f"alpha must be between 0 and 1 (got {alpha})")
        self.fusion = fusion
        self.alpha = alpha
        if candidates < 1:
            raise QueryError(f"candidates must be >= 1 (got {candidates})")
        self.index = index
        self.encoder = encoder
        self.rrf_k = rrf_k
        self.candidates = candidates

    def encode(self, query: str) -> np.ndarray:
        if self.encoder is None:
            raise QueryError("dense search needs an encoder; use mode 'bm25' or configure one")
        return self.encoder.embed_batch([query])[0]

    def search(
        self,
        query: str,
        k: int = 5,
        mode: str = "hybrid",
        filters: Filters | None = None,
        query_vector: np.ndarray | None = None,
    ) -> list[SearchResult]:
        """The ``k`` best passages for ``query``."""
        if not isinstance(query, str) or not query.strip():
            raise QueryError("the query is empty; ask a question")
        if mode not in MODES:
            raise QueryError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
        if k < 1:
            raise QueryError(f"k must be at least 1 (got {k})")
        n = len(self.index)
        allowed = None
        if filters:
            allowed = self.index.rows_matching(filters.articles, filters.categories, filters.tags, filters.languages)
            if not len(allowed):
                return []
        pool = min(max(self.candidates, k), n if allowed is None else len(allowed))

        bm25_all = self.index.lexical.scores(query)
        if allowed is not None:
            mask = np.full(n, False)
            mask[allowed] = True
            bm25_all = np.where(mask, bm25_all, 0.0)
        bm25_ranking: list[int] = []
        if mode in ("hybrid", "bm25"):
            positive = np.flatnonzero(bm25_all > 0)
            if len(positive):
                order = positive[np.lexsort((positive, -bm25_all[positive]))]
                bm25_ranking = [int(i) for i in order[:pool]]

        dense_ranking: list[int] = []
        qvec = None
        if mode in ("hybrid", "dense"):
            qvec = self.encode(query) if query_vector is None else query_vector
            _, ids = self.index.vectors.search(qvec, pool, allowed=allowed)
            dense_ranking = [int(i) for i in ids[0] if i >= 0]
        elif self.encoder is not None and query_vector is not None:
            qvec = query_vector

        if mode == "dense":
            chosen = dense_ranking[:k]
            scores = None
        elif mode == "bm25":
            chosen = bm25_ranking[:k]
            scores = None
        elif self.fusion == "rrf":
            scores = reciprocal_rank_fusion([dense_ranking, bm25_ranking], k=self.rrf_k)
            chosen = top(scores, k)
        else:
            pool_ids = np.array(sorted(set(dense_ranking) | set(bm25_ranking)), dtype=np.int64)
            cosines = self.index.vectors.scores(qvec, pool_ids) if len(pool_ids) else []
            scores = convex_combination(
                {int(i): float(c) for i, c in zip(pool_ids, cosines)},
                {int(i): float(bm25_all[i]) for i in pool_ids if bm25_all[i] > 0},
                alpha=self.alpha,
            )
            chosen = top(scores, k)

        ids = np.array(chosen, dtype=np.int64)
        dense_scores = self.index.vectors.scores(qvec, ids) if qvec is not None and len(ids) else [None] * len(ids)
        dense_pos = {doc: r for r, doc in enumerate(dense_ranking, start=1)}
        bm25_pos = {doc: r for r, doc in enumerate(bm25_ranking, start=1)}
        results = []
        for rank, (row, dense) in enumerate(zip(chosen, dense_scores), start=1):
            if mode == "hybrid":
                score = scores[row]
            elif mode == "dense":
                score = float(dense)
            else:
                score = float(bm25_all[row])
            results.append(
                SearchResult(
                    chunk=self.index.chunks[row],
                    rank=rank,
                    score=float(score),
                    dense_score=None if dense is None else float(dense),
                    bm25_score=float(bm25_all[row]),
                    dense_rank=dense_pos.get(row),
                    bm25_rank=bm25_pos.get(row),
                )
            )
        return results
