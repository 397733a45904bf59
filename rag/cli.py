"""The ``rag`` command line: index, add, documents, search, ask here; serve, mcp, eval, bench, tune and
train-reader registered by name (``rag.commands``) and imported from their own packages only when they run, so that
``rag --help`` and ``rag search`` load neither the API nor the evaluation harness.

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
from core.errors import RagError
from rag.commands import LazyGroup, root

app = typer.Typer(
    name="rag",
    cls=LazyGroup,
    help="Cited question answering over encyclopedia articles.",
    no_args_is_help=True, callback=root,
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
BackendOpt = Annotated[
    Optional[str], typer.Option("--backend", help="Encoder arithmetic: torch, onnx or onnx-int8 [env RAG_ENCODER_BACKEND; default torch].")
]
ModelOpt = Annotated[
    Optional[Path], typer.Option("--model", help="Folder of a model made by 'rag tune' [env RAG_MODEL_PATH; default: the bundled model].")
]


def settings_from(**overrides):
    """The settings of this run: the environment's, with the command's options on top."""
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
    backend: BackendOpt = None,
    model: ModelOpt = None,
    engine: Annotated[Optional[str], typer.Option("--engine", help="local, or ray: build on a Ray cluster [env RAG_ENGINE; default local].")] = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="A running Ray cluster [env RAG_RAY_ADDRESS; default: start a local one].")] = None,
    shards: Annotated[Optional[int], typer.Option("--shards", help="Shards by a hash of the chunk id [env RAG_SHARDS; default 1].")] = None,
    actors: Annotated[Optional[int], typer.Option("--actors", help="Embedding actors of a Ray build [env RAG_RAY_ACTORS; default one per CPU].")] = None,
) -> None:
    """Build (or refresh) the index of a corpus. Unchanged text is never embedded twice."""
    from rag.service import index_corpus

    settings = settings_from(
        corpus_dir=corpus, index_dir=index_dir, vector_index=vector_index, encoder_backend=backend, model_path=model,
        engine=engine, ray_address=ray_address, shards=shards, ray_actors=actors,
    )
    warn = lambda message: typer.echo(f"warning: {message}", err=True)  # noqa: E731
    if settings.engine == "ray":  # Ray is imported only here (rag/shards/ray_build.py)
        from rag.shards.ray_build import index_with_ray

        report = index_with_ray(settings, skip_bad=skip_bad, warn=warn)
    else:
        report = index_corpus(settings, skip_bad=skip_bad, warn=warn)
    typer.echo(
        f"indexed {report.articles} article{'s' * (report.articles != 1)} into {report.chunks} chunks "
        f"(embedded {report.embedded}, cached {report.cached}) in {report.seconds:.1f} s "
        f"-> {report.index_dir} [{report.vector_index}, build {report.build_id}] from {_corpus_name(settings)}"
    )
    prepare_query_encoder(settings)


def prepare_query_encoder(settings) -> None:
    """Export the ONNX graph of the indexed model (bundled or tuned) that ``rag search`` and ``rag ask``
    encode questions with, once per cache folder; without it the first question would wait for the export."""
    from rag.service import export_encoder, query_backend

    if settings.encoder == "minilm" and query_backend(settings.encoder_backend) != settings.encoder_backend:
        export_encoder(settings, lambda message: typer.echo(message, err=True))


def _corpus_name(settings) -> str:
    """Which articles a build read: the bundled folder unless told otherwise, which is easy to miss."""
    from corpus.loader import DEFAULT_CORPUS_DIR

    where = Path(settings.corpus_dir).resolve()
    if where == DEFAULT_CORPUS_DIR.resolve():
        return f"the bundled corpus {where} (--corpus DIR or RAG_CORPUS_DIR=DIR to index another)"
    return str(where)


def _announce_loading(settings, with_model: bool = True) -> None:
    """One line on stderr before the slow part, so a user knows what the wait is for; stdout stays the result.
    The manifest is read first: a missing or unreadable index fails with its own one-line error."""
    from embeddings import query_backend
    from rag.index.shards import read_sharded_manifest

    manifest = read_sharded_manifest(settings.index_dir)
    chunks = (manifest.get("counts") or {}).get("chunks", "?")
    model = (manifest.get("model") or {}).get("name", settings.encoder)
    backend = f" ({query_backend(settings.encoder_backend)})" if settings.encoder == "minilm" else ""  # what questions use
    what = f"the model {model}{backend} and " if with_model else ""
    typer.echo(f"loading {what}the index {settings.index_dir} ({chunks} passages) ...", err=True)


@app.command()
def add(
    files: Annotated[list[Path], typer.Argument(help="Documents to add: .md .txt .rst .html .pdf .docx.")],
    corpus: CorpusOpt = None,
    index_dir: IndexDirOpt = None,
    backend: BackendOpt = None,
) -> None:
    """Copy documents into the corpus folder and update the index (all or nothing)."""
    from rag.documents import add_documents
    from rag.service import index_corpus, update_settings

    settings = update_settings(settings_from(corpus_dir=corpus, index_dir=index_dir, encoder_backend=backend))
    for path in files:
        if not path.is_file():
            raise CorpusError(path, "no such file")
    added, report = add_documents(
        [(path.name, path) for path in files],
        settings.corpus_dir,
        lambda: index_corpus(settings, warn=lambda message: typer.echo(f"warning: {message}", err=True)),
    )
    for doc in added:
        typer.echo(f"{'updated' if doc.replaced else 'added'} {doc.file}: {doc.title} ({doc.format})")
    typer.echo(
        f"indexed {report.articles} documents into {report.chunks} chunks (embedded {report.embedded}, cached {report.cached}) "
        f"in {report.seconds:.1f} s [build {report.build_id}]; a running server picks it up on POST /admin/reload or SIGHUP"
    )


@app.command()
def documents(index_dir: IndexDirOpt = None, as_json: JsonOpt = False) -> None:
    """List the indexed documents: title, format, pages or sections, chunks, language, when indexed."""
    from dataclasses import asdict

    from rag.documents import list_documents
    from rag.index import load_index

    settings = settings_from(index_dir=index_dir)
    docs = list_documents(load_index(settings.index_dir, None, verify=False, mmap=True))
    if as_json:
        typer.echo(json.dumps([asdict(d) for d in docs], ensure_ascii=False, indent=2))
        return
    for d in docs:
        size = f"{d.pages} pages" if d.pages else f"{d.sections} sections"
        typer.echo(f"{d.title}  [{d.format}, {size}, {d.chunks} chunks, {','.join(d.languages) or '?'}, indexed {d.indexed_at}]  {d.source}")
    typer.echo(f"{len(docs)} document{'s' * (len(docs) != 1)}")


def search_payload(query: str, results) -> dict:
    from rag.search.retrieve import result_dict

    return {"query": query, "results": [result_dict(r) for r in results]}


UrlOpt = Annotated[
    Optional[str],
    typer.Option(
        "--url",
        envvar="RAG_URL",
        show_envvar=False,
        help="Ask the server running at this URL instead of loading the index [env RAG_URL; key from RAG_API_KEY].",
    ),
]


def _check_mode(mode: str) -> None:
    from rag.search.modes import MODES

    if mode not in MODES:
        raise typer.BadParameter(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}", param_hint="--mode")


def _loading_query_encoder(settings):
    """The question encoder (no PyTorch: ``embeddings.query_backend``), already loading in a thread
    while this process imports and opens the index: the two take about as long as each other."""
    import threading

    from embeddings import get_encoder, query_backend

    encoder = get_encoder(
        settings.encoder,
        threads=settings.threads,
        backend=query_backend(settings.encoder_backend),
        cache_dir=settings.cache_dir,
        model_path=settings.model_path,
    )

    def warm_up() -> None:
        from embeddings.onnx import export_ready

        try:
            # Only a finished export is loaded ahead; a missing one is made by the first question,
            # in the foreground, with a message (and not at all by a command that fails before it).
            # (a tuned model's export is keyed by its fingerprint: it is made in the foreground, never
            # here, where a process that exits early would abort in the middle of it)
            if settings.encoder != "minilm" or (settings.model_path is None and export_ready(settings.cache_dir)):
                encoder.warm_up()
        except Exception:  # noqa: BLE001 - the first question loads again and reports the error
            pass

    threading.Thread(target=warm_up, name="load-encoder", daemon=True).start()
    return encoder


def _local_search(settings, query: str, k: int, mode: str, filters: dict) -> dict:
    """Search the index in this process."""
    _check_mode(mode)
    from core.errors import QueryError
    from rag.search.retrieve import Filters, Retriever, unmatched_filters
    from rag.service import open_index

    if not query.strip():  # refused before the model loads, not after
        raise QueryError("the query is empty; ask a question")
    parsed = Filters.from_mapping(filters)
    encoder = None if mode == "bm25" else _loading_query_encoder(settings)  # a bad --model fails here, first
    from rag.index.shards import is_sharded

    _announce_loading(settings, with_model=mode != "bm25")
    if is_sharded(settings.index_dir):  # rag/shards/service.py: every shard searched, merged as one index
        from rag.shards.service import open_sharded_retriever

        retriever = open_sharded_retriever(settings, encoder)
    else:
        retriever = Retriever(
            open_index(settings, encoder, mmap=True), encoder,
            rrf_k=settings.rrf_k, candidates=settings.candidates, fusion=settings.fusion, alpha=settings.alpha,
        )
    problem = unmatched_filters(retriever.index, parsed)
    if problem:
        raise QueryError(problem)
    return search_payload(query, retriever.search(query, k=k, mode=mode, filters=parsed))


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
    language: Annotated[Optional[list[str]], typer.Option("--language", help="Only passages in this language (en, fr, ...).")] = None,
    url: UrlOpt = None,
    model: ModelOpt = None,
) -> None:
    """Ranked passages for a query, with breadcrumbs and scores."""
    filters = {"article": article, "category": category, "tag": tag, "language": language}
    if url:
        from rag import remote

        payload = remote.search(url, query, k=k, mode=mode, filters=filters)
    else:
        payload = _local_search(settings_from(index_dir=index_dir, model_path=model), query, k, mode, filters)
    if as_json:
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    if not payload["results"]:
        typer.echo("no passages matched")
        return
    for r in payload["results"]:
        dense = "-" if r["dense_score"] is None else f"{r['dense_score']:.3f}"
        typer.echo(f"{r['rank']}. {' > '.join(r['section'])}")
        typer.echo(f"   score {r['score']:.4f} (dense {dense}, bm25 {r['bm25_score']:.2f})  id {r['passage_id']}  {r['url']}")
        for line in textwrap.wrap(r["text"], width=100, initial_indent="   ", subsequent_indent="   "):
            typer.echo(line)
        typer.echo("")


def _print_answer(answer: dict) -> None:
    """An answer body (``/ask``'s JSON) as text: the short answer, the answer, what it leaves out, its sources."""
    from rag.payloads import short_answer_line
    if short := short_answer_line(answer):
        typer.echo(f"{short}\n")
    typer.echo(answer["answer"])
    note = answer.get("abstention")
    if note and not answer["abstained"]:
        typer.echo(f"\nNot covered: {note['message']}")
    if answer["abstained"]:
        if answer["passages"]:
            typer.echo("\nRelated reading (does not answer the question):")
            for r in answer["passages"][:3]:
                typer.echo(f"  - {' > '.join(r['section'])}  [{r['passage_id']}]")
        return
    typer.echo("")
    for c in answer["citations"]:
        where = (c["url"] or c["title"]) + (f", p. {c['page']}" if c.get("page") else "")
        typer.echo(f"[{c['n']}] {' > '.join(c['section'])}  ({where})")
        quote = " ".join(c["quote"].split())
        for line in textwrap.wrap(f'"{quote}"', width=100, initial_indent="    ", subsequent_indent="    "):
            typer.echo(line)


def _local_answer(settings, encoder, question: str, k: int, mode: str, history: list[str]) -> dict:
    """Answer in this process."""
    _check_mode(mode)
    from rag.payloads import AskResponse
    from rag.service import open_service

    _announce_loading(settings)
    service = open_service(settings, encoder)
    return AskResponse.of(service.ask(question, top_k=k, mode=mode, history=history)).model_dump(mode="json")


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=50, help="Passages to draw the answer from.")] = 5,
    mode: ModeOpt = "hybrid",
    history: Annotated[Optional[list[str]], typer.Option("--history", help="An earlier question (repeatable, oldest first).")] = None,
    as_json: JsonOpt = False,
    index_dir: IndexDirOpt = None,
    url: UrlOpt = None,
    model: ModelOpt = None,
) -> None:
    """A cited answer to a question, or a plain statement that the corpus does not cover it."""
    settings = None if url else settings_from(index_dir=index_dir, model_path=model)
    encoder = None if url else _loading_query_encoder(settings)
    from rag.payloads import MAX_QUESTION_CHARS, clean_text

    question = clean_text(question)
    if not question:  # refused before the model loads, not after
        from core.errors import QueryError

        raise QueryError("the question is empty; ask something about the corpus")
    if len(question) > MAX_QUESTION_CHARS:
        raise typer.BadParameter(f"the question is {len(question)} characters long; the limit is {MAX_QUESTION_CHARS}")
    if url:
        from rag import remote

        answer = remote.ask(url, question, top_k=k, mode=mode, history=history or [])
    else:
        answer = _local_answer(settings, encoder, question, k, mode, history or [])
    if as_json:
        typer.echo(json.dumps(answer, ensure_ascii=False, indent=2))
    else:
        _print_answer(answer)


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
    except typer.TyperException as exc:  # usage errors from the command-line parser
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # bare `rag`: the help text, not an error
        else:
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            _err(f"{message} (see 'rag --help')")
        sys.exit(getattr(exc, "exit_code", 2))
    except Exception as exc:  # a bug, not a user error: still one line unless debugging
        if os.environ.get("RAG_DEBUG"):
            raise
        _err(f"internal error ({exc.__class__.__name__}: {exc}); set RAG_DEBUG=1 for the traceback")
        sys.exit(70)


if __name__ == "__main__":
    main()
