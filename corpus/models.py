"""Typed records that leave the corpus package: an article, its sections, links and images."""

from __future__ import annotations

from dataclasses import dataclass, field


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
        }
