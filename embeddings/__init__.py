"""Encoders (real and fake), the embedding cache and the FAISS vector store.

Text in, unit vectors out, and vectors searched: ``base`` (the Encoder interface), ``minilm`` and ``onnx``
(the bundled model by PyTorch or ONNX Runtime), ``model_folder`` (model folders on disk), ``cache``,
``batching`` and ``vectorstore``. May import ``core`` and third-party libraries only, never ``corpus``,
``rag``, ``api`` or ``eval``.
"""

from __future__ import annotations

from embeddings.base import Encoder, normalise
from embeddings.fake import HashingEncoder

ENCODERS = ("minilm", "hashing")


def get_encoder(
    name: str = "minilm", *, threads: int = 0, backend: str = "torch", cache_dir=".rag-cache", model_path=None, **options
) -> Encoder:
    """An encoder by its registry name; ``minilm`` is the product's model, ``hashing`` a fake for tests.

    ``backend`` (torch, onnx, onnx-int8) applies to the real model; ONNX exports live in ``cache_dir``.
    ``model_path`` is a tuned copy of the model (``rag tune``) to use instead of the bundled one.
    """
    from embeddings.onnx import check_backend

    check_backend(backend)
    if name == "minilm":
        from embeddings.minilm import MiniLMEncoder

        return MiniLMEncoder(threads=threads, backend=backend, cache_dir=cache_dir, model_dir=model_path, **options)
    if name == "hashing":
        return HashingEncoder(**options)
    from core.errors import ConfigError

    raise ConfigError(f"unknown encoder {name!r}; choose one of: {', '.join(ENCODERS)}")


def query_backend(backend: str) -> str:
    """The backend that encodes questions in a short-lived process (``rag search``, ``rag ask``, ``rag mcp``).

    PyTorch's fp32 arithmetic is replaced by the same fp32 model as an ONNX graph: the vectors agree
    to a cosine above 0.9999 (tests/test_fast_cli.py), and the process neither imports PyTorch nor
    waits seconds for it. Int8 indexes keep int8 questions.
    """
    return "onnx" if backend == "torch" else backend


__all__ = ["ENCODERS", "Encoder", "HashingEncoder", "get_encoder", "normalise", "query_backend"]
