"""Building an index: chunk, embed, index, store the answer units and words, describe, publish.

:func:`build_index` reads as its steps; each step is a function here (or in :mod:`rag.index.reuse`,
for what the previous build can lend, and :mod:`rag.index.publish`, for the lock and the atomic swap).
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from core.errors import ConfigError
from core.files import file_table
from core.machine import package_versions
from corpus.loader import article_fingerprint, corpus_fingerprint
from corpus.models import Article
from embeddings.base import Encoder
from embeddings.cache import EmbeddingCache, embed_cached
from embeddings.vectorstore import VectorStore, VectorStoreParams, choose_kind
from rag import __version__
from rag.text.chunking import Chunk, ChunkerConfig, chunk_article, embed_text
from rag.faults import checkpoint
from rag.index.format import (
    ARTICLES,
    BM25_DIR,
    CHUNK_TERM_OFFSETS,
    CHUNK_TERMS,
    CHUNKS,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    UNIT_SPANS,
    UNIT_TERM_OFFSETS,
    UNIT_TERMS,
    UNIT_VECTORS,
    VECTORS,
    WORD_VECTORS,
    WORDS,
    TermTable,
)
from rag.index.publish import BuildLock, check_target, clean_stale, current_build, new_build_folder, publish
from rag.index.reuse import (
    analysis_fingerprint,
    article_records,
    build_units,
    build_words,
    previous_chunks,
    previous_units,
    previous_words,
    unit_terms,
)
from rag.text.lexical import BM25Params, LexicalIndex, analyze
from rag.text.words import content_words
from rag.text.tokens import ENCODING_NAME


@dataclass
class BuildReport:
    """What a build did; ``sentences`` and ``sentences_embedded`` count answer units (names kept for the JSON reports)."""

    index_dir: str
    build_id: str
    articles: int
    chunks: int
    embedded: int
    cached: int
    seconds: float
    vector_index: str
    reused_chunking: int = 0
    sentences: int = 0
    sentences_embedded: int = 0
    words_embedded: int = 0
    timings: dict = field(default_factory=dict)


def lexical_text(chunk: Chunk) -> str:
    """What BM25 indexes: the breadcrumb words count as part of the passage."""
    return embed_text(chunk)


class _Timings(dict):
    """Seconds spent in each named step, in the order the steps ran."""

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        yield
        self[name] = time.perf_counter() - t


@dataclass
class _Chunked:
    chunks: list[Chunk]
    prints: dict[str, str]  # article slug -> fingerprint of its text
    old_prints: dict[str, str]  # the same in the previous build (empty when its chunks cannot be reused)
    reused: int  # articles whose chunks were taken from the previous build


@dataclass
class _Units:
    """The answer units of a build with their vectors and terms, and the word table (all empty without units)."""

    spans: np.ndarray
    vectors: np.ndarray
    embedded: int = 0
    terms: TermTable | None = None
    chunk_terms: TermTable | None = None
    words: list[str] = field(default_factory=list)
    word_vectors: np.ndarray | None = None
    words_embedded: int = 0


def _chunk_articles(articles: list[Article], index_dir: Path, encoder: Encoder, chunker: ChunkerConfig, chunker_meta: dict) -> _Chunked:
    """Chunks of every article: the previous build's for an unchanged article, split anew for the rest."""
    old_prints, old_chunks = previous_chunks(index_dir, chunker_meta, encoder.cache_key)
    chunks: list[Chunk] = []
    prints: dict[str, str] = {}
    reused = 0
    for article in articles:
        fp = article_fingerprint(article)
        prints[article.slug] = fp
        if old_prints.get(article.slug) == fp and article.slug in old_chunks:
            chunks.extend(old_chunks[article.slug])  # unchanged article: same chunks as before
            reused += 1
        else:
            chunks.extend(chunk_article(article, chunker, fits_model=encoder.fits))
    if not chunks:
        raise ConfigError("nothing to index: the articles produced no text chunks")
    return _Chunked(chunks, prints, old_prints, reused)


def _vector_store(vectors: np.ndarray, requested: str, hnsw_threshold: int, vector_params: VectorStoreParams) -> VectorStore:
    kind = choose_kind(requested, len(vectors), hnsw_threshold)
    return VectorStore.build(vectors, VectorStoreParams(**{**asdict(vector_params), "kind": kind}))


def _unit_words(chunks: list[Chunk]) -> list[str]:
    """Distinct content words of the chunks and their breadcrumbs, sorted."""
    return sorted({w for c in chunks for w in content_words(c.text + " " + " ".join(c.section))})


def _write_files(tmp: Path, chunks: list[Chunk], records: dict, store: VectorStore, lexical: LexicalIndex, units: _Units | None) -> None:
    """Every data file of the build into ``tmp``; the manifest comes after."""
    with (tmp / CHUNKS).open("w", encoding="utf-8") as handle:
        for chunk in chunks:
            handle.write(json.dumps(chunk.to_dict(), ensure_ascii=False) + "\n")
    (tmp / ARTICLES).write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    store.save(tmp / VECTORS)
    lexical.save(tmp / BM25_DIR)
    if units is not None:
        np.save(tmp / UNIT_SPANS, units.spans)
        np.save(tmp / UNIT_VECTORS, np.ascontiguousarray(units.vectors, dtype=np.float32))
        np.save(tmp / UNIT_TERMS, units.terms.ids)
        np.save(tmp / UNIT_TERM_OFFSETS, units.terms.offsets)
        np.save(tmp / CHUNK_TERMS, units.chunk_terms.ids)
        np.save(tmp / CHUNK_TERM_OFFSETS, units.chunk_terms.offsets)
        (tmp / WORDS).write_text(json.dumps(units.words, ensure_ascii=False), encoding="utf-8")
        np.save(tmp / WORD_VECTORS, np.asarray(units.word_vectors, dtype=np.float16))


def library_versions() -> dict[str, str]:
    return package_versions(("faiss-cpu", "bm25s", "sentence-transformers", "tiktoken"))


def build_meta(build_id: str, encoder: Encoder, chunker_meta: dict, bm25: BM25Params, params: VectorStoreParams) -> dict:
    """What made a build (software, model, chunker, BM25 and vector settings): recorded in every manifest, sharded or not."""
    return {
        "build_id": build_id,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "software": {"rag": __version__, **library_versions()},
        "model": {
            "name": encoder.name,
            "fingerprint": encoder.fingerprint,
            "dim": encoder.dim,
            "backend": encoder.backend,
            "cache_key": encoder.cache_key,
            "max_input_tokens": encoder.max_input_tokens,
        },
        "chunker": chunker_meta,
        "bm25": asdict(bm25),
        "vectors": asdict(params),
        "units": {"analysis": analysis_fingerprint()},
    }


def _manifest(
    build_id: str, encoder: Encoder, chunker_meta: dict, bm25: BM25Params, store: VectorStore, corpus: dict, counts: dict, files: dict
) -> dict:
    """manifest.json: what the build holds, what made it, and the size and checksum of each of its files."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **build_meta(build_id, encoder, chunker_meta, bm25, store.params),
        "corpus": corpus,
        "counts": counts,
        "files": files,
    }


def _counts(articles: list[Article], chunks: list[Chunk], embedded: int, units: _Units | None) -> dict:
    """The manifest's counts (``sentences`` are answer units; the key is the format's)."""
    return {
        "articles": len(articles),
        "chunks": len(chunks),
        "embedded": embedded,
        "cached": len(chunks) - embedded,
        "tokens": int(sum(c.n_tokens for c in chunks)),
        "sentences": int(len(units.spans)) if units else 0,
        "sentences_embedded": units.embedded if units else 0,
        "words": len(units.words) if units else 0,
        "words_embedded": units.words_embedded if units else 0,
    }


def _embed_units(chunks: list[Chunk], index_dir: Path, encoder: Encoder, bm25: BM25Params, reusable: bool, cache, progress):
    """Answer units and their vectors, computed once here so that composing an answer costs dot products
    instead of model calls; unchanged chunks keep the previous build's. Returns the units, the previous
    build's units (or None) and the previous row of each unit (-1 for a new one)."""
    previous = previous_units(index_dir, encoder.cache_key, bm25) if reusable else None
    spans, vectors, embedded, previous_rows = build_units(chunks, previous, encoder, cache, progress)
    return _Units(spans, vectors, embedded), previous, previous_rows


def _term_tables(units: _Units, chunks: list[Chunk], analysed: list, lexical: LexicalIndex, previous, previous_rows, bm25: BM25Params) -> None:
    """BM25 term ids of every chunk and every answer unit, in the new build's vocabulary."""
    vocabulary = lexical.vocabulary()
    units.chunk_terms = TermTable.of(analysed, vocabulary)
    units.terms = unit_terms(chunks, units.spans, previous_rows, previous, vocabulary, bm25)


def _embed_words(units: _Units, chunks: list[Chunk], index_dir: Path, encoder: Encoder, cache, progress) -> None:
    """The word table: every content word embedded alone (the previous build's vectors for words it had)."""
    units.words = _unit_words(chunks)
    units.word_vectors, units.words_embedded = build_words(units.words, previous_words(index_dir, encoder.cache_key), encoder, cache, progress)


@dataclass
class _Built:
    """Everything a build has made before it is written."""

    chunked: _Chunked
    embedded: int  # chunks embedded by the model (the rest came from the cache)
    store: VectorStore
    lexical: LexicalIndex
    units: _Units | None  # None for a build without answer units


@dataclass(frozen=True)
class _Options:
    """How a build embeds and indexes, as :func:`build_index` was asked."""

    cache: EmbeddingCache | None
    progress: bool | None
    with_units: bool
    vector_index: str
    hnsw_threshold: int
    vector_params: VectorStoreParams


def _make(
    articles, index_dir: Path, encoder: Encoder, chunker: ChunkerConfig, chunker_meta: dict, bm25: BM25Params, options: _Options, timings: _Timings, log
) -> _Built:
    """Chunk, embed, index: every part of the build, in memory."""
    cache, progress = options.cache, options.progress
    with timings.step("chunk"):
        chunked = _chunk_articles(articles, index_dir, encoder, chunker, chunker_meta)
    chunks = chunked.chunks
    log(f"chunked {len(articles)} articles into {len(chunks)} chunks")
    with timings.step("embed"):
        vectors, embedded = embed_cached(encoder, [embed_text(c) for c in chunks], cache, progress=progress)
    units = None
    if options.with_units:
        with timings.step("embed_sentences"):
            units, previous, previous_rows = _embed_units(chunks, index_dir, encoder, bm25, bool(chunked.old_prints), cache, progress)
    checkpoint("embedded")
    with timings.step("vectors"):
        store = _vector_store(vectors, options.vector_index, options.hnsw_threshold, options.vector_params)
    with timings.step("bm25"):
        analysed = [analyze(lexical_text(c), bm25) for c in chunks]
        lexical = LexicalIndex.from_terms(analysed, bm25)
    if units is not None:
        with timings.step("terms"):
            _term_tables(units, chunks, analysed, lexical, previous, previous_rows, bm25)
        with timings.step("embed_words"):
            _embed_words(units, chunks, index_dir, encoder, cache, progress)
    return _Built(chunked, embedded, store, lexical, units)


def _write_and_publish(
    index_dir: Path, articles: list[Article], built: _Built, encoder: Encoder, chunker_meta: dict, bm25: BM25Params, corpus_path: str
) -> str:
    """Write the build folder, its manifest last (a folder without one is never complete), and swap it in."""
    build_id, tmp = new_build_folder(index_dir)
    chunked = built.chunked
    records = article_records(index_dir, articles, chunked.prints, chunked.old_prints)
    _write_files(tmp, chunked.chunks, records, built.store, built.lexical, built.units)
    checkpoint("files-written")
    corpus = {"path": corpus_path, "fingerprint": corpus_fingerprint(articles), "article_fingerprints": chunked.prints}
    counts = _counts(articles, chunked.chunks, built.embedded, built.units)
    manifest = _manifest(build_id, encoder, chunker_meta, bm25, built.store, corpus, counts, file_table(tmp))
    (tmp / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    publish(index_dir, tmp, build_id)
    return build_id


def _report(index_dir: Path, build_id: str, articles: list[Article], built: _Built, started: float, timings: _Timings) -> BuildReport:
    chunks, units = built.chunked.chunks, built.units
    return BuildReport(
        index_dir=str(index_dir),
        build_id=build_id,
        articles=len(articles),
        chunks=len(chunks),
        embedded=built.embedded,
        cached=len(chunks) - built.embedded,
        seconds=round(time.perf_counter() - started, 3),
        vector_index=built.store.params.kind,
        reused_chunking=built.chunked.reused,
        sentences=int(len(units.spans)) if units else 0,
        sentences_embedded=units.embedded if units else 0,
        words_embedded=units.words_embedded if units else 0,
        timings={k: round(v, 3) for k, v in timings.items()},
    )


def build_index(
    articles: list[Article],
    index_dir: str | Path,
    encoder: Encoder,
    *,
    chunker: ChunkerConfig = ChunkerConfig(),
    bm25: BM25Params = BM25Params(),
    vector_index: str = "auto",
    hnsw_threshold: int = 50_000,
    vector_params: VectorStoreParams = VectorStoreParams(),
    cache: EmbeddingCache | None = None,
    corpus_path: str = "",
    with_units: bool = True,
    progress: bool | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> BuildReport:
    """Chunk, embed (through the cache), index and atomically publish ``articles`` at ``index_dir``.

    ``with_units`` stores the answer units (and the word table) too; without them answers split and embed
    passages per question.
    """
    started = time.perf_counter()
    index_dir = Path(index_dir)
    if not articles:
        raise ConfigError("nothing to index: the corpus has no articles")
    check_target(index_dir)
    options = _Options(cache, progress, with_units, vector_index, hnsw_threshold, vector_params)
    with BuildLock(index_dir):
        current = current_build(index_dir)
        clean_stale(index_dir, keep={current} if current else set())
        checkpoint("build-start")
        timings = _Timings()
        chunker_meta = {**asdict(chunker), "tokenizer": ENCODING_NAME, "model_window": encoder.max_input_tokens}
        built = _make(articles, index_dir, encoder, chunker, chunker_meta, bm25, options, timings, log)
        with timings.step("write"):
            build_id = _write_and_publish(index_dir, articles, built, encoder, chunker_meta, bm25, corpus_path)
        # Keep the build that was current until now: a server may still be loading it.
        clean_stale(index_dir, keep={build_id, current} if current else {build_id})
    return _report(index_dir, build_id, articles, built, started, timings)
