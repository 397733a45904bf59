"""BM25 over the chunks with bm25s: English stop words, Snowball stemming, Lucene scoring."""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from core.errors import ConfigError, IndexFormatError

_TOKEN_RE = re.compile(r"(?u)\b\w\w+\b")


@dataclass(frozen=True)
class BM25Params:
    k1: float = 1.2
    b: float = 0.75
    method: str = "lucene"
    stemmer: str = "english"  # a PyStemmer language, or "" for none
    stopwords: str = "en"  # "en" or "" for none

    def __post_init__(self) -> None:
        if self.k1 < 0 or not 0 <= self.b <= 1:
            raise ConfigError(f"BM25 needs k1 >= 0 and 0 <= b <= 1 (got k1={self.k1}, b={self.b})")


@lru_cache(maxsize=4)
def _stemmer(language: str):
    import Stemmer

    return Stemmer.Stemmer(language)


def _import_bm25s():
    """bm25s, imported without SciPy when nothing has imported SciPy yet.

    bm25s imports ``scipy.sparse`` for an optional matrix backend that this project does not use
    (``csc_backend="numpy"``, its default); that import drags in much of SciPy and NumPy and was a
    sixth of the start-up of ``rag search``. A later ``import scipy.sparse`` elsewhere works as usual.
    """
    if "bm25s" in sys.modules or "scipy.sparse" in sys.modules:
        import bm25s

        return bm25s
    sys.modules["scipy.sparse"] = None  # type: ignore[assignment]  # `import scipy.sparse` now raises ImportError
    try:
        import bm25s
    finally:
        if "scipy.sparse" in sys.modules and sys.modules["scipy.sparse"] is None:
            del sys.modules["scipy.sparse"]
    return bm25s


def _english_stopwords() -> frozenset[str]:
    _import_bm25s()
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


STOPWORDS = _english_stopwords()


def _stopwords(name: str) -> frozenset[str]:
    return STOPWORDS if name else frozenset()


_NON_ASCII_RE = re.compile(r"[^\x00-\x7f]+")


def _drop_combining(match: re.Match) -> str:
    return "".join(ch for ch in match.group() if not unicodedata.combining(ch))


def fold(text: str) -> str:
    # "Türkiye" and "Turkiye" should meet; accents are folded before tokenising.
    text = text.casefold()
    if text.isascii():  # most text: nothing to decompose (and this runs for every sentence of every build)
        return text
    # Only runs of non-ASCII characters can hold combining marks; a per-character loop over
    # the whole text was the slowest step of analysing it.
    return _NON_ASCII_RE.sub(_drop_combining, unicodedata.normalize("NFKD", text))


def analyze(text: str, params: BM25Params = BM25Params()) -> list[str]:
    """Text to BM25 terms: case- and accent-folded words, stop words out, stemmed."""
    stop = _stopwords(params.stopwords)
    words = [w for w in _TOKEN_RE.findall(fold(text)) if w not in stop]
    if params.stemmer and words:
        words = _stemmer(params.stemmer).stemWords(words)
    return words


def term_names(vocabulary: dict[str, int]) -> list[str]:
    """Each term id's term: the inverse of an index's ``vocabulary()``."""
    names = [""] * (max(vocabulary.values(), default=-1) + 1)
    for term, i in vocabulary.items():
        names[i] = term
    return names


def idf(df: np.ndarray, n_docs: int) -> np.ndarray:
    """The inverse document frequency the answer service weighs terms by, from document counts."""
    df = np.asarray(df, dtype=np.float64)
    return np.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))


class LexicalIndex:
    """A bm25s index over a list of texts, addressed by row number."""

    def __init__(self, retriever, params: BM25Params, n_docs: int):
        self._retriever = retriever
        self.params = params
        self.n_docs = n_docs

    @classmethod
    def build(cls, texts: list[str], params: BM25Params = BM25Params()) -> LexicalIndex:
        return cls.from_terms([analyze(t, params) for t in texts], params)

    @classmethod
    def from_terms(cls, corpus_tokens: list[list[str]], params: BM25Params = BM25Params()) -> LexicalIndex:
        """An index of texts already analysed with ``analyze(text, params)`` (one term list per row)."""
        import bm25s

        retriever = bm25s.BM25(k1=params.k1, b=params.b, method=params.method)
        retriever.index(corpus_tokens, show_progress=False)
        return cls(retriever, params, len(corpus_tokens))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for ``query`` (zeros when no query term is indexed)."""
        terms = self._retriever.get_tokens_ids(analyze(query, self.params)) if self.n_docs else []
        if not terms:
            return np.zeros(self.n_docs, dtype=np.float32)
        return np.asarray(self._retriever.get_scores(terms), dtype=np.float32)

    def vocabulary(self) -> dict[str, int]:
        """Indexed terms (analysed form) to their ids."""
        return self._retriever.vocab_dict

    def document_frequency(self, terms: list[str]) -> np.ndarray:
        """How many rows hold each analysed term (0 for a term the index does not hold)."""
        if not hasattr(self, "_df"):
            indptr = np.asarray(self._retriever.scores["indptr"])
            self._df = np.diff(indptr)
        vocab = self._retriever.vocab_dict
        return np.array([self._df[vocab[t]] if t in vocab and vocab[t] < len(self._df) else 0 for t in terms], dtype=np.float64)

    def idf(self, terms: list[str]) -> np.ndarray:
        """BM25 inverse document frequency of analysed terms; unseen terms get the highest value."""
        return idf(self.document_frequency(terms), self.n_docs)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._retriever.save(str(directory), show_progress=False)
        (directory / "analyzer.json").write_text(json.dumps({**asdict(self.params), "n_docs": self.n_docs}))

    @classmethod
    def load(cls, directory: Path, mmap: bool = False) -> LexicalIndex:
        import bm25s

        try:
            meta = json.loads((directory / "analyzer.json").read_text())
            n_docs = int(meta.pop("n_docs"))
            params = BM25Params(**meta)
            retriever = bm25s.BM25.load(str(directory), mmap=mmap, show_progress=False)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IndexFormatError(f"bm25: cannot load the BM25 index ({exc})") from None
        return cls(retriever, params, n_docs)
