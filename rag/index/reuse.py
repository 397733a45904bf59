"""Reuse of the previous build: chunks of unchanged articles, their answer units with vectors and terms, the word table.

A rebuild reads the build the index link names and takes from it whatever the same model, chunker and
analysis code would make again, so that only new or changed articles cost model calls.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from corpus.models import Article
from core.errors import RagError
from embeddings.base import Encoder
from embeddings.cache import embed_cached
from rag.text.chunking import Chunk
from rag.index.format import (
    ARTICLES,
    BM25_DIR,
    CHUNKS,
    FORMAT_VERSION,
    MANIFEST,
    UNIT_SPANS,
    UNIT_TERM_OFFSETS,
    UNIT_TERMS,
    UNIT_VECTORS,
    WORD_VECTORS,
    WORDS,
    TermTable,
)
from rag.text.lexical import BM25Params, LexicalIndex, analyze
from rag.text.units import answer_units


def analysis_fingerprint() -> str:
    """Identifies the code that splits answer units and analyses terms (rag/text/units.py, rag/text/lexical.py):
    stored units are reused by the next build only while that code is unchanged."""
    import rag.text.lexical
    import rag.text.units

    digest = hashlib.sha256()
    for module in (rag.text.units, rag.text.lexical):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def _read_manifest(index_dir: Path) -> dict:
    return json.loads((index_dir / MANIFEST).read_text(encoding="utf-8"))


def previous_chunks(index_dir: Path, chunker: dict, model_key: str) -> tuple[dict[str, str], dict[str, list[Chunk]]]:
    """Article fingerprints and chunks of the current build, when its chunking is reusable."""
    try:
        manifest = _read_manifest(index_dir)
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


def article_records(index_dir: Path, articles: list[Article], prints: dict[str, str], old_prints: dict[str, str]) -> dict:
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
        manifest = _read_manifest(index_dir)
        if (manifest.get("model") or {}).get("cache_key") != model_key or manifest.get("bm25") != asdict(bm25):
            return None
        if (manifest.get("units") or {}).get("analysis") != analysis_fingerprint():
            return None
        with (index_dir / CHUNKS).open(encoding="utf-8") as handle:
            ids = [json.loads(line)["id"] for line in handle if line.strip()]
        spans, vectors, term_ids, offsets = (
            np.load(index_dir / name, mmap_mode="r", allow_pickle=False)
            for name in (UNIT_SPANS, UNIT_VECTORS, UNIT_TERMS, UNIT_TERM_OFFSETS)
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
        manifest = _read_manifest(index_dir)
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


def _unit_spans(chunks: list[Chunk], previous: PreviousUnits | None) -> tuple[np.ndarray, np.ndarray]:
    """(chunk row, start, end) of every unit, and the previous build's row of each (-1 for a unit split anew)."""
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
    return np.array(spans, dtype=np.int32).reshape(-1, 3), np.array(old, dtype=np.int64)


def build_units(chunks: list[Chunk], previous: PreviousUnits | None, encoder: Encoder, cache, progress) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Answer units of ``chunks`` with their vectors: reused from ``previous`` for unchanged chunks, made for the rest.

    Returns (spans, vectors, number embedded, previous unit row of each unit or -1).
    """
    span_array, old_array = _unit_spans(chunks, previous)
    vectors = np.zeros((len(span_array), encoder.dim), dtype=np.float32)
    reused = old_array >= 0
    if reused.any():
        vectors[reused] = previous.vectors[old_array[reused]]
    fresh = np.flatnonzero(~reused)
    embedded = 0
    if len(fresh):
        texts = [chunks[r].text[s:e] for r, s, e in span_array[fresh]]
        vectors[fresh], embedded = embed_cached(encoder, texts, cache, progress=progress, desc="sentences")
    return span_array, vectors, embedded, old_array


def _translated_terms(reused: np.ndarray, old: np.ndarray, previous: PreviousUnits, vocabulary: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Term ids of the reused units in the new vocabulary, row by row sorted, and how many each row keeps.

    All reused rows at once: gather their old ids, translate them, sort within each row.
    """
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
    return values, np.bincount(row, minlength=len(reused))


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
        values, lengths[reused] = _translated_terms(reused, old, previous, vocabulary)
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    ids = np.empty(int(offsets[-1]), dtype=np.int32)
    if len(reused):
        kept = lengths[reused]
        ids[np.repeat(offsets[reused] - np.concatenate(([0], np.cumsum(kept)[:-1])), kept) + np.arange(kept.sum())] = values
    for i, row_ids in fresh.items():
        ids[offsets[i] : offsets[i + 1]] = row_ids
    return TermTable(ids, offsets)
