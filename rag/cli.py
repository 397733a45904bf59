"""The ``rag`` command line: index, search, ask, serve, eval, bench.

Errors end a command with one line on stderr and a non-zero exit code, never a traceback
(set ``RAG_DEBUG=1`` to see one).
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Annotated, Optional

import typer

from corpus.loader import CorpusError
from rag.errors import RagError

app = typer.Typer(
    name="rag",
    help="Cited question answering over encyclopedia articles.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

CorpusOpt = Annotated[
    Optional[Path], typer.Option("--corpus", help="Folder (or file) of articles [env RAG_CORPUS_DIR; default: bundled corpus].")
]
IndexDirOpt = Annotated[Optional[Path], typer.Option("--index-dir", help="Index location [env RAG_INDEX_DIR; default .rag-index].")]
ModeOpt = Annotated[str, typer.Option("--mode", help="hybrid, dense or bm25.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _settings(**overrides):
    from rag.settings import load_settings

    return load_settings(**overrides)


def _err(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


@app.command()
def index(
    corpus: CorpusOpt = None,
    index_dir: IndexDirOpt = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip files that cannot be parsed, with a warning.")] = False,
    vector_index: Annotated[Optional[str], typer.Option("--vector-index", help="auto, flat or hnsw.")] = None,
) -> None:
    """Build (or refresh) the index of a corpus. Unchanged text is never embedded twice."""
    from rag.service import index_corpus

    settings = _settings(corpus_dir=corpus, index_dir=index_dir, vector_index=vector_index)
    report = index_corpus(
        settings,
        skip_bad=skip_bad,
        warn=lambda message: typer.echo(f"warning: {message}", err=True),
    )
    typer.echo(
        f"indexed {report.articles} article{'s' * (report.articles != 1)} into {report.chunks} chunks "
        f"(embedded {report.embedded}, cached {report.cached}) in {report.seconds:.1f} s "
        f"-> {report.index_dir} [{report.vector_index}, build {report.build_id}]"
    )


def search_payload(query: str, results) -> dict:
    from rag.retrieve import result_dict

    return {"query": query, "results": [result_dict(r) for r in results]}


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="The question or keywords.")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=1000, help="Number of passages.")] = 5,
    mode: ModeOpt = "hybrid",
    as_json: JsonOpt = False,
    index_dir: IndexDirOpt = None,
    article: Annotated[Optional[list[str]], typer.Option("--article", help="Only this article slug (repeatable).")] = None,
    category: Annotated[Optional[list[str]], typer.Option("--category", help="Only articles in this category.")] = None,
    tag: Annotated[Optional[list[str]], typer.Option("--tag", help="Only articles with this tag.")] = None,
) -> None:
    """Ranked passages for a query, with breadcrumbs and scores."""
    from rag.retrieve import MODES, Filters, Retriever
    from rag.service import make_encoder, open_index

    if mode not in MODES:
        raise typer.BadParameter(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}", param_hint="--mode")
    settings = _settings(index_dir=index_dir)
    encoder = None if mode == "bm25" else make_encoder(settings)
    idx = open_index(settings, encoder)
    retriever = Retriever(idx, encoder, rrf_k=settings.rrf_k, candidates=settings.candidates)
    filters = Filters.from_mapping({"article": article, "category": category, "tag": tag})
    results = retriever.search(query, k=k, mode=mode, filters=filters)
    if as_json:
        typer.echo(json.dumps(search_payload(query, results), ensure_ascii=False, indent=2))
        return
    if not results:
        typer.echo("no passages matched")
        return
    for r in results:
        dense = "-" if r.dense_score is None else f"{r.dense_score:.3f}"
        typer.echo(f"{r.rank}. {' > '.join(r.chunk.section)}")
        typer.echo(f"   score {r.score:.4f} (dense {dense}, bm25 {r.bm25_score:.2f})  id {r.chunk.id}  {r.chunk.url}")
        for line in textwrap.wrap(r.chunk.text, width=100, initial_indent="   ", subsequent_indent="   "):
            typer.echo(line)
        typer.echo("")


def main() -> None:
    """Entry point: run the app, translating library errors into one line and an exit code."""
    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except (RagError, CorpusError) as exc:
        _err(str(exc))
        sys.exit(getattr(exc, "exit_code", 1))
    except typer.Abort:
        _err("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        _err("interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # a bug, not a user error: still one line unless debugging
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if os.environ.get("RAG_DEBUG"):
            raise
        _err(f"internal error ({exc.__class__.__name__}: {exc}); set RAG_DEBUG=1 for the traceback")
        sys.exit(70)


if __name__ == "__main__":
    main()
