"""The sharded index format: S shards by a stable hash of the chunk id, BM25 with corpus-wide statistics.

A sharded build folder holds one manifest (format version 3) and one folder per shard::

    .rag-index.builds/20261201T101500-1a2b3c/
        manifest.json        format_version 3, the shards with their checksums, every file's checksum
        articles.json        every article's metadata
        shard-000/           a complete version-2 index of the chunks that hash to shard 0, plus rows.npy
        shard-001/           ...

Each shard folder is itself a loadable index (``rag.index.load_index``), so a shard server opens one
with the usual checks. ``rows.npy`` gives every chunk of a shard its row in the unsharded order (the
corpus order), which merged searches use to break ties exactly as one index would.

BM25 scores of a shard use the document frequencies, document count and average length of the whole
corpus (:class:`CorpusStats`), so a chunk scores the same in its shard as in one index: the merged
top-k over shards equals the single-index top-k. One shard (S = 1) is written in today's format.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import secrets
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import ConfigError, IndexFormatError
from core.files import file_table
from embeddings.vectorstore import VectorStore, VectorStoreParams
from rag.text.chunking import Chunk
from rag.index.build import lexical_text
from rag.index.format import ARTICLES, BM25_DIR, CHUNKS, CHUNK_TERMS, CHUNK_TERM_OFFSETS, FORMAT, FORMAT_VERSION, MANIFEST, UNIT_SPANS, UNIT_TERMS, UNIT_TERM_OFFSETS, UNIT_VECTORS, VECTORS, WORDS, WORD_VECTORS, TermTable, read_manifest, verify_files
from rag.index.load import Index, load_index
from rag.index.reuse import unit_terms
from rag.text.lexical import BM25Params, LexicalIndex, analyze
from rag.text.words import content_words

SHARDED_FORMAT_VERSION = 3
ROWS = "rows.npy"  # int64: each chunk's row in the unsharded (corpus) order
MAX_SHARDS = 1024


def shard_name(number: int) -> str:
    return f"shard-{number:03d}"


def shard_of(chunk_id: str, shards: int) -> int:
    """The shard a chunk belongs to: a hash of its id, the same on every machine and in every build."""
    digest = hashlib.sha256(chunk_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shards


def check_shards(shards: int) -> int:
    if not 1 <= shards <= MAX_SHARDS:
        raise ConfigError(f"the number of shards must be from 1 to {MAX_SHARDS} (got {shards}); set --shards or RAG_SHARDS")
    return shards


def partition(chunk_ids: Sequence[str], shards: int) -> list[np.ndarray]:
    """Rows (in corpus order) of each shard's chunks."""
    owner = np.fromiter((shard_of(cid, shards) for cid in chunk_ids), dtype=np.int64, count=len(chunk_ids))
    return [np.flatnonzero(owner == s) for s in range(shards)]


# ------------------------------------------------------------------------------ corpus-wide BM25


@dataclass(frozen=True)
class CorpusStats:
    """What BM25 needs from the whole corpus: document count, summed length and each term's document frequency."""

    n_docs: int
    total_length: int
    df: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, term_lists: Iterable[list[str]]) -> CorpusStats:
        df: Counter[str] = Counter()
        n = total = 0
        for terms in term_lists:
            n += 1
            total += len(terms)
            df.update(set(terms))
        return cls(n, total, dict(df))

    @classmethod
    def merge(cls, parts: Iterable[CorpusStats]) -> CorpusStats:
        df: Counter[str] = Counter()
        n = total = 0
        for part in parts:
            n += part.n_docs
            total += part.total_length
            df.update(part.df)
        return cls(n, total, dict(df))

    @property
    def avg_length(self) -> float:
        # Integer lengths sum exactly in float64, so this equals bm25s's own mean over one index.
        return float(self.total_length / self.n_docs) if self.n_docs else 0.0


def _corpus_wide_bm25(params: BM25Params, stats: CorpusStats):
    """A bm25s.BM25 whose scores use ``stats`` instead of the statistics of the texts it indexes."""
    from rag.text.lexical import _import_bm25s

    bm25s = _import_bm25s()
    from bm25s.scoring import _build_idf_array, _build_scores_and_indices_for_matrix, _select_idf_scorer

    class CorpusWideBM25(bm25s.BM25):
        # bm25s documents build_index_from_ids as the method to override to build an index differently.
        def build_index_from_tokens(self, corpus_tokens, show_progress=True, leave_progress=False):
            self._terms_by_id = list(dict.fromkeys(t for doc in corpus_tokens for t in doc))
            vocabulary = {term: i for i, term in enumerate(self._terms_by_id)}
            token_ids = [[vocabulary[t] for t in doc] for doc in corpus_tokens]
            return self.build_index_from_ids(list(range(len(vocabulary))), token_ids), vocabulary

        def build_index_from_ids(self, unique_token_ids, corpus_token_ids, show_progress=True, leave_progress=False):
            self.nonoccurrence_array = None  # lucene, robertson and atire need none
            terms = self._terms_by_id
            if len(terms) != len(unique_token_ids):
                raise IndexFormatError("bm25: vocabulary does not match the analysed terms")
            frequencies = {i: stats.df.get(term, 0) for i, term in enumerate(terms)}
            idf = _build_idf_array(frequencies, n_docs=stats.n_docs, compute_idf_fn=_select_idf_scorer(self.idf_method), dtype=self.dtype)
            data, rows, cols = _build_scores_and_indices_for_matrix(
                corpus_token_ids=corpus_token_ids,
                idf_array=idf,
                avg_doc_len=stats.avg_length,
                doc_frequencies=_local_frequencies(corpus_token_ids, len(terms)),
                k1=self.k1,
                b=self.b,
                delta=self.delta,
                show_progress=False,
                leave_progress=False,
                dtype=self.dtype,
                int_dtype=self.int_dtype,
                method=self.method,
                nonoccurrence_array=None,
            )
            data, indices, indptr = self._np_csc(data=data, rows=rows, cols=cols, shape=(len(corpus_token_ids), len(terms)))
            return {"data": data.astype(self.dtype), "indices": indices, "indptr": indptr, "num_docs": len(corpus_token_ids)}

    if params.method in ("bm25l", "bm25+"):
        raise ConfigError(f"sharded BM25 supports the lucene, robertson and atire methods, not {params.method!r}")
    return CorpusWideBM25(k1=params.k1, b=params.b, method=params.method)


def _local_frequencies(corpus_token_ids, n_terms: int) -> dict[int, int]:
    """Each term id's document count in these texts: only sizes the score arrays, never scores."""
    counts = Counter(t for doc in corpus_token_ids for t in set(doc))
    return {i: counts.get(i, 0) for i in range(n_terms)}


def lexical_with_stats(term_lists: list[list[str]], params: BM25Params, stats: CorpusStats) -> LexicalIndex:
    """A BM25 index of ``term_lists`` that scores every row as an index of the whole corpus would."""
    retriever = _corpus_wide_bm25(params, stats)
    retriever.index(term_lists, show_progress=False)
    return LexicalIndex(retriever, params, len(term_lists))


def analysed(chunks: Sequence[Chunk], params: BM25Params) -> list[list[str]]:
    """The BM25 terms of each chunk, as one index analyses them."""
    return [analyze(lexical_text(c), params) for c in chunks]


def shard_stats(chunks: Sequence[Chunk], params: BM25Params) -> CorpusStats:
    """One shard's part of the corpus-wide statistics (merged with :meth:`CorpusStats.merge`)."""
    return CorpusStats.of(analysed(chunks, params))


# ------------------------------------------------------------------------------ writing


@dataclass(frozen=True)
class ShardData:
    """Everything one shard folder holds, before analysis: chunks with their vectors, answer units and words."""

    number: int
    rows: np.ndarray  # each chunk's row in the corpus order
    chunks: list[Chunk]
    vectors: np.ndarray  # (chunks, dim) float32
    spans: np.ndarray  # (units, 3) int32: row within this shard, start, end
    unit_vectors: np.ndarray  # (units, dim) float32
    words: list[str]  # content words of these chunks, sorted
    word_vectors: np.ndarray  # (words, dim)
    articles: dict[str, dict]  # records of the articles these chunks come from


def shard_words(chunks: Sequence[Chunk]) -> list[str]:
    """Content words of the chunks and their breadcrumbs, as a local build lists them."""
    return sorted({w for c in chunks for w in content_words(c.text + " " + " ".join(c.section))})


def write_shard(directory: Path, data: ShardData, stats: CorpusStats, meta: dict, *, with_rows: bool) -> dict:
    """Write one complete, version-2 index of ``data`` into ``directory`` and return its manifest.

    ``meta`` holds the manifest fields every shard shares (model, chunker, bm25, vectors, corpus, ...).
    """
    bm25 = BM25Params(**meta["bm25"])
    directory.mkdir(parents=True, exist_ok=False)
    terms = analysed(data.chunks, bm25)
    lexical = lexical_with_stats(terms, bm25, stats)
    store = VectorStore.build(data.vectors, VectorStoreParams(**meta["vectors"]))
    vocabulary = lexical.vocabulary()
    chunk_terms = TermTable.of(terms, vocabulary)
    fresh = np.full(len(data.spans), -1, dtype=np.int64)
    unit_term_table = unit_terms(data.chunks, data.spans, fresh, None, vocabulary, bm25)
    with (directory / CHUNKS).open("w", encoding="utf-8") as handle:
        for chunk in data.chunks:
            handle.write(json.dumps(chunk.to_dict(), ensure_ascii=False) + "\n")
    (directory / ARTICLES).write_text(json.dumps(data.articles, ensure_ascii=False, indent=1), encoding="utf-8")
    store.save(directory / VECTORS)
    lexical.save(directory / BM25_DIR)
    np.save(directory / UNIT_SPANS, np.asarray(data.spans, dtype=np.int32).reshape(-1, 3))
    np.save(directory / UNIT_VECTORS, np.ascontiguousarray(data.unit_vectors, dtype=np.float32))
    np.save(directory / UNIT_TERMS, unit_term_table.ids)
    np.save(directory / UNIT_TERM_OFFSETS, unit_term_table.offsets)
    np.save(directory / CHUNK_TERMS, chunk_terms.ids)
    np.save(directory / CHUNK_TERM_OFFSETS, chunk_terms.offsets)
    (directory / WORDS).write_text(json.dumps(data.words, ensure_ascii=False), encoding="utf-8")
    np.save(directory / WORD_VECTORS, np.asarray(data.word_vectors, dtype=np.float16).reshape(len(data.words), -1))
    if with_rows:
        np.save(directory / ROWS, np.asarray(data.rows, dtype=np.int64))
    counts = {
        "articles": len(data.articles),
        "chunks": len(data.chunks),
        "tokens": int(sum(c.n_tokens for c in data.chunks)),
        "sentences": int(len(data.spans)),
        "words": len(data.words),
    }
    manifest = {
        **meta,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "counts": {**meta.get("counts", {}), **counts},
        "bm25_corpus": {"documents": stats.n_docs, "avg_length": stats.avg_length},
        "files": file_table(directory),
    }
    if with_rows:
        manifest["shard"] = {"number": data.number}
    # The manifest is written last: a folder without one is never complete.
    (directory / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    return manifest


def new_build_id() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def write_top_manifest(build_dir: Path, meta: dict, shard_manifests: list[dict], articles: dict[str, dict]) -> dict:
    """The manifest of a sharded build: the shards with their checksums and every file's checksum."""
    (build_dir / ARTICLES).write_text(json.dumps(articles, ensure_ascii=False, indent=1), encoding="utf-8")
    files = file_table(build_dir)
    shards = [
        {
            "name": shard_name(i),
            "chunks": m["counts"]["chunks"],
            "manifest_sha256": files[f"{shard_name(i)}/{MANIFEST}"]["sha256"],
        }
        for i, m in enumerate(shard_manifests)
    ]
    counts = {
        **meta.get("counts", {}),
        "articles": len(articles),
        "chunks": sum(m["counts"]["chunks"] for m in shard_manifests),
        "tokens": sum(m["counts"]["tokens"] for m in shard_manifests),
        "sentences": sum(m["counts"]["sentences"] for m in shard_manifests),
    }
    manifest = {**meta, "format": FORMAT, "format_version": SHARDED_FORMAT_VERSION, "counts": counts, "shards": shards, "files": files}
    (build_dir / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    return manifest


# ------------------------------------------------------------------------------ reading


def raw_manifest(index_dir: Path) -> dict | None:
    try:
        return json.loads((Path(index_dir) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_sharded(index_dir: str | Path) -> bool:
    """Whether ``index_dir`` names a sharded build (format version 3)."""
    manifest = raw_manifest(Path(index_dir))
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT and manifest.get("format_version") == SHARDED_FORMAT_VERSION


@dataclass
class ShardedIndex:
    """A loaded, verified sharded build: each shard's index and the corpus row of each of its chunks."""

    path: Path
    manifest: dict
    shards: list[Index]
    rows: list[np.ndarray]
    articles: dict[str, dict]

    def __len__(self) -> int:
        return sum(len(s) for s in self.shards)

    @property
    def build_id(self) -> str:
        return self.manifest["build_id"]


def read_sharded_manifest(build_dir: Path) -> dict:
    manifest = raw_manifest(build_dir)
    if not (isinstance(manifest, dict) and manifest.get("format_version") == SHARDED_FORMAT_VERSION):
        return read_manifest(build_dir)  # raises the usual, precise error
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not shards:
        raise IndexFormatError(f"{build_dir / MANIFEST}: a sharded manifest without shards; rebuild the index with 'rag index'")
    return manifest


def load_shard(build_dir: Path, entry: dict, encoder=None, *, mmap: bool = False, verify: bool = True) -> tuple[Index, np.ndarray]:
    """One shard of a sharded build, checked against the checksum the build's manifest records for it."""
    name = entry.get("name", "")
    folder = build_dir / name
    if not name.startswith("shard-") or "/" in name:
        raise IndexFormatError(f"{build_dir / MANIFEST}: invalid shard name {name!r}; rebuild the index")
    if verify:
        from core.files import sha256_file

        if not (folder / MANIFEST).is_file() or sha256_file(folder / MANIFEST) != entry.get("manifest_sha256"):
            raise IndexFormatError(f"{name}: its manifest is missing or does not match the build's; rebuild the index with 'rag index'")
    index = load_index(folder, encoder, verify=verify, mmap=mmap)
    rows = np.load(folder / ROWS, allow_pickle=False)
    if len(rows) != len(index) or len(index) != entry.get("chunks"):
        raise IndexFormatError(f"{name}: holds {len(index)} chunks and {len(rows)} rows, the manifest says {entry.get('chunks')}; rebuild the index")
    return index, rows


def load_sharded(index_dir: str | Path, encoder=None, *, verify: bool = True, mmap: bool = False) -> ShardedIndex:
    """Open every shard of the build ``index_dir`` names, refusing anything incomplete or incompatible."""
    index_dir = Path(index_dir)
    build_dir = index_dir.resolve()
    manifest = read_sharded_manifest(build_dir)
    if verify:
        verify_files(build_dir, manifest)
    shards, rows = [], []
    for entry in manifest["shards"]:
        # Every file was just checked against the build's manifest; the shards need not check them again.
        index, shard_rows = load_shard(build_dir, entry, encoder, mmap=mmap, verify=False)
        shards.append(index)
        rows.append(shard_rows)
    articles = json.loads((build_dir / ARTICLES).read_text(encoding="utf-8"))
    return ShardedIndex(build_dir, manifest, shards, rows, articles)


def shard_meta(base: dict) -> dict:
    """The manifest fields a shard repeats from its build (no counts, files or shard list)."""
    return {k: v for k, v in base.items() if k not in ("counts", "files", "shards")}


__all__ = [
    "CorpusStats",
    "ShardData",
    "ShardedIndex",
    "SHARDED_FORMAT_VERSION",
    "is_sharded",
    "lexical_with_stats",
    "load_sharded",
    "partition",
    "shard_of",
    "write_shard",
]
