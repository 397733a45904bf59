"""The index on disk: build it atomically, load it with every check, describe it in a manifest.

Layout. ``INDEX_DIR`` is a symbolic link to one complete build inside the sibling folder
``INDEX_DIR.builds/``::

    .rag-index -> .rag-index.builds/20261127T101500-1a2b3c
    .rag-index.builds/
        .lock                       held by the one build that may run at a time
        20261127T101500-1a2b3c/     manifest.json, chunks.jsonl, articles.json, vectors.faiss, bm25/
        20261127T111500-4d5e6f.tmp/ a build in progress (or killed: removed by the next build)

A build writes a new folder, fsyncs it, and then replaces the link with ``rename(2)``, which
is atomic: at every instant the link names either the old build or the new one, so a build
killed at any moment leaves the previous index intact and readers never see half an index.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from corpus.loader import article_fingerprint, corpus_fingerprint
from corpus.models import Article
from embeddings.base import Encoder
from embeddings.cache import EmbeddingCache, embed_cached
from embeddings.vectorstore import VectorStore, VectorStoreParams, choose_kind
from rag import __version__
from rag.chunking import Chunk, ChunkerConfig, chunk_article, embed_text
from core.errors import ConfigError, IndexFormatError, IndexLockedError, IndexNotFoundError, RagError
from core.files import file_table, fsync_tree, sha256_file
from core.machine import package_versions
from rag.faults import checkpoint
from rag.lexical import BM25Params, LexicalIndex, analyze
from rag.question import content_words
from rag.sentences import answer_units
from rag.tokens import ENCODING_NAME

FORMAT = "rag-index"
FORMAT_VERSION = 2
# Version 2 added page, anchor and language to chunk records and indexed_at to articles; a version 1
# index reads as one whose passages have none of them (no page, no anchor, unknown language).
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
CHUNKS = "chunks.jsonl"
ARTICLES = "articles.json"
VECTORS = "vectors.faiss"
BM25_DIR = "bm25"
# Answer units (sentences, whole list items, a list with its introducing sentence; see
# rag.sentences.answer_units) and their vectors, so answers cost dot products, not model calls.
SENTENCE_SPANS = "sentence_spans.npy"  # int32 rows of (chunk row, start, end), offsets into the chunk text
SENTENCE_VECTORS = "sentence_vectors.npy"  # float32, one unit vector per span

# Analysed terms stored with the chunks and answer units.
# Composing an answer weighs every candidate unit by the question terms it contains. Storing each
# unit's and chunk's BM25 term ids at build time turns that into lookups instead of analysing
# (folding, tokenising, stemming) the text of every retrieved passage for every question.
SENTENCE_TERMS = "sentence_terms.npy"  # int32 BM25 term ids of each answer unit, concatenated
SENTENCE_TERM_OFFSETS = "sentence_term_offsets.npy"  # int64, units + 1: unit i's ids are [off[i], off[i + 1])
# Words of the corpus embedded alone, so that composing an answer can tell a paraphrase ("banning" for
# "prohibiting") from a word the passages lack, without a model call for the passages' side.
WORDS = "words.json"  # distinct content words of the chunks and breadcrumbs (case-folded), in row order
WORD_VECTORS = "word_vectors.npy"  # float16, one unit vector per word
CHUNK_TERMS = "chunk_terms.npy"  # the same for whole chunks (breadcrumb included, as BM25 sees them)
CHUNK_TERM_OFFSETS = "chunk_term_offsets.npy"


@dataclass(frozen=True)
class TermTable:
    """Ragged rows of sorted, distinct BM25 term ids: row i is ``ids[offsets[i]:offsets[i + 1]]``."""

    ids: np.ndarray  # int32
    offsets: np.ndarray  # int64, rows + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, i: int) -> np.ndarray:
        return self.ids[int(self.offsets[i]) : int(self.offsets[i + 1])]

    @classmethod
    def of(cls, term_lists, vocabulary: dict[str, int]) -> TermTable:
        """Vocabulary ids of each list of analysed terms; a term outside the vocabulary cannot match a query term."""
        ids: list[int] = []
        offsets = [0]
        for terms in term_lists:
            ids.extend(sorted({vocabulary[t] for t in terms if t in vocabulary}))
            offsets.append(len(ids))
        return cls(np.asarray(ids, dtype=np.int32), np.asarray(offsets, dtype=np.int64))


def _load_terms(build_dir: Path, manifest: dict, names: tuple[str, str], rows: int, mmap: bool) -> TermTable | None:
    """A stored term table, or None for an index built before they were stored."""
    if names[0] not in manifest.get("files", {}):
        return None
    try:
        ids, offsets = (np.load(build_dir / name, mmap_mode="r" if mmap else None, allow_pickle=False) for name in names)
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{names[0]}: unreadable term data ({exc.__class__.__name__}); rebuild the index") from None
    if offsets.ndim != 1 or len(offsets) != rows + 1 or (rows and int(offsets[-1]) != len(ids)):
        raise IndexFormatError(f"{names[1]}: does not match the index's {rows} rows; rebuild the index")
    return TermTable(ids, offsets)


def analysis_fingerprint() -> str:
    """Identifies the code that splits answer units and analyses terms (rag/sentences.py, rag/lexical.py):
    stored units are reused by the next build only while that code is unchanged."""
    import rag.lexical
    import rag.sentences

    digest = hashlib.sha256()
    for module in (rag.sentences, rag.lexical):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class PreviousUnits:
    """The current build's answer units, found by chunk id, so that a rebuild reuses those of unchanged chunks."""

    rows: dict[str, int]  # chunk id -> its row in the previous build
    first: np.ndarray  # units of previous row r are [first[r], first[r + 1])
    spans: np.ndarray
    vectors: np.ndarray
    terms: TermTable
    words: list[str]  # previous BM25 term id -> term


def previous_units(index_dir: Path, model_key: str, bm25: BM25Params) -> PreviousUnits | None:
    """Units, vectors and terms of the build ``index_dir`` names, if a rebuild with this model and code may reuse them."""
    try:
        manifest = json.loads((index_dir / MANIFEST).read_text(encoding="utf-8"))
        if (manifest.get("model") or {}).get("cache_key") != model_key or manifest.get("bm25") != asdict(bm25):
            return None
        if (manifest.get("units") or {}).get("analysis") != analysis_fingerprint():
            return None
        with (index_dir / CHUNKS).open(encoding="utf-8") as handle:
            ids = [json.loads(line)["id"] for line in handle if line.strip()]
        spans, vectors, term_ids, offsets = (
            np.load(index_dir / name, mmap_mode="r", allow_pickle=False)
            for name in (SENTENCE_SPANS, SENTENCE_VECTORS, SENTENCE_TERMS, SENTENCE_TERM_OFFSETS)
        )
        vocabulary = LexicalIndex.load(index_dir / BM25_DIR, mmap=True).vocabulary()
        words = [""] * (max(vocabulary.values(), default=-1) + 1)
        for term, i in vocabulary.items():
            words[i] = term
        if len(spans) != len(vectors) or len(offsets) != len(spans) + 1:
            return None
        first = np.searchsorted(spans[:, 0], np.arange(len(ids) + 1), side="left")
        return PreviousUnits({cid: row for row, cid in enumerate(ids)}, first, spans, vectors, TermTable(term_ids, offsets), words)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, RagError):
        return None


def previous_words(index_dir: Path, model_key: str) -> dict[str, np.ndarray]:
    """The word table of the build ``index_dir`` names, when it was embedded by this model (else empty)."""
    try:
        manifest = json.loads((index_dir / MANIFEST).read_text(encoding="utf-8"))
        if (manifest.get("model") or {}).get("cache_key") != model_key or WORDS not in manifest.get("files", {}):
            return {}
        words = json.loads((index_dir / WORDS).read_text(encoding="utf-8"))
        vectors = np.load(index_dir / WORD_VECTORS, allow_pickle=False)
        return dict(zip(words, vectors)) if len(words) == len(vectors) else {}
    except (OSError, ValueError, TypeError):
        return {}


def build_words(words: list[str], previous: dict[str, np.ndarray], encoder: Encoder, cache, progress) -> tuple[np.ndarray, int]:
    """Vectors of ``words``: the previous build's for words it had, the cache's or the model's for new ones."""
    new = [w for w in words if w not in previous]
    fresh, _ = embed_cached(encoder, new, cache, progress=progress, desc="embedding words")
    made = dict(zip(new, fresh))
    vectors = np.zeros((len(words), encoder.dim), dtype=np.float32)
    for i, word in enumerate(words):
        vectors[i] = previous[word] if word in previous else made[word]
    return vectors, len(new)


def build_units(chunks: list[Chunk], previous: PreviousUnits | None, encoder: Encoder, cache, progress) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Answer units of ``chunks`` with their vectors: reused from ``previous`` for unchanged chunks, made for the rest.

    Returns (spans, vectors, number embedded, previous unit row of each unit or -1).
    """
    spans: list[tuple[int, int, int]] = []
    old: list[int] = []
    for row, chunk in enumerate(chunks):
        before = previous.rows.get(chunk.id) if previous is not None else None
        if before is None:
            for s, e in answer_units(chunk.text):
                spans.append((row, s, e))
                old.append(-1)
        else:
            for u in range(int(previous.first[before]), int(previous.first[before + 1])):
                spans.append((row, int(previous.spans[u, 1]), int(previous.spans[u, 2])))
                old.append(u)
    span_array = np.array(spans, dtype=np.int32).reshape(-1, 3)
    old_array = np.array(old, dtype=np.int64)
    vectors = np.zeros((len(spans), encoder.dim), dtype=np.float32)
    reused = old_array >= 0
    if reused.any():
        vectors[reused] = previous.vectors[old_array[reused]]
    fresh = np.flatnonzero(~reused)
    embedded = 0
    if len(fresh):
        texts = [chunks[r].text[s:e] for r, s, e in span_array[fresh]]
        vectors[fresh], embedded = embed_cached(encoder, texts, cache, progress=progress, desc="sentences")
    return span_array, vectors, embedded, old_array


def unit_terms(
    chunks: list[Chunk], spans: np.ndarray, old: np.ndarray, previous: PreviousUnits | None, vocabulary: dict[str, int], bm25: BM25Params
) -> TermTable:
    """Term ids of every unit: previous ids translated to the new vocabulary, or the unit's text analysed."""
    lengths = np.zeros(len(spans), dtype=np.int64)
    fresh: dict[int, list[int]] = {}
    for i in np.flatnonzero(old < 0).tolist():
        r, s, e = spans[i].tolist()
        fresh[i] = sorted({vocabulary[t] for t in analyze(chunks[r].text[s:e], bm25) if t in vocabulary})
        lengths[i] = len(fresh[i])
    reused = np.flatnonzero(old >= 0)
    values = np.zeros(0, dtype=np.int64)
    if len(reused):
        # All reused rows at once: gather their old ids, translate them, sort within each row.
        remap = np.array([vocabulary.get(w, -1) for w in previous.words], dtype=np.int64)
        offsets = np.asarray(previous.terms.offsets)
        starts, ends = offsets[old[reused]], offsets[old[reused] + 1]
        counts = ends - starts
        positions = np.repeat(starts - np.concatenate(([0], np.cumsum(counts)[:-1])), counts) + np.arange(counts.sum())
        values = remap[np.asarray(previous.terms.ids)[positions]]
        row = np.repeat(np.arange(len(reused)), counts)
        keep = values >= 0
        values, row = values[keep], row[keep]
        order = np.lexsort((values, row))
        values, row = values[order], row[order]
        lengths[reused] = np.bincount(row, minlength=len(reused))
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    ids = np.empty(int(offsets[-1]), dtype=np.int32)
    if len(reused):
        kept = lengths[reused]
        ids[np.repeat(offsets[reused] - np.concatenate(([0], np.cumsum(kept)[:-1])), kept) + np.arange(kept.sum())] = values
    for i, row_ids in fresh.items():
        ids[offsets[i] : offsets[i + 1]] = row_ids
    return TermTable(ids, offsets)


def lexical_text(chunk: Chunk) -> str:
    """What BM25 indexes: the breadcrumb words count as part of the passage."""
    return embed_text(chunk)


@dataclass
class BuildReport:
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


def builds_dir(index_dir: Path) -> Path:
    return index_dir.with_name(index_dir.name + ".builds")


class BuildLock:
    """An exclusive, non-blocking lock on an index's builds folder (released if the process dies)."""

    def __init__(self, index_dir: Path):
        self.index_dir = index_dir
        self.path = builds_dir(index_dir) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> BuildLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise IndexLockedError(
                    f"another build is writing {self.index_dir} (pid {holder}); wait for it to finish and try again"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _check_target(index_dir: Path) -> None:
    if index_dir.is_symlink() or not index_dir.exists():
        return
    if index_dir.is_dir() and not any(index_dir.iterdir()):
        return
    raise ConfigError(
        f"{index_dir} exists and is not an index link made by 'rag index'; choose another --index-dir or remove it"
    )


def _clean_stale(index_dir: Path, keep: set[str]) -> None:
    """Remove killed builds and old ones; the current build and the one before it stay."""
    root = builds_dir(index_dir)
    for path in root.iterdir():
        if path.name.startswith(".") or not path.is_dir():
            continue
        if path.name.endswith(".tmp") or path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
    # A build killed between creating its new link and renaming it over INDEX_DIR leaves the link behind.
    for link in index_dir.parent.glob(f".{index_dir.name}.link-*"):
        if link.is_symlink():
            link.unlink(missing_ok=True)


def _current_build(index_dir: Path) -> str | None:
    if index_dir.is_symlink():
        return Path(os.readlink(index_dir)).name
    return None


def _previous_chunks(index_dir: Path, chunker: dict, model_key: str) -> tuple[dict[str, str], dict[str, list[Chunk]]]:
    """Article fingerprints and chunks of the current build, when its chunking is reusable."""
    try:
        manifest = json.loads((index_dir / MANIFEST).read_text())
        if manifest.get("chunker") != chunker or manifest.get("model", {}).get("cache_key") != model_key:
            return {}, {}
        if manifest.get("format_version") != FORMAT_VERSION:  # older chunk records lack fields
            return {}, {}
        prints = manifest["corpus"]["article_fingerprints"]
        by_article: dict[str, list[Chunk]] = {}
        with (index_dir / CHUNKS).open(encoding="utf-8") as handle:
            for line in handle:
                chunk = Chunk.from_dict(json.loads(line))
                by_article.setdefault(chunk.article, []).append(chunk)
        return prints, by_article
    except (OSError, ValueError, KeyError, TypeError):
        return {}, {}


def _article_records(index_dir: Path, articles: list[Article], prints: dict[str, str], old_prints: dict[str, str]) -> dict:
    """articles.json: each article's metadata and when its current text was first indexed."""
    try:
        previous = json.loads((index_dir / ARTICLES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = {}
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    records = {}
    for article in articles:
        kept = (previous.get(article.slug) or {}).get("indexed_at") if old_prints.get(article.slug) == prints[article.slug] else None
        records[article.slug] = {**article.metadata(), "indexed_at": kept or now}
    return records


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
    with_sentences: bool = True,
    progress: bool | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> BuildReport:
    """Chunk, embed (through the cache), index and atomically publish ``articles`` at ``index_dir``."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    index_dir = Path(index_dir)
    if not articles:
        raise ConfigError("nothing to index: the corpus has no articles")
    _check_target(index_dir)
    with BuildLock(index_dir):
        current = _current_build(index_dir)
        _clean_stale(index_dir, keep={current} if current else set())
        checkpoint("build-start")

        t = time.perf_counter()
        chunker_meta = {**asdict(chunker), "tokenizer": ENCODING_NAME, "model_window": encoder.max_input_tokens}
        old_prints, old_chunks = _previous_chunks(index_dir, chunker_meta, encoder.cache_key)
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
        timings["chunk"] = time.perf_counter() - t
        log(f"chunked {len(articles)} articles into {len(chunks)} chunks")

        t = time.perf_counter()
        vectors, embedded = embed_cached(encoder, [embed_text(c) for c in chunks], cache, progress=progress)
        timings["embed"] = time.perf_counter() - t
        spans = np.zeros((0, 3), dtype=np.int32)
        sentence_vectors = np.zeros((0, encoder.dim), dtype=np.float32)
        sentences_embedded = 0
        if with_sentences:
            # Sentence boundaries and vectors are computed once here, so composing an answer
            # costs dot products instead of model calls; unchanged chunks keep the previous build's.
            t = time.perf_counter()
            previous = previous_units(index_dir, encoder.cache_key, bm25) if old_prints else None
            spans, sentence_vectors, sentences_embedded, previous_rows = build_units(chunks, previous, encoder, cache, progress)
            timings["embed_sentences"] = time.perf_counter() - t
        checkpoint("embedded")

        t = time.perf_counter()
        kind = choose_kind(vector_index, len(chunks), hnsw_threshold)
        params = VectorStoreParams(**{**asdict(vector_params), "kind": kind})
        store = VectorStore.build(vectors, params)
        timings["vectors"] = time.perf_counter() - t
        t = time.perf_counter()
        analysed = [analyze(lexical_text(c), bm25) for c in chunks]
        lexical = LexicalIndex.from_terms(analysed, bm25)
        timings["bm25"] = time.perf_counter() - t
        if with_sentences:
            t = time.perf_counter()
            vocabulary = lexical.vocabulary()
            chunk_terms = TermTable.of(analysed, vocabulary)
            sentence_terms = unit_terms(chunks, spans, previous_rows, previous, vocabulary, bm25)
            timings["terms"] = time.perf_counter() - t
            t = time.perf_counter()
            words = sorted({w for c in chunks for w in content_words(c.text + " " + " ".join(c.section))})
            word_vectors, words_embedded = build_words(words, previous_words(index_dir, encoder.cache_key), encoder, cache, progress)
            timings["embed_words"] = time.perf_counter() - t

        build_id = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
        root = builds_dir(index_dir)
        tmp = root / f"{build_id}.tmp"
        tmp.mkdir(parents=True)
        t = time.perf_counter()
        with (tmp / CHUNKS).open("w", encoding="utf-8") as handle:
            for chunk in chunks:
                handle.write(json.dumps(chunk.to_dict(), ensure_ascii=False) + "\n")
        (tmp / ARTICLES).write_text(
            json.dumps(_article_records(index_dir, articles, prints, old_prints), ensure_ascii=False, indent=1),
            encoding="utf-8",
        )
        store.save(tmp / VECTORS)
        lexical.save(tmp / BM25_DIR)
        if with_sentences:
            np.save(tmp / SENTENCE_SPANS, spans)
            np.save(tmp / SENTENCE_VECTORS, np.ascontiguousarray(sentence_vectors, dtype=np.float32))
            np.save(tmp / SENTENCE_TERMS, sentence_terms.ids)
            np.save(tmp / SENTENCE_TERM_OFFSETS, sentence_terms.offsets)
            np.save(tmp / CHUNK_TERMS, chunk_terms.ids)
            np.save(tmp / CHUNK_TERM_OFFSETS, chunk_terms.offsets)
            (tmp / WORDS).write_text(json.dumps(words, ensure_ascii=False), encoding="utf-8")
            np.save(tmp / WORD_VECTORS, np.asarray(word_vectors, dtype=np.float16))
        checkpoint("files-written")
        files = file_table(tmp)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "build_id": build_id,
            "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "software": {"rag": __version__, **_library_versions()},
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
            "corpus": {
                "path": corpus_path,
                "fingerprint": corpus_fingerprint(articles),
                "article_fingerprints": prints,
            },
            "counts": {
                "articles": len(articles),
                "chunks": len(chunks),
                "embedded": embedded,
                "cached": len(chunks) - embedded,
                "tokens": int(sum(c.n_tokens for c in chunks)),
                "sentences": int(len(spans)),
                "sentences_embedded": sentences_embedded,
                "words": len(words) if with_sentences else 0,
                "words_embedded": words_embedded if with_sentences else 0,
            },
            "files": files,
        }
        # The manifest is written last: a build folder without one is never complete.
        (tmp / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
        fsync_tree(tmp)
        final = root / build_id
        os.rename(tmp, final)
        checkpoint("before-swap")
        link_tmp = index_dir.with_name(f".{index_dir.name}.link-{build_id}")
        os.symlink(os.path.relpath(final, index_dir.parent), link_tmp)
        if index_dir.is_dir() and not index_dir.is_symlink():
            index_dir.rmdir()  # _check_target allowed only an empty folder here
        os.replace(link_tmp, index_dir)
        fd = os.open(index_dir.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        checkpoint("after-swap")
        timings["write"] = time.perf_counter() - t
        # Keep the build that was current until now: a server may still be loading it.
        _clean_stale(index_dir, keep={build_id, current} if current else {build_id})

    return BuildReport(
        index_dir=str(index_dir),
        build_id=build_id,
        articles=len(articles),
        chunks=len(chunks),
        embedded=embedded,
        cached=len(chunks) - embedded,
        seconds=round(time.perf_counter() - started, 3),
        vector_index=kind,
        reused_chunking=reused,
        sentences=int(len(spans)),
        sentences_embedded=sentences_embedded,
        words_embedded=words_embedded if with_sentences else 0,
        timings={k: round(v, 3) for k, v in timings.items()},
    )


def _library_versions() -> dict[str, str]:
    return package_versions(("faiss-cpu", "bm25s", "sentence-transformers", "tiktoken"))


# --------------------------------------------------------------------------------------- loading


_SAFE_FILE = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


@dataclass
class Index:
    """A loaded, verified index: chunks, article metadata, vector and BM25 stores."""

    path: Path
    manifest: dict
    chunks: list[Chunk]
    articles: dict[str, dict]
    vectors: VectorStore
    lexical: LexicalIndex
    sentence_spans: np.ndarray | None = None  # (n, 3) int32: chunk row, start, end
    sentence_vectors: np.ndarray | None = None  # (n, dim) float32
    row_of: dict[str, int] = field(default_factory=dict)
    sentence_first: np.ndarray | None = None  # sentence_spans rows of chunk r are [first[r], first[r+1])
    sentence_terms: TermTable | None = None  # BM25 term ids of each sentence_spans row
    chunk_terms: TermTable | None = None  # BM25 term ids of each chunk
    words: dict[str, int] | None = None  # content word -> row of word_vectors
    word_vectors: np.ndarray | None = None  # (n, dim) float16

    def __post_init__(self) -> None:
        self.row_of = {c.id: i for i, c in enumerate(self.chunks)}
        if self.sentence_spans is not None:
            self.sentence_first = np.searchsorted(self.sentence_spans[:, 0], np.arange(len(self.chunks) + 1), side="left")

    @property
    def unit_centroid(self) -> np.ndarray | None:
        """Mean vector of the stored answer units: the direction every passage of the corpus shares."""
        if self.sentence_vectors is None or not len(self.sentence_vectors):
            return None
        if getattr(self, "_unit_centroid", None) is None:
            self._unit_centroid = np.asarray(self.sentence_vectors, dtype=np.float32).mean(axis=0)
        return self._unit_centroid

    def sentences_of(self, row: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Sentence spans (start, end within the chunk text) of chunk ``row`` and their vectors, if stored."""
        if self.sentence_first is None:
            spans = np.array(answer_units(self.chunks[row].text), dtype=np.int32).reshape(-1, 2)
            return spans, None
        lo, hi = int(self.sentence_first[row]), int(self.sentence_first[row + 1])
        return self.sentence_spans[lo:hi, 1:], self.sentence_vectors[lo:hi]

    @property
    def build_id(self) -> str:
        return self.manifest["build_id"]

    def __len__(self) -> int:
        return len(self.chunks)

    def chunk(self, passage_id: str) -> Chunk | None:
        row = self.row_of.get(passage_id)
        return None if row is None else self.chunks[row]

    def neighbours(self, passage_id: str) -> tuple[Chunk | None, Chunk | None]:
        """The chunks before and after this one in the same article."""
        row = self.row_of.get(passage_id)
        if row is None:
            return None, None
        chunk = self.chunks[row]
        prev = self.chunks[row - 1] if row > 0 and self.chunks[row - 1].article == chunk.article else None
        nxt = self.chunks[row + 1] if row + 1 < len(self.chunks) and self.chunks[row + 1].article == chunk.article else None
        return prev, nxt

    def rows_matching(
        self,
        articles: set[str] | None = None,
        categories: set[str] | None = None,
        tags: set[str] | None = None,
        languages: set[str] | None = None,
    ) -> np.ndarray:
        """Sorted row ids of chunks whose article matches every given filter (values compared case-insensitively)
        and whose own language is one of ``languages`` (ISO 639-1 codes), when given."""
        wanted = set()
        for slug, meta in self.articles.items():
            if articles and slug.casefold() not in articles:
                continue
            if categories:
                names = {c.get("name", "").casefold() for c in meta.get("categories", [])}
                names |= {c.get("slug", "").casefold() for c in meta.get("categories", [])}
                if not names & categories:
                    continue
            if tags and not {t.casefold() for t in meta.get("tags", [])} & tags:
                continue
            wanted.add(slug)
        return np.array(
            [i for i, c in enumerate(self.chunks) if c.article in wanted and (not languages or c.language.casefold() in languages)],
            dtype=np.int64,
        )


def read_manifest(index_dir: Path) -> dict:
    path = index_dir / MANIFEST
    if not index_dir.exists():
        raise IndexNotFoundError(f"no index at {index_dir}; build one with 'rag index'")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexFormatError(f"{path}: missing; this is not a complete index, rebuild it with 'rag index'") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise IndexFormatError(f"{path}: unreadable ({exc.__class__.__name__}); rebuild the index with 'rag index'") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexFormatError(f"{path}: not a rag index manifest; rebuild the index with 'rag index'")
    version = manifest.get("format_version")
    if version == 3 and manifest.get("shards"):  # rag/shards.py
        raise IndexFormatError(
            f"{path}: a sharded index of {len(manifest['shards'])} shards; 'rag search' reads it, answers need an index "
            "built with --shards 1"
        )
    if version not in READABLE_VERSIONS:
        raise IndexFormatError(
            f"{path}: index format version {version!r} is not supported (this is version {FORMAT_VERSION}); "
            "rebuild the index with 'rag index'"
        )
    return manifest


def verify_files(build_dir: Path, manifest: dict) -> None:
    """Every file named in the manifest exists with its recorded size and checksum."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise IndexFormatError(f"{build_dir / MANIFEST}: lists no files; rebuild the index with 'rag index'")
    for name, expected in files.items():
        if not _SAFE_FILE.match(name) or ".." in name.split("/"):
            raise IndexFormatError(f"{build_dir / MANIFEST}: invalid file name {name!r}; rebuild the index")
        path = build_dir / name
        if not path.is_file():
            raise IndexFormatError(f"{name}: missing from the index at {build_dir}; rebuild it with 'rag index'")
        size = path.stat().st_size
        if size != expected.get("bytes"):
            raise IndexFormatError(
                f"{name}: has {size} bytes, the manifest says {expected.get('bytes')} (truncated or replaced); "
                "rebuild the index with 'rag index'"
            )
        if sha256_file(path) != expected.get("sha256"):
            raise IndexFormatError(f"{name}: checksum does not match the manifest (corrupted); rebuild the index with 'rag index'")


def check_model(manifest: dict, encoder: Encoder | None) -> None:
    if encoder is None:
        return
    model = manifest.get("model") or {}
    # Same weights under another name (a moved model folder) are the same model; an index
    # written before fingerprints were recorded is checked by name.
    built = model.get("fingerprint")
    if (built != encoder.fingerprint) if built else (model.get("name") != encoder.name):
        fingerprints = f" (fingerprint {built[:12]} vs {encoder.fingerprint[:12]})" if built else ""
        raise IndexFormatError(
            f"the index was built with model {model.get('name')!r} but this service uses {encoder.name!r}{fingerprints}; "
            "rebuild the index with 'rag index' (or configure the same encoder: RAG_MODEL_PATH / --model)"
        )
    if model.get("dim") != encoder.dim:
        raise IndexFormatError(
            f"the index holds {model.get('dim')}-dimensional vectors but {encoder.name} makes {encoder.dim}; rebuild the index"
        )


def load_index(index_dir: str | Path, encoder: Encoder | None = None, *, verify: bool = True, mmap: bool = False) -> Index:
    """Open the build that ``index_dir`` names, refusing anything incomplete or incompatible."""
    index_dir = Path(index_dir)
    if not index_dir.exists():
        raise IndexNotFoundError(f"no index at {index_dir}; build one with 'rag index'")
    build_dir = index_dir.resolve()  # pin one build even if the link is swapped while we read
    manifest = read_manifest(build_dir)
    check_model(manifest, encoder)
    if verify:
        verify_files(build_dir, manifest)
    try:
        with (build_dir / CHUNKS).open(encoding="utf-8") as handle:
            chunks = [Chunk.from_dict(json.loads(line)) for line in handle if line.strip()]
        articles = json.loads((build_dir / ARTICLES).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise IndexFormatError(f"{Path(exc.filename).name}: missing from the index; rebuild it with 'rag index'") from None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise IndexFormatError(f"{CHUNKS}: unreadable chunk records ({exc.__class__.__name__}); rebuild the index") from None
    params = VectorStoreParams(**manifest.get("vectors", {}))
    vectors = VectorStore.load(build_dir / VECTORS, params, mmap=mmap)
    lexical = LexicalIndex.load(build_dir / BM25_DIR, mmap=mmap)
    sentence_spans = sentence_vectors = None
    if SENTENCE_SPANS in manifest.get("files", {}):
        try:
            sentence_spans = np.load(build_dir / SENTENCE_SPANS, mmap_mode="r" if mmap else None, allow_pickle=False)
            sentence_vectors = np.load(build_dir / SENTENCE_VECTORS, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise IndexFormatError(f"{SENTENCE_SPANS}: unreadable sentence data ({exc.__class__.__name__}); rebuild the index") from None
        if sentence_spans.ndim != 2 or sentence_spans.shape[1] != 3 or len(sentence_spans) != len(sentence_vectors):
            raise IndexFormatError(f"{SENTENCE_VECTORS}: does not match {SENTENCE_SPANS}; rebuild the index")
    sentence_terms = chunk_terms = None
    if sentence_spans is not None:
        sentence_terms = _load_terms(build_dir, manifest, (SENTENCE_TERMS, SENTENCE_TERM_OFFSETS), len(sentence_spans), mmap)
        chunk_terms = _load_terms(build_dir, manifest, (CHUNK_TERMS, CHUNK_TERM_OFFSETS), len(chunks), mmap)
    words, word_vectors = _load_words(build_dir, manifest, mmap)
    expected = manifest.get("counts", {}).get("chunks")
    if not (len(chunks) == len(vectors) == lexical.n_docs == expected):
        raise IndexFormatError(
            f"the index is inconsistent: {len(chunks)} chunk records, {len(vectors)} vectors, {lexical.n_docs} BM25 rows, "
            f"manifest says {expected}; rebuild it with 'rag index'"
        )
    if vectors.dim != (manifest.get("model") or {}).get("dim"):
        raise IndexFormatError(f"{VECTORS}: holds {vectors.dim}-dimensional vectors, the manifest says otherwise; rebuild the index")
    return Index(
        path=build_dir,
        manifest=manifest,
        chunks=chunks,
        articles=articles,
        vectors=vectors,
        lexical=lexical,
        sentence_spans=sentence_spans,
        sentence_vectors=sentence_vectors,
        sentence_terms=sentence_terms,
        chunk_terms=chunk_terms,
        words=words,
        word_vectors=word_vectors,
    )


def _load_words(build_dir: Path, manifest: dict, mmap: bool) -> tuple[dict[str, int] | None, np.ndarray | None]:
    """The embedded word table, or (None, None) for an index built before it was stored."""
    if WORDS not in manifest.get("files", {}):
        return None, None
    try:
        words = json.loads((build_dir / WORDS).read_text(encoding="utf-8"))
        vectors = np.load(build_dir / WORD_VECTORS, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{WORDS}: unreadable word table ({exc.__class__.__name__}); rebuild the index") from None
    if not isinstance(words, list) or vectors.ndim != 2 or len(words) != len(vectors):
        raise IndexFormatError(f"{WORD_VECTORS}: does not match {WORDS}; rebuild the index")
    return {w: i for i, w in enumerate(words)}, vectors


# The publishing rules and previous-build readers, public for builders of other index layouts
# (rag/shards.py writes sharded builds with the same lock, link swap and clean-up).
check_target = _check_target
clean_stale = _clean_stale
current_build = _current_build
previous_chunks = _previous_chunks
article_records = _article_records
library_versions = _library_versions

__all__ = ["BuildReport", "Index", "RagError", "build_index", "load_index", "read_manifest", "verify_files"]
