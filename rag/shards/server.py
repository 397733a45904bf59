"""One shard of a sharded build, served: what an ingress asks of a shard to search and to answer.

A :class:`ShardServer` holds shard ``number`` of one or two builds (memory-mapped, verified against
the build's manifest) and answers in plain, picklable values, so the same object serves in this
process (``rag serve`` and ``rag ask`` on a sharded build) and behind a Ray Serve deployment
(api/ray_shards.py). Every call names the build it is about; a build the server does not hold yet
is opened on first use, so a replica started after a reload, or asked before the reload reached
it, still answers for the build the ingress serves. At most :data:`KEEP_BUILDS` builds are held:
the one being switched to and the one requests may still be running on.

What it returns for answering (:meth:`ShardServer.evidence`) is what the answer service reads of
each retrieved chunk in one index: its answer units with their vectors and terms, its passage
vector and terms, and the vectors of its words, plus the shard's part of the corpus-wide counts
(document frequencies of the question's terms, the question's words it holds). An ingress adds
these up over shards (rag/shards/service.py) and composes exactly as one index would.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import IndexFormatError
from rag.answer.answerability import acronym_definitions
from rag.text.chunking import Chunk
from rag.faults import checkpoint
from rag.search.filters import Filters
from rag.index import Index
from rag.index.shards import load_shard, read_sharded_manifest
from rag.text.lexical import term_names
from rag.text.words import content_words
from rag.shards.search import Candidates, shard_candidates

#: Builds a shard replica holds at once: the one served and the one a reload stages or just left.
KEEP_BUILDS = 2


@dataclass(frozen=True)
class ShardSummary:
    """What a shard adds to the corpus-wide tables an ingress keeps for a build."""

    shard: int
    chunks: int
    unit_sum: np.ndarray | None  # float64 sum of the shard's answer-unit vectors
    units: int
    acronyms: list[tuple[int, int, tuple[str, ...], tuple[str, ...]]]  # (corpus row, order, long, short)
    article_chunks: dict[str, int]
    languages: list[str]


@dataclass(frozen=True)
class ChunkEvidence:
    """What the answer service reads of one retrieved chunk, as one index stores it."""

    chunk: Chunk
    passage_vector: np.ndarray  # (dim,) float32
    unit_spans: np.ndarray  # (units, 2) int32: start, end within the chunk text
    unit_vectors: np.ndarray | None  # (units, dim) float32
    unit_terms: list[tuple[str, ...]] | None  # analysed terms of each unit
    chunk_terms: tuple[str, ...] | None  # analysed terms of the passage


@dataclass(frozen=True)
class ShardEvidence:
    """A shard's answer to :meth:`ShardServer.evidence`."""

    chunks: list[ChunkEvidence]
    df: dict[str, int]  # documents of this shard holding each asked term (only terms it holds)
    words: dict[str, np.ndarray] = field(default_factory=dict)  # word -> float16 vector, for the words it holds


@dataclass
class _Build:
    index: Index
    rows: np.ndarray  # corpus row of each chunk
    order: np.ndarray  # argsort of rows
    term_names: list[str]
    summary: ShardSummary | None = None  # made on the first ask (every app replica asks once per build)


class ShardServer:
    """Shard ``number`` of the sharded builds it is asked about, opened on first use."""

    def __init__(self, number: int, encoder=None, *, mmap: bool = True):
        self.number, self.encoder, self.mmap = number, encoder, mmap
        self._builds: OrderedDict[str, _Build] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ builds

    def open(self, build: str | Path) -> dict:
        """Open (and verify) this shard of ``build``, keeping it beside the one being served."""
        got = self._get(build)
        return {"shard": self.number, "build_id": got.index.manifest["build_id"], "chunks": len(got.index)}

    def drop(self, build: str | Path) -> None:
        """Forget ``build`` (a reload that was called off)."""
        with self._lock:
            self._builds.pop(str(Path(build)), None)

    def held(self) -> list[str]:
        return list(self._builds)

    def _get(self, build: str | Path) -> _Build:
        key = str(Path(build))
        with self._lock:
            got = self._builds.get(key)
            if got is None:
                got = self._load(Path(key))
                self._builds[key] = got
                while len(self._builds) > KEEP_BUILDS:
                    self._builds.popitem(last=False)
            else:
                self._builds.move_to_end(key)
            return got

    def _load(self, build_dir: Path) -> _Build:
        manifest = read_sharded_manifest(build_dir)
        entries = manifest["shards"]
        if self.number >= len(entries):
            raise IndexFormatError(f"{build_dir.name}: has {len(entries)} shards, no shard {self.number}; serve it with as many shards")
        index, rows = load_shard(build_dir, entries[self.number], self.encoder, mmap=self.mmap, verify=True)
        rows = np.asarray(rows, dtype=np.int64)
        return _Build(index, rows, np.argsort(rows, kind="stable"), term_names(index.lexical.vocabulary()))

    # ------------------------------------------------------------------ search

    def size(self, build: str, filters: Filters | None = None) -> int:
        """Chunks of this shard that pass ``filters`` (all of them without)."""
        index = self._get(build).index
        if not filters:
            return len(index)
        return len(index.rows_matching(filters.articles, filters.categories, filters.tags, filters.languages))

    def candidates(self, build: str, query: str, qvec, pool: int, mode: str, filters: Filters | None = None) -> Candidates:
        got = self._get(build)
        return shard_candidates(got.index, got.rows, self.number, query, qvec, pool, mode, filters)

    def rows_matching(self, build: str, articles=None, categories=None, tags=None, languages=None) -> np.ndarray:
        """Corpus rows of this shard's chunks that match (as :meth:`rag.index.Index.rows_matching`)."""
        got = self._get(build)
        return got.rows[got.index.rows_matching(articles, categories, tags, languages)]

    # ------------------------------------------------------------------ passages

    def chunk_by_id(self, build: str, chunk_id: str) -> tuple[Chunk, int] | None:
        got = self._get(build)
        local = got.index.row_of.get(chunk_id)
        return None if local is None else (got.index.chunks[local], int(got.rows[local]))

    def chunk_at(self, build: str, row: int) -> Chunk | None:
        """The chunk at corpus row ``row``, if this shard holds it."""
        got = self._get(build)
        at = int(np.searchsorted(got.rows, row, sorter=got.order))
        if at < len(got.rows) and int(got.rows[got.order[at]]) == row:
            return got.index.chunks[int(got.order[at])]
        return None

    def chunks(self, build: str, local: list[int]) -> list[Chunk]:
        index = self._get(build).index
        return [index.chunks[i] for i in local]

    # ------------------------------------------------------------------ answering

    def summary(self, build: str) -> ShardSummary:
        """This shard's part of the corpus-wide tables (answer-unit mean, acronyms, documents)."""
        got = self._get(build)
        if got.summary is None:
            got.summary = self._summarise(got)
        return got.summary

    def _summarise(self, got: _Build) -> ShardSummary:
        index = got.index
        unit_sum = None
        if index.unit_vectors is not None and len(index.unit_vectors):
            unit_sum = np.asarray(index.unit_vectors, dtype=np.float64).sum(axis=0)
        units = 0 if index.unit_vectors is None else len(index.unit_vectors)
        acronyms = [
            (int(got.rows[i]), k, long, short)
            for i, chunk in enumerate(index.chunks)
            for k, (long, short) in enumerate(acronym_definitions(chunk.text))
        ]
        return ShardSummary(
            shard=self.number,
            chunks=len(index),
            unit_sum=unit_sum,
            units=units,
            acronyms=acronyms,
            article_chunks=index.chunk_counts(),
            languages=index.languages(),
        )

    def evidence(self, build: str, local: list[int], terms: list[str], words: list[str]) -> ShardEvidence:
        """The answer units of chunks ``local`` and this shard's part of the counts for ``terms`` and ``words``."""
        got = self._get(build)
        checkpoint("shard_evidence")
        index = got.index
        chunks = [self._chunk_evidence(got, int(i)) for i in local]
        df = self._df(index, terms)
        wanted = set(words)
        for item in chunks:
            c = item.chunk
            wanted.update(content_words(c.text + " " + " ".join(c.section)))
        table = index.words or {}
        found = {w: table[w] for w in wanted if w in table}
        vectors = {}
        if found and index.word_vectors is not None:
            rows = np.fromiter(found.values(), dtype=np.int64, count=len(found))
            block = np.asarray(index.word_vectors[rows])
            vectors = {w: block[n] for n, w in enumerate(found)}
        return ShardEvidence(chunks, df, vectors)

    @staticmethod
    def _df(index: Index, terms: list[str]) -> dict[str, int]:
        if not terms:
            return {}
        counts = index.lexical.document_frequency(terms)
        return {t: int(n) for t, n in zip(terms, counts) if n}

    def _chunk_evidence(self, got: _Build, local: int) -> ChunkEvidence:
        index = got.index
        spans, vectors = index.units_of(local)
        unit_terms = chunk_terms = None
        if index.unit_terms is not None and index.chunk_terms is not None and index.unit_first is not None:
            first = int(index.unit_first[local])
            names = got.term_names
            unit_terms = [tuple(names[int(t)] for t in index.unit_terms.row(first + j)) for j in range(len(spans))]
            chunk_terms = tuple(names[int(t)] for t in index.chunk_terms.row(local))
        return ChunkEvidence(
            chunk=index.chunks[local],
            passage_vector=np.asarray(index.vectors.vectors(np.array([local], dtype=np.int64))[0], dtype=np.float32),
            unit_spans=np.asarray(spans, dtype=np.int32),
            unit_vectors=None if vectors is None else np.asarray(vectors, dtype=np.float32),
            unit_terms=unit_terms,
            chunk_terms=chunk_terms,
        )
