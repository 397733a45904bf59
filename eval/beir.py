"""BEIR benchmarks with the product's own pipeline: load a dataset, index it, retrieve, write a TREC run.

A dataset folder in the BEIR layout holds ``corpus.jsonl`` (``{"_id", "title", "text"}``),
``queries.jsonl`` (``{"_id", "text"}``) and ``qrels/<split>.tsv`` (``query-id corpus-id score``,
tab-separated, an optional header line). The corpus is chunked, embedded and indexed exactly as
the product does it; a document longer than one chunk is scored by its best chunk.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eval.datasets import BeirDataset, load_dataset
from eval.errors import EvalDataError
from eval.trec import read_trec_run, write_trec_run

#: Documents written per query: the usual TREC depth, and enough for Recall@100 and MAP@100.
DEFAULT_DEPTH = 1000


# ------------------------------------------------------------------------------------ indexing


def default_index_dir(cache_dir: Path, root: Path) -> Path:
    """A per-dataset index folder under the cache, so two datasets with the same name do not collide."""
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]
    return Path(cache_dir) / "beir" / f"{root.resolve().name}-{digest}"


def index_dataset(dataset: BeirDataset, settings, encoder, *, index_dir: Path | None = None, progress: bool | None = None, log=print):
    """Index the dataset's corpus with the product pipeline and return the loaded index and the build report.

    Every run rebuilds the index, which is cheap when nothing changed: chunks of unchanged
    documents are reused and every vector comes from the embedding cache. Rebuilding (rather
    than trusting an existing folder) guarantees that the index matches the current code.
    Sentence vectors for answers are not built: retrieval benchmarks do not need them.
    """
    from corpus.loader import load_corpus
    from rag.settings import vector_store_params
    from rag.index import build_index, load_index
    from rag.service import bm25_params, chunker_config, open_cache

    articles = load_corpus(dataset.corpus_path)
    target = index_dir or default_index_dir(settings.cache_dir, dataset.root)
    cache = open_cache(settings)
    try:
        report = build_index(
            articles,
            target,
            encoder,
            chunker=chunker_config(settings),
            bm25=bm25_params(settings),
            vector_index=settings.vector_index,
            hnsw_threshold=settings.hnsw_threshold,
            vector_params=vector_store_params(settings),
            cache=cache,
            corpus_path=str(dataset.corpus_path),
            with_units=False,
            progress=progress,
            log=log,
        )
    finally:
        cache.close()
    return load_index(target, encoder), report


# ----------------------------------------------------------------------------------- retrieval


def collapse_to_documents(results, depth: int, exclude: str | None = None) -> list[tuple[str, float]]:
    """Documents in the order of their best chunk, each with that chunk's score.

    ``exclude`` drops one document id: BEIR leaves out a document whose id equals the query's
    (datasets such as ArguAna and Quora hold each query in the corpus too).
    """
    seen: dict[str, float] = {}
    for r in results:
        doc = r.chunk.article
        if doc not in seen and doc != exclude:
            seen[doc] = float(r.score)
            if len(seen) == depth:
                break
    return list(seen.items())


@dataclass
class RunStats:
    queries: int = 0
    short: int = 0  # queries with fewer than ``depth`` documents retrieved
    empty: int = 0  # queries with no document at all
    seconds: float = 0.0
    chunk_k: list[int] = field(default_factory=list)


def retrieve_run(
    dataset: BeirDataset,
    retriever,
    *,
    mode: str = "hybrid",
    depth: int = DEFAULT_DEPTH,
    progress: bool | None = None,
) -> tuple[dict[str, list[tuple[str, float]]], RunStats]:
    """The ``depth`` best documents for every judged query (best chunk per document)."""
    from tqdm.auto import tqdm

    started = time.perf_counter()
    n_chunks = len(retriever.index)
    n_docs = len({c.article for c in retriever.index.chunks})
    chunks_per_doc = n_chunks / max(n_docs, 1)
    ids = list(dataset.queries)
    vectors: Sequence[np.ndarray | None] = [None] * len(ids)
    if mode != "bm25":
        vectors = retriever.encoder.embed([dataset.queries[q] for q in ids], progress=progress, desc="queries")
    run: dict[str, list[tuple[str, float]]] = {}
    stats = RunStats(queries=len(ids))
    disable = None if progress is None else not progress
    for qid, qvec in tqdm(list(zip(ids, vectors)), desc="retrieving", unit="query", disable=disable, leave=False):
        # Enough chunks that ``depth`` distinct documents are very likely among them; widened if not.
        k = min(n_chunks, max(depth + 1, math.ceil((depth + 1) * chunks_per_doc * 1.5)))
        while True:
            results = retriever.search(dataset.queries[qid], k=k, mode=mode, query_vector=qvec)
            docs = collapse_to_documents(results, depth, exclude=qid)
            if len(docs) >= depth or len(results) < k or k >= n_chunks:
                break
            k = min(n_chunks, k * 2)
        stats.chunk_k.append(k)
        run[qid] = docs
        stats.short += len(docs) < depth
        stats.empty += not docs
    stats.seconds = time.perf_counter() - started
    return run, stats


@dataclass(frozen=True)
class BeirResult:
    dataset: str
    split: str
    mode: str
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]]
    run_file: str
    counts: dict[str, int]
    seconds: dict[str, float]
    settings: dict
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            "kind": "beir",
            "dataset": self.dataset,
            "split": self.split,
            "mode": self.mode,
            "summary": self.metrics,
            "counts": self.counts,
            "seconds": self.seconds,
            "settings": self.settings,
            "run_file": self.run_file,
            "warnings": list(self.warnings),
            "per_query": self.per_query,
        }


def _index_logged(dataset: BeirDataset, settings, encoder, index_dir, progress, log):
    """Index the dataset's corpus with the product pipeline; the index, its report and the seconds it took."""
    t = time.perf_counter()
    index, report = index_dataset(dataset, settings, encoder, index_dir=index_dir, progress=progress, log=log)
    index_seconds = time.perf_counter() - t
    log(
        f"indexed {report.articles} documents as {report.chunks} chunks (embedded {report.embedded}, "
        f"cached {report.cached}) in {index_seconds:.1f} s"
    )
    return index, report, index_seconds


def _unindexed_relevant(dataset: BeirDataset, index) -> str | None:
    """A warning when relevant judgements name documents the index does not hold (they can never be found)."""
    corpus_ids = {c.article for c in index.chunks}
    missing_docs = sum(1 for docs in dataset.qrels.values() for d, r in docs.items() if r > 0 and d not in corpus_ids)
    if missing_docs:
        return f"{missing_docs} relevant judgement(s) name documents that are not in the indexed corpus"
    return None


def _checked_dataset(root, split: str, mode: str, depth: int, skip_unknown_queries: bool, qrels_file, log) -> BeirDataset:
    """The dataset to score, after the arguments that cannot work are refused with a message."""
    from rag.search.retrieve import MODES

    if mode not in MODES:
        raise EvalDataError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    if depth < 100:
        raise EvalDataError(f"depth must be at least 100 (Recall@100 and MAP@100 need it); got {depth}")
    dataset = load_dataset(root, split, skip_unknown_queries=skip_unknown_queries, qrels_file=qrels_file)
    for warning in dataset.warnings:
        log(f"warning: {warning}")
    log(f"{dataset.name} [{dataset.split}]: {len(dataset.queries)} judged queries, {sum(map(len, dataset.qrels.values()))} judgements")
    return dataset


def run_beir(
    root: str | Path,
    settings,
    *,
    split: str = "test",
    mode: str = "hybrid",
    run_out: str | Path | None = None,
    index_dir: Path | None = None,
    depth: int = DEFAULT_DEPTH,
    skip_unknown_queries: bool = False,
    qrels_file: str | Path | None = None,
    encoder=None,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> BeirResult:
    """Index, retrieve, write the run file and score it; the figures are computed from the file as written."""
    from eval.metrics import ir_scores
    from rag.search.retrieve import Retriever
    from rag.service import make_encoder

    dataset = _checked_dataset(root, split, mode, depth, skip_unknown_queries, qrels_file, log)
    split = dataset.split
    encoder = encoder or make_encoder(settings)
    index, report, index_seconds = _index_logged(dataset, settings, encoder, index_dir, progress, log)
    warnings = list(dataset.warnings)
    missing = _unindexed_relevant(dataset, index)
    if missing:
        warnings.append(missing)
        log(f"warning: {warnings[-1]}")
    retriever = Retriever(
        index,
        encoder,
        rrf_k=settings.rrf_k,
        candidates=max(settings.candidates, depth),
        fusion=settings.fusion,
        alpha=settings.alpha,
    )
    run, stats = retrieve_run(dataset, retriever, mode=mode, depth=depth, progress=progress)
    if stats.empty:
        warnings.append(f"{stats.empty} quer{'y' if stats.empty == 1 else 'ies'} retrieved nothing and score zero")
        log(f"warning: {warnings[-1]}")
    run_path = Path(run_out) if run_out else Path("artifacts/eval") / f"beir-{dataset.name}-{split}-{mode}.run"
    write_trec_run(run_path, run, tag=f"rag-{mode}")
    scores = ir_scores(dataset.qrels, read_trec_run(run_path))
    return BeirResult(
        dataset=dataset.name,
        split=split,
        mode=mode,
        metrics=scores.aggregate,
        per_query=scores.per_query,
        run_file=str(run_path),
        counts=_counts(dataset, report, stats),
        seconds={"index": round(index_seconds, 2), "retrieve": round(stats.seconds, 2)},
        settings=benchmark_settings(settings, encoder, depth),
        warnings=tuple(warnings),
    )


def _counts(dataset: BeirDataset, report, stats: RunStats) -> dict[str, int]:
    """What was indexed and asked, recorded beside the figures."""
    return {
        "queries": len(dataset.queries),
        "documents": report.articles,
        "chunks": report.chunks,
        "embedded": report.embedded,
        "cached": report.cached,
        "short_queries": stats.short,
        "empty_queries": stats.empty,
    }


def benchmark_settings(settings, encoder, depth: int) -> dict:
    """The settings that decide a retrieval figure, recorded with it."""
    return {
        "encoder": encoder.name,
        "model_fingerprint": encoder.fingerprint,
        "backend": encoder.backend,
        "max_tokens": settings.max_tokens,
        "overlap_tokens": settings.overlap_tokens,
        "bm25_k1": settings.bm25_k1,
        "bm25_b": settings.bm25_b,
        "fusion": settings.fusion,
        "rrf_k": settings.rrf_k,
        "alpha": settings.alpha,
        "candidates": max(settings.candidates, depth),
        "depth": depth,
    }
