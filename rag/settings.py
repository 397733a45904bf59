"""One validated settings object for every entry point (CLI, API, eval), read from ``RAG_*`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from corpus.loader import DEFAULT_CORPUS_DIR
from rag.errors import ConfigError


class Settings(BaseSettings):
    """Every knob of the service. Environment variables are the field names with a ``RAG_`` prefix."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore", validate_default=True)

    # where things are
    corpus_dir: Path = Field(DEFAULT_CORPUS_DIR, description="Folder (or file) of articles to index.")
    index_dir: Path = Field(Path(".rag-index"), description="Where the index lives (a link to the current build).")
    cache_dir: Path = Field(Path(".rag-cache"), description="Embedding cache and exported encoder models.")

    # the encoder
    encoder: Literal["minilm", "hashing"] = Field("minilm", description="'minilm' (the bundled model) or 'hashing' (a fake for tests).")
    threads: int = Field(0, ge=0, le=256, description="CPU threads for the encoder; 0 means one per core.")

    # chunking
    max_tokens: int = Field(200, ge=16, le=2000, description="Chunk cap in cl100k tokens.")
    overlap_tokens: int = Field(32, ge=0, le=1000, description="Sentences repeated between chunks of a long section, in tokens.")

    # vector store
    vector_index: Literal["auto", "flat", "hnsw"] = Field("auto", description="Exact search, HNSW, or HNSW above hnsw_threshold.")
    hnsw_threshold: int = Field(200_000, ge=1)
    hnsw_m: int = Field(32, ge=4, le=256)
    hnsw_ef_construction: int = Field(200, ge=8, le=4096)
    hnsw_ef_search: int = Field(128, ge=8, le=4096)

    # BM25
    bm25_k1: float = Field(1.2, ge=0, le=10)
    bm25_b: float = Field(0.75, ge=0, le=1)

    # retrieval
    fusion: Literal["rrf", "convex"] = Field("rrf", description="How hybrid mode fuses dense and BM25: reciprocal rank or normalised scores.")
    rrf_k: int = Field(60, ge=0, le=10_000, description="Reciprocal rank fusion constant.")
    alpha: float = Field(0.5, ge=0, le=1, description="Dense weight of the convex fusion (BM25 gets 1 - alpha).")
    candidates: int = Field(100, ge=1, le=10_000, description="Candidates taken from each retriever before fusion.")

    # answers
    abstain_threshold: float = Field(0.24, ge=-1, le=1, description="Support below which the service abstains.")
    max_sentences: int = Field(4, ge=1, le=20, description="Most sentences in an extractive answer.")

    # HTTP service
    host: str = Field("127.0.0.1")
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    max_question_chars: int = Field(2000, ge=1, le=100_000)
    max_top_k: int = Field(50, ge=1, le=1000)
    max_history: int = Field(5, ge=0, le=50, description="Earlier questions used for a follow-up (most recent last).")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.overlap_tokens >= self.max_tokens // 2:
            raise ValueError(f"overlap_tokens ({self.overlap_tokens}) must be less than half of max_tokens ({self.max_tokens})")
        return self


def load_settings(**overrides) -> Settings:
    """Settings from the environment plus explicit overrides, with errors as one readable line."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        env = f"RAG_{field.upper()}" if field != "settings" else "RAG_* settings"
        raise ConfigError(f"invalid setting {field} ({env}): {first.get('msg')}") from None
