"""Typed records that leave the corpus package: an article, its sections, links and images."""

from __future__ import annotations

from dataclasses import dataclass, field


def page_at(pages, offset: int) -> int | None:
    """The page of the character at ``offset``, from ``(offset, page)`` pairs where each page begins
    (sorted by offset); None for text without pages or before the first one."""
    page = None
    for start, number in pages:
        if start > offset:
            break
        page = number
    return page


@dataclass(frozen=True)
class Link:
    """A markdown link whose anchor text stayed in the article text at ``[start, end)``."""

    text: str
    target: str
    start: int
    end: int


@dataclass(frozen=True)
class Image:
    """An image (and its caption) removed from the text; ``offset`` is where it stood."""

    src: str
    alt: str
    caption: str
    offset: int


@dataclass(frozen=True)
class Section:
    """A run of body text under one heading path.

    ``breadcrumb`` starts with the article title; ``[start, end)`` indexes the article's
    cleaned text and covers the body only (the heading itself lives in the breadcrumb).
    """

    breadcrumb: tuple[str, ...]
    start: int
    end: int
    language: str = ""  # ISO 639-1 code detected from the section's text ("" when unknown)
    anchor: str = ""  # id of the section's heading in the source (HTML id, reStructuredText target)


@dataclass(frozen=True)
class Category:
    name: str
    slug: str = ""
    url: str = ""


@dataclass(frozen=True)
class Article:
    """One parsed article. ``text`` is the cleaned text every offset refers to."""

    slug: str
    title: str
    text: str
    sections: tuple[Section, ...]
    url: str = ""
    source_path: str = ""
    categories: tuple[Category, ...] = ()
    tags: tuple[str, ...] = ()
    author: str = ""
    created_at: str = ""
    updated_at: str = ""
    language: str = ""
    description: str = ""
    links: tuple[Link, ...] = ()
    images: tuple[Image, ...] = ()
    format: str = ""  # markdown, text, pdf, html, docx, rst, beir
    pages: tuple[tuple[int, int], ...] = ()  # (offset in text, page number) where each page's text starts
    page_count: int = 0
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def metadata(self) -> dict:
        """Article-level metadata as plain JSON-ready values (no text, no sections)."""
        return {
            "slug": self.slug,
            "title": self.title,
            "url": self.url,
            "source_path": self.source_path,
            "categories": [c.__dict__ for c in self.categories],
            "tags": list(self.tags),
            "author": self.author,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "language": self.language,
            "description": self.description,
            "links": [link.__dict__ for link in self.links],
            "images": [image.__dict__ for image in self.images],
            "format": self.format,
            "page_count": self.page_count,
            "sections": len({s.breadcrumb for s in self.sections}),
            "languages": self.languages(),
        }

    def languages(self) -> list[str]:
        """Languages of the sections, most text first."""
        sizes: dict[str, int] = {}
        for s in self.sections:
            if s.language:
                sizes[s.language] = sizes.get(s.language, 0) + s.end - s.start
        return sorted(sizes, key=lambda lang: -sizes[lang])

    def page_at(self, offset: int) -> int | None:
        """The page the text at ``offset`` is on, for paged formats (PDF); None otherwise."""
        return page_at(self.pages, offset)
