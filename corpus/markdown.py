"""Markdown article parsing: front matter to metadata, markup to clean text with section offsets.

The cleaned text is what every passage, quote and offset in the product refers to, so this
module owns one promise: each section's ``[start, end)`` slices exactly its body out of
``Article.text``, and nothing of the prose is dropped on the way (markup is).
"""

from __future__ import annotations

import datetime as _dt
import re

import yaml

from corpus.markdown_blocks import Block, read_blocks
from corpus.models import Article, Category, Image, Link, Section

_HTML_BLOCK_RE = re.compile(r"<(script|style|noscript|template)\b.*?</\1\s*>|<![A-Za-z][^>]*>|<\?[^>]*\?>", re.S | re.I)
_COMMENT_RE = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_WS_RE = re.compile(r"[ \t\u00a0]+")

#: Headings that only group the article's body and carry no meaning of their own. They end the
#: sections above them but never appear in a breadcrumb, so the text under them keeps the
#: article title as its breadcrumb.
DEFAULT_CONTAINER_HEADINGS = frozenset({"article content", "content", "contents"})


class ArticleFormatError(ValueError):
    """The file is not an article this parser can read; the message says why."""


# libyaml's parser when PyYAML was built with it: the same safe constructor, several times faster
# (front matter was a third of the time to re-read a 1,000-article corpus).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def split_front_matter(raw: str) -> tuple[dict, str]:
    """Return (front matter mapping, body). No front matter gives an empty mapping."""
    text = raw.lstrip("\ufeff")
    if not text.startswith("---"):
        return {}, text
    lines = text.split("\n")
    if lines[0].strip() != "---":
        return {}, text
    for i in range(1, len(lines)):
        if lines[i].strip() in ("---", "..."):
            block = "\n".join(lines[1:i])
            body = "\n".join(lines[i + 1 :])
            try:
                data = yaml.load(block, Loader=_YAML_LOADER) if block.strip() else {}
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                where = f" at line {mark.line + 2}" if mark is not None else ""
                problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
                raise ArticleFormatError(f"invalid YAML front matter{where}: {problem}") from None
            if data is None:
                data = {}
            if not isinstance(data, dict):
                raise ArticleFormatError("front matter must be a YAML mapping of keys to values")
            return data, body
    raise ArticleFormatError("front matter starts with '---' but is never closed by a '---' line")


def _text_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    return str(value).strip()


def _categories(raw) -> tuple[Category, ...]:
    out = []
    for item in raw or []:
        if isinstance(item, dict):
            name = _text_value(item.get("name") or item.get("title"))
            if name:
                out.append(Category(name=name, slug=_text_value(item.get("slug")), url=_text_value(item.get("url"))))
        elif _text_value(item):
            out.append(Category(name=_text_value(item), slug=slugify(_text_value(item))))
    return tuple(out)


def _tags(raw) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [t for t in re.split(r"\s*,\s*", raw) if t]
    out = []
    for item in raw or []:
        name = _text_value(item.get("name") if isinstance(item, dict) else item)
        if name:
            out.append(name)
    return tuple(out)


def slugify(value: str) -> str:
    """Lower-case ASCII-ish slug: letters, digits and single dashes."""
    value = value.strip().lower()
    value = re.sub(r"[^\w]+", "-", value, flags=re.UNICODE)
    return value.strip("-_") or "article"


def _norm(value: str) -> str:
    return " ".join(value.casefold().split())


def _title(meta: dict, entity: dict, blocks: list[Block], fallback_title: str) -> tuple[str, Block | None]:
    """The article's title and the heading block that states it, if one does.

    Title: front matter, else the one top-level heading, else the caller's (file name); never a
    section heading, which would make every citation of a multi-part document read "Article I".
    """
    title = _text_value(meta.get("title") or entity.get("primary"))
    top = [b for b in blocks if b.kind == "heading" and b.level == 1]
    title_block: Block | None = None
    if len(top) == 1 and (not title or _norm(top[0].lines[0].text) == _norm(title)):
        title_block = top[0]
    if not title:
        title = title_block.lines[0].text if title_block else fallback_title
    if not title:
        raise ArticleFormatError("article has no title: add 'title:' front matter or a '# Heading'")
    return title, title_block


class _TextAssembler:
    """Lays the blocks out as the article's text (blocks apart by a blank line) and records where each
    section's body, link and image falls in it."""

    def __init__(self, title: str, title_block: Block | None, container_headings: frozenset[str]):
        self.title = title
        self.title_block = title_block
        self.containers = {_norm(c) for c in container_headings}
        self.pieces: list[str] = []
        self.pos = 0
        self.links: list[Link] = []
        self.images: list[Image] = []
        self.sections: list[Section] = []
        self.stack: list[tuple[int, str]] = []  # (level, text) of the headings above the current place
        self.body_start: int | None = None
        self.current: tuple[str, ...] = (title,)

    def assemble(self, blocks: list[Block]) -> str:
        for block in blocks:
            if block.kind == "image":
                src, alt, caption = block.image
                self.images.append(Image(src=src, alt=alt, caption=caption, offset=self.pos))
            elif block.kind == "heading":
                self._heading(block)
            else:
                self._paragraph(block)
        self._close_section()
        return "".join(self.pieces)

    def _add(self, text: str) -> int:
        if self.pieces:
            self.pieces.append("\n\n")
            self.pos += 2
        start = self.pos
        self.pieces.append(text)
        self.pos += len(text)
        return start

    def _close_section(self) -> None:
        if self.body_start is not None and self.pos > self.body_start:
            self.sections.append(Section(breadcrumb=self.current, start=self.body_start, end=self.pos))
        self.body_start = None

    def _heading(self, block: Block) -> None:
        """A heading closes the section before it; a container heading ("Contents") names no section."""
        self._close_section()
        heading = block.lines[0]
        if block is self.title_block:
            self._add(heading.text)
            self.stack = []
            self.current = (self.title,)
            return
        self.stack = [(lvl, txt) for lvl, txt in self.stack if lvl < block.level]
        if _norm(heading.text) in self.containers:
            self.current = (self.title, *[txt for _, txt in self.stack])
            return
        start = self._add(heading.text)
        self.links.extend(Link(a, t, start + s, start + e) for a, t, s, e in heading.links)
        self.stack.append((block.level, heading.text))
        self.current = (self.title, *[txt for _, txt in self.stack])

    def _paragraph(self, block: Block) -> None:
        start = self._add("\n".join(line.text for line in block.lines))
        if self.body_start is None:
            self.body_start = start
        offset = start
        for line in block.lines:
            self.links.extend(Link(a, t, offset + s, offset + e) for a, t, s, e in line.links)
            self.images.extend(Image(src=src, alt=alt, caption="", offset=offset) for src, alt in line.images)
            offset += len(line.text) + 1


def parse_markdown(
    raw: str,
    *,
    source_path: str = "",
    fallback_title: str = "",
    fallback_slug: str = "",
    container_headings: frozenset[str] = DEFAULT_CONTAINER_HEADINGS,
) -> Article:
    """Parse one markdown article (front matter optional) into an :class:`Article`."""
    if not raw.strip():
        raise ArticleFormatError("file is empty")
    meta, body = split_front_matter(raw)
    body = _COMMENT_RE.sub("", body.replace("\r\n", "\n").replace("\r", "\n"))
    body = _HTML_BLOCK_RE.sub("", body)
    blocks = read_blocks(body)
    entity = meta.get("entity") if isinstance(meta.get("entity"), dict) else {}
    title, title_block = _title(meta, entity, blocks, fallback_title)
    layout = _TextAssembler(title, title_block, container_headings)
    text = layout.assemble(blocks)
    if not layout.sections:
        raise ArticleFormatError("article has no body text")
    return Article(
        slug=_text_value(meta.get("slug")) or fallback_slug or slugify(title),
        title=title,
        text=text,
        sections=tuple(layout.sections),
        url=_text_value(meta.get("url")),
        source_path=source_path,
        categories=_categories(meta.get("categories") or entity.get("categories")),
        tags=_tags(meta.get("tags") or entity.get("tags")),
        author=_text_value(meta.get("author")),
        created_at=_text_value(meta.get("created_at") or meta.get("date")),
        updated_at=_text_value(meta.get("updated_at")),
        language=_text_value(meta.get("language")),
        description=_text_value(meta.get("description") or entity.get("disambiguation")),
        links=tuple(layout.links),
        images=tuple(layout.images),
    )


def parse_plain_text(raw: str, *, source_path: str = "", title: str, slug: str) -> Article:
    """A ``.txt`` file: paragraphs split at blank lines, no markup interpreted."""
    if not raw.strip():
        raise ArticleFormatError("file is empty")
    paragraphs = []
    for block in re.split(r"\n\s*\n", raw.replace("\r\n", "\n").replace("\r", "\n")):
        lines = [_WS_RE.sub(" ", line).strip() for line in block.split("\n")]
        lines = [line for line in lines if line]
        if lines:
            paragraphs.append("\n".join(lines))
    text = "\n\n".join(paragraphs)
    return Article(
        slug=slug,
        title=title,
        text=text,
        sections=(Section(breadcrumb=(title,), start=0, end=len(text)),),
        source_path=source_path,
    )
