"""``rag serve`` and ``rag mcp``: the commands that run the service's interfaces (HTTP API, MCP server).

Registered into the one ``rag`` command by ``rag/cli.py`` and imported only when one of them runs.
"""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

from core.errors import RagError
from rag.cli import BackendOpt, CorpusOpt, IndexDirOpt, ModelOpt, prepare_query_encoder, settings_from


def index_is_current(settings) -> bool:
    """Whether the index exists and was built from the configured corpus, chunker and model."""
    from corpus.loader import corpus_fingerprint, load_corpus
    from rag.index.shards import read_sharded_manifest
    from rag.service import make_encoder
    from rag.text.tokens import ENCODING_NAME

    try:
        manifest = read_sharded_manifest(settings.index_dir)
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


def _corpus_of_the_index(settings):
    """Without RAG_CORPUS_DIR or --corpus, the folder the index was built from, while it exists: `make run`
    then keeps serving (and refreshing) a user's folder rather than building the bundled article in its place."""
    from pathlib import Path

    from rag.index.shards import read_sharded_manifest

    if "corpus_dir" in settings.model_fields_set:
        return settings
    try:
        built_from = (read_sharded_manifest(settings.index_dir).get("corpus") or {}).get("path")
    except RagError:
        return settings  # no index yet: build the configured corpus
    if not built_from or not Path(built_from).exists() or Path(built_from).resolve() == Path(settings.corpus_dir).resolve():
        return settings
    typer.echo(f"the index was built from {built_from}: serving that folder (RAG_CORPUS_DIR=DIR or --corpus DIR for another)", err=True)
    return settings.model_copy(update={"corpus_dir": Path(built_from)})


def _shared_metrics_dir(workers: int):
    """With several workers, a fresh folder where each one writes its metrics, so that /metrics
    sums them (prometheus_client's multiprocess mode); None with one worker or a folder set by hand."""
    from api.metrics import MULTIPROC_ENV

    if workers < 2 or os.environ.get(MULTIPROC_ENV):
        return None
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="rag-metrics-")
    os.environ[MULTIPROC_ENV] = folder  # the workers inherit it
    atexit.register(shutil.rmtree, folder, True)
    return folder


def serve_command(
    host: Annotated[Optional[str], typer.Option("--host", help="Interface to bind [env RAG_HOST; default 127.0.0.1].")] = None,
    port: Annotated[Optional[int], typer.Option("--port", min=1, max=65535, help="Port [env RAG_PORT; default 8000].")] = None,
    workers: Annotated[
        Optional[str], typer.Option("--workers", help="Worker processes, 1-64 or auto (one per core, bounded by memory) [env RAG_WORKERS; default auto].")
    ] = None,
    index_dir: IndexDirOpt = None,
    corpus: CorpusOpt = None,
    build_if_missing: Annotated[
        bool, typer.Option("--build-if-missing", help="Build the index first when it is missing or older than the corpus.")
    ] = False,
    backend: BackendOpt = None,
    model: ModelOpt = None,
    engine: Annotated[Optional[str], typer.Option("--engine", help="local, or ray: serve with Ray Serve [env RAG_ENGINE; default local].")] = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="A running Ray cluster [env RAG_RAY_ADDRESS; default: start a local one].")] = None,
    replicas: Annotated[Optional[int], typer.Option("--replicas", help="Replicas of the app on Ray [env RAG_REPLICAS; default 1].")] = None,
) -> None:
    """Serve the HTTP API and the chat widget."""
    settings = settings_from(
        host=host, port=port, workers=workers, index_dir=index_dir, corpus_dir=corpus, encoder_backend=backend, model_path=model,
        engine=engine, ray_address=ray_address, replicas=replicas,
    )
    if build_if_missing:
        settings = _corpus_of_the_index(settings)
        if not index_is_current(settings):
            _build_index(settings)
    _refuse_unservable(settings)
    _hand_settings_to_workers(settings)
    _export_once(settings)
    if settings.engine == "ray":  # Ray is imported only here (api/ray_serving.py)
        from api.ray_serving import run_on_ray

        typer.echo(f"serving on http://{settings.host}:{settings.port} (Ray Serve, replicas: {settings.replicas})", err=True)
        run_on_ray(_absolute(settings))
        return
    from api.serving import run
    from rag.settings import worker_count

    workers = worker_count(settings)
    auto = " (auto)" if settings.workers == "auto" else ""
    typer.echo(f"serving on http://{settings.host}:{settings.port} (workers: {workers}{auto})", err=True)
    from api.security import describe_rate_limit

    typer.echo(describe_rate_limit(settings.rate_limit, settings.rate_limit_storage, workers), err=True)
    _shared_metrics_dir(workers)
    run(settings.model_copy(update={"workers": workers}))


def _build_index(settings) -> None:
    """``--build-if-missing``: index the corpus before serving it."""
    from rag.service import index_corpus

    typer.echo(f"building the index of {settings.corpus_dir} ...", err=True)
    report = index_corpus(settings, warn=lambda message: typer.echo(f"warning: {message}", err=True))
    typer.echo(f"indexed {report.articles} articles into {report.chunks} chunks in {report.seconds:.1f} s", err=True)
    prepare_query_encoder(settings)


def _refuse_unservable(settings) -> None:
    """Refuse to start on a missing or damaged index or reader, or unusable keys, with one clear line."""
    from api.security import KeyRing, RateLimiter
    from rag.index import verify_files
    from rag.index.shards import read_sharded_manifest
    from rag.service import make_reader

    make_reader(settings)  # a missing or damaged reader says so now, not on the first question of every worker

    build_dir = settings.index_dir.resolve()
    verify_files(build_dir, read_sharded_manifest(build_dir))  # a sharded build's manifest lists every shard's files
    KeyRing.from_settings(settings)
    RateLimiter(settings.rate_limit, settings.rate_limit_storage).verify()  # Redis not answering: one line now


def _hand_settings_to_workers(settings) -> None:
    """Worker processes read their settings from the environment.

    Absolute, but not resolved: the index path is a link that re-indexing moves, and a
    reload must follow it to the new build.
    """
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
    if settings.reader_path:
        os.environ["RAG_READER_PATH"] = os.path.abspath(settings.reader_path)


def _absolute(settings):
    """The settings a replica on another process (or node) gets: the paths absolute, the index link unresolved."""
    paths = {"index_dir": os.path.abspath(settings.index_dir), "corpus_dir": os.path.abspath(settings.corpus_dir), "cache_dir": os.path.abspath(settings.cache_dir)}
    if settings.model_path:
        paths["model_path"] = os.path.abspath(settings.model_path)
    if settings.reader_path:
        paths["reader_path"] = os.path.abspath(settings.reader_path)
    return settings.model_copy(update={k: type(getattr(settings, k))(v) for k, v in paths.items()})


def _export_once(settings) -> None:
    """Export the ONNX model here, once, rather than in every worker at start-up."""
    if settings.encoder != "minilm" or settings.encoder_backend == "torch":
        return
    from rag.service import export_encoder

    export_encoder(settings, lambda message: typer.echo(message, err=True))


def mcp_command(
    index_dir: IndexDirOpt = None,
    http: Annotated[bool, typer.Option("--http", help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio.")] = False,
    host: Annotated[str, typer.Option("--host", help="Interface for --http.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port for --http.")] = 8001,
) -> None:
    """Serve the Model Context Protocol: tools search and ask, passages as resources (stdio by default)."""
    from rag.index.shards import read_sharded_manifest

    settings = settings_from(index_dir=index_dir)
    read_sharded_manifest(settings.index_dir.resolve())  # no index: one line now, not an error on the first call
    from api.mcp_server import create_server

    server = create_server(settings)
    if http:
        typer.echo(f"MCP over streamable HTTP at http://{host}:{port}/mcp", err=True)
        server.run("streamable-http", host=host, port=port)
    else:
        server.run()  # stdio: stdout carries the protocol, so nothing else may print there
