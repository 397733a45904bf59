"""PDF files: text lines with positions from pdfplumber, outline and metadata from pypdf.

Reading order follows the layout: a page with two columns is read left column, then right,
between any full-width lines (a title across both). Lines that repeat in the top or bottom
margin of most pages (running headers and footers) and bare page numbers are dropped; a word
hyphenated at a line end is joined again. Sections come from the outline (bookmarks) when the
file has one, else from the layout: lines in a larger type than the body are headings, one
level per size. Every paragraph remembers its page, so every passage can cite "p. N".
"""

from __future__ import annotations

import io
import logging
import re
from collections import Counter
from dataclasses import dataclass
from statistics import median

from corpus.builder import DocumentBuilder, clean_line, plausible_title
from corpus.markdown import ArticleFormatError
from corpus.models import Article

# Both libraries log every oddity of a damaged file; the parser reports what matters as one error instead.
for _name in ("pypdf", "pdfminer"):
    logging.getLogger(_name).setLevel(logging.ERROR)

_MARGIN = 0.09  # top and bottom share of a page where running headers and footers live
_PAGE_NUMBER_RE = re.compile(r"^(page|p\.|seite)?\s*[-–(]?\s*([0-9]+|[ivxlcdm]+)\s*[-–)]?(\s*(/|of|de|von)\s*[0-9]+)?$", re.I)
_SENTENCE_END = tuple('.!?:;"”’)]')
_BOLD_RE = re.compile(r"bold|black|heavy|semibold|demi", re.I)


@dataclass
class _Line:
    text: str
    top: float
    bottom: float
    x0: float
    x1: float
    size: float
    page: int  # 1-based
    bold: bool = False
    heading: int = 0  # level, 0 = body


def _cluster(words: list[dict], tolerance: float = 2.5) -> list[list[dict]]:
    """Words grouped into lines by their top coordinate, each line left to right."""
    lines: list[list[dict]] = []
    for word in sorted(words, key=lambda w: (round(w["top"]), w["x0"])):
        if lines and abs(lines[-1][0]["top"] - word["top"]) <= tolerance:
            lines[-1].append(word)
        else:
            lines.append([word])
    return [sorted(line, key=lambda w: w["x0"]) for line in lines]


def _line(words: list[dict], page: int) -> _Line:
    text = " ".join(w["text"] for w in words)
    weights = Counter()
    for w in words:
        weights[round(float(w.get("size", 0)), 1)] += len(w["text"])
    return _Line(
        text=clean_line(text), top=min(w["top"] for w in words), bottom=max(w["bottom"] for w in words),
        x0=min(w["x0"] for w in words), x1=max(w["x1"] for w in words), size=weights.most_common(1)[0][0], page=page,
        bold=all(_BOLD_RE.search(str(w.get("fontname", ""))) for w in words),
    )


def _gutter(words: list[dict], width: float) -> float | None:
    """The x of an empty vertical band in the middle of the page that splits two columns, if any."""
    if len(words) < 20:
        return None
    best: tuple[float, float] | None = None
    x = width * 0.3
    while x <= width * 0.7:
        crossing = sum(1 for w in words if w["x0"] < x < w["x1"])
        if crossing <= len(words) * 0.01:
            left = sum(1 for w in words if w["x1"] <= x)
            if left >= len(words) * 0.2 and len(words) - left - crossing >= len(words) * 0.2:
                if best is None or crossing < best[1] or (crossing == best[1] and abs(x - width / 2) < abs(best[0] - width / 2)):
                    best = (x, crossing)
        x += 2.0
    return best[0] if best else None


def _page_lines(page, number: int) -> list[_Line]:
    """The page's lines in reading order (columns resolved)."""
    # Word breaks: a space character, or a gap wider than 0.15 of the type size. The default fixed 3 points
    # runs words together in PDFs that place each word with no space character between (TeX, FOP).
    words = page.extract_words(extra_attrs=["size", "fontname"], keep_blank_chars=False, x_tolerance_ratio=0.15)
    if not words:
        return []
    body = [w for w in words if page.height * _MARGIN < w["top"] < page.height * (1 - _MARGIN)]
    gutter = _gutter(body, page.width)
    if gutter is None:
        return [_line(ws, number) for ws in _cluster(words)]
    out: list[_Line] = []
    band: dict[str, list[dict]] = {"L": [], "R": []}

    def flush_band() -> None:
        for side in ("L", "R"):
            out.extend(_line(ws, number) for ws in _cluster(band[side]))
            band[side] = []

    for line in _cluster(words):
        if any(w["x0"] < gutter < w["x1"] for w in line):  # a full-width line: a title, a running header
            flush_band()
            out.append(_line(line, number))
        else:
            for w in line:
                band["L" if w["x1"] <= gutter else "R"].append(w)
    flush_band()
    return out


def _furniture_key(line: _Line) -> str:
    return re.sub(r"\d+", "#", line.text.casefold())


def _drop_furniture(pages: list[list[_Line]], heights: list[float]) -> list[list[_Line]]:
    """Remove running headers and footers (margin lines repeated on most pages) and page numbers."""

    def in_margin(line: _Line, height: float) -> bool:
        return line.bottom < height * _MARGIN or line.top > height * (1 - _MARGIN)

    counts = Counter()
    for lines, height in zip(pages, heights):
        counts.update({_furniture_key(line) for line in lines if in_margin(line, height)})
    repeated = {key for key, n in counts.items() if len(pages) >= 2 and n >= max(2, len(pages) // 2)}
    return [
        [
            line
            for line in lines
            if not (in_margin(line, height) and (_furniture_key(line) in repeated or _PAGE_NUMBER_RE.match(line.text)))
        ]
        for lines, height in zip(pages, heights)
    ]


def _norm(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.casefold())


def _apply_outline(lines: list[_Line], outline: list[tuple[int, str, int]]) -> list[_Line]:
    """Mark the lines that carry each outline entry's title as headings; entries not found open at their page's top."""
    result = list(lines)
    position = 0
    for level, title, page in outline:
        target = _norm(title)
        found = False
        for i in range(position, len(result)):
            line = result[i]
            if line.page < page:
                continue
            if line.page > page + 1:
                break
            if not _norm(line.text) or not target.startswith(_norm(line.text)):
                continue
            joined, j = _norm(line.text), i + 1
            while joined != target and j < len(result) and target.startswith(joined + _norm(result[j].text)):
                joined += _norm(result[j].text)
                j += 1
            if joined == target:
                merged = _Line(title, line.top, result[j - 1].bottom, line.x0, line.x1, line.size, line.page, heading=level)
                result[i:j] = [merged]
                position, found = i + 1, True
                break
        if not found:
            at = next((k for k in range(position, len(result)) if result[k].page >= page), len(result))
            result.insert(at, _Line(title, 0, 0, 0, 0, 0, page, heading=level))
            position = at + 1
    return result


def _apply_layout(lines: list[_Line]) -> list[_Line]:
    """Headings from type size: larger than the body text, one level per size, wrapped headings merged."""
    weights = Counter()
    for line in lines:
        weights[line.size] += len(line.text)
    if not weights:
        return lines
    body = weights.most_common(1)[0][0]
    sizes = sorted({line.size for line in lines if line.size >= body * 1.15 and len(line.text) <= 200}, reverse=True)
    levels = {size: i + 1 for i, size in enumerate(sizes[:6])}
    # Documents set in one size (many agency and UN PDFs) mark headings by a bold line of their own:
    # the level below the larger sizes, when the body itself is not bold.
    body_bold = sum(len(l.text) for l in lines if l.size == body and l.bold) > weights[body] / 2
    bold_level = len(levels) + 1
    out: list[_Line] = []
    for line in lines:
        level = levels.get(line.size, 0)
        if not level and not body_bold and _bold_heading(line):
            level = bold_level
        if level and out and out[-1].heading == level and out[-1].page == line.page and 0 <= line.top - out[-1].bottom < line.size:
            out[-1].text += " " + line.text  # a heading wrapped over two lines
            out[-1].bottom = line.bottom
            continue
        line.heading = level
        out.append(line)
    return out


def _bold_heading(line: _Line) -> bool:
    text = line.text
    return (
        line.bold and 2 <= len(text) <= 120 and not text.endswith((".", ",", ";", ":")) and (text[:1].isupper() or text[:1].isdigit())
    )


def _join(previous: str, line: str) -> str:
    if re.search(r"[^\W\d_]-$", previous) and line[:1].islower():
        return previous[:-1] + line  # "satel-" + "lite": a word hyphenated at the line end
    return previous + " " + line


def _continues(previous: _Line, line: _Line, gap_limit: float) -> bool:
    """Whether ``line`` continues the paragraph that ``previous`` ends."""
    if line.page != previous.page or line.top < previous.top:  # next page or next column
        return not previous.text.endswith(_SENTENCE_END) and line.text[:1].islower()
    return line.top - previous.bottom <= gap_limit


def _outline(reader) -> list[tuple[int, str, int]]:
    """(level, title, 1-based page) of every outline entry, in document order."""
    entries: list[tuple[int, str, int]] = []

    def visit(items, level: int) -> None:
        for item in items:
            if isinstance(item, list):
                visit(item, level + 1)
                continue
            try:
                page = reader.get_destination_page_number(item)
            except Exception:  # a broken destination: the entry is of no use for sections
                page = None
            title = clean_line(str(getattr(item, "title", "") or ""))
            if title and page is not None:
                entries.append((level, title, page + 1))

    try:
        visit(reader.outline, 1)
    except Exception:  # an unreadable outline: fall back to the layout
        return []
    return entries


def parse_pdf(data: bytes, *, source_path: str = "", fallback_title: str, slug: str) -> Article:
    """One PDF as an article with a page for every paragraph."""
    import pdfplumber
    from pdfminer.pdfparser import PDFSyntaxError
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    if not data.lstrip().startswith(b"%PDF"):
        raise ArticleFormatError("not a PDF file (it does not start with %PDF)")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ArticleFormatError("the PDF is encrypted; save an unprotected copy")
        outline = _outline(reader)
        meta = reader.metadata or {}
        with pdfplumber.open(io.BytesIO(data)) as pdf:
            pages = [_page_lines(page, i + 1) for i, page in enumerate(pdf.pages)]
            heights = [float(page.height) for page in pdf.pages]
    except ArticleFormatError:
        raise
    except (PdfReadError, PDFSyntaxError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ArticleFormatError(f"not a readable PDF ({exc.__class__.__name__}); the file may be damaged") from None
    lines = [line for page_lines in _drop_furniture(pages, heights) for line in page_lines if line.text]
    if not lines:
        raise ArticleFormatError("the PDF has no text layer (a scan?); run OCR on it first")
    return _assemble(lines, outline, plausible_title(meta.get("/Title")), fallback_title, len(pages), slug, source_path,
                     author=clean_line(str(meta.get("/Author") or "")))


def _assemble(lines, outline, meta_title, fallback_title, page_count, slug, source_path, author) -> Article:
    lines = _apply_outline(lines, outline) if outline else _apply_layout(lines)
    top = [line for line in lines if line.heading == 1]
    title_line = top[0] if len(top) == 1 and top[0].page == 1 else None
    title = title_line.text if title_line else meta_title or fallback_title
    shift = 1 if title_line else 0  # the title's children become the top sections
    builder = DocumentBuilder(title)
    gap = median([b.top - a.bottom for a, b in zip(lines, lines[1:]) if b.page == a.page and 0 <= b.top - a.bottom] or [0])
    gap_limit = max(gap * 1.6, 1.5)
    para: list[_Line] = []
    text, marks = "", []

    def flush() -> None:
        nonlocal text, marks
        if text:
            builder.paragraph(text, marks)
        text, marks, para[:] = "", [], []

    for line in lines:
        if line.heading:
            flush()
            builder.page(line.page)
            if line is not title_line:
                builder.heading(line.text, max(1, line.heading - shift))
            continue
        if para and _continues(para[-1], line, gap_limit):
            joined = _join(text, line.text)
            if line.page != para[-1].page:
                marks.append((len(joined) - len(line.text), line.page))
            text = joined
        else:
            flush()
            builder.page(line.page)
            text = line.text
        para.append(line)
    flush()
    return builder.build(slug=slug, source_path=source_path, format="pdf", page_count=page_count, author=author)
