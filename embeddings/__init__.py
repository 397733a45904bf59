"""Encoders (real and fake), the embedding cache and the FAISS vector store."""

from __future__ import annotations

from embeddings.base import Encoder, normalise
from embeddings.fake import HashingEncoder

ENCODERS = ("minilm", "hashing")


def get_encoder(name: str = "minilm", *, threads: int = 0, **options) -> Encoder:
    """An encoder by its registry name; ``minilm`` is the product's model, ``hashing`` a fake for tests."""
    if name == "minilm":
        from embeddings.minilm import MiniLMEncoder

        return MiniLMEncoder(threads=threads, **options)
    if name == "hashing":
        return HashingEncoder(**options)
    from rag.errors import ConfigError

    raise ConfigError(f"unknown encoder {name!r}; choose one of: {', '.join(ENCODERS)}")


__all__ = ["ENCODERS", "Encoder", "HashingEncoder", "get_encoder", "normalise"]
