"""Word documents (.docx) through python-docx: heading styles become sections, tables stay rows.

The title is the paragraph styled ``Title``, else the single ``Heading 1``, else the document's
core properties, else the file name.
"""

from __future__ import annotations

import io
import re
import zipfile

from corpus.builder import DocumentBuilder, clean_line, plausible_title
from corpus.markdown import ArticleFormatError
from corpus.models import Article

_HEADING_STYLE_RE = re.compile(r"^heading\s*(\d)$", re.I)


def _level(paragraph) -> int | None:
    """Heading level from the paragraph's style (or the style it is based on); 0 for Title."""
    style = paragraph.style
    while style is not None:
        name = (style.name or "").strip()
        if name.lower() == "title":
            return 0
        m = _HEADING_STYLE_RE.match(name)
        if m:
            return int(m.group(1))
        style = style.base_style
    return None


def _blocks(document):
    """(kind, level, text) in reading order: paragraphs and table rows."""
    from docx.table import Table

    for item in document.iter_inner_content():
        if isinstance(item, Table):
            for row in item.rows:
                cells: list[str] = []
                for cell in row.cells:
                    text = clean_line(" ".join(p.text for p in cell.paragraphs))
                    if text and (not cells or cells[-1] != text):  # merged cells repeat their text
                        cells.append(text)
                if cells:
                    yield "para", None, " | ".join(cells)
            continue
        text = "\n".join(clean_line(line) for line in item.text.split("\n") if clean_line(line))
        if text:
            yield ("heading" if _level(item) is not None else "para"), _level(item), text


def parse_docx(data: bytes, *, source_path: str = "", fallback_title: str, slug: str) -> Article:
    """One Word document as an article."""
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ArticleFormatError(f"not a readable Word (.docx) document ({exc.__class__.__name__}); save it again as .docx") from None
    blocks = list(_blocks(document))
    titles = [b for b in blocks if b[0] == "heading" and b[1] == 0]
    h1s = [b for b in blocks if b[0] == "heading" and b[1] == 1]
    props = document.core_properties
    if titles:
        title_block = titles[0]
    elif len(h1s) == 1:
        title_block = h1s[0]
    else:
        title_block = None
    title = title_block[2].replace("\n", " ") if title_block else plausible_title(props.title) or fallback_title
    builder = DocumentBuilder(title)
    for block in blocks:
        kind, level, text = block
        if block is title_block:
            continue
        if kind == "heading":
            builder.heading(text.replace("\n", " "), max(level, 1))
        else:
            builder.paragraph(text)
    if not builder.has_text:
        raise ArticleFormatError("the document has no text")
    return builder.build(
        slug=slug, source_path=source_path, format="docx", author=clean_line(props.author or ""),
        language=clean_line(props.language or ""), description=clean_line(props.subject or ""),
    )
