"""Assemble an :class:`Article` from headings and paragraphs, whatever format they were read from.

Every non-markdown reader (PDF, HTML, DOCX, reStructuredText, plain text) walks its document with
the library made for it and feeds this builder, so the one promise of the corpus package holds for
all of them: each section's ``[start, end)`` slices exactly its body out of ``Article.text``, and
page starts are offsets into that same text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from corpus.models import Article, Section

_WS_RE = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_SMALL_WORDS = frozenset("a an and as at by for from in of on or the to with".split())
# Metadata titles that name a template or a tool rather than the document.
_JUNK_TITLE_RE = re.compile(r"^(untitled|document\d*|microsoft word\b.*|title|page \d+|slide \d+|\W*)$", re.I)


_LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st", "\ufb06": "st"})


def clean_line(text: str) -> str:
    """One line of prose: runs of spaces collapsed, soft hyphens and zero-width characters gone,
    typographic ligatures (common in PDFs) spelled out so that "ﬁnd" is found by "find"."""
    text = text.replace("\u00ad", "").replace("\u200b", "").replace("\ufeff", "").translate(_LIGATURES)
    return _WS_RE.sub(" ", text).strip()


def readable_title(path: str | Path) -> str:
    """A title from a file name: ``outer-space-treaty.md`` -> ``Outer Space Treaty``."""
    stem = Path(path).stem
    words = [w for w in re.split(r"[\s_\-.]+", stem) if w]
    out = []
    for i, word in enumerate(words):
        if any(ch.isupper() for ch in word) or any(ch.isdigit() for ch in word):
            out.append(word)  # UN, COPUOS, A/AC.105: kept as written
        elif i and word in _SMALL_WORDS:
            out.append(word)
        else:
            out.append(word[:1].upper() + word[1:])
    return " ".join(out) or stem


def plausible_title(value: str | None) -> str:
    """A metadata title worth showing, or "" for empty or tool-made ones ("Microsoft Word - x.doc")."""
    value = clean_line(value or "")
    if not value or _JUNK_TITLE_RE.match(value) or len(value) > 300:
        return ""
    return value


@dataclass
class DocumentBuilder:
    """Collects headings (with levels and anchors) and paragraphs (with page marks) in reading order."""

    title: str
    _pieces: list[str] = field(default_factory=list)
    _pos: int = 0
    _sections: list[Section] = field(default_factory=list)
    _stack: list[tuple[int, str, str]] = field(default_factory=list)  # level, text, anchor
    _body_start: int | None = None
    _pages: list[tuple[int, int]] = field(default_factory=list)  # (offset, page number)
    _pending_page: int | None = None

    def _add(self, text: str) -> int:
        if self._pieces:
            self._pieces.append("\n\n")
            self._pos += 2
        start = self._pos
        self._pieces.append(text)
        self._pos += len(text)
        return start

    def _close(self) -> None:
        if self._body_start is not None and self._pos > self._body_start:
            crumbs = (self.title, *[text for _, text, _ in self._stack])
            anchor = next((a for _, _, a in reversed(self._stack) if a), "")
            self._sections.append(Section(breadcrumb=crumbs, start=self._body_start, end=self._pos, anchor=anchor))
        self._body_start = None

    def page(self, number: int) -> None:
        """The next text starts page ``number`` (1-based)."""
        self._pending_page = number

    def _mark_page(self, offset: int) -> None:
        if self._pending_page is not None:
            if not self._pages or self._pages[-1][1] != self._pending_page:
                self._pages.append((offset, self._pending_page))
            self._pending_page = None

    def heading(self, text: str, level: int, anchor: str = "") -> None:
        """A heading of ``level`` (1 = top) starts a section; its text goes into the article text too."""
        text = clean_line(text)
        if not text:
            return
        self._close()
        start = self._add(text)
        self._mark_page(start)
        self._stack = [entry for entry in self._stack if entry[0] < level]
        self._stack.append((level, text, anchor))

    def paragraph(self, text: str, page_marks: list[tuple[int, int]] = ()) -> None:
        """A block of body text; ``page_marks`` are (offset in ``text``, page) where later pages begin."""
        if not text.strip():
            return
        start = self._add(text)
        self._mark_page(start)
        for offset, number in page_marks:
            if not self._pages or self._pages[-1][1] != number:
                self._pages.append((start + offset, number))
        if self._body_start is None:
            self._body_start = start

    @property
    def has_text(self) -> bool:
        return bool(self._pieces)

    def build(self, *, slug: str, source_path: str = "", page_count: int = 0, **meta) -> Article:
        self._close()
        return Article(
            slug=slug,
            title=self.title,
            text="".join(self._pieces),
            sections=tuple(self._sections),
            source_path=source_path,
            pages=tuple(self._pages),
            page_count=page_count,
            **meta,
        )
