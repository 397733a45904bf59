"""``rag index --engine ray``: the index built on a Ray cluster.

Ray Data reads (parses) the corpus files and chunks the articles in tasks; a pool of long-lived actors
embeds chunks, answer units and words (each actor loads the encoder once and runs it on one thread);
each shard is analysed and written as a task. The driver keeps what must be in one place: the build
lock, the embedding cache (only texts it lacks go to the actors), the corpus-wide BM25 statistics and
the atomic publish. Every node must read the corpus and write the index folder at the same paths
(shared storage). Ray is imported only here, so local commands never load it.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from core.errors import ConfigError
from corpus.loader import CorpusError, corpus_files, parse_file
from corpus.models import Article
from embeddings.base import Encoder
from rag.text.chunking import Chunk, ChunkerConfig, chunk_article
from rag.faults import checkpoint

ACTOR_NAME = "rag-embed-{}"  # named, so an operator (or a test) can find and kill one
NAMESPACE = "rag"


@dataclass(frozen=True)
class EncoderSpec:
    """How a worker makes the encoder the driver uses (a picklable recipe, not the loaded model)."""

    name: str
    backend: str
    cache_dir: str
    model_path: str | None

    def make(self, threads: int = 1) -> Encoder:
        from embeddings import get_encoder

        return get_encoder(self.name, threads=threads, backend=self.backend, cache_dir=self.cache_dir, model_path=self.model_path)


def connect(address: str | None, *, num_cpus: int | None = None, object_store_memory: int = 500_000_000) -> None:
    """Join the cluster at ``address``, or start a local one-machine cluster when none is given."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray engine needs the ray extra: pip install -e '.[ray]' (or use --engine local)") from None

    if ray.is_initialized():
        return
    if address:
        _check_reachable(address)
    try:
        if address:
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
        else:
            ray.init(
                num_cpus=num_cpus or os.cpu_count(),
                object_store_memory=object_store_memory,
                include_dashboard=False,
                namespace=NAMESPACE,
                log_to_driver=False,
            )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise ConfigError(
            f"cannot reach {where} ({str(exc).splitlines()[0][:160]}); start one with 'ray start --head' and pass its address "
            "with --ray-address or RAG_RAY_ADDRESS"
        ) from None


def _check_reachable(address: str) -> None:
    """Fail in seconds, with a clear line, when nothing listens at a ``host:port`` address (Ray itself
    retries for minutes); other forms (``auto``, ``ray://``) are left to Ray."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or "/" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as exc:
        raise ConfigError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc.__class__.__name__}); start one with "
            "'ray start --head' and pass the address it prints with --ray-address or RAG_RAY_ADDRESS"
        ) from None


# ------------------------------------------------------------------------------ reading and chunking


def _parse_rows(batch: dict) -> dict:
    """Ray Data: parse a batch of files; a file that fails becomes an error row (the driver decides)."""
    out = {"file": [], "blob": [], "error": []}
    for i, path in zip(batch["file"], batch["path"]):
        try:
            articles, error = parse_file(Path(path)), ""
        except CorpusError as exc:
            articles, error = [], str(exc)
        out["file"].append(int(i))
        out["blob"].append(pickle.dumps(articles))
        out["error"].append(error)
    return out


def read_corpus(root: str | Path, *, skip_bad: bool = False, warn: Callable[[str], None] | None = None) -> list[Article]:
    """Every article under ``root`` parsed by Ray Data tasks, with the checks and order of ``load_corpus``."""
    import ray

    root = Path(root)
    files = corpus_files(root)
    rows = (
        ray.data.from_items([{"file": i, "path": str(p)} for i, p in enumerate(files)])
        .map_batches(_parse_rows, batch_size=8)
        .take_all()
    )
    articles: list[Article] = []
    where: dict[str, str] = {}
    for row in sorted(rows, key=lambda r: r["file"]):
        path = files[row["file"]]
        if row["error"]:
            if not skip_bad:
                raise CorpusError(path, row["error"].split(": ", 1)[-1])
            (warn or print)(f"skipped {row['error']}")
            continue
        for article in pickle.loads(row["blob"]):
            if not article.url and article.format != "beir" and root.is_dir():
                article = replace(article, url=path.relative_to(root).as_posix())
            if article.slug in where:
                raise CorpusError(path, f"slug '{article.slug}' is already used by {where[article.slug]}; give each article its own slug")
            where[article.slug] = article.source_path or str(path)
            articles.append(article)
    if not articles:
        raise CorpusError(root, "no usable articles (every file was skipped)")
    return articles


class _Chunker:
    """Ray Data callable: chunks articles with the model's tokenizer (loaded once per worker)."""

    def __init__(self, spec: EncoderSpec, chunker: ChunkerConfig):
        self.encoder = spec.make()
        self.chunker = chunker

    def __call__(self, batch: dict) -> dict:
        chunks = [pickle.dumps(chunk_article(pickle.loads(b), self.chunker, fits_model=self.encoder.fits)) for b in batch["blob"]]
        return {"i": batch["i"], "chunks": chunks}


def chunk_with_ray(spec: EncoderSpec) -> Callable[[list[Article], ChunkerConfig], list[list[Chunk]]]:
    def chunk(articles: list[Article], chunker: ChunkerConfig) -> list[list[Chunk]]:
        import ray

        if not articles:
            return []
        ds = ray.data.from_items([{"i": i, "blob": pickle.dumps(a)} for i, a in enumerate(articles)])
        workers = ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, int(ray.cluster_resources().get("CPU", 1))))
        rows = ds.map_batches(_Chunker, fn_constructor_args=(spec, chunker), batch_size=16, compute=workers).take_all()
        made: list[list[Chunk]] = [[] for _ in articles]
        for row in rows:
            made[int(row["i"])] = pickle.loads(row["chunks"])
        return made

    return chunk


# ------------------------------------------------------------------------------ embedding actors


class EmbedWorker:
    """A long-lived embedding actor: the encoder loads once, runs on one thread."""

    def __init__(self, spec: EncoderSpec):
        self.encoder = spec.make(threads=1)
        self.encoder.warm_up()

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.encoder.embed_batch(texts)


class PoolEncoder(Encoder):
    """The driver's encoder, with its batches embedded by a pool of Ray actors (same name, model and vectors)."""

    def __init__(self, local: Encoder, spec: EncoderSpec, actors: int, *, cpus_per_actor: float = 1.0):
        self.local, self.spec, self.count, self.cpus_per_actor = local, spec, actors, cpus_per_actor
        self.name, self.dim, self.backend = local.name, local.dim, local.backend
        self.max_input_tokens = local.max_input_tokens
        self.actors: list = []
        self.pool = None

    def start(self) -> None:
        """Start the actors (on the first batch, so that reading and chunking have the CPUs until then)."""
        import ray
        from ray.util import ActorPool

        if self.pool is not None:
            return
        remote = ray.remote(EmbedWorker)
        options = dict(num_cpus=self.cpus_per_actor, max_restarts=3, max_task_retries=3, namespace=NAMESPACE)
        self.actors = [remote.options(name=ACTOR_NAME.format(i), **options).remote(self.spec) for i in range(self.count)]
        ray.get([a.embed.remote(["ready"]) for a in self.actors])  # every encoder loaded, or its error raised here
        self.pool = ActorPool(self.actors)
        checkpoint("ray-embedding")

    @property
    def fingerprint(self) -> str:
        return self.local.fingerprint

    @property
    def cache_key(self) -> str:
        return self.local.cache_key

    def count_tokens(self, text: str) -> int:
        return self.local.count_tokens(text)

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed(texts)

    def embed(self, texts: Sequence[str], batch_size: int = 64, progress: bool | None = None, desc: str = "embedding") -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        self.start()
        batches = [list(texts[s : s + batch_size]) for s in range(0, len(texts), batch_size)]
        parts = list(self.pool.map(lambda actor, batch: actor.embed.remote(batch), batches))
        return np.concatenate(parts).astype(np.float32, copy=False)

    def shutdown(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors, self.pool = [], None


# ------------------------------------------------------------------------------ the build


def run_as_tasks(fn: Callable, items: list) -> list:
    """Map ``fn`` over ``items`` as Ray tasks (one per shard), results in order."""
    import ray

    task = ray.remote(num_cpus=1, max_retries=2)(fn)
    return ray.get([task.remote(item) for item in items])


def index_with_ray(settings, *, actors: int | None = None, skip_bad: bool = False, progress: bool | None = None, warn=None, log=lambda m: None):
    """Build and publish the index of ``settings.corpus_dir`` on the Ray cluster ``settings.ray_address``."""
    from rag.service import build_options, make_encoder, window_warning
    from rag.index.shard_build import Steps, build_sharded

    connect(settings.ray_address)
    import ray

    local = make_encoder(settings)
    problem = window_warning(settings, local)
    if problem and warn is not None:
        warn(problem)
    spec = EncoderSpec(settings.encoder, settings.encoder_backend, str(Path(settings.cache_dir).resolve()), str(settings.model_path) if settings.model_path else None)
    articles = read_corpus(settings.corpus_dir, skip_bad=skip_bad, warn=warn)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    count = actors or settings.ray_actors or max(1, min(cpus, 8))
    if count > cpus:
        raise ConfigError(f"{count} embedding actors need {count} CPUs but the Ray cluster has {cpus}; set --actors {cpus} or fewer")
    pool = PoolEncoder(local, spec, count)
    try:
        return build_sharded(
            articles,
            settings.index_dir,
            pool,
            shards=settings.shards,
            **build_options(settings),
            progress=progress,
            steps=Steps(chunk=chunk_with_ray(spec), run=run_as_tasks, before_shards=pool.shutdown),
            log=log,
        )
    finally:
        pool.shutdown()
