"""What the index knows (the document list) and adding files to the corpus while keeping the index whole.

Adding is all or nothing: the new files are parsed first (a file that cannot be read is refused
with its name and the reason), then copied into the corpus folder and indexed; if the build fails
the corpus folder is put back as it was, and the index in service is never touched because a build
only swaps the index link once it is complete.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from corpus.loader import DOCUMENT_SUFFIXES, CorpusError, parse_file
from core.errors import ConfigError


@dataclass(frozen=True)
class DocumentInfo:
    """One indexed document as a user sees it in `rag documents` and `GET /documents`."""

    slug: str
    title: str
    format: str
    url: str
    pages: int  # 0 for formats without pages
    sections: int
    chunks: int
    languages: tuple[str, ...]
    indexed_at: str
    source: str  # file name within the corpus


def list_documents(index) -> list[DocumentInfo]:
    """The documents of a loaded index, by title."""
    counts = index.chunk_counts()
    out = []
    for slug, meta in index.articles.items():
        source = meta.get("source_path") or ""
        out.append(
            DocumentInfo(
                slug=slug,
                title=meta.get("title", slug),
                format=meta.get("format") or "markdown",
                url=meta.get("url", ""),
                pages=int(meta.get("page_count") or 0),
                sections=int(meta.get("sections") or 0),
                chunks=counts.get(slug, 0),
                languages=tuple(meta.get("languages") or ([meta["language"]] if meta.get("language") else [])),
                indexed_at=meta.get("indexed_at", ""),
                source=Path(source.split(":")[0]).name if source else "",
            )
        )
    return sorted(out, key=lambda d: (d.title.casefold(), d.slug))


_SAFE_NAME_RE = re.compile(r"^\w[\w .,'&+()\-]{0,150}$")


def safe_file_name(name: str) -> str:
    """The base name of an uploaded or given file, refused when it could escape the corpus folder or is hidden."""
    base = Path(name.replace("\\", "/")).name
    if not base or not _SAFE_NAME_RE.match(base):
        raise CorpusError(name or "(no name)", "unusable file name; start it with a letter or digit and use a known suffix")
    if Path(base).suffix.lower() not in DOCUMENT_SUFFIXES:
        raise CorpusError(base, f"unsupported file type; use one of {', '.join(DOCUMENT_SUFFIXES)}")
    return base


@dataclass(frozen=True)
class AddedDocument:
    file: str
    slug: str
    title: str
    format: str
    replaced: bool


def check_documents(files: list[tuple[str, Path]]) -> list[AddedDocument]:
    """Parse every (name, path) before anything changes; the first unreadable file raises CorpusError naming it."""
    checked = []
    seen: dict[str, str] = {}
    for name, path in files:
        try:
            (article,) = parse_file(path)
        except CorpusError as exc:
            raise CorpusError(name, exc.reason) from None
        if article.slug in seen:
            raise CorpusError(name, f"has the same slug '{article.slug}' as {seen[article.slug]}; rename one of them")
        seen[article.slug] = name
        checked.append(AddedDocument(name, article.slug, article.title, article.format, False))
    return checked


def add_documents(
    files: list[tuple[str, Path]],
    corpus_dir: Path,
    build: Callable[[], object],
) -> tuple[list[AddedDocument], object]:
    """Copy checked files into ``corpus_dir`` and run ``build``; on any failure restore the folder and re-raise.

    ``files`` are (file name in the corpus, path of the content). Returns the added documents and
    what ``build`` returned (the build report).
    """
    if not corpus_dir.is_dir():
        raise ConfigError(f"{corpus_dir} is not a folder; documents can only be added to a corpus folder (RAG_CORPUS_DIR)")
    names = [(safe_file_name(name), path) for name, path in files]
    if len({n for n, _ in names}) != len(names):
        raise CorpusError(names[0][0], "the same file name is given twice")
    checked = check_documents(names)
    with tempfile.TemporaryDirectory(prefix=".rag-add-", dir=corpus_dir) as backup_dir:
        backup = Path(backup_dir)
        replaced: set[str] = set()
        try:
            for name, path in names:
                target = corpus_dir / name
                if target.exists():
                    shutil.copy2(target, backup / name)
                    replaced.add(name)
                shutil.copyfile(path, target)
            report = build()
        except BaseException:
            for name, _ in names:
                target = corpus_dir / name
                if name in replaced:
                    shutil.copy2(backup / name, target)
                else:
                    target.unlink(missing_ok=True)
            raise
    return [AddedDocument(d.file, d.slug, d.title, d.format, d.file in replaced) for d in checked], report
