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
BackendOpt = Annotated[
    Optional[str], typer.Option("--backend", help="Encoder arithmetic: torch, onnx or onnx-int8 [env RAG_ENCODER_BACKEND; default torch].")
]
ModelOpt = Annotated[
    Optional[Path], typer.Option("--model", help="Folder of a model made by 'rag tune' [env RAG_MODEL_PATH; default: the bundled model].")
]


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
    backend: BackendOpt = None,
    model: ModelOpt = None,
) -> None:
    """Build (or refresh) the index of a corpus. Unchanged text is never embedded twice."""
    from rag.service import index_corpus

    settings = _settings(
        corpus_dir=corpus, index_dir=index_dir, vector_index=vector_index, encoder_backend=backend, model_path=model
    )
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
    model: ModelOpt = None,
) -> None:
    """Ranked passages for a query, with breadcrumbs and scores."""
    from rag.retrieve import MODES, Filters, Retriever
    from rag.service import make_encoder, open_index

    if mode not in MODES:
        raise typer.BadParameter(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}", param_hint="--mode")
    settings = _settings(index_dir=index_dir, model_path=model)
    encoder = None if mode == "bm25" else make_encoder(settings)
    idx = open_index(settings, encoder)
    retriever = Retriever(
        idx, encoder, rrf_k=settings.rrf_k, candidates=settings.candidates, fusion=settings.fusion, alpha=settings.alpha
    )
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


def _print_answer(answer) -> None:
    typer.echo(answer.answer)
    if answer.abstained:
        if answer.passages:
            typer.echo("\nRelated reading (low confidence):")
            for r in answer.passages[:3]:
                typer.echo(f"  - {' > '.join(r.chunk.section)}  [{r.chunk.id}]")
        return
    typer.echo("")
    for c in answer.citations:
        typer.echo(f"[{c.n}] {' > '.join(c.section)}  ({c.url or c.title})")
        quote = " ".join(c.quote.split())
        for line in textwrap.wrap(f'"{quote}"', width=100, initial_indent="    ", subsequent_indent="    "):
            typer.echo(line)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=50, help="Passages to draw the answer from.")] = 5,
    mode: ModeOpt = "hybrid",
    history: Annotated[Optional[list[str]], typer.Option("--history", help="An earlier question (repeatable, oldest first).")] = None,
    as_json: JsonOpt = False,
    index_dir: IndexDirOpt = None,
    model: ModelOpt = None,
) -> None:
    """A cited answer to a question, or a plain statement that the corpus does not cover it."""
    from rag.retrieve import MODES
    from rag.service import open_answer_service

    if mode not in MODES:
        raise typer.BadParameter(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}", param_hint="--mode")
    from api.schemas import MAX_QUESTION_CHARS, AskResponse, clean_text

    settings = _settings(index_dir=index_dir, model_path=model)
    question = clean_text(question)
    if not question:  # refused before the model loads, not after
        from rag.errors import QueryError

        raise QueryError("the question is empty; ask something about the corpus")
    if len(question) > MAX_QUESTION_CHARS:
        raise typer.BadParameter(f"the question is {len(question)} characters long; the limit is {MAX_QUESTION_CHARS}")
    service = open_answer_service(settings)
    answer = service.ask(question, top_k=k, mode=mode, history=history or [])
    if as_json:
        typer.echo(AskResponse.of(answer).model_dump_json(indent=2))
    else:
        _print_answer(answer)


def index_is_current(settings) -> bool:
    """Whether the index exists and was built from the configured corpus, chunker and model."""
    from corpus.loader import corpus_fingerprint, load_corpus
    from rag.index import read_manifest
    from rag.service import make_encoder
    from rag.tokens import ENCODING_NAME

    try:
        manifest = read_manifest(settings.index_dir)
    except RagError:
        return False
    encoder = make_encoder(settings)  # cheap: the model itself loads lazily
    if (manifest.get("model") or {}).get("name") != encoder.name or manifest["model"].get("dim") != encoder.dim:
        return False
    expected_chunker = {"max_tokens": settings.max_tokens, "overlap_tokens": settings.overlap_tokens, "tokenizer": ENCODING_NAME}
    chunker = {k: manifest.get("chunker", {}).get(k) for k in expected_chunker}
    if chunker != expected_chunker:
        return False
    return manifest.get("corpus", {}).get("fingerprint") == corpus_fingerprint(load_corpus(settings.corpus_dir))


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option("--host", help="Interface to bind [env RAG_HOST; default 127.0.0.1].")] = None,
    port: Annotated[Optional[int], typer.Option("--port", min=1, max=65535, help="Port [env RAG_PORT; default 8000].")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, max=64, help="Worker processes [env RAG_WORKERS].")] = None,
    index_dir: IndexDirOpt = None,
    corpus: CorpusOpt = None,
    build_if_missing: Annotated[
        bool, typer.Option("--build-if-missing", help="Build the index first when it is missing or older than the corpus.")
    ] = False,
    backend: BackendOpt = None,
    model: ModelOpt = None,
) -> None:
    """Serve the HTTP API and the chat widget."""
    import uvicorn

    from rag.index import read_manifest, verify_files

    settings = _settings(
        host=host, port=port, workers=workers, index_dir=index_dir, corpus_dir=corpus, encoder_backend=backend, model_path=model
    )
    if build_if_missing and not index_is_current(settings):
        from rag.service import index_corpus

        typer.echo(f"building the index of {settings.corpus_dir} ...", err=True)
        report = index_corpus(settings, warn=lambda message: typer.echo(f"warning: {message}", err=True))
        typer.echo(f"indexed {report.articles} articles into {report.chunks} chunks in {report.seconds:.1f} s", err=True)
    # Refuse to start on a missing or damaged index or unusable keys, with one clear line.
    build_dir = settings.index_dir.resolve()
    verify_files(build_dir, read_manifest(build_dir))
    from api.security import KeyRing

    KeyRing.from_settings(settings)
    # Worker processes read their settings from the environment.
    # Absolute, but not resolved: the index path is a link that re-indexing moves, and a
    # reload must follow it to the new build.
    os.environ.update(
        {
            "RAG_INDEX_DIR": os.path.abspath(settings.index_dir),
            "RAG_CORPUS_DIR": os.path.abspath(settings.corpus_dir),
            "RAG_CACHE_DIR": os.path.abspath(settings.cache_dir),
            "RAG_ENCODER_BACKEND": settings.encoder_backend,
        }
    )
    if settings.model_path:
        os.environ["RAG_MODEL_PATH"] = os.path.abspath(settings.model_path)
    if settings.encoder == "minilm" and settings.encoder_backend != "torch":
        # Export the ONNX model here, once, rather than in every worker at start-up.
        from embeddings.onnx import ensure_export
        from rag.service import make_encoder

        export_args = make_encoder(settings).export_args()
        ensure_export(settings.cache_dir, log_fn=lambda message: typer.echo(message, err=True), **export_args)
    typer.echo(f"serving on http://{settings.host}:{settings.port} (workers: {settings.workers})", err=True)
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=False,  # the app logs each request once, with its request id
        limit_concurrency=settings.limit_concurrency,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=30,  # SIGTERM: stop accepting, finish requests in flight
    )


# `rag eval qa|beir|compare|calibrate` (eval/cli.py) and `rag bench [scale]` (eval/bench.py, eval/scale.py)
from eval.cli import eval_app  # noqa: E402

app.add_typer(eval_app, name="eval")

from eval.bench import bench_app  # noqa: E402

app.add_typer(bench_app, name="bench")

# `rag tune` (rag/tune_cli.py): adapt the encoder to labelled questions
from rag.tune_cli import tune_command  # noqa: E402

app.command("tune")(tune_command)


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
