"""The encoder interface: one abstract batch method, everything else built on it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm


class Encoder(ABC):
    """Turns texts into L2-normalised float32 vectors.

    Constructors are cheap; heavy resources load on first use (or in :meth:`warm_up`).
    """

    #: Stable model identifier recorded in index manifests and embedding-cache keys.
    name: str
    #: Vector dimension.
    dim: int
    #: Longest input, in the model's own tokens (special tokens included), that is not truncated.
    max_input_tokens: int = 256
    #: Identifies the numeric backend (torch, onnx, ...); vectors from different backends of the
    #: same model are interchangeable but not bit-identical, so caches keep them apart.
    backend: str = "default"

    @abstractmethod
    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts``: shape ``(len(texts), dim)``, float32, unit length."""

    def count_tokens(self, text: str) -> int:
        """Length of ``text`` in the model's tokens, special tokens included."""
        return len(text.split()) + 2

    def fits(self, text: str) -> bool:
        """Whether ``text`` is embedded whole, without truncation."""
        return self.count_tokens(text) <= self.max_input_tokens

    def vocabulary(self) -> frozenset[str] | None:
        """Whole words the model's tokenizer knows (lower-case), if it has a vocabulary."""
        return None

    def warm_up(self) -> None:
        """Load whatever is heavy. Safe to call more than once."""

    @property
    def fingerprint(self) -> str:
        """Identity of the model's weights, recorded in index manifests (a real model hashes its files;
        an encoder without files is identified by its name, and the manifest checks the dimension apart)."""
        return self.name

    @property
    def cache_key(self) -> str:
        return f"{self.name}|{self.backend}|{self.dim}"

    def embed(self, texts: Sequence[str], batch_size: int = 64, progress: bool | None = None, desc: str = "embedding") -> np.ndarray:
        """Embed any number of texts in batches, with a progress bar on a terminal."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return out
        disable = None if progress is None else not progress
        with tqdm(total=len(texts), desc=desc, unit="chunk", disable=disable, leave=False) as bar:
            for start in range(0, len(texts), batch_size):
                batch = texts[start : start + batch_size]
                out[start : start + len(batch)] = self.embed_batch(batch)
                bar.update(len(batch))
        return out


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)
