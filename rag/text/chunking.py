"""Section-aware, token-capped chunking with breadcrumbs and offsets into the cleaned article.

A chunk never spans two sections. A section that fits the cap is one chunk; a longer one is
cut at a paragraph boundary when that keeps the chunk at least half full, otherwise at a
sentence boundary, and the next chunk repeats the last sentences of the previous one up to
``overlap_tokens``. Only a single sentence longer than the cap is cut between words.

Two caps apply: ``max_tokens`` counts cl100k tokens of the chunk text, and ``fits_model``
(the encoder's own tokenizer) must accept the text *with* the breadcrumb prefix that is
embedded with it, so the model never silently truncates a chunk.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass

from corpus.markdown import slugify
from corpus.models import Article, page_at
from core.errors import ConfigError
from rag.text.units import split_sentences
from rag.text.tokens import count_tokens

BREADCRUMB_SEPARATOR = " > "


@dataclass(frozen=True)
class ChunkerConfig:
    max_tokens: int = 200
    overlap_tokens: int = 32

    def __post_init__(self) -> None:
        if self.max_tokens < 16:
            raise ConfigError(f"max_tokens must be at least 16 (got {self.max_tokens})")
        if not 0 <= self.overlap_tokens < self.max_tokens // 2:
            raise ConfigError(
                f"overlap_tokens must be between 0 and half of max_tokens ({self.max_tokens // 2}); got {self.overlap_tokens}"
            )


@dataclass(frozen=True)
class Chunk:
    """A passage: a slice ``[start, end)`` of one section of one article's cleaned text."""

    id: str
    article: str  # article slug
    title: str
    url: str
    section: tuple[str, ...]  # breadcrumb: title, then headings
    text: str
    start: int
    end: int
    n_tokens: int
    ordinal: int  # position of the chunk within its article
    language: str = ""  # ISO 639-1 code of its section ("" when unknown)
    anchor: str = ""  # id of its section's heading in the source (HTML, rst), for links
    pages: tuple[tuple[int, int], ...] = ()  # (offset in text, page): where each page of a paged source begins

    @property
    def page(self) -> int | None:
        """The page the passage starts on (PDF), else None."""
        return self.pages[0][1] if self.pages else None

    def page_at(self, offset: int) -> int | None:
        """The page of the character at ``offset`` in the passage text (PDF), else None."""
        return page_at(self.pages, offset)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["section"] = list(self.section)
        data["pages"] = [list(p) for p in self.pages]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Chunk:
        pages = tuple((int(o), int(n)) for o, n in data.get("pages", ()))
        return cls(**{**data, "section": tuple(data["section"]), "pages": pages})


def breadcrumb_prefix(section: tuple[str, ...]) -> str:
    return BREADCRUMB_SEPARATOR.join(section) + "\n"


def embed_text(chunk: Chunk) -> str:
    """What the encoder sees: the breadcrumb, then the passage."""
    return breadcrumb_prefix(chunk.section) + chunk.text


def chunk_id(article_slug: str, section: tuple[str, ...], text: str) -> str:
    digest = hashlib.sha256("\x1f".join([article_slug, *section, text]).encode("utf-8")).hexdigest()
    return f"{slugify(article_slug)}-{digest[:16]}"


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    para_start: bool  # first sentence of a paragraph (or of a list line)


def _units(text: str, start: int, end: int) -> list[_Unit]:
    units: list[_Unit] = []
    for para in re.finditer(r"[^\n]+(?:\n[^\n]+)*", text[start:end]):
        p_start = start + para.start()
        first = True
        for s, e in split_sentences(text, p_start, start + para.end()):
            units.append(_Unit(s, e, first))
            first = False
    return units


class _Fitter:
    def __init__(self, text: str, prefix: str, max_tokens: int, fits_model: Callable[[str], bool] | None):
        self.text, self.prefix, self.max_tokens, self.fits_model = text, prefix, max_tokens, fits_model
        self.tokens: dict[tuple[int, int], int] = {}

    def count(self, start: int, end: int) -> int:
        key = (start, end)
        if key not in self.tokens:
            self.tokens[key] = count_tokens(self.text[start:end])
        return self.tokens[key]

    def __call__(self, start: int, end: int) -> bool:
        if self.count(start, end) > self.max_tokens:
            return False
        return self.fits_model is None or self.fits_model(self.prefix + self.text[start:end])


def _split_long(fit: _Fitter, start: int, end: int) -> list[tuple[int, int]]:
    """Cut one over-long sentence between words (or, for a giant word, characters)."""
    words = [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", fit.text[start:end])]
    pieces: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        j = i + 1
        if not fit(words[i][0], words[i][1]):
            s, e = words[i]
            while s < e:  # a "word" longer than the cap: characters, as a last resort
                k = e
                while k > s + 1 and not fit(s, k):
                    k = s + max(1, (k - s) * 3 // 4)
                pieces.append((s, k))
                s = k
            i += 1
            continue
        while j < len(words) and fit(words[i][0], words[j][1]):
            j += 1
        pieces.append((words[i][0], words[j - 1][1]))
        i = j
    return pieces


def _section_spans(fit: _Fitter, units: list[_Unit], overlap_tokens: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    i = 0
    n = len(units)
    while i < n:
        if not fit(units[i].start, units[i].end):
            spans.extend(_split_long(fit, units[i].start, units[i].end))
            i += 1
            continue
        j = i + 1
        while j < n and fit(units[i].start, units[j].end):
            j += 1
        cut = j
        if j < n and not units[j].para_start:
            full = fit.count(units[i].start, units[j - 1].end)
            for k in range(j - 1, i, -1):
                if units[k].para_start:
                    if fit.count(units[i].start, units[k - 1].end) * 2 >= full:
                        cut = k
                    break
        spans.append((units[i].start, units[cut - 1].end))
        if cut >= n:
            break
        back = 0
        if overlap_tokens and not units[cut].para_start:
            # repeat whole sentences of the same paragraph, newest first, within the budget
            while back + 1 < cut - i:
                k = cut - back - 1
                if fit.count(units[k].start, units[cut - 1].end) > overlap_tokens:
                    break
                back += 1
                if units[k].para_start:
                    break
            # the overlap and the next sentence must fit together, or the overlap shrinks
            while back and not fit(units[cut - back].start, units[cut].end):
                back -= 1
        i = cut - back
    return spans


def _pages(article: Article, start: int, end: int) -> tuple[tuple[int, int], ...]:
    """Page starts within ``[start, end)`` as offsets into the chunk, beginning with the page at ``start``."""
    first = article.page_at(start)
    if first is None:
        return ()
    return ((0, first), *((offset - start, number) for offset, number in article.pages if start < offset < end))


def chunk_article(
    article: Article,
    config: ChunkerConfig = ChunkerConfig(),
    fits_model: Callable[[str], bool] | None = None,
) -> list[Chunk]:
    """Chunks of one article, in reading order."""
    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    for section in article.sections:
        prefix = breadcrumb_prefix(section.breadcrumb)
        if fits_model is not None and not fits_model(prefix + "x"):
            raise ConfigError(
                f"{article.source_path or article.slug}: the section breadcrumb {' > '.join(section.breadcrumb)!r} alone "
                "fills the embedding model's input window; shorten the headings"
            )
        fit = _Fitter(article.text, prefix, config.max_tokens, fits_model)
        units = _units(article.text, section.start, section.end)
        for start, end in _section_spans(fit, units, config.overlap_tokens):
            text = article.text[start:end]
            cid = chunk_id(article.slug, section.breadcrumb, text)
            if cid in seen:  # the same text twice in one section: keep ids unique and stable
                seen[cid] += 1
                cid = f"{cid}-{seen[cid]}"
            else:
                seen[cid] = 1
            chunks.append(
                Chunk(
                    id=cid,
                    article=article.slug,
                    title=article.title,
                    url=article.url,
                    section=section.breadcrumb,
                    text=text,
                    start=start,
                    end=end,
                    n_tokens=fit.count(start, end),
                    ordinal=len(chunks),
                    language=section.language,
                    anchor=section.anchor,
                    pages=_pages(article, start, end),
                )
            )
    return chunks
