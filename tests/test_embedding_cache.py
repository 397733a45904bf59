"""The embedding cache keeps what a build embedded, even when the build dies half-way."""

from __future__ import annotations

import numpy as np
import pytest

from embeddings import HashingEncoder
from embeddings.cache import EmbeddingCache, embed_cached, text_key


class DiesAfter(HashingEncoder):
    """A fake encoder that fails on its n-th batch, like a build killed mid-way."""

    def __init__(self, batches: int):
        super().__init__()
        self.batches_left = batches

    def embed_batch(self, texts):
        if self.batches_left == 0:
            raise RuntimeError("killed")
        self.batches_left -= 1
        return super().embed_batch(texts)


def test_slices_embedded_before_a_failure_are_kept(tmp_path):
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    texts = [f"passage number {i} about orbital treaties" for i in range(40)]
    with pytest.raises(RuntimeError):
        embed_cached(DiesAfter(batches=3), texts, cache, batch_size=5, flush_every=10)
    kept = cache.get_many(HashingEncoder().cache_key, [text_key(t) for t in texts], HashingEncoder().dim)
    assert len(kept) == 10  # the first slice of 10 was saved; the second died in its third batch

    # the next run embeds only what is missing and agrees with a clean run
    encoder = HashingEncoder()
    vectors, embedded = embed_cached(encoder, texts, cache, batch_size=5, flush_every=10)
    assert embedded == 30 and encoder.calls == 30
    expected, _ = embed_cached(HashingEncoder(), texts, None)
    assert np.allclose(vectors, expected)
