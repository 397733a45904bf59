"""One validated settings object for every entry point (CLI, API, eval), read from ``RAG_*`` variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from corpus.loader import DEFAULT_CORPUS_DIR
from core.errors import ConfigError
from embeddings.model_folder import recommended_alpha
from embeddings.vectorstore import VectorStoreParams


class Settings(BaseSettings):
    """Every knob of the service. Environment variables are the field names with a ``RAG_`` prefix."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore", validate_default=True)

    # where things are
    corpus_dir: Path = Field(DEFAULT_CORPUS_DIR, description="Folder (or file) of articles to index.")
    index_dir: Path = Field(Path(".rag-index"), description="Where the index lives (a link to the current build).")
    cache_dir: Path = Field(Path(".rag-cache"), description="Embedding cache and exported encoder models.")

    # the encoder
    encoder: Literal["minilm", "hashing"] = Field("minilm", description="'minilm' (the bundled model) or 'hashing' (a fake for tests).")
    threads: int = Field(0, ge=0, le=256, description="CPU threads for the encoder and the reader; 0 means one per core.")
    # encoder backend (embeddings/onnx.py)
    encoder_backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        "torch", description="Arithmetic of the bundled model: torch, onnx (fp32 ONNX graph) or onnx-int8 (int8 weights)."
    )
    # a tuned copy of the bundled model (eval/tune.py)
    model_path: Path | None = Field(None, description="Folder of a model made by 'rag tune', used instead of the bundled one.")

    # chunking
    max_tokens: int = Field(200, ge=16, le=2000, description="Chunk cap in cl100k tokens.")
    overlap_tokens: int = Field(32, ge=0, le=1000, description="Sentences repeated between chunks of a long section, in tokens.")

    # vector store
    vector_index: Literal["auto", "flat", "hnsw"] = Field("auto", description="Exact search, HNSW, or HNSW above hnsw_threshold.")
    hnsw_threshold: int = Field(50_000, ge=1, description="Chunks from which auto picks HNSW (exact search costs about 11 ms per question there; docs/benchmarks.md).")
    hnsw_m: int = Field(32, ge=4, le=256)
    hnsw_ef_construction: int = Field(200, ge=8, le=4096)
    hnsw_ef_search: int = Field(128, ge=8, le=4096)

    # BM25
    bm25_k1: float = Field(1.2, ge=0, le=10)
    bm25_b: float = Field(0.75, ge=0, le=1)

    # retrieval
    # convex (alpha 0.5) beat RRF on SciFact train (nDCG@10 +0.012) and on eval/data/qa.jsonl; see eval/RESULTS.md.
    fusion: Literal["rrf", "convex"] = Field("convex", description="How hybrid mode fuses dense and BM25: normalised scores (convex) or reciprocal rank.")
    rrf_k: int = Field(60, ge=0, le=10_000, description="Reciprocal rank fusion constant.")
    alpha: float = Field(0.5, ge=0, le=1, description="Dense weight of the convex fusion (BM25 gets 1 - alpha).")
    candidates: int = Field(100, ge=1, le=10_000, description="Candidates taken from each retriever before fusion.")

    # scale-out (rag/index/shards.py, rag/shards/ray_build.py, api/ray_serving.py): where a build runs and is served, and how many shards it writes
    engine: Literal["local", "ray"] = Field("local", description="Where 'rag index' and 'rag serve' run: in this process, or on a Ray cluster (the ray extra).")
    ray_address: str | None = Field(None, description="Address of a running Ray cluster (host:port of 'ray start --head'); none starts a local one.")
    shards: int = Field(1, ge=1, le=1024, description="Shards an index is split into by a hash of the chunk id; 1 writes a single index.")
    ray_actors: int = Field(0, ge=0, le=1024, description="Embedding actors of a Ray build; 0 means one per CPU of the cluster, at most 8.")
    replicas: int = Field(1, ge=1, le=64, description="Replicas of the app under 'rag serve --engine ray' (Ray Serve), each with the whole index.")

    # answers
    abstain_threshold: float = Field(0.24, ge=-1, le=1, description="Support below which the service abstains.")
    max_sentences: int = Field(4, ge=1, le=20, description="Most sentences in an extractive answer.")
    reader: bool = Field(False, description="Run the bundled reader (a trained reading model) over the top passages: it adds a short answer and decides whether how-many and how-much questions are answered. Off by default: it costs about 60 ms a question and abstains on some answerable ones (docs/evaluation.md, 'A reader').")
    reader_path: Path | None = Field(None, description="Folder of a reader made by 'rag train-reader' (its model/ folder), used instead of the bundled one.")

    # HTTP service
    host: str = Field("127.0.0.1")
    port: int = Field(8000, ge=1, le=65535)
    workers: int | Literal["auto"] = Field(
        "auto", description="Server processes: 1 to 64, or 'auto' (one per core, as many as memory holds; see auto_workers)."
    )
    max_history: int = Field(5, ge=0, le=50, description="Earlier questions used for a follow-up (most recent last).")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="The server's log level (one line per request at info).")

    # protection of a public service
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Client API keys (comma-separated); when set, /ask, /search, /passages and /metrics need one."
    )
    admin_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Admin API keys (comma-separated); /admin/* always needs one."
    )
    api_keys_file: Path | None = Field(None, description="File of keys, one per line: 'KEY' or 'client KEY' or 'admin KEY'.")
    rate_limit: str = Field("3000/minute", description="Requests per client (key, or address without keys), e.g. '60/minute'; empty disables.")
    max_body_bytes: int = Field(65_536, ge=1024, le=10_000_000, description="Largest request body accepted.")
    max_query_bytes: int = Field(4096, ge=256, le=100_000, description="Longest query string accepted.")
    request_timeout_s: float = Field(30.0, gt=0, le=600, description="Longest time one request may compute.")
    receive_timeout_s: float = Field(10.0, gt=0, le=600, description="Longest wait for the next piece of a request body.")
    limit_concurrency: int = Field(512, ge=1, le=100_000, description="Connections served at once; more get 503.")
    rate_limit_storage: str = Field(
        "",
        description="Where rate-limit counts live: empty (each worker's memory, so N workers allow N times the limit) "
        "or redis://host:port (shared by every worker and every server using it).",
    )
    load_wait_s: float = Field(
        30.0, ge=0, le=600,
        description="How long a question that reaches a worker still loading waits for it (then 503), and how long "
        "POST /admin/reload and uploads wait for every worker to serve the new build; 0: no wait.",
    )

    # the bundled page at / when client keys are required (api/security.py PageTokens)
    page_access: bool = Field(
        True, description="With client keys set, the bundled page at / gets short-lived signed page tokens, so its visitors can ask without a key."
    )
    page_rate_limit: str = Field("30/minute", description="Requests per visitor address made with a page token; empty disables the limit.")

    @field_validator("api_keys", "admin_keys", mode="before")
    @classmethod
    def _split_keys(cls, value):
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("workers", mode="before")
    @classmethod
    def _check_workers(cls, value):
        text = str(value).strip().lower()
        if text == "auto":
            return "auto"
        try:
            number = int(text)
        except ValueError:
            raise ValueError(f"use a number from 1 to 64 or 'auto', not {value!r}") from None
        if not 1 <= number <= 64:
            raise ValueError(f"use a number from 1 to 64 or 'auto', not {number}")
        return number

    @field_validator("rate_limit", "page_rate_limit")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        value = value.strip()
        if value:
            from limits import parse

            try:
                parse(value)
            except ValueError:
                raise ValueError("use a rate like '60/minute' or '10/second'") from None
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _check_storage(cls, value: str) -> str:
        value = value.strip()
        if value and not re.match(r"^(memory://$|(redis|rediss|redis\+unix)://\S+)", value):
            raise ValueError("use redis://HOST:PORT (or rediss://, redis+unix://PATH), or leave it empty for each worker's memory")
        return value

    # --- documents: uploads and links to sources ---
    max_upload_bytes: int = Field(
        20_000_000, ge=1024, le=1_000_000_000, description="Largest POST /admin/documents body (all files together)."
    )
    source_base_url: str = Field(
        "", description="Base URL that relative source URLs (such as /detay/space-diplomacy) are resolved against in links."
    )

    @field_validator("source_base_url")
    @classmethod
    def _check_base(cls, value: str) -> str:
        value = value.strip()
        if value and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("use an absolute http(s) URL such as https://encyclopedia.example.org")
        return value

    # --- chat widget: which other sites may call the API from a browser (CORS) ---
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins allowed to call the API from a browser (comma-separated or a JSON list); empty: same origin only.",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value):
        from rag.origins import parse_origins

        return parse_origins(value)

    # --- end chat widget ---

    @model_validator(mode="after")
    def _tuned_alpha(self) -> Settings:
        # A tuned model's dense ranking is stronger than the bundled one's; ``rag tune`` records
        # the fusion weight its validation part preferred, used unless RAG_ALPHA is set.
        if self.model_path is not None and "alpha" not in self.model_fields_set:
            alpha = recommended_alpha(self.model_path)
            if alpha is not None:
                self.alpha = alpha
        return self

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.overlap_tokens >= self.max_tokens // 2:
            raise ValueError(f"overlap_tokens ({self.overlap_tokens}) must be less than half of max_tokens ({self.max_tokens})")
        return self


def vector_store_params(settings: Settings) -> VectorStoreParams:
    """The vector store's HNSW parameters as ``settings`` give them (the kind is chosen per build from its size)."""
    return VectorStoreParams(hnsw_m=settings.hnsw_m, ef_construction=settings.hnsw_ef_construction, ef_search=settings.hnsw_ef_search)


#: Memory one server process takes, by encoder backend (peak RSS measured with the bundled
#: article, plus room for a larger index's working set; docs/benchmarks.md).
WORKER_BYTES = {"torch": 1_200_000_000, "onnx": 600_000_000, "onnx-int8": 400_000_000}


def available_memory() -> int | None:
    """Bytes this process could still take: MemAvailable from /proc/meminfo, or less when a
    container's memory limit (cgroup v2) leaves less; None where neither can be read."""
    found = None
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    found = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            left = int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text())
            found = left if found is None else min(found, left)
    except (OSError, ValueError):
        pass
    return found


def auto_workers(backend: str, cores: int | None = None, available: int | None = None) -> int:
    """Server processes for ``--workers auto``: one per core (one process leaves a core idle under
    load), but no more than three quarters of the available memory holds; at least one."""
    import os

    cores = cores if cores is not None else (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    available = available if available is not None else available_memory()
    fits = cores if available is None else int(available * 0.75 // WORKER_BYTES.get(backend, WORKER_BYTES["torch"]))
    return max(1, min(cores, fits))


def worker_count(settings: Settings) -> int:
    """The number of server processes ``settings`` ask for, with ``auto`` resolved on this machine."""
    return auto_workers(settings.encoder_backend) if settings.workers == "auto" else int(settings.workers)


def load_settings(**overrides) -> Settings:
    """Settings from the environment plus explicit overrides, with errors as one readable line."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        env = f"RAG_{field.upper()}" if field != "settings" else "RAG_* settings"
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        raise ConfigError(f"invalid setting {field} ({env}): {message}") from None
