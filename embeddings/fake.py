"""A deterministic, dependency-free encoder for fast tests of everything around the model."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from embeddings.base import Encoder, normalise

_WORD_RE = re.compile(r"\w+", re.UNICODE)


class HashingEncoder(Encoder):
    """Signed feature hashing of lower-cased words: texts sharing words get similar vectors."""

    backend = "hashing"

    def __init__(self, dim: int = 64, max_input_tokens: int = 256):
        self.dim = dim
        self.max_input_tokens = max_input_tokens
        self.name = f"fake/hashing-{dim}"
        self.calls = 0  # number of texts embedded, for tests of caching

    def count_tokens(self, text: str) -> int:
        return len(_WORD_RE.findall(text)) + 2

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD_RE.findall(text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
                out[row, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        return normalise(out)
