"""Markdown article parsing: front matter to metadata, markup to clean text with section offsets.

The cleaned text is what every passage, quote and offset in the product refers to, so this
module owns one promise: each section's ``[start, end)`` slices exactly its body out of
``Article.text``, and nothing of the prose is dropped on the way (markup is).
"""

from __future__ import annotations

import datetime as _dt
import html
import re
from dataclasses import dataclass, field

import yaml

from corpus.models import Article, Category, Image, Link, Section

#: Headings that only group the article's body and carry no meaning of their own. They end the
#: sections above them but never appear in a breadcrumb, so the text under them keeps the
#: article title as its breadcrumb.
DEFAULT_CONTAINER_HEADINGS = frozenset({"article content", "content", "contents"})

_ESCAPABLE = "\\`*_{}[]()#+-.!|<>~"
# Private-use code points stand in for escaped characters while markup is stripped, so an
# escaped asterisk can never be mistaken for emphasis; they are swapped back at the end.
_PUA_BASE = 0xE000
_PUA_RE = re.compile("[\ue000-\ue0ff]")

_HEADING_RE = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
# Published files often drop the space ("##Article IV"); a letter, digit or quote right after the
# hashes is read as a heading too (CommonMark would keep the line as text and leak the hashes).
_TIGHT_HEADING_RE = re.compile(r"^ {0,3}(#{1,6})(?=[^\W_]|[\"'“‘(\[*])(.*?)(?:[ \t]+#+)?[ \t]*$")
_REF_LINK_RE = re.compile(r"\[([^\[\]]+)\]\[[^\[\]]*\]")
_REF_DEF_RE = re.compile(r"^ {0,3}\[[^\]^]+\]:\s*\S+")
_FOOTNOTE_REF_RE = re.compile(r"\[\^[^\]\s]+\](?!:)")
_LEADING_TAGS_RE = re.compile(r"^\s*(?:<[A-Za-z/][^<>]*>\s*)+(?=#)")
_SETEXT_RE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_HTML_HEADING_RE = re.compile(r"^\s*<h([1-6])(?:\s[^>]*)?>(.*?)</h\1\s*>\s*$", re.I)
_HTML_BLOCK_RE = re.compile(r"<(script|style|noscript|template)\b.*?</\1\s*>|<![A-Za-z][^>]*>|<\?[^>]*\?>", re.S | re.I)
_ATTRS_RE = re.compile(r"\s*\{[#.][^{}]*\}\s*$")  # pandoc-style {#id .class} after a heading
_FENCE_RE = re.compile(r"^ {0,3}(```+|~~~+)")
_HR_RE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_LIST_RE = re.compile(r"^\s*(?:\d{1,9}[.)]|[-*+])\s+")
_TABLE_SEP_RE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_IMAGE_RE = re.compile(r"!\[([^\]]*)\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)")
_LINK_RE = re.compile(r"\[([^\[\]]+)\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)")
_AUTOLINK_RE = re.compile(r"<((?:https?|ftp|mailto):[^>\s]+)>")
_TAG_RE = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_CODE_RE = re.compile(r"(`+)(.+?)\1")
_STRONG_RE = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_EM_STAR_RE = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])")
_EM_UNDER_RE = re.compile(r"(?<![\w_])_(?=[^\s_])(.+?)(?<=[^\s_])_(?![\w_])")
_STRIKE_RE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_CAPTION_RE = re.compile(r"^\s*(?:\*(?!\*)(.+?)\*|_(?!_)(.+?)_)\s*$")
_COMMENT_RE = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_WS_RE = re.compile(r"[ \t\u00a0]+")


class ArticleFormatError(ValueError):
    """The file is not an article this parser can read; the message says why."""


def _protect(ch: str) -> str:
    return chr(_PUA_BASE + _ESCAPABLE.index(ch))


def _restore(text: str) -> str:
    return _PUA_RE.sub(lambda m: _ESCAPABLE[ord(m.group()) - _PUA_BASE], text)


@dataclass
class _Inline:
    text: str
    links: list[tuple[str, str, int, int]] = field(default_factory=list)  # text, target, start, end
    images: list[tuple[str, str]] = field(default_factory=list)  # src, alt


def clean_inline(raw: str) -> _Inline:
    """Strip inline markdown from one line, keeping link anchors and recording link targets."""
    # Escaped strong markers (\*\*) are an authoring artefact of the source encyclopedia:
    # the author meant bold, the exporter escaped it. They carry no text, so they go.
    s = raw.replace("\\*\\*", "").replace("\\_\\_", "")
    s = re.sub(r"\\([" + re.escape(_ESCAPABLE) + "])", lambda m: _protect(m.group(1)), s)
    s = _CODE_RE.sub(lambda m: "".join(_protect(c) if c in _ESCAPABLE else c for c in m.group(2).strip()), s)
    images: list[tuple[str, str]] = []

    def _image(m: re.Match) -> str:
        images.append((_restore(m.group(2)), _restore(m.group(1))))
        return ""

    s = _IMAGE_RE.sub(_image, s)
    s = _FOOTNOTE_REF_RE.sub("", s)
    s = _REF_LINK_RE.sub(r"\1", s)  # [text][ref] and [text][]: the anchor text stays
    s = _AUTOLINK_RE.sub(lambda m: "".join(_protect(c) if c in _ESCAPABLE else c for c in m.group(1)), s)
    s = _TAG_RE.sub("", s)
    s = html.unescape(s)
    previous = None
    while previous != s:  # nested emphasis (***x***, **_x_**) needs more than one pass
        previous = s
        s = _STRONG_RE.sub(r"\2", s)
        s = _EM_STAR_RE.sub(r"\1", s)
        s = _EM_UNDER_RE.sub(r"\1", s)
        s = _STRIKE_RE.sub(r"\1", s)

    links: list[tuple[str, str, int, int]] = []
    out: list[str] = []
    pos = 0
    length = 0
    for m in _LINK_RE.finditer(s):
        before = s[pos : m.start()]
        out.append(before)
        length += len(before)
        anchor = m.group(1)
        links.append((anchor, m.group(2), length, length + len(anchor)))
        out.append(anchor)
        length += len(anchor)
        pos = m.end()
    out.append(s[pos:])
    text = "".join(out)
    # Restoring placeholders is one character for one character, so link offsets still hold.
    text = _restore(text)
    links = [(_restore(a), _restore(t), st, en) for a, t, st, en in links]
    return _Inline(text=text, links=links, images=images)


_NEEDS_COLLAPSE_RE = re.compile(r"[\t\u00a0]|  |^ | $")


def _collapse(inline: _Inline) -> _Inline:
    """Collapse runs of spaces left behind by removed markup, keeping link offsets right."""
    text = inline.text
    if not _NEEDS_COLLAPSE_RE.search(text) and all(0 <= st < en <= len(text) for _, _, st, en in inline.links):
        # Nothing to collapse (the common case): offsets stay as they are; the per-character pass below
        # would rebuild the same text and the same links.
        return _Inline(text=text, links=[(text[st:en], target, st, en) for _, target, st, en in inline.links], images=inline.images)
    keep: list[int] = []  # new index -> old index
    out: list[str] = []
    prev_space = True  # also trims leading space
    for i, ch in enumerate(text):
        is_space = ch in " \t\u00a0"
        if is_space and prev_space:
            continue
        out.append(" " if is_space else ch)
        keep.append(i)
        prev_space = is_space
    while out and out[-1] == " ":
        out.pop()
        keep.pop()
    old_to_new = {old: new for new, old in enumerate(keep)}

    def remap(start: int, end: int) -> tuple[int, int] | None:
        new_start = next((old_to_new[i] for i in range(start, end) if i in old_to_new), None)
        new_end = next((old_to_new[i] + 1 for i in range(end - 1, start - 1, -1) if i in old_to_new), None)
        if new_start is None or new_end is None:
            return None
        return new_start, new_end

    links = []
    for anchor, target, st, en in inline.links:
        span = remap(st, en)
        if span:
            links.append(("".join(out[span[0] : span[1]]), target, span[0], span[1]))
    return _Inline(text="".join(out), links=links, images=inline.images)


@dataclass
class _Block:
    kind: str  # "heading" | "para" | "image"
    level: int = 0
    lines: list[_Inline] = field(default_factory=list)
    image: tuple[str, str, str] | None = None  # src, alt, caption


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


def _heading(line: str) -> tuple[int, str] | None:
    """(level, raw text) when ``line`` is an ATX heading, one without the space, or an HTML h1-h6 line."""
    line = _LEADING_TAGS_RE.sub("", line)  # <a name="art1"></a>## Article 1
    m = _HEADING_RE.match(line) or _TIGHT_HEADING_RE.match(line)
    if m:
        return len(m.group(1)), m.group(2) or ""
    m = _HTML_HEADING_RE.match(line)
    if m:
        return int(m.group(1)), m.group(2)
    return None


def _blocks(body: str) -> list[_Block]:
    lines = body.split("\n")
    blocks: list[_Block] = []
    para: _Block | None = None
    i = 0

    def flush() -> None:
        nonlocal para
        if para is not None and any(line.text for line in para.lines):
            para.lines = [line for line in para.lines if line.text]
            blocks.append(para)
        para = None

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        fence = _FENCE_RE.match(line)
        if fence:
            flush()
            marker = fence.group(1)
            code: list[_Inline] = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(marker):
                if lines[i].strip():
                    code.append(_Inline(text=lines[i].rstrip()))
                i += 1
            i += 1
            if code:
                blocks.append(_Block(kind="para", lines=code))
            continue
        if not stripped:
            flush()
            i += 1
            continue
        heading = _heading(line)
        setext = None
        if heading is None and para is None and i + 1 < len(lines) and not _LIST_RE.match(line):
            setext = _SETEXT_RE.match(lines[i + 1])
            if setext:
                heading = (1 if setext.group(1)[0] == "=" else 2, stripped)
        if heading:
            flush()
            inline = _collapse(clean_inline(_ATTRS_RE.sub("", heading[1])))
            if inline.text:
                blocks.append(_Block(kind="heading", level=heading[0], lines=[inline]))
            i += 2 if setext else 1
            continue
        if _HR_RE.match(line) or _TABLE_SEP_RE.match(line) and "|" in line:
            flush()
            i += 1
            continue
        image_only = _IMAGE_RE.fullmatch(stripped)
        if image_only:
            flush()
            caption = ""
            if i + 1 < len(lines):
                cap = _CAPTION_RE.match(lines[i + 1])
                if cap:
                    caption = _collapse(clean_inline(cap.group(1) or cap.group(2))).text
                    i += 1
            src, alt = image_only.group(2), image_only.group(1)
            blocks.append(_Block(kind="image", image=(src, _collapse(clean_inline(alt)).text, caption)))
            i += 1
            continue
        if _REF_DEF_RE.match(line):  # [1]: https://... defines a link target; it is not prose
            flush()
            i += 1
            continue
        content = re.sub(r"^\s{0,3}(?:>\s?)+", "", line)  # blockquote markers, nested ones too
        content = re.sub(r"^\s{0,3}\[\^[^\]\s]+\]:\s*", "", content)  # a footnote's text stays, its label goes
        if "|" in content and content.strip().startswith("|"):
            cells = [c.strip() for c in content.strip().strip("|").split("|")]
            content = " | ".join(cells)
        inline = _collapse(clean_inline(content))
        if para is None:
            para = _Block(kind="para")
        if para.lines and not _LIST_RE.match(content) and not content.strip().startswith("|"):
            # A soft-wrapped line continues the previous line of its paragraph.
            prev = para.lines[-1]
            if inline.text:
                joined = prev.text + " " + inline.text if prev.text else inline.text
                shift = len(joined) - len(inline.text)
                prev.links.extend((a, t, s + shift, e + shift) for a, t, s, e in inline.links)
                prev.images.extend(inline.images)
                prev.text = joined
        else:
            para.lines.append(inline)
        i += 1
    flush()
    return blocks


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
    blocks = _blocks(body)

    entity = meta.get("entity") if isinstance(meta.get("entity"), dict) else {}
    title = _text_value(meta.get("title") or entity.get("primary"))
    headings = [b for b in blocks if b.kind == "heading"]
    # Title: front matter, else the one top-level heading, else the caller's (file name); never a
    # section heading, which would make every citation of a multi-part document read "Article I".
    top = [b for b in headings if b.level == 1]
    title_block: _Block | None = None
    if len(top) == 1 and (not title or _norm(top[0].lines[0].text) == _norm(title)):
        title_block = top[0]
    if not title:
        title = title_block.lines[0].text if title_block else fallback_title
    if not title:
        raise ArticleFormatError("article has no title: add 'title:' front matter or a '# Heading'")

    containers = {_norm(c) for c in container_headings}
    pieces: list[str] = []
    pos = 0
    links: list[Link] = []
    images: list[Image] = []
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    body_start: int | None = None
    current: tuple[str, ...] = (title,)

    def add(text: str) -> int:
        nonlocal pos
        if pieces:
            pieces.append("\n\n")
            pos += 2
        start = pos
        pieces.append(text)
        pos += len(text)
        return start

    def close_section() -> None:
        nonlocal body_start
        if body_start is not None and pos > body_start:
            sections.append(Section(breadcrumb=current, start=body_start, end=pos))
        body_start = None

    for block in blocks:
        if block.kind == "image":
            src, alt, caption = block.image
            images.append(Image(src=src, alt=alt, caption=caption, offset=pos))
            continue
        if block.kind == "heading":
            close_section()
            heading = block.lines[0]
            if block is title_block:
                add(heading.text)
                stack = []
                current = (title,)
                continue
            stack = [(lvl, txt) for lvl, txt in stack if lvl < block.level]
            if _norm(heading.text) in containers:
                current = (title, *[txt for _, txt in stack])
                continue
            start = add(heading.text)
            links.extend(Link(a, t, start + s, start + e) for a, t, s, e in heading.links)
            stack.append((block.level, heading.text))
            current = (title, *[txt for _, txt in stack])
            continue
        # paragraph
        text = "\n".join(line.text for line in block.lines)
        start = add(text)
        if body_start is None:
            body_start = start
        offset = start
        for line in block.lines:
            links.extend(Link(a, t, offset + s, offset + e) for a, t, s, e in line.links)
            images.extend(Image(src=src, alt=alt, caption="", offset=offset) for src, alt in line.images)
            offset += len(line.text) + 1
    close_section()

    text = "".join(pieces)
    if not sections:
        raise ArticleFormatError("article has no body text")

    slug = _text_value(meta.get("slug")) or fallback_slug or slugify(title)
    return Article(
        slug=slug,
        title=title,
        text=text,
        sections=tuple(sections),
        url=_text_value(meta.get("url")),
        source_path=source_path,
        categories=_categories(meta.get("categories") or entity.get("categories")),
        tags=_tags(meta.get("tags") or entity.get("tags")),
        author=_text_value(meta.get("author")),
        created_at=_text_value(meta.get("created_at") or meta.get("date")),
        updated_at=_text_value(meta.get("updated_at")),
        language=_text_value(meta.get("language")),
        description=_text_value(meta.get("description") or entity.get("disambiguation")),
        links=tuple(links),
        images=tuple(images),
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
