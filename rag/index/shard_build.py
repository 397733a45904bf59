"""Building a sharded index (or today's single index) from steps an engine supplies: chunking and mapping.

:func:`build_sharded` keeps the guarantees of ``rag.index.build_index``: one build at a time (the
lock), unchanged articles keep their chunks, vectors come through the embedding cache (nothing
embedded twice), the build is written beside the current one and published by an atomic link swap.
The engine decides where the work runs: ``chunk`` turns articles into chunks, ``run`` maps a function
over the shards (in this process, or as Ray tasks), and the encoder may be a pool of remote actors.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from core.errors import ConfigError
from corpus.loader import article_fingerprint, corpus_fingerprint
from corpus.models import Article
from embeddings.base import Encoder
from embeddings.cache import EmbeddingCache, embed_cached
from embeddings.vectorstore import VectorStoreParams, choose_kind
from rag.text.chunking import Chunk, ChunkerConfig, chunk_article, embed_text
from rag.faults import checkpoint
from rag.index.build import BuildReport, build_meta
from rag.index.format import CHUNKS
from rag.index.publish import BuildLock, builds_dir, check_target, clean_stale, current_build, publish
from rag.index.reuse import article_records, build_units, build_words, previous_chunks, previous_words
from rag.text.lexical import BM25Params
from rag.index.shards import (
    ROWS,
    CorpusStats,
    ShardData,
    check_shards,
    new_build_id,
    partition,
    raw_manifest,
    shard_meta,
    shard_name,
    shard_stats,
    shard_words,
    write_shard,
    write_top_manifest,
)
from rag.text.tokens import ENCODING_NAME

Run = Callable[[Callable, list], list]


def run_here(fn: Callable, items: list) -> list:
    """Map ``fn`` over ``items`` in this process."""
    return [fn(item) for item in items]


@dataclass(frozen=True)
class Steps:
    """Where the work of a build runs: chunking articles, and a map over shards."""

    chunk: Callable[[list[Article], ChunkerConfig], list[list[Chunk]]] | None = None
    run: Run = run_here
    before_shards: Callable[[], None] | None = None  # e.g. release the embedding actors' CPUs


def _previous_sharded_chunks(index_dir: Path, chunker: dict, model_key: str) -> tuple[dict[str, str], dict[str, list[Chunk]]]:
    """Article fingerprints and chunks of a current sharded build, when its chunking is reusable."""
    manifest = raw_manifest(index_dir)
    if not isinstance(manifest, dict) or "shards" not in manifest:
        return {}, {}
    try:
        if manifest.get("chunker") != chunker or manifest["model"].get("cache_key") != model_key:
            return {}, {}
        by_article: dict[str, list[tuple[int, Chunk]]] = {}
        for entry in manifest["shards"]:
            folder = index_dir / entry["name"]
            rows = np.load(folder / ROWS, allow_pickle=False)
            with (folder / CHUNKS).open(encoding="utf-8") as handle:
                for row, line in zip(rows.tolist(), handle):
                    chunk = Chunk.from_dict(json.loads(line))
                    by_article.setdefault(chunk.article, []).append((row, chunk))
        ordered = {slug: [c for _, c in sorted(pairs, key=lambda p: p[0])] for slug, pairs in by_article.items()}
        return manifest["corpus"]["article_fingerprints"], ordered
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}, {}


def _chunks_here(articles: list[Article], chunker: ChunkerConfig, fits) -> list[list[Chunk]]:
    return [chunk_article(a, chunker, fits_model=fits) for a in articles]


def gather_chunks(articles, index_dir, encoder, chunker, steps) -> tuple[list[Chunk], dict[str, str], dict[str, str], int, dict]:
    """Chunks of every article in corpus order: the previous build's for unchanged articles, new ones for the rest."""
    meta = {**asdict(chunker), "tokenizer": ENCODING_NAME, "model_window": encoder.max_input_tokens}
    old_prints, old_chunks = previous_chunks(index_dir, meta, encoder.cache_key)
    if not old_prints:
        old_prints, old_chunks = _previous_sharded_chunks(index_dir, meta, encoder.cache_key)
    prints = {a.slug: article_fingerprint(a) for a in articles}
    fresh = [a for a in articles if not (old_prints.get(a.slug) == prints[a.slug] and a.slug in old_chunks)]
    made = steps.chunk(fresh, chunker) if steps.chunk else _chunks_here(fresh, chunker, encoder.fits)
    made_by_slug = {a.slug: cs for a, cs in zip(fresh, made)}
    chunks: list[Chunk] = []
    for article in articles:
        chunks.extend(made_by_slug[article.slug] if article.slug in made_by_slug else old_chunks[article.slug])
    return chunks, prints, old_prints, len(articles) - len(fresh), meta


def _stats_task(args) -> CorpusStats:
    chunks, bm25 = args
    return shard_stats(chunks, BM25Params(**bm25))


def _write_task(args) -> dict:
    directory, data, stats, meta, with_rows = args
    return write_shard(Path(directory), data, stats, meta, with_rows=with_rows)


def shard_inputs(
    chunks: list[Chunk], vectors, spans, unit_vectors, word_vectors: dict[str, np.ndarray], records: dict, shards: int
) -> list[ShardData]:
    """Each shard's chunks, vectors, answer units and words (rows kept in corpus order within a shard)."""
    parts = partition([c.id for c in chunks], shards) if shards > 1 else [np.arange(len(chunks))]
    first = np.searchsorted(spans[:, 0], np.arange(len(chunks) + 1), side="left")
    out = []
    for number, rows in enumerate(parts):
        sub = [chunks[r] for r in rows.tolist()]
        unit_rows = np.concatenate([np.arange(first[r], first[r + 1]) for r in rows.tolist()] or [np.zeros(0, np.int64)]).astype(np.int64)
        local = np.repeat(np.arange(len(rows)), [int(first[r + 1] - first[r]) for r in rows.tolist()]) if len(rows) else np.zeros(0, np.int64)
        sub_spans = np.asarray(spans[unit_rows], dtype=np.int32).reshape(-1, 3).copy()
        sub_spans[:, 0] = local
        words = shard_words(sub)
        dim = vectors.shape[1]
        out.append(
            ShardData(
                number=number,
                rows=rows.astype(np.int64),
                chunks=sub,
                vectors=np.ascontiguousarray(vectors[rows]),
                spans=sub_spans,
                unit_vectors=np.ascontiguousarray(unit_vectors[unit_rows]),
                words=words,
                word_vectors=np.array([word_vectors[w] for w in words], dtype=np.float32).reshape(len(words), dim),
                # One shard is the whole index and lists every article, as a local build does.
                articles=records if shards == 1 else {slug: records[slug] for slug in dict.fromkeys(c.article for c in sub)},
            )
        )
    return out


def build_sharded(
    articles: list[Article],
    index_dir: str | Path,
    encoder: Encoder,
    *,
    shards: int = 1,
    chunker: ChunkerConfig = ChunkerConfig(),
    bm25: BM25Params = BM25Params(),
    vector_index: str = "auto",
    hnsw_threshold: int = 50_000,
    vector_params: VectorStoreParams = VectorStoreParams(),
    cache: EmbeddingCache | None = None,
    corpus_path: str = "",
    progress: bool | None = None,
    steps: Steps = Steps(),
    log: Callable[[str], None] = lambda message: None,
) -> BuildReport:
    """Chunk, embed (through the cache), shard and atomically publish ``articles`` at ``index_dir``."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    index_dir = Path(index_dir)
    check_shards(shards)
    if not articles:
        raise ConfigError("nothing to index: the corpus has no articles")
    check_target(index_dir)
    with BuildLock(index_dir):
        current = current_build(index_dir)
        clean_stale(index_dir, keep={current} if current else set())
        checkpoint("build-start")
        t = time.perf_counter()
        chunks, prints, old_prints, reused, chunker_meta = gather_chunks(articles, index_dir, encoder, chunker, steps)
        if not chunks:
            raise ConfigError("nothing to index: the articles produced no text chunks")
        timings["chunk"] = time.perf_counter() - t
        log(f"chunked {len(articles)} articles into {len(chunks)} chunks")

        t = time.perf_counter()
        vectors, embedded, spans, unit_vectors, sentences_embedded, word_vectors, words_embedded = _embed(chunks, index_dir, encoder, cache, progress)
        timings["embed"] = time.perf_counter() - t
        checkpoint("embedded")
        if steps.before_shards is not None:
            steps.before_shards()

        t = time.perf_counter()
        tmp, build_id, kind = _write_build(
            index_dir, articles, chunks, (vectors, spans, unit_vectors, word_vectors), (prints, old_prints),
            {"embedded": embedded, "cached": len(chunks) - embedded, "sentences_embedded": sentences_embedded, "words_embedded": words_embedded},
            encoder, chunker_meta, bm25, vector_index, hnsw_threshold, vector_params, corpus_path, shards, steps,
        )
        checkpoint("files-written")
        timings["shards"] = time.perf_counter() - t
        try:
            publish(index_dir, tmp, build_id)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        clean_stale(index_dir, keep={build_id, current} if current else {build_id})
    counts = {"articles": len(articles), "chunks": len(chunks), "embedded": embedded, "units": int(len(spans))}
    return _report(index_dir, build_id, counts, started, kind, reused, sentences_embedded, words_embedded, timings)


def _embed(chunks: list[Chunk], index_dir: Path, encoder: Encoder, cache, progress):
    """Vectors of the chunks, of their answer units and of the corpus' words (through the cache), with counts of what was embedded."""
    vectors, embedded = embed_cached(encoder, [embed_text(c) for c in chunks], cache, progress=progress, desc="embedding chunks")
    spans, unit_vectors, units_embedded, _ = build_units(chunks, None, encoder, cache, progress)
    words = shard_words(chunks)
    word_array, words_embedded = build_words(words, previous_words(index_dir, encoder.cache_key), encoder, cache, progress)
    return vectors, embedded, spans, unit_vectors, units_embedded, dict(zip(words, word_array)), words_embedded


def _write_build(
    index_dir: Path, articles, chunks, embedded_parts, fingerprints, counts: dict, encoder: Encoder, chunker_meta: dict,
    bm25: BM25Params, vector_index: str, hnsw_threshold: int, vector_params: VectorStoreParams, corpus_path: str,
    shards: int, steps: Steps,
) -> tuple[Path, str, str]:
    """Shard the embedded build and write it into a temporary build folder: (folder, build id, vector index kind)."""
    vectors, spans, unit_vectors, word_vectors = embedded_parts
    prints, old_prints = fingerprints
    records = article_records(index_dir, articles, prints, old_prints)
    parts = shard_inputs(chunks, vectors, spans, unit_vectors, word_vectors, records, shards)
    stats = CorpusStats.merge(steps.run(_stats_task, [(p.chunks, asdict(bm25)) for p in parts]))
    kind = choose_kind(vector_index, max(len(p.chunks) for p in parts), hnsw_threshold)
    build_id = new_build_id()
    meta = build_meta(build_id, encoder, chunker_meta, bm25, VectorStoreParams(**{**asdict(vector_params), "kind": kind}))
    meta["counts"] = counts
    corpus = {"path": corpus_path, "fingerprint": corpus_fingerprint(articles), "article_fingerprints": prints}
    tmp = builds_dir(index_dir) / f"{build_id}.tmp"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    if shards == 1:
        # One shard is today's format: the build folder is the shard.
        write_shard(tmp, parts[0], stats, {**meta, "corpus": corpus}, with_rows=False)
    else:
        tmp.mkdir()
        each = {**shard_meta(meta), "corpus": {k: v for k, v in corpus.items() if k != "article_fingerprints"}}
        manifests = steps.run(_write_task, [(str(tmp / shard_name(p.number)), p, stats, each, True) for p in parts])
        write_top_manifest(tmp, {**meta, "corpus": corpus}, manifests, records)
    return tmp, build_id, kind


def _report(index_dir: Path, build_id: str, counts: dict, started: float, kind: str, reused: int, units_embedded: int, words_embedded: int, timings: dict) -> BuildReport:
    return BuildReport(
        index_dir=str(index_dir),
        build_id=build_id,
        articles=counts["articles"],
        chunks=counts["chunks"],
        embedded=counts["embedded"],
        cached=counts["chunks"] - counts["embedded"],
        seconds=round(time.perf_counter() - started, 3),
        vector_index=kind,
        reused_chunking=reused,
        sentences=counts["units"],
        sentences_embedded=units_embedded,
        words_embedded=words_embedded,
        timings={k: round(v, 3) for k, v in timings.items()},
    )


__all__ = ["Steps", "build_sharded", "run_here", "shard_inputs"]
