"""Loading a build: the :class:`Index` a service searches, opened with every check the manifest allows."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import IndexFormatError, IndexNotFoundError
from embeddings.base import Encoder
from embeddings.vectorstore import VectorStore, VectorStoreParams
from rag.text.chunking import Chunk
from rag.index.format import (
    ARTICLES,
    BM25_DIR,
    CHUNK_TERM_OFFSETS,
    CHUNK_TERMS,
    CHUNKS,
    UNIT_SPANS,
    UNIT_TERM_OFFSETS,
    UNIT_TERMS,
    UNIT_VECTORS,
    VECTORS,
    WORD_VECTORS,
    WORDS,
    TermTable,
    read_manifest,
    verify_files,
)
from rag.text.lexical import LexicalIndex
from rag.text.units import answer_units


@dataclass
class Index:
    """A loaded, verified index: chunks, article metadata, vector and BM25 stores, and the stored answer units."""

    path: Path
    manifest: dict
    chunks: list[Chunk]
    articles: dict[str, dict]
    vectors: VectorStore
    lexical: LexicalIndex
    unit_spans: np.ndarray | None = None  # (n, 3) int32: chunk row, start, end
    unit_vectors: np.ndarray | None = None  # (n, dim) float32
    row_of: dict[str, int] = field(default_factory=dict)
    unit_first: np.ndarray | None = None  # unit_spans rows of chunk r are [first[r], first[r+1])
    unit_terms: TermTable | None = None  # BM25 term ids of each unit_spans row
    chunk_terms: TermTable | None = None  # BM25 term ids of each chunk
    words: dict[str, int] | None = None  # content word -> row of word_vectors
    word_vectors: np.ndarray | None = None  # (n, dim) float16

    def __post_init__(self) -> None:
        self.row_of = {c.id: i for i, c in enumerate(self.chunks)}
        if self.unit_spans is not None:
            self.unit_first = np.searchsorted(self.unit_spans[:, 0], np.arange(len(self.chunks) + 1), side="left")

    @property
    def unit_centroid(self) -> np.ndarray | None:
        """Mean vector of the stored answer units: the direction every passage of the corpus shares."""
        if self.unit_vectors is None or not len(self.unit_vectors):
            return None
        if getattr(self, "_unit_centroid", None) is None:
            self._unit_centroid = np.asarray(self.unit_vectors, dtype=np.float32).mean(axis=0)
        return self._unit_centroid

    def units_of(self, row: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Answer-unit spans (start, end within the chunk text) of chunk ``row`` and their vectors, if stored."""
        if self.unit_first is None:
            spans = np.array(answer_units(self.chunks[row].text), dtype=np.int32).reshape(-1, 2)
            return spans, None
        lo, hi = int(self.unit_first[row]), int(self.unit_first[row + 1])
        return self.unit_spans[lo:hi, 1:], self.unit_vectors[lo:hi]

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

    def chunk_counts(self) -> dict[str, int]:
        """Chunks of each article."""
        return dict(Counter(c.article for c in self.chunks))

    def languages(self) -> list[str]:
        """The languages of the chunks (ISO 639-1 codes), sorted."""
        return sorted({c.language for c in self.chunks if c.language})

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


def check_model(manifest: dict, encoder: Encoder | None) -> None:
    """Refuse an index whose vectors another model made (or of another width) than ``encoder``."""
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


def _mode(mmap: bool) -> str | None:
    return "r" if mmap else None


def _load_records(build_dir: Path) -> tuple[list[Chunk], dict[str, dict]]:
    """The chunk records and the article metadata."""
    try:
        with (build_dir / CHUNKS).open(encoding="utf-8") as handle:
            chunks = [Chunk.from_dict(json.loads(line)) for line in handle if line.strip()]
        articles = json.loads((build_dir / ARTICLES).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise IndexFormatError(f"{Path(exc.filename).name}: missing from the index; rebuild it with 'rag index'") from None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise IndexFormatError(f"{CHUNKS}: unreadable chunk records ({exc.__class__.__name__}); rebuild the index") from None
    return chunks, articles


def _load_units(build_dir: Path, manifest: dict, mmap: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The stored answer-unit spans and vectors, or (None, None) for an index built without them."""
    if UNIT_SPANS not in manifest.get("files", {}):
        return None, None
    try:
        spans = np.load(build_dir / UNIT_SPANS, mmap_mode=_mode(mmap), allow_pickle=False)
        vectors = np.load(build_dir / UNIT_VECTORS, mmap_mode=_mode(mmap), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{UNIT_SPANS}: unreadable sentence data ({exc.__class__.__name__}); rebuild the index") from None
    if spans.ndim != 2 or spans.shape[1] != 3 or len(spans) != len(vectors):
        raise IndexFormatError(f"{UNIT_VECTORS}: does not match {UNIT_SPANS}; rebuild the index")
    return spans, vectors


def _load_terms(build_dir: Path, manifest: dict, names: tuple[str, str], rows: int, mmap: bool) -> TermTable | None:
    """A stored term table, or None for an index built before they were stored."""
    if names[0] not in manifest.get("files", {}):
        return None
    try:
        ids, offsets = (np.load(build_dir / name, mmap_mode=_mode(mmap), allow_pickle=False) for name in names)
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{names[0]}: unreadable term data ({exc.__class__.__name__}); rebuild the index") from None
    if offsets.ndim != 1 or len(offsets) != rows + 1 or (rows and int(offsets[-1]) != len(ids)):
        raise IndexFormatError(f"{names[1]}: does not match the index's {rows} rows; rebuild the index")
    return TermTable(ids, offsets)


def _load_words(build_dir: Path, manifest: dict, mmap: bool) -> tuple[dict[str, int] | None, np.ndarray | None]:
    """The embedded word table, or (None, None) for an index built before it was stored."""
    if WORDS not in manifest.get("files", {}):
        return None, None
    try:
        words = json.loads((build_dir / WORDS).read_text(encoding="utf-8"))
        vectors = np.load(build_dir / WORD_VECTORS, mmap_mode=_mode(mmap), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{WORDS}: unreadable word table ({exc.__class__.__name__}); rebuild the index") from None
    if not isinstance(words, list) or vectors.ndim != 2 or len(words) != len(vectors):
        raise IndexFormatError(f"{WORD_VECTORS}: does not match {WORDS}; rebuild the index")
    return {w: i for i, w in enumerate(words)}, vectors


def _check_counts(manifest: dict, chunks: list[Chunk], vectors: VectorStore, lexical: LexicalIndex) -> None:
    """Chunk records, vectors and BM25 rows are one per passage, as many as the manifest says."""
    expected = manifest.get("counts", {}).get("chunks")
    if not (len(chunks) == len(vectors) == lexical.n_docs == expected):
        raise IndexFormatError(
            f"the index is inconsistent: {len(chunks)} chunk records, {len(vectors)} vectors, {lexical.n_docs} BM25 rows, "
            f"manifest says {expected}; rebuild it with 'rag index'"
        )
    if vectors.dim != (manifest.get("model") or {}).get("dim"):
        raise IndexFormatError(f"{VECTORS}: holds {vectors.dim}-dimensional vectors, the manifest says otherwise; rebuild the index")


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
    chunks, articles = _load_records(build_dir)
    vectors = VectorStore.load(build_dir / VECTORS, VectorStoreParams(**manifest.get("vectors", {})), mmap=mmap)
    lexical = LexicalIndex.load(build_dir / BM25_DIR, mmap=mmap)
    unit_spans, unit_vectors = _load_units(build_dir, manifest, mmap)
    unit_terms = chunk_terms = None
    if unit_spans is not None:
        unit_terms = _load_terms(build_dir, manifest, (UNIT_TERMS, UNIT_TERM_OFFSETS), len(unit_spans), mmap)
        chunk_terms = _load_terms(build_dir, manifest, (CHUNK_TERMS, CHUNK_TERM_OFFSETS), len(chunks), mmap)
    words, word_vectors = _load_words(build_dir, manifest, mmap)
    _check_counts(manifest, chunks, vectors, lexical)
    return Index(
        path=build_dir,
        manifest=manifest,
        chunks=chunks,
        articles=articles,
        vectors=vectors,
        lexical=lexical,
        unit_spans=unit_spans,
        unit_vectors=unit_vectors,
        unit_terms=unit_terms,
        chunk_terms=chunk_terms,
        words=words,
        word_vectors=word_vectors,
    )
