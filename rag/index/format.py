"""The index's on-disk format: file names, the manifest, and the ragged term tables stored beside the chunks.

File names and manifest keys are the format; they stay as they are so that indexes built before keep loading.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import IndexFormatError, IndexNotFoundError
from core.files import sha256_file

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
# rag.text.units.answer_units) and their vectors, so answers cost dot products, not model calls.
# The file names say "sentence" for format compatibility; in code they are units.
UNIT_SPANS = "sentence_spans.npy"  # int32 rows of (chunk row, start, end), offsets into the chunk text
UNIT_VECTORS = "sentence_vectors.npy"  # float32, one unit vector per answer unit

# Analysed terms stored with the chunks and answer units.
# Composing an answer weighs every candidate unit by the question terms it contains. Storing each
# unit's and chunk's BM25 term ids at build time turns that into lookups instead of analysing
# (folding, tokenising, stemming) the text of every retrieved passage for every question.
UNIT_TERMS = "sentence_terms.npy"  # int32 BM25 term ids of each answer unit, concatenated
UNIT_TERM_OFFSETS = "sentence_term_offsets.npy"  # int64, units + 1: unit i's ids are [off[i], off[i + 1])
# Words of the corpus embedded alone, so that composing an answer can tell a paraphrase ("banning" for
# "prohibiting") from a word the passages lack, without a model call for the passages' side.
WORDS = "words.json"  # distinct content words of the chunks and breadcrumbs (case-folded), in row order
WORD_VECTORS = "word_vectors.npy"  # float16, one unit vector per word
CHUNK_TERMS = "chunk_terms.npy"  # the same for whole chunks (breadcrumb included, as BM25 sees them)
CHUNK_TERM_OFFSETS = "chunk_term_offsets.npy"

_SAFE_FILE = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


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


def read_manifest(index_dir: Path) -> dict:
    """The manifest of the build at ``index_dir``, refused unless it is a rag index of a readable version."""
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
    if version == 3 and manifest.get("shards"):  # rag/index/shards.py
        raise IndexFormatError(
            f"{path}: a sharded index of {len(manifest['shards'])} shards; 'rag search', 'rag ask', 'rag serve' and "
            "'rag mcp' read it, this needs an index built with --shards 1"
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
