"""Markdown markup to blocks: each line's inline markup stripped (link anchors and targets kept), lines
grouped into headings, paragraphs and standalone images. corpus/markdown.py lays the blocks out as an
article's text.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

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


def _protect(ch: str) -> str:
    return chr(_PUA_BASE + _ESCAPABLE.index(ch))


def _restore(text: str) -> str:
    return _PUA_RE.sub(lambda m: _ESCAPABLE[ord(m.group()) - _PUA_BASE], text)


@dataclass
class Inline:
    text: str
    links: list[tuple[str, str, int, int]] = field(default_factory=list)  # text, target, start, end
    images: list[tuple[str, str]] = field(default_factory=list)  # src, alt


def clean_inline(raw: str) -> Inline:
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
    return Inline(text=text, links=links, images=images)


_NEEDS_COLLAPSE_RE = re.compile(r"[\t\u00a0]|  |^ | $")


def _collapse(inline: Inline) -> Inline:
    """Collapse runs of spaces left behind by removed markup, keeping link offsets right."""
    text = inline.text
    if not _NEEDS_COLLAPSE_RE.search(text) and all(0 <= st < en <= len(text) for _, _, st, en in inline.links):
        # Nothing to collapse (the common case): offsets stay as they are; the per-character pass below
        # would rebuild the same text and the same links.
        return Inline(text=text, links=[(text[st:en], target, st, en) for _, target, st, en in inline.links], images=inline.images)
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
    return Inline(text="".join(out), links=links, images=inline.images)


@dataclass
class Block:
    kind: str  # "heading" | "para" | "image"
    level: int = 0
    lines: list[Inline] = field(default_factory=list)
    image: tuple[str, str, str] | None = None  # src, alt, caption


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


class BlockReader:
    """Reads a markdown body line by line into blocks: headings, paragraphs (list items and table rows
    are their lines) and standalone images; fences keep their text, rules and link definitions go."""

    def __init__(self, body: str):
        self.lines = body.split("\n")
        self.blocks: list[Block] = []
        self.para: Block | None = None
        self.i = 0

    def read(self) -> list[Block]:
        steps = (self._fence, self._blank, self._heading, self._rule, self._image, self._reference)
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if not any(step(line) for step in steps):
                self._prose(line)
                self.i += 1
        self._flush()
        return self.blocks

    def _flush(self) -> None:
        para = self.para
        if para is not None and any(line.text for line in para.lines):
            para.lines = [line for line in para.lines if line.text]
            self.blocks.append(para)
        self.para = None

    def _skip(self, lines: int = 1) -> bool:
        """End the paragraph and pass over ``lines`` lines."""
        self._flush()
        self.i += lines
        return True

    def _fence(self, line: str) -> bool:
        """A fenced code block: its non-blank lines become one paragraph."""
        fence = _FENCE_RE.match(line)
        if not fence:
            return False
        self._flush()
        marker = fence.group(1)
        code: list[Inline] = []
        self.i += 1
        while self.i < len(self.lines) and not self.lines[self.i].strip().startswith(marker):
            if self.lines[self.i].strip():
                code.append(Inline(text=self.lines[self.i].rstrip()))
            self.i += 1
        self.i += 1
        if code:
            self.blocks.append(Block(kind="para", lines=code))
        return True

    def _blank(self, line: str) -> bool:
        return not line.strip() and self._skip()

    def _heading(self, line: str) -> bool:
        """An ATX or HTML heading, or a setext one (a line underlined by === or ---) that starts no paragraph."""
        heading = _heading(line)
        setext = None
        lines, i = self.lines, self.i
        if heading is None and self.para is None and i + 1 < len(lines) and not _LIST_RE.match(line):
            setext = _SETEXT_RE.match(lines[i + 1])
            if setext:
                heading = (1 if setext.group(1)[0] == "=" else 2, line.strip())
        if not heading:
            return False
        self._flush()
        inline = _collapse(clean_inline(_ATTRS_RE.sub("", heading[1])))
        if inline.text:
            self.blocks.append(Block(kind="heading", level=heading[0], lines=[inline]))
        self.i += 2 if setext else 1
        return True

    def _rule(self, line: str) -> bool:
        """A horizontal rule or a table's separator row."""
        return bool(_HR_RE.match(line) or _TABLE_SEP_RE.match(line) and "|" in line) and self._skip()

    def _image(self, line: str) -> bool:
        """An image alone on its line, with the caption line under it, if any."""
        image_only = _IMAGE_RE.fullmatch(line.strip())
        if not image_only:
            return False
        self._flush()
        caption = ""
        if self.i + 1 < len(self.lines):
            cap = _CAPTION_RE.match(self.lines[self.i + 1])
            if cap:
                caption = _collapse(clean_inline(cap.group(1) or cap.group(2))).text
                self.i += 1
        src, alt = image_only.group(2), image_only.group(1)
        self.blocks.append(Block(kind="image", image=(src, _collapse(clean_inline(alt)).text, caption)))
        self.i += 1
        return True

    def _reference(self, line: str) -> bool:
        """[1]: https://... defines a link target; it is not prose."""
        return bool(_REF_DEF_RE.match(line)) and self._skip()

    def _prose(self, line: str) -> None:
        """A line of a paragraph: a new line for list items and table rows, else joined to the line before."""
        content = re.sub(r"^\s{0,3}(?:>\s?)+", "", line)  # blockquote markers, nested ones too
        content = re.sub(r"^\s{0,3}\[\^[^\]\s]+\]:\s*", "", content)  # a footnote's text stays, its label goes
        if "|" in content and content.strip().startswith("|"):
            cells = [c.strip() for c in content.strip().strip("|").split("|")]
            content = " | ".join(cells)
        inline = _collapse(clean_inline(content))
        if self.para is None:
            self.para = Block(kind="para")
        para = self.para
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


def read_blocks(body: str) -> list[Block]:
    return BlockReader(body).read()
