"""Searching and answering over a sharded build, the shards in this process or on other machines.

The ingress side of sharded serving. Shards are reached through a :class:`ShardSet` (the
:class:`rag.shards.server.ShardServer` objects themselves in this process, Ray Serve handles on a
cluster, api/ray_shards.py); every call is fanned out to the shards at once.

* :class:`ShardedView` is what the routes read as "the index": the build's manifest and articles,
  passages by id and their neighbours, and the corpus-wide tables answers need (the mean answer-unit
  vector, the acronyms the documents define), summed over the shards once per build.
* :class:`ShardedRetriever` asks every shard for its candidates and fuses them as one index would
  (rag/shards/search.py).
* :class:`ShardedAnswerService` retrieves the same way, then gathers from the shards what one index
  stores about the retrieved chunks (answer units, their vectors and terms, word vectors, corpus-wide
  document frequencies) into a small index of those chunks alone, and composes with the unchanged
  :class:`rag.answer.service.AnswerService`: an answer from shards is the answer of one index.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.errors import IndexFormatError, QueryError
from core.files import sha256_file
from rag.answer.service import AnswerService, Retrieval
from rag.answer.config import AnswerConfig
from rag.answer.answerability import acronym_table
from rag.text.chunking import Chunk
from rag.search.filters import Filters
from rag.index import Index, TermTable
from rag.index.format import ARTICLES
from rag.index.load import check_model
from rag.index.shards import read_sharded_manifest
from rag.text.lexical import analyze, idf
from rag.answer.question import analyze_question, question_parts
from rag.search.retrieve import SearchResult, check_query, check_settings, encode_query
from rag.shards.search import Hit, merge
from rag.shards.server import ShardEvidence, ShardServer, ShardSummary
from rag.text.words import content_words, plain_words


class ShardSet(Protocol):
    """The shards of one sharded build, however they are reached."""

    def __len__(self) -> int: ...

    def map(self, method: str, args: dict[int, tuple]) -> dict[int, Any]:
        """``method(*args[i])`` on shard ``i`` for every ``i`` in ``args``, run at once; the results by shard."""


class LocalShards:
    """Shards in this process: a :class:`ShardServer` each, memory-mapped."""

    def __init__(self, servers: Sequence[ShardServer]):
        self.servers = list(servers)

    @classmethod
    def of(cls, shards: int) -> LocalShards:
        return cls([ShardServer(i) for i in range(shards)])

    def __len__(self) -> int:
        return len(self.servers)

    def map(self, method: str, args: dict[int, tuple]) -> dict[int, Any]:
        return {i: getattr(self.servers[i], method)(*a) for i, a in args.items()}


def every(shards: ShardSet, method: str, *args) -> list:
    """``method(*args)`` on every shard, the results in shard order."""
    got = shards.map(method, {i: args for i in range(len(shards))})
    return [got[i] for i in range(len(shards))]


class ShardedView:
    """A sharded build as the routes and the answer service see an index (its chunks stay on the shards)."""

    def __init__(self, build_dir: str | Path, shards: ShardSet, encoder=None):
        build_dir = Path(build_dir).resolve()
        manifest = read_sharded_manifest(build_dir)
        check_model(manifest, encoder)
        entries = manifest["shards"]
        if len(entries) != len(shards):
            raise IndexFormatError(
                f"{build_dir.name}: the build has {len(entries)} shards but {len(shards)} shard servers run; "
                "serve it with as many shards (restart the service)"
            )
        expected = (manifest.get("files") or {}).get(ARTICLES, {}).get("sha256")
        if not (build_dir / ARTICLES).is_file() or sha256_file(build_dir / ARTICLES) != expected:
            raise IndexFormatError(f"{ARTICLES}: missing or does not match the build's manifest; rebuild the index with 'rag index'")
        self.path, self.manifest, self.shards = build_dir, manifest, shards
        self.build = str(build_dir)
        self.articles: dict[str, dict] = json.loads((build_dir / ARTICLES).read_text(encoding="utf-8"))
        for entry, opened in zip(entries, every(shards, "open", self.build)):
            if opened["chunks"] != entry.get("chunks") or opened["build_id"] != manifest["build_id"]:
                raise IndexFormatError(f"{entry.get('name')}: does not match the build's manifest; rebuild the index")
        self._summarise(every(shards, "summary", self.build))

    def _summarise(self, parts: list[ShardSummary]) -> None:
        self.shard_sizes = [p.chunks for p in parts]
        units = sum(p.units for p in parts)
        sums = [p.unit_sum for p in parts if p.unit_sum is not None]
        self.unit_centroid = (np.sum(sums, axis=0) / units).astype(np.float32) if units and sums else None
        # Definitions apply in corpus order, as one index reads them (a later one wins).
        definitions = sorted(d for p in parts for d in p.acronyms)
        self.acronyms = acronym_table((long, short) for _, _, long, short in definitions)
        self._chunk_counts = dict(sum((Counter(p.article_chunks) for p in parts), Counter()))
        self._languages = sorted({lang for p in parts for lang in p.languages})

    @property
    def build_id(self) -> str:
        return self.manifest["build_id"]

    def __len__(self) -> int:
        return sum(self.shard_sizes)

    def chunk_counts(self) -> dict[str, int]:
        return dict(self._chunk_counts)

    def languages(self) -> list[str]:
        return list(self._languages)

    def _located(self, passage_id: str) -> tuple[Chunk, int] | None:
        from rag.index.shards import shard_of

        shard = shard_of(passage_id, len(self.shards))
        return self.shards.map("chunk_by_id", {shard: (self.build, passage_id)})[shard]

    def chunk(self, passage_id: str) -> Chunk | None:
        found = self._located(passage_id)
        return None if found is None else found[0]

    def neighbours(self, passage_id: str) -> tuple[Chunk | None, Chunk | None]:
        """The chunks before and after this one in the same article (on whichever shards they are)."""
        found = self._located(passage_id)
        if found is None:
            return None, None
        chunk, row = found

        def at(r: int) -> Chunk | None:
            if not 0 <= r < len(self):
                return None
            got = next((c for c in every(self.shards, "chunk_at", self.build, r) if c is not None), None)
            return got if got is not None and got.article == chunk.article else None

        return at(row - 1), at(row + 1)

    def rows_matching(self, articles=None, categories=None, tags=None, languages=None) -> np.ndarray:
        rows = every(self.shards, "rows_matching", self.build, articles, categories, tags, languages)
        return np.sort(np.concatenate(rows)) if rows else np.zeros(0, dtype=np.int64)


class ShardedRetriever:
    """Searches a sharded build with the local retriever's settings and results."""

    def __init__(self, index: ShardedView, encoder, *, rrf_k: int = 60, candidates: int = 100, fusion: str = "convex", alpha: float = 0.5):
        check_settings(rrf_k, candidates, fusion, alpha)
        self.index = index
        self.encoder = encoder
        self.rrf_k, self.candidates, self.fusion, self.alpha = rrf_k, candidates, fusion, alpha

    def encode(self, query: str) -> np.ndarray:
        return encode_query(self.encoder, query)

    def hits(self, query: str, k: int, mode: str, filters: Filters | None, query_vector=None) -> list[Hit]:
        """The merged top ``k``: every shard's candidates, fused as one index fuses them."""
        mode = check_query(query, k, mode)
        qvec = query_vector
        if qvec is None and mode in ("hybrid", "dense"):
            qvec = self.encode(query)  # refused without an encoder
        view = self.index
        # The pool is sized as one index sizes it: by all rows, or all rows that pass the filters.
        sizes = every(view.shards, "size", view.build, filters) if filters else view.shard_sizes
        total = sum(sizes)
        if not total:
            return []
        pool = min(max(self.candidates, k), total)
        asked = {i: (view.build, query, qvec, pool, mode, filters) for i, n in enumerate(sizes) if n}
        parts = view.shards.map("candidates", asked)
        with_dense = mode != "bm25" or (self.encoder is not None and query_vector is not None)
        ordered = [parts[i] for i in sorted(parts)]
        return merge(ordered, k, mode, pool, fusion=self.fusion, alpha=self.alpha, rrf_k=self.rrf_k, with_dense=with_dense)

    def search(self, query: str, k: int = 5, mode: str = "hybrid", filters: Filters | None = None, query_vector=None) -> list[SearchResult]:
        hits = self.hits(query, k, mode, filters, query_vector)
        by_shard: dict[int, list[Hit]] = {}
        for h in hits:
            by_shard.setdefault(h.shard, []).append(h)
        view = self.index
        chunks = view.shards.map("chunks", {s: (view.build, [h.local for h in hs]) for s, hs in by_shard.items()})
        found = {(s, h.local): c for s, hs in by_shard.items() for h, c in zip(hs, chunks[s])}
        return [_result(h, found[(h.shard, h.local)]) for h in hits]


def _result(h: Hit, chunk: Chunk) -> SearchResult:
    return SearchResult(chunk, h.rank, h.score, h.dense_score, h.bm25_score, h.dense_rank, h.bm25_rank)


# ---------------------------------------------------------------------------------- answering

_WORD_RE = re.compile(r"[\w'’-]+")


def asked_terms_and_words(question: str, query: str) -> tuple[list[str], list[str]]:
    """The analysed terms and the words the answer service may look up for this question: the
    question, its search query and its parts, whole and word by word (a superset does no harm)."""
    texts = list(dict.fromkeys([question, query, *question_parts(query)]))
    terms: dict[str, None] = {}
    words: dict[str, None] = {}
    for text in texts:
        terms.update(dict.fromkeys(analyze(text)))
        for word in plain_words(text):
            terms.update(dict.fromkeys(analyze(word)))
        words.update(dict.fromkeys(content_words(text)))
        words.update(dict.fromkeys(w.casefold() for w in _WORD_RE.findall(text)))
        analysis = analyze_question(text)
        for focus in (*analysis.focus, *analysis.words):
            terms.update(dict.fromkeys(focus.terms))
            words[focus.text.casefold()] = None
    return list(terms), list(words)


class _EvidenceLexical:
    """The corpus' BM25 vocabulary and document frequencies, as far as one question reads them."""

    def __init__(self, vocabulary: dict[str, int], df: dict[str, int], n_docs: int):
        self._vocabulary, self._df, self.n_docs = vocabulary, df, n_docs

    def vocabulary(self) -> dict[str, int]:
        return self._vocabulary

    def idf(self, terms: list[str]) -> np.ndarray:
        return idf(np.array([self._df.get(t, 0) for t in terms], dtype=np.float64), self.n_docs)


class _PassageVectors:
    def __init__(self, vectors: np.ndarray):
        self._vectors = vectors

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        return self._vectors[rows]


def evidence_index(view: ShardedView, hits: list[Hit], parts: dict[int, ShardEvidence]) -> tuple[Index, list[Chunk]]:
    """An index of the retrieved chunks alone that reads as the whole corpus for one question, and the chunks."""
    next_of = {s: iter(p.chunks) for s, p in parts.items()}
    items = [next(next_of[h.shard]) for h in hits]
    df: Counter[str] = Counter()
    words: dict[str, np.ndarray] = {}
    for p in parts.values():
        df.update(p.df)
        for w, v in p.words.items():
            words.setdefault(w, v)
    vocabulary: dict[str, int] = {}
    for term in [*df, *(t for it in items for t in (it.chunk_terms or ())), *(t for it in items for u in (it.unit_terms or ()) for t in u)]:
        vocabulary.setdefault(term, len(vocabulary))
    spans = [(row, int(s), int(e)) for row, it in enumerate(items) for s, e in it.unit_spans]
    dim = len(view.unit_centroid) if view.unit_centroid is not None else (len(items[0].passage_vector) if items else 0)
    unit_vectors = [it.unit_vectors for it in items if it.unit_vectors is not None and len(it.unit_vectors)]
    stored_terms = all(it.unit_terms is not None for it in items)
    word_list = list(words)
    index = Index(
        path=view.path,
        manifest=view.manifest,
        chunks=[it.chunk for it in items],
        articles=view.articles,
        vectors=_PassageVectors(np.stack([it.passage_vector for it in items]) if items else np.zeros((0, dim), np.float32)),
        lexical=_EvidenceLexical(vocabulary, dict(df), len(view)),
        unit_spans=np.asarray(spans, dtype=np.int32).reshape(-1, 3),
        unit_vectors=np.concatenate(unit_vectors) if unit_vectors else np.zeros((0, dim), np.float32),
        unit_terms=TermTable.of([u for it in items for u in it.unit_terms], vocabulary) if stored_terms else None,
        chunk_terms=TermTable.of([it.chunk_terms for it in items], vocabulary) if stored_terms else None,
        words={w: i for i, w in enumerate(word_list)},
        word_vectors=np.stack([words[w] for w in word_list]) if word_list else np.zeros((0, dim), np.float16),
    )
    # The corpus-wide tables the answer service would compute from every chunk of one index.
    index._unit_centroid = view.unit_centroid
    index._acronyms = view.acronyms
    return index, index.chunks


class _EvidenceRetriever:
    """What :class:`AnswerService` reads of a retriever when it composes: the index and the encoder."""

    def __init__(self, index: Index, encoder):
        self.index, self.encoder = index, encoder


class ShardedAnswerService(AnswerService):
    """:class:`AnswerService` over a sharded build: the answer one index of the same corpus gives."""

    retriever: ShardedRetriever

    def _search(self, question: str, query: str, qvec, top_k: int, mode, filters: Filters | None) -> tuple[list[SearchResult], Index]:
        """The passages from every shard, and an index of their evidence to compose from."""
        view = self.retriever.index
        hits = self.retriever.hits(query, top_k, mode, filters, qvec)
        terms, words = asked_terms_and_words(question, query)
        by_shard: dict[int, list[int]] = {i: [] for i in range(len(view.shards))}
        for h in hits:
            by_shard[h.shard].append(h.local)
        parts = view.shards.map("evidence", {s: (view.build, local, terms, words) for s, local in by_shard.items()})
        index, chunks = evidence_index(view, hits, parts)
        return [_result(h, c) for h, c in zip(hits, chunks)], index

    def finish(self, retrieval: Retrieval) -> Any:
        composer = AnswerService(_EvidenceRetriever(retrieval.evidence, self.retriever.encoder), self.config, self.generator, self.reader)
        return composer.finish(retrieval)

    def answerability_features(self, question: str, *, top_k: int = 5, mode="hybrid"):
        raise QueryError("fitting answerability reads one index; build the index with one shard (--shards 1) to fit")


def open_sharded_retriever(settings, encoder, shards: ShardSet | None = None) -> ShardedRetriever:
    """The retriever over the sharded build the index link names; its shards in this process unless given."""
    build_dir = Path(settings.index_dir).resolve()
    if shards is None:
        shards = LocalShards.of(len(read_sharded_manifest(build_dir)["shards"]))
    view = ShardedView(build_dir, shards, encoder)
    return ShardedRetriever(view, encoder, rrf_k=settings.rrf_k, candidates=settings.candidates, fusion=settings.fusion, alpha=settings.alpha)


def open_sharded_service(settings, encoder, config: AnswerConfig, shards: ShardSet | None = None, reader=None) -> ShardedAnswerService:
    """The answer service over the sharded build the index link names; its shards in this process unless given."""
    return ShardedAnswerService(open_sharded_retriever(settings, encoder, shards), config, reader=reader)
