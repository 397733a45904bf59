"""FAISS vector store over unit vectors: exact inner product by default, HNSW for large corpora."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import ConfigError, IndexFormatError

KINDS = ("flat", "hnsw")


@dataclass(frozen=True)
class VectorStoreParams:
    kind: str = "flat"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown vector index {self.kind!r}; choose one of: {', '.join(KINDS)}")


def choose_kind(requested: str, n_vectors: int, hnsw_threshold: int) -> str:
    """``auto`` picks exact search below ``hnsw_threshold`` vectors and HNSW above it."""
    if requested == "auto":
        return "hnsw" if n_vectors >= hnsw_threshold else "flat"
    if requested not in KINDS:
        raise ConfigError(f"unknown vector index {requested!r}; choose auto, flat or hnsw")
    return requested


@dataclass
class VectorStore:
    index: object  # faiss.Index
    params: VectorStoreParams = field(default_factory=VectorStoreParams)

    @classmethod
    def build(cls, vectors: np.ndarray, params: VectorStoreParams = VectorStoreParams()) -> VectorStore:
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ConfigError("vectors must be a 2-d array")
        dim = vectors.shape[1]
        if params.kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = params.ef_construction
            index.hnsw.efSearch = params.ef_search
        else:
            index = faiss.IndexFlatIP(dim)
        if len(vectors):
            index.add(vectors)
        return cls(index=index, params=params)

    @property
    def dim(self) -> int:
        return self.index.d

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, row ids) per query; ids are -1 where fewer than ``k`` exist.

        ``allowed`` (sorted row ids) restricts the search inside FAISS, so a filter never
        returns fewer hits than exist among the allowed rows.
        """
        import faiss

        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, len(self)))
        if len(self) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        params = None
        if allowed is not None:
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
            if self.params.kind == "hnsw":
                params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(self.params.ef_search, k))
            else:
                params = faiss.SearchParameters(sel=selector)
        elif self.params.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.params.ef_search, k))
        scores, ids = self.index.search(queries, k, params=params)
        return scores, ids

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors of the given rows (both index kinds keep them uncompressed)."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return np.zeros((0, self.dim), np.float32)
        return self.index.reconstruct_batch(ids)

    def scores(self, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Exact inner products of one query with the given rows."""
        return self.vectors(ids) @ np.asarray(query, dtype=np.float32).reshape(-1)

    def save(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, params: VectorStoreParams, mmap: bool = False) -> VectorStore:
        import faiss

        flags = 0
        if mmap:
            flags = getattr(faiss, "IO_FLAG_MMAP_IFC", 0) or getattr(faiss, "IO_FLAG_MMAP", 0)
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError as exc:
            raise IndexFormatError(f"{path.name}: not a readable FAISS index ({str(exc).splitlines()[0][:200]})") from None
        if params.kind == "hnsw" and hasattr(index, "hnsw"):
            index.hnsw.efSearch = params.ef_search
        return cls(index=index, params=params)
