"""A persistent embedding cache keyed by (model, text hash): unchanged text is never embedded twice."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from embeddings.base import Encoder


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """SQLite file of vectors. Safe to share between processes (SQLite locking, WAL journal)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=60)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS vectors (model TEXT NOT NULL, key TEXT NOT NULL, vec BLOB NOT NULL,"
                " PRIMARY KEY (model, key))"
            )
            self._local.conn = conn
        return conn

    def get_many(self, model: str, keys: Sequence[str], dim: int) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        conn = self._conn()
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            part = unique[start : start + 500]
            rows = conn.execute(
                f"SELECT key, vec FROM vectors WHERE model = ? AND key IN ({','.join('?' * len(part))})", [model, *part]
            )
            for key, blob in rows:
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape == (dim,):
                    found[key] = vec
        return found

    def put_many(self, model: str, items: dict[str, np.ndarray]) -> None:
        if not items:
            return
        conn = self._conn()
        with conn:
            conn.executemany(
                "INSERT OR REPLACE INTO vectors (model, key, vec) VALUES (?, ?, ?)",
                [(model, key, np.asarray(vec, dtype=np.float32).tobytes()) for key, vec in items.items()],
            )

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def embed_cached(
    encoder: Encoder,
    texts: Sequence[str],
    cache: EmbeddingCache | None,
    *,
    progress: bool | None = None,
    batch_size: int = 64,
    desc: str = "embedding",
    flush_every: int = 1024,
) -> tuple[np.ndarray, int]:
    """Vectors for ``texts``, embedding only what the cache lacks. Returns (vectors, number embedded)."""
    keys = [text_key(t) for t in texts]
    cached = cache.get_many(encoder.cache_key, keys, encoder.dim) if cache is not None else {}
    missing: dict[str, str] = {}
    for key, text in zip(keys, texts):
        if key not in cached and key not in missing:
            missing[key] = text
    fresh: dict[str, np.ndarray] = {}
    if missing:
        # Embedding texts of similar length together wastes less work on padding; saving each
        # slice as it is done means an interrupted build keeps what it already embedded.
        order = sorted(missing, key=lambda k: len(missing[k]))
        disable = None if progress is None else not progress
        with tqdm(total=len(order), desc=desc, unit="text", disable=disable, leave=False) as bar:
            for start in range(0, len(order), flush_every):
                part = order[start : start + flush_every]
                vectors = encoder.embed([missing[k] for k in part], batch_size=batch_size, progress=False)
                done = dict(zip(part, vectors))
                if cache is not None:
                    cache.put_many(encoder.cache_key, done)
                fresh.update(done)
                bar.update(len(part))
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    for row, key in enumerate(keys):
        out[row] = fresh[key] if key in fresh else cached[key]
    return out, len(fresh)
