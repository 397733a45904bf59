"""Candidate answer units of the retrieved passages, scored against the question, and the support for
answering at all.

Vectorised over all candidate units: the work per question is a handful of numpy operations on vectors
and term ids stored at index time, not a Python loop over text. A unit's score mixes its similarity to
the question (read in the context of its passage, after removing the corpus' shared direction) with the
IDF-weighted share of the question's terms it contains.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from rag.answer.config import AnswerConfig
from rag.text.lexical import analyze
from rag.search.retrieve import SearchResult


@dataclass(frozen=True)
class Candidate:
    """One answer unit of a retrieved passage, with what it scored."""

    row: int  # index into the results list
    start: int
    end: int
    score: float
    cosine: float
    coverage: float
    vector: np.ndarray | None
    passage_cosine: float = 0.0
    unit: int = -1  # row of the index's stored units, when stored


@dataclass(frozen=True)
class _Units:
    """The answer units of the retrieved passages, flattened: unit ``n`` is ``spans[n]`` of result ``owner[n]``."""

    spans: list[tuple[int, int, int]]  # (result, start, end)
    stored: list[int]  # row of each unit among the index's stored units
    vectors: list[np.ndarray | None]
    rows: list[int]  # index row of each result
    owner: np.ndarray


def _term_hits(table, rows: list[int], term_ids: np.ndarray) -> np.ndarray:
    """``hits[n, j]``: whether stored row ``rows[n]`` of ``table`` (a rag.index.TermTable) holds term id ``term_ids[j]``."""
    hits = np.zeros((len(rows), len(term_ids)), dtype=bool)
    if not len(rows) or not len(term_ids):
        return hits
    pieces = [table.row(r) for r in rows]
    ids = np.concatenate(pieces)
    owner = np.repeat(np.arange(len(rows)), [len(p) for p in pieces])
    for j, term in enumerate(term_ids):
        if term >= 0:
            hits[owner[ids == term], j] = True
    return hits


def _contains(term_sets: Iterable[set[str]], terms: list[str], rows: int) -> np.ndarray:
    """``hits[n, j]``: whether the ``n``-th set holds ``terms[j]`` (``rows`` sets; the shape holds for no terms)."""
    return np.array([[t in present for t in terms] for present in term_sets], dtype=bool).reshape(rows, len(terms))


def _units(index, results: list[SearchResult]) -> _Units:
    spans: list[tuple[int, int, int]] = []
    stored: list[int] = []
    vectors: list[np.ndarray | None] = []
    rows = [index.row_of[r.chunk.id] for r in results]
    for i, row in enumerate(rows):
        unit_spans, unit_vectors = index.units_of(row)
        first = int(index.unit_first[row]) if index.unit_first is not None else 0
        for j, (s, e) in enumerate(unit_spans):
            spans.append((i, int(s), int(e)))
            stored.append(first + j)
            vectors.append(None if unit_vectors is None else unit_vectors[j])
    owner = np.fromiter((i for i, _, _ in spans), dtype=np.int64, count=len(spans))
    return _Units(spans, stored, vectors, rows, owner)


def _coverage(index, terms: list[str], units: _Units, results: list[SearchResult]) -> tuple[np.ndarray, np.ndarray]:
    """IDF-weighted share of the question's terms in each unit (a unit also "contains" its heading) and in
    each passage."""
    weights = index.lexical.idf(terms) if terms else np.zeros(0)
    total = float(weights.sum()) or 1.0
    headings = [set(analyze(r.chunk.section[-1])) if len(r.chunk.section) > 1 else set() for r in results]
    heading_hits = _contains(headings, terms, len(results))
    if index.unit_terms is not None and index.chunk_terms is not None:
        vocabulary = index.lexical.vocabulary()
        term_ids = np.array([vocabulary.get(t, -1) for t in terms], dtype=np.int64)
        unit_hits = _term_hits(index.unit_terms, units.stored, term_ids)
        passage_hits = _term_hits(index.chunk_terms, units.rows, term_ids)
    else:  # an index built before term ids were stored: analyse the text now
        spans = units.spans
        unit_hits = _contains((set(analyze(results[i].chunk.text[s:e])) for i, s, e in spans), terms, len(spans))
        passage_hits = _contains((set(analyze(r.chunk.text + " " + " ".join(r.chunk.section))) for r in results), terms, len(results))
    if not terms:
        return np.zeros(len(units.spans)), np.zeros(len(results))
    return ((unit_hits | heading_hits[units.owner]) @ weights) / total, (passage_hits @ weights) / total


def _unit_vectors(units: _Units, results: list[SearchResult], encoder) -> np.ndarray:
    if any(v is None for v in units.vectors):
        # an index built without unit vectors: embed the candidates now
        texts = [results[i].chunk.text[s:e] for i, s, e in units.spans]
        return np.asarray(encoder.embed_batch(texts), dtype=np.float32)
    return np.asarray(np.stack(units.vectors), dtype=np.float32)


def _contextual_similarity(config: AnswerConfig, index, qvec: np.ndarray, unit_vectors, passage_vectors, owner) -> np.ndarray:
    """Similarity of each unit, read in the context of its passage, to the question."""
    # A unit read alone loses its subject ("This development ... NASA"); mixing in
    # its passage's vector lets the passage's context speak for it.
    mixed = unit_vectors + config.context_weight * passage_vectors[owner]
    query = qvec
    centroid = index.unit_centroid
    if config.centering and centroid is not None:
        # Every passage of a corpus shares its topic, so generic units ("Space diplomacy
        # represents a rapidly evolving dimension ...") resemble every question about it.
        # Comparing after removing the corpus' mean direction lets the specific content count.
        shift = config.centering * centroid
        mixed = mixed / np.maximum(np.linalg.norm(mixed, axis=1, keepdims=True), 1e-12) - shift
        query = qvec - shift
        query = query / (np.linalg.norm(query) or 1.0)
    norms = np.linalg.norm(mixed, axis=1)
    return (mixed @ query) / np.where(norms == 0, 1.0, norms)


def score_units(
    index, encoder, config: AnswerConfig, query: str, qvec: np.ndarray | None, results: list[SearchResult]
) -> tuple[list[Candidate], float]:
    """Scored answer units of the retrieved passages, and the support for answering at all."""
    terms = list(dict.fromkeys(analyze(query)))
    units = _units(index, results)
    if not units.spans:
        return [], 0.0
    covers, passage_cover = _coverage(index, terms, units, results)
    best_cover = float(max(passage_cover, default=0.0))
    if qvec is None:
        out = [Candidate(i, s, e, float(c), 0.0, float(c), None, 0.0, units.stored[n]) for n, ((i, s, e), c) in enumerate(zip(units.spans, covers))]
        return out, best_cover

    unit_vectors = _unit_vectors(units, results, encoder)
    qvec = np.asarray(qvec, dtype=np.float32)
    passage_vectors = index.vectors.vectors(np.array(units.rows, dtype=np.int64))
    cosines = unit_vectors @ qvec
    contextual = _contextual_similarity(config, index, qvec, unit_vectors, passage_vectors, units.owner)
    scores = config.dense_weight * contextual + config.lexical_weight * covers
    passage_cosines = passage_vectors @ qvec
    out = [
        Candidate(i, s, e, float(score), float(cos), float(cover), unit_vectors[n], float(passage_cosines[i]), units.stored[n])
        for n, ((i, s, e), score, cos, cover) in enumerate(zip(units.spans, scores, cosines, covers))
    ]
    best_cosine = max(0.0, float(cosines.max()))
    best_passage = float(max(passage_vectors @ qvec, default=0.0))
    support = 0.5 * best_cosine + 0.2 * best_passage + 0.3 * best_cover
    return out, support
