"""Wiring from settings to working parts: encoder, cache, corpus build, loaded index, retriever."""

from __future__ import annotations

import os
from collections.abc import Callable

from corpus.loader import load_corpus
from embeddings import Encoder, get_encoder, query_backend
from embeddings.cache import EmbeddingCache
from rag.answer.reader import BUNDLED_READER_DIR, Reader
from rag.answer.service import AnswerConfig, AnswerService
from rag.text.chunking import ChunkerConfig
from rag.index import BuildReport, Index, build_index, load_index
from rag.text.lexical import BM25Params
from rag.search.retrieve import Retriever
from rag.settings import Settings, vector_store_params


def single_threaded_blas() -> None:
    """Answering does linear algebra on a few hundred vectors at a time; BLAS worker threads cost more to
    wake than they save there, and on a busy machine they turn a 2 ms step into 20-50 ms now and then.
    The encoders keep their own thread settings (torch, ONNX Runtime)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


def make_encoder(settings: Settings) -> Encoder:
    return get_encoder(
        settings.encoder,
        threads=settings.threads,
        backend=settings.encoder_backend,
        cache_dir=settings.cache_dir,
        model_path=settings.model_path,
    )


def export_encoder(settings: Settings, log: Callable[[str], None]) -> None:
    """Export the ONNX graph of the configured model (bundled or tuned) into the cache folder, unless it is there."""
    from embeddings.onnx import ensure_export

    ensure_export(settings.cache_dir, log_fn=log, **make_encoder(settings).export_args())


def make_query_encoder(settings: Settings) -> Encoder:
    """An encoder for questions only, without PyTorch (see :func:`embeddings.query_backend`)."""
    return get_encoder(settings.encoder, threads=settings.threads, backend=query_backend(settings.encoder_backend), cache_dir=settings.cache_dir)


def open_cache(settings: Settings) -> EmbeddingCache:
    return EmbeddingCache(settings.cache_dir / "embeddings.sqlite")


def chunker_config(settings: Settings) -> ChunkerConfig:
    return ChunkerConfig(max_tokens=settings.max_tokens, overlap_tokens=settings.overlap_tokens)


def bm25_params(settings: Settings) -> BM25Params:
    return BM25Params(k1=settings.bm25_k1, b=settings.bm25_b)


def index_corpus(
    settings: Settings,
    *,
    encoder: Encoder | None = None,
    skip_bad: bool = False,
    progress: bool | None = None,
    warn: Callable[[str], None] | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> BuildReport:
    """Parse the configured corpus and publish a new index build (sharded when ``settings.shards`` > 1)."""
    articles = load_corpus(settings.corpus_dir, skip_bad=skip_bad, warn=warn)
    encoder = encoder or make_encoder(settings)
    problem = window_warning(settings, encoder)
    if problem and warn is not None:
        warn(problem)
    if settings.shards > 1:
        from functools import partial

        from rag.index.shard_build import build_sharded

        build = partial(build_sharded, shards=settings.shards)
    else:
        build = build_index
    return build(articles, settings.index_dir, encoder, **build_options(settings), progress=progress, log=log)


def build_options(settings: Settings) -> dict:
    """The build settings every index builder takes (single, sharded, on Ray), read from ``settings``."""
    return {
        "chunker": chunker_config(settings),
        "bm25": bm25_params(settings),
        "vector_index": settings.vector_index,
        "hnsw_threshold": settings.hnsw_threshold,
        "vector_params": vector_store_params(settings),
        "cache": open_cache(settings),
        "corpus_path": str(settings.corpus_dir),
    }


def window_warning(settings: Settings, encoder: Encoder) -> str | None:
    """A chunk cap the model's input window makes unreachable, said plainly (or None).

    Chunks must fit the model whole, so they stop at its window whatever ``max_tokens`` says;
    cl100k counts no more tokens than the model's word pieces for the same text.
    """
    window = encoder.max_input_tokens
    if settings.max_tokens <= window:
        return None
    return (
        f"RAG_MAX_TOKENS={settings.max_tokens} is above what the model reads: {encoder.name} takes at most "
        f"{window} word pieces per passage, so chunks stop there (about {window} cl100k tokens or fewer, "
        f"breadcrumb included); a cap of at most {window} has an effect"
    )


def open_index(settings: Settings, encoder: Encoder | None = None, *, mmap: bool = False) -> Index:
    """The current index build; ``mmap`` maps the vector, BM25 and answer-unit files instead of reading
    them, so server processes share one copy in the page cache."""
    return load_index(settings.index_dir, encoder or make_encoder(settings), mmap=mmap)


def open_retriever(settings: Settings, index: Index | None = None, encoder: Encoder | None = None) -> Retriever:
    encoder = encoder or make_encoder(settings)
    index = index or open_index(settings, encoder)
    return Retriever(
        index, encoder, rrf_k=settings.rrf_k, candidates=settings.candidates, fusion=settings.fusion, alpha=settings.alpha
    )


def answer_config(settings: Settings) -> AnswerConfig:
    return AnswerConfig(
        abstain_threshold=settings.abstain_threshold,
        max_sentences=settings.max_sentences,
        max_history=settings.max_history,
    )


def update_settings(settings: Settings) -> Settings:
    """The settings to add documents with (``rag add``, ``POST /admin/documents``): a sharded build stays
    sharded as it is unless ``RAG_SHARDS`` asks for more than one shard; ``rag index`` follows the setting."""
    from rag.index.shards import is_sharded, read_sharded_manifest

    if settings.shards == 1 and is_sharded(settings.index_dir):
        return settings.model_copy(update={"shards": len(read_sharded_manifest(settings.index_dir.resolve())["shards"])})
    return settings


def open_service(settings: Settings, encoder: Encoder | None = None, *, shards=None) -> AnswerService:
    """The answer service over the build the index link names, memory-mapped: one index, or a sharded
    build whose shards run in this process (or are reached through ``shards``, rag/shards/service.py)."""
    from rag.index.shards import is_sharded

    encoder = encoder or make_encoder(settings)
    if is_sharded(settings.index_dir):
        from rag.shards.service import open_sharded_service

        single_threaded_blas()
        return open_sharded_service(settings, encoder, answer_config(settings), shards, reader=make_reader(settings))
    return open_answer_service(settings, open_index(settings, encoder, mmap=True), encoder)


def make_reader(settings: Settings) -> Reader | None:
    """The reader the settings ask for, loaded (a missing or damaged one fails here, at start, in one line);
    None with ``RAG_READER=off``."""
    if not settings.reader:
        return None
    # A question's passages make a handful of windows, wide enough for intra-op threads to pay (unlike one
    # question's embedding): the reader takes the encoder's thread setting.
    return Reader(settings.reader_path or BUNDLED_READER_DIR, threads=settings.threads or os.cpu_count() or 1).load()


def open_answer_service(settings: Settings, index: Index | None = None, encoder: Encoder | None = None) -> AnswerService:
    """Everything a question needs, loaded and ready."""
    single_threaded_blas()
    return AnswerService(open_retriever(settings, index, encoder), answer_config(settings), reader=make_reader(settings))
