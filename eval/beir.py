"""BEIR benchmarks with the product's own pipeline: load a dataset, index it, retrieve, write a TREC run.

A dataset folder in the BEIR layout holds ``corpus.jsonl`` (``{"_id", "title", "text"}``),
``queries.jsonl`` (``{"_id", "text"}``) and ``qrels/<split>.tsv`` (``query-id corpus-id score``,
tab-separated, an optional header line). The corpus is chunked, embedded and indexed exactly as
the product does it; a document longer than one chunk is scored by its best chunk.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eval.errors import EvalDataError

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_DIR = "qrels"
#: Documents written per query: the usual TREC depth, and enough for Recall@100 and MAP@100.
DEFAULT_DEPTH = 1000


@dataclass(frozen=True)
class BeirDataset:
    """One split of a BEIR dataset: the judged queries and their judgements (the corpus is read when indexing)."""

    root: Path
    name: str
    split: str
    queries: dict[str, str]  # judged query id -> text, in qrels order
    qrels: dict[str, dict[str, int]]  # query id -> {doc id: relevance}
    warnings: tuple[str, ...] = ()

    @property
    def corpus_path(self) -> Path:
        return self.root / CORPUS_FILE


def available_splits(root: Path) -> list[str]:
    folder = root / QRELS_DIR
    return sorted(p.stem for p in folder.glob("*.tsv")) if folder.is_dir() else []


def load_queries(path: Path) -> dict[str, str]:
    """Query id -> text from a BEIR ``queries.jsonl``."""
    queries: dict[str, str] = {}
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise EvalDataError(f"{path}: cannot read ({exc.strerror})") from None
    with handle:
        try:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise EvalDataError(f"{path}: line {lineno}: not valid JSON ({exc.msg})") from None
                if not isinstance(record, dict) or "_id" not in record or not isinstance(record.get("text"), str):
                    raise EvalDataError(f'{path}: line {lineno}: expected an object with "_id" and "text" (BEIR queries format)')
                queries[str(record["_id"])] = " ".join(record["text"].split())
        except UnicodeDecodeError:
            raise EvalDataError(f"{path}: not valid UTF-8; re-save the file as UTF-8") from None
    return queries


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Judgements from a qrels file: ``query-id corpus-id score`` (BEIR) or ``query-id 0 corpus-id score`` (TREC).

    Columns are separated by tabs (or, in a file without tabs, by spaces). The first line may
    be a header; every other line must have 3 or 4 columns and an integer score.
    """
    qrels: dict[str, dict[str, int]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EvalDataError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise EvalDataError(f"{path}: not valid UTF-8; re-save the file as UTF-8") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        cols = [c.strip() for c in line.split("\t")] if "\t" in line else line.split()
        if len(cols) not in (3, 4):
            raise EvalDataError(
                f"{path}: line {lineno}: expected 3 columns (query-id corpus-id score) or 4 (query-id 0 corpus-id score), "
                f"found {len(cols)}: {line.strip()[:80]!r}"
            )
        qid, doc, score = (cols[0], cols[1], cols[2]) if len(cols) == 3 else (cols[0], cols[2], cols[3])
        try:
            rel = int(score)
        except ValueError:
            if lineno == 1 and not qrels:
                continue  # a header line such as "query-id corpus-id score"
            raise EvalDataError(f"{path}: line {lineno}: the score {score!r} is not an integer") from None
        if not qid or not doc:
            raise EvalDataError(f"{path}: line {lineno}: empty query or document id")
        qrels.setdefault(qid, {})[doc] = rel
    if not qrels:
        raise EvalDataError(f"{path}: no judgements in the file")
    return qrels


def load_dataset(
    root: str | Path, split: str = "test", *, skip_unknown_queries: bool = False, qrels_file: str | Path | None = None
) -> BeirDataset:
    """Read and check a BEIR dataset folder's queries and the qrels of ``split``.

    ``qrels_file`` is judgements kept outside the folder (a subset of queries, such as a part held
    out from training); it replaces ``qrels/<split>.tsv`` and its name becomes the split's.

    A judgement for a query id that ``queries.jsonl`` lacks is an error (the query cannot be
    asked, so any figure would be wrong); ``skip_unknown_queries`` drops such queries with a
    warning instead.
    """
    root = Path(root)
    if not root.is_dir():
        raise EvalDataError(f"{root}: no such dataset folder; pass --data a folder with {CORPUS_FILE}, {QUERIES_FILE} and {QRELS_DIR}/")
    for name in (CORPUS_FILE, QUERIES_FILE):
        if not (root / name).is_file():
            raise EvalDataError(f"{root}: {name} is missing; a BEIR dataset folder has {CORPUS_FILE}, {QUERIES_FILE} and {QRELS_DIR}/<split>.tsv")
    qrels_path = Path(qrels_file) if qrels_file else root / QRELS_DIR / f"{split}.tsv"
    if qrels_file:
        split = qrels_path.stem
        if not qrels_path.is_file():
            raise EvalDataError(f"{qrels_path}: no such qrels file; pass --qrels a file of 'query-id corpus-id score' lines")
    if not qrels_path.is_file():
        splits = available_splits(root)
        hint = f"available splits: {', '.join(splits)}" if splits else f"{root / QRELS_DIR} has no .tsv files"
        raise EvalDataError(f"{root}: no qrels for split {split!r} ({qrels_path} is missing); {hint}; choose one with --split")
    qrels = load_qrels(qrels_path)
    all_queries = load_queries(root / QUERIES_FILE)
    unknown = [q for q in qrels if q not in all_queries]
    warnings: list[str] = []
    if unknown:
        if not skip_unknown_queries:
            more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
            raise EvalDataError(
                f"{qrels_path}: query id {unknown[0]!r}{more} is judged but not in {QUERIES_FILE}; "
                "fix the dataset or pass --skip-unknown-queries to leave such queries out"
            )
        warnings.append(f"{len(unknown)} judged query id(s) are not in {QUERIES_FILE} and were left out (first: {unknown[0]!r})")
        qrels = {q: docs for q, docs in qrels.items() if q in all_queries}
    empty = [q for q in qrels if not all_queries[q]]
    if empty:
        raise EvalDataError(f"{root / QUERIES_FILE}: query {empty[0]!r} has empty text; give every judged query some text")
    return BeirDataset(root, root.resolve().name, split, {q: all_queries[q] for q in qrels}, qrels, tuple(warnings))


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
    from embeddings.vectorstore import VectorStoreParams
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
            vector_params=VectorStoreParams(
                hnsw_m=settings.hnsw_m, ef_construction=settings.hnsw_ef_construction, ef_search=settings.hnsw_ef_search
            ),
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


# ----------------------------------------------------------------------------------- run files


def strictly_decreasing(scores: Sequence[float]) -> list[float]:
    """Scores as float32 values made strictly decreasing by the smallest steps, keeping the given order.

    Tools that read a run file order documents by score and break ties each their own way
    (trec_eval by document id, descending), and pytrec_eval compares scores in single
    precision. Separating ties at float32 precision means every tool reads the ranking we made.
    """
    out: list[np.float32] = []
    for score in scores:
        value = np.float32(score)
        if out and value >= out[-1]:
            value = np.nextafter(out[-1], np.float32(-np.inf))
        out.append(value)
    return [float(v) for v in out]


def write_trec_run(path: str | Path, run: Mapping[str, Sequence[tuple[str, float]]], tag: str) -> Path:
    """Write ``qid Q0 docid rank score tag`` lines, atomically (a temporary file renamed into place)."""
    path = Path(path)
    for qid, docs in run.items():
        bad = next((i for i in (qid, *(d for d, _ in docs)) if not i or any(ch.isspace() for ch in i)), None)
        if bad is not None:
            raise EvalDataError(f"the id {bad!r} is empty or holds whitespace and cannot be written to a TREC run file; rename it in the dataset")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as handle:
        for qid, docs in run.items():
            for rank, ((doc, _), score) in enumerate(zip(docs, strictly_decreasing([s for _, s in docs])), start=1):
                # repr() round-trips the float exactly, so a reader sees the same order we wrote.
                handle.write(f"{qid} Q0 {doc} {rank} {score!r} {tag}\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def read_trec_run(path: str | Path) -> dict[str, list[tuple[str, float]]]:
    """A TREC run file as qid -> [(docid, score)], ordered by score as evaluation tools order it."""
    run: dict[str, list[tuple[str, float]]] = {}
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        cols = line.split()
        if len(cols) != 6:
            raise EvalDataError(f"{path}: line {lineno}: expected 'qid Q0 docid rank score tag'")
        run.setdefault(cols[0], []).append((cols[2], float(cols[4])))
    for docs in run.values():
        docs.sort(key=lambda d: -d[1])
    return run


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
    from rag.retrieve import MODES, Retriever
    from rag.service import make_encoder

    if mode not in MODES:
        raise EvalDataError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    if depth < 100:
        raise EvalDataError(f"depth must be at least 100 (Recall@100 and MAP@100 need it); got {depth}")
    dataset = load_dataset(root, split, skip_unknown_queries=skip_unknown_queries, qrels_file=qrels_file)
    split = dataset.split
    for warning in dataset.warnings:
        log(f"warning: {warning}")
    log(f"{dataset.name} [{split}]: {len(dataset.queries)} judged queries, {sum(map(len, dataset.qrels.values()))} judgements")
    encoder = encoder or make_encoder(settings)
    t = time.perf_counter()
    index, report = index_dataset(dataset, settings, encoder, index_dir=index_dir, progress=progress, log=log)
    index_seconds = time.perf_counter() - t
    log(
        f"indexed {report.articles} documents as {report.chunks} chunks (embedded {report.embedded}, "
        f"cached {report.cached}) in {index_seconds:.1f} s"
    )
    corpus_ids = {c.article for c in index.chunks}
    missing_docs = sum(1 for docs in dataset.qrels.values() for d, r in docs.items() if r > 0 and d not in corpus_ids)
    warnings = list(dataset.warnings)
    if missing_docs:
        warnings.append(f"{missing_docs} relevant judgement(s) name documents that are not in the indexed corpus")
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
        counts={
            "queries": len(dataset.queries),
            "documents": report.articles,
            "chunks": report.chunks,
            "embedded": report.embedded,
            "cached": report.cached,
            "short_queries": stats.short,
            "empty_queries": stats.empty,
        },
        seconds={"index": round(index_seconds, 2), "retrieve": round(stats.seconds, 2)},
        settings=benchmark_settings(settings, encoder, depth),
        warnings=tuple(warnings),
    )


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
