"""Find and parse the articles of a corpus folder: markdown, plain text and BEIR ``corpus.jsonl``."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from collections.abc import Callable, Iterator
from pathlib import Path

from core.jsonl import JsonLinesError, beir_records
from corpus.markdown import (
    DEFAULT_CONTAINER_HEADINGS,
    ArticleFormatError,
    parse_markdown,
    parse_plain_text,
    slugify,
)
from corpus.builder import readable_title
from corpus.language import annotate_languages
from corpus.models import Article, Section

log = logging.getLogger(__name__)

MARKDOWN_SUFFIXES = (".md", ".markdown")
TEXT_SUFFIXES = (".txt",)
JSONL_SUFFIXES = (".jsonl",)
PDF_SUFFIXES = (".pdf",)
HTML_SUFFIXES = (".html", ".htm", ".xhtml")
DOCX_SUFFIXES = (".docx",)
RST_SUFFIXES = (".rst", ".rest")
DOCUMENT_SUFFIXES = MARKDOWN_SUFFIXES + TEXT_SUFFIXES + PDF_SUFFIXES + HTML_SUFFIXES + DOCX_SUFFIXES + RST_SUFFIXES
SUFFIXES = DOCUMENT_SUFFIXES + JSONL_SUFFIXES

#: The corpus that ships with the product.
DEFAULT_CORPUS_DIR = Path(__file__).resolve().parent / "data"


class CorpusError(ValueError):
    """A corpus file or folder that cannot be used; the message names it and says why."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def corpus_files(root: Path) -> list[Path]:
    """The article files under ``root`` (or ``root`` itself), in a stable order."""
    if not root.exists():
        raise CorpusError(root, "no such file or folder; set --corpus or RAG_CORPUS_DIR to a folder of articles")
    if root.is_file():
        if root.suffix.lower() not in SUFFIXES:
            raise CorpusError(root, f"unsupported file type; use one of {', '.join(SUFFIXES)}")
        return [root]
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in SUFFIXES and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise CorpusError(root, f"no articles found (looked for {', '.join(SUFFIXES)} files)")
    return files


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if not data.strip():
        raise CorpusError(path, "file is empty")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(
            path, f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); re-save the file as UTF-8"
        ) from None


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorpusError(path, f"cannot read: {exc.strerror}") from None
    if not data.strip():
        raise CorpusError(path, "file is empty")
    return data


def _parse_document(path: Path, suffix: str, container_headings: frozenset[str]) -> Article:
    title, slug, source = readable_title(path), slugify(path.stem), str(path)
    if suffix in PDF_SUFFIXES:
        from corpus.pdf import parse_pdf

        return parse_pdf(_read_bytes(path), source_path=source, fallback_title=title, slug=slug)
    if suffix in HTML_SUFFIXES:
        from corpus.webpage import parse_html

        return parse_html(_read_bytes(path), source_path=source, fallback_title=title, slug=slug)
    if suffix in DOCX_SUFFIXES:
        from corpus.word import parse_docx

        return parse_docx(_read_bytes(path), source_path=source, fallback_title=title, slug=slug)
    raw = _read_text(path)
    if suffix in RST_SUFFIXES:
        from corpus.rst import parse_rst

        return parse_rst(raw, source_path=source, fallback_title=title, slug=slug)
    if suffix in TEXT_SUFFIXES:
        return replace(parse_plain_text(raw, source_path=source, title=title, slug=slug), format="text")
    article = parse_markdown(
        raw, source_path=source, fallback_title=title, fallback_slug=slug, container_headings=container_headings
    )
    return replace(article, format="markdown")


def parse_file(path: Path, container_headings: frozenset[str] = DEFAULT_CONTAINER_HEADINGS) -> list[Article]:
    """Parse one file into its articles (one per document, many for a BEIR jsonl).

    Documents get each section's language (see :mod:`corpus.language`); BEIR corpora do not,
    as detection would dominate the time to read thousands of short records.
    """
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return list(iter_beir_corpus(path))
    if suffix not in DOCUMENT_SUFFIXES:
        raise CorpusError(path, f"unsupported file type; use one of {', '.join(SUFFIXES)}")
    try:
        article = _parse_document(path, suffix, container_headings)
    except ArticleFormatError as exc:
        raise CorpusError(path, str(exc)) from None
    return [annotate_languages(article)]


def iter_beir_corpus(path: Path) -> Iterator[Article]:
    """Articles from a BEIR ``corpus.jsonl`` (``{"_id", "title", "text"}`` per line)."""
    seen_any = False
    try:
        for lineno, record in beir_records(path, "corpus"):
            doc_id = str(record["_id"])
            text = " ".join(str(record.get("text") or "").split())
            title = " ".join(str(record.get("title") or "").split())
            if not text and not title:
                continue
            seen_any = True
            yield Article(
                slug=doc_id,
                title=title or doc_id,
                text=text or title,
                sections=(Section(breadcrumb=(title or doc_id,), start=0, end=len(text or title)),),
                url=str(record.get("url") or ""),
                source_path=f"{path}:{lineno}",
                format="beir",
                extra={"beir": True},
            )
    except JsonLinesError as exc:
        raise CorpusError(path, str(exc)) from None
    if not seen_any:
        raise CorpusError(path, "file is empty")


def load_corpus(
    root: str | Path,
    *,
    skip_bad: bool = False,
    warn: Callable[[str], None] | None = None,
    container_headings: frozenset[str] = DEFAULT_CONTAINER_HEADINGS,
) -> list[Article]:
    """Parse every article under ``root``.

    A file that cannot be parsed raises :class:`CorpusError`, or with ``skip_bad`` is reported
    through ``warn`` and left out. Two articles with the same slug are an error either way,
    because chunk ids and filters are keyed by slug.
    """
    root = Path(root)
    warn = warn or log.warning
    articles: list[Article] = []
    where: dict[str, str] = {}
    for path in corpus_files(root):
        try:
            parsed = parse_file(path, container_headings)
        except CorpusError as exc:
            if not skip_bad:
                raise
            warn(f"skipped {exc}")
            continue
        for article in parsed:
            if not article.url and not article.format == "beir" and root.is_dir():
                # A document without a URL of its own is found at its path in the folder, which
                # RAG_SOURCE_BASE_URL turns into a link when the folder is published.
                article = replace(article, url=path.relative_to(root).as_posix())
            if article.slug in where:
                raise CorpusError(
                    path, f"slug '{article.slug}' is already used by {where[article.slug]}; give each article its own slug"
                )
            where[article.slug] = article.source_path or str(path)
            articles.append(article)
    if not articles:
        raise CorpusError(root, "no usable articles (every file was skipped)")
    return articles


def article_fingerprint(article: Article) -> str:
    """Content hash of everything an index derives from one article."""
    meta = {k: v for k, v in article.metadata().items() if k != "source_path"}
    payload = json.dumps([meta, article.text, [s.__dict__ for s in article.sections]], sort_keys=True, default=list)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def corpus_fingerprint(articles: list[Article]) -> str:
    digest = hashlib.sha256()
    for article in sorted(articles, key=lambda a: a.slug):
        digest.update(article.slug.encode("utf-8") + b"\0" + article_fingerprint(article).encode() + b"\n")
    return digest.hexdigest()
