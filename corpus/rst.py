"""reStructuredText through docutils: the parsed doctree gives sections, their ids and the prose.

docutils promotes a lone top-level section title to the document title (and its subtitle),
which is the "single top-level heading" rule; without one the file name is the title.
"""

from __future__ import annotations

from corpus.builder import DocumentBuilder, clean_line
from corpus.markdown import ArticleFormatError
from corpus.models import Article

# Elements whose text is prose a reader would quote; everything else is walked into or skipped.
_PROSE = ("paragraph", "line_block", "literal_block", "doctest_block", "term", "attribution", "caption", "rubric")
_SKIP = ("comment", "substitution_definition", "target", "system_message", "raw", "pending", "image",
         "docinfo", "title", "subtitle", "footnote_reference", "citation_reference")


def _walk(node, builder: DocumentBuilder, depth: int) -> None:
    from docutils import nodes

    for child in node.children:
        if isinstance(child, nodes.section):
            title = next((c for c in child.children if isinstance(c, nodes.title)), None)
            ids = child.get("ids") or []
            builder.heading(title.astext() if title is not None else "", depth + 1, ids[-1] if ids else "")  # an explicit target comes last
            _walk(child, builder, depth + 1)
        elif child.tagname in _SKIP:
            continue
        elif child.tagname in _PROSE:
            lines = [clean_line(line) for line in child.astext().split("\n")]
            if child.tagname in ("literal_block", "line_block", "doctest_block"):
                builder.paragraph("\n".join(line for line in lines if line))
            else:
                builder.paragraph(clean_line(" ".join(lines)))
        elif isinstance(child, nodes.Element):
            _walk(child, builder, depth)


def parse_rst(raw: str, *, source_path: str = "", fallback_title: str, slug: str) -> Article:
    """One reStructuredText file as an article."""
    from docutils.core import publish_doctree

    overrides = {
        "report_level": 5,  # no warnings on stderr: a malformed construct becomes text or is skipped
        "halt_level": 5,
        "file_insertion_enabled": False,  # `.. include::` must not read other files on the server
        "raw_enabled": False,
        "input_encoding": "unicode",
        "doctitle_xform": True,
    }
    try:
        doctree = publish_doctree(raw, source_path=source_path or None, settings_overrides=overrides)
    except Exception as exc:  # docutils raises many types for input it cannot read at all
        raise ArticleFormatError(f"not readable as reStructuredText ({exc.__class__.__name__})") from None
    title = clean_line(doctree.get("title", "")) or fallback_title
    builder = DocumentBuilder(title)
    info = {}
    from docutils import nodes

    for field in doctree.findall(nodes.docinfo):
        for item in field.children:
            info[item.tagname] = clean_line(item.astext())
    _walk(doctree, builder, 0)
    if not builder.has_text:
        raise ArticleFormatError("the document has no text")
    return builder.build(slug=slug, source_path=source_path, format="rst", author=info.get("author", ""),
                         created_at=info.get("date", ""))
