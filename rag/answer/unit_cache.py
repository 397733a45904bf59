"""What the answer steps read of each answer unit (its text, terms, words, whether it lists a source),
computed once per unit and kept with the loaded index, so that a question costs lookups.

The parts depend on nothing but the unit and its passage, so they are shared by every question asked of
one loaded index; the cache is bounded and starts over when full.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

from rag.answer.answerability import Evidence, defined_acronyms
from rag.answer.candidates import Candidate
from rag.text.lexical import analyze, term_names
from rag.text.words import content_words
from rag.search.retrieve import SearchResult

UNIT_CACHE_SIZE = 200_000  # answer units whose analysed parts are kept with a loaded index

# Sections that list sources rather than state facts: searchable, never quoted as an answer.
_REFERENCE_SECTION_RE = re.compile(
    r"\b(?:references?|bibliograph\w*|sources|further\s+reading|external\s+links|see\s+also|works\s+cited|literature|notes)\b",
    re.I,
)
# A bibliography entry: 'Author, First. "Title." Venue, 2023.'
_CITATION_ENTRY_RE = re.compile(r"^\s*(?:\d{1,3}[.)]\s+)?[^\s\"“]+,\s[^\"“]{1,80}[.\"“].*\b(?:1[5-9]|20)\d{2}\b[^\w]*$", re.S)


# What a question about a listed work asks its entry for: who wrote it, when, where it appeared.
_LISTING_QUESTION_RE = re.compile(
    r"\b(?:who|authors?|authored|wrote|written|writers?|editors?|edited|when|year|published|publish\w*|journal|venue|appeared|where)\b", re.I
)
_QUOTED_TITLE_RE = re.compile(r"[\"“]([^\"”]{8,})[\"”]")


def _title_words(text: str) -> set[str]:
    """Content words without the quotation marks a title is often typed in ('Exploring the Final Frontier')."""
    return {w.strip("'’‘") for w in content_words(text)} - {""}


def listed_work_named(question: str, entry: str) -> tuple[float, int]:
    """How fully ``question`` names the work a bibliography ``entry`` lists, when it asks who wrote, when or
    where: the share of a title's words it holds and how many (the quoted title or its main title before a
    colon, else the entry's best-named part between full stops); (0.0, 0) when it asks something else or
    names too few of the words."""
    if not _LISTING_QUESTION_RE.search(question):
        return 0.0, 0
    quoted = _QUOTED_TITLE_RE.search(entry)
    asked = _title_words(question)
    best = (0.0, 0)
    whole = quoted.group(1) if quoted else None
    for part in (whole, whole.split(":")[0]) if whole else re.split(r"\.\s+", entry):
        title = _title_words(part)
        named = len(title & asked)
        # a whole quoted title of two words counts; a part of an entry needs three ("Space Diplomacy: ..." is
        # not named by every question about space diplomacy)
        if named >= (2 if part is whole else 3):
            best = max(best, (named / len(title), named))
    return best


def is_reference(chunk, text: str) -> bool:
    """Whether a unit lists a source (a references section, or a bibliography-shaped entry)."""
    if any(_REFERENCE_SECTION_RE.search(h) for h in chunk.section[1:]):
        return True
    return bool(_CITATION_ENTRY_RE.match(text))


class UnitParts(NamedTuple):
    """The kept parts of one answer unit."""

    text: str
    terms: frozenset[str]  # of the unit and its section heading
    passage_terms: frozenset[str]  # of the passage, its breadcrumb and its title
    words: tuple[str, ...]  # content words of the unit and its heading
    passage_text: str  # title and text of the passage
    word_rows: np.ndarray | None  # rows of ``words`` in the index's word table
    reference: bool  # the unit lists a source


def _kept(index, name: str) -> dict:
    """A dictionary kept with the loaded ``index`` under ``name`` (made on first use)."""
    table = getattr(index, name, None)
    if table is None:
        table = {}
        setattr(index, name, table)
    return table


class WordVectors:
    """Vectors of single words: the index's embedded word table, and for a question's words the corpus
    does not use, the model's (one small batch, remembered with the index) when an encoder is given;
    without one, such words have no vector (zeros)."""

    def __init__(self, index, encoder=None):
        self.index, self.encoder = index, encoder

    def rows(self, words) -> np.ndarray:
        """Rows of the words the table holds (the others are left out)."""
        table = self.index.words or {}
        found = np.fromiter((table.get(w, -1) for w in words), dtype=np.int64, count=len(words))
        return found[found >= 0]

    def table(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.index.word_vectors[rows], dtype=np.float32)

    def vectors(self, words: list[str]) -> np.ndarray:
        table, rows = self.index.word_vectors, self.index.words or {}
        found = np.fromiter((rows.get(w, -1) for w in words), dtype=np.int64, count=len(words))
        out = np.zeros((len(words), table.shape[1]), dtype=np.float32)
        known = found >= 0
        out[known] = table[found[known]]
        if self.encoder is not None and not known.all():
            remembered = _kept(self.index, "_embedded_words")
            new = [w for w in dict.fromkeys(w for w, k in zip(words, known) if not k) if w not in remembered]
            if new:
                if len(remembered) + len(new) > UNIT_CACHE_SIZE:
                    remembered.clear()
                remembered.update(zip(new, np.asarray(self.encoder.embed_batch(new), dtype=np.float32)))
            for n, (word, k) in enumerate(zip(words, known)):
                if not k:
                    out[n] = remembered[word]
        return out


class UnitCache:
    """The parts of the answer units of one loaded index, and the index-wide tables they are read with."""

    def __init__(self, index):
        self.index = index

    def parts(self, chunk, c: Candidate) -> UnitParts:
        cache = _kept(self.index, "_unit_parts")
        key = (chunk.id, c.start, c.end)
        parts = cache.get(key)
        if parts is None:
            if len(cache) >= UNIT_CACHE_SIZE:
                cache.clear()
            parts = cache[key] = self._make(chunk, c)
        return parts

    def evidence(self, candidates: list[Candidate], results: list[SearchResult]) -> list[Evidence]:
        """What the answerability check reads of each unit."""
        out = []
        for c in candidates:
            p = self.parts(results[c.row].chunk, c)
            out.append(Evidence(p.text, p.terms, p.passage_terms, c.cosine, c.passage_cosine, p.words, p.passage_text, p.word_rows))
        return out

    def citable(self, candidates: list[Candidate], results: list[SearchResult]) -> list[bool]:
        """Per candidate: may it be quoted (it does not list a source)?"""
        return [not self.parts(results[c.row].chunk, c).reference for c in candidates]

    def acronyms(self) -> dict:
        """Acronyms the indexed documents define, found once per loaded index."""
        index = self.index
        table = getattr(index, "_acronyms", None)
        if table is None:
            table = index._acronyms = defined_acronyms([c.text for c in index.chunks])
        return table

    def _make(self, chunk, c: Candidate) -> UnitParts:
        index = self.index
        text = chunk.text[c.start : c.end]
        heading = chunk.section[-1] if len(chunk.section) > 1 else ""
        if index.unit_terms is not None and c.unit >= 0:
            terms = self._terms_of(index.unit_terms.row(c.unit))
        else:
            terms = frozenset(analyze(text))
        passages = _kept(index, "_unit_parts")
        passage = passages.get(chunk.id)
        if passage is None:
            passage = passages[chunk.id] = (self._passage_terms(chunk), chunk.title + " " + chunk.text)
        words = content_words(text + " " + heading)
        rows = WordVectors(index).rows(words) if index.word_vectors is not None else None
        return UnitParts(text, terms | frozenset(analyze(heading)), passage[0], words, passage[1], rows, is_reference(chunk, text))

    def _passage_terms(self, chunk) -> frozenset[str]:
        index = self.index
        row = index.row_of.get(chunk.id)
        if index.chunk_terms is not None and row is not None:
            terms = self._terms_of(index.chunk_terms.row(row))
        else:
            terms = frozenset(analyze(chunk.text + " " + " ".join(chunk.section)))
        return terms | frozenset(analyze(chunk.title))

    def _terms_of(self, ids: np.ndarray) -> frozenset[str]:
        index = self.index
        names = getattr(index, "_term_names", None)
        if names is None:
            names = index._term_names = term_names(index.lexical.vocabulary())
        return frozenset(names[int(i)] for i in ids)
