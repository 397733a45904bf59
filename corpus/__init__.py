"""The corpus: finding article files and turning them into clean text with sections and metadata.

Formats (markdown and plain text, PDF, HTML, Word, reStructuredText) each have a parser that returns an
:class:`Article`; ``loader`` finds the files and picks the parser. May import ``core`` and third-party
libraries only, never ``rag``, ``api`` or ``eval``: the layers above read articles, articles know nothing of them.
"""

from corpus.loader import DEFAULT_CORPUS_DIR, CorpusError, corpus_fingerprint, load_corpus, parse_file
from corpus.markdown import parse_markdown, parse_plain_text
from corpus.models import Article, Category, Image, Link, Section

__all__ = [
    "DEFAULT_CORPUS_DIR",
    "Article",
    "Category",
    "CorpusError",
    "Image",
    "Link",
    "Section",
    "corpus_fingerprint",
    "load_corpus",
    "parse_file",
    "parse_markdown",
    "parse_plain_text",
]
