"""``rag bench`` and ``rag bench scale``: the commands; the measuring lives in the modules beside this one."""

from __future__ import annotations

import datetime as _dt
import json
import os
import resource
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from core.errors import ConfigError
from eval.report import machine_info

BACKENDS = ("torch", "onnx", "onnx-int8")
SECTIONS = ("encoders", "build", "reindex", "query", "cli", "http")

bench_app = typer.Typer(
    help="Performance benchmarks: print tables and write JSON (figures, never pass/fail).",
    no_args_is_help=False,
    add_completion=False,
    rich_markup_mode=None,
)


@dataclass(frozen=True)
class Plan:
    """What one ``rag bench`` run measures, from its options, checked."""

    backends: list[str]
    sections: list[str]
    levels: list[int]
    serve_backend: str
    workers: int
    workers_asked: str
    data: Path | None
    docs: int
    articles: int
    requests: int
    rounds: int
    repeats: int
    cli_runs: int


def _choices(value: str, allowed: tuple[str, ...], option: str, what: str) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    for v in chosen:
        if v not in allowed:
            raise ConfigError(f"unknown {what} {v!r} in {option}; choose from: {', '.join(allowed)}")
    return chosen


def _levels(concurrency: str) -> list[int]:
    try:
        levels = sorted({int(c) for c in concurrency.split(",") if c.strip()})
    except ValueError:
        raise ConfigError(f"--concurrency must be comma-separated numbers, got {concurrency!r}") from None
    if not levels or levels[0] < 1:
        raise ConfigError("--concurrency needs at least one client count of 1 or more")
    return levels


def _measure(plan: Plan, settings, tmp: Path, log) -> dict:
    """Run the sections of ``plan`` in order; the figures of each, by section name."""
    from eval.bench.coldstart import bench_cli
    from eval.bench.indexing import bench_build, bench_encoders, bench_reindex
    from eval.bench.load import bench_http
    from eval.bench.query import bench_query
    from eval.bench.workloads import load_workload

    workload = load_workload(plan.data, plan.docs, tmp)
    results: dict = {"workload": workload.name}
    sections, serve_backend = plan.sections, plan.serve_backend
    encoders: dict = {}
    if "encoders" in sections:
        log(f"embedding throughput: {len(workload.passages)} passages x {plan.rounds} rounds, backends {', '.join(plan.backends)}")
        results["encoders"], encoders = bench_encoders(plan.backends, workload.passages, settings, plan.rounds, log)
    if "build" in sections:
        log("index builds:")
        results["build"] = bench_build(plan.backends, workload, settings, tmp, log)
    if "reindex" in sections:
        log("re-index after one edit:")
        results["reindex"] = bench_reindex(serve_backend, plan.articles, settings, tmp, log)
    index_dirs: dict = {}
    if "query" in sections or "http" in sections or "cli" in sections:
        log("query path in-process:")
        query_backends = plan.backends if "query" in sections else [serve_backend]
        if serve_backend not in query_backends:
            query_backends = [*query_backends, serve_backend]
        results["query"], index_dirs = bench_query(query_backends, encoders, settings, tmp, plan.repeats, log)
    encoders.clear()  # free the models before the server takes the cores
    if "cli" in sections:
        log("command line cold start:")
        results["cli"] = bench_cli(index_dirs[serve_backend], settings.cache_dir, serve_backend, plan.cli_runs, log)
    if "http" in sections:
        log(f"HTTP against rag serve ({serve_backend}, {plan.workers} worker(s), --workers {plan.workers_asked}):")
        results["http"] = bench_http(serve_backend, index_dirs[serve_backend], settings, plan.levels, plan.requests, plan.workers, tmp, log)
    return results


@bench_app.callback(invoke_without_command=True)
@bench_app.callback(invoke_without_command=True)
def bench_command(
    ctx: typer.Context,
    backend: Annotated[
        Optional[str], typer.Option("--backend", help="Backend of the query path and the HTTP server [env RAG_ENCODER_BACKEND].")
    ] = None,
    compare: Annotated[str, typer.Option("--compare", help="Backends measured side by side (comma-separated).")] = ",".join(BACKENDS),
    data: Annotated[Optional[Path], typer.Option("--data", help="BEIR folder for the workload [default ../shared/datasets/scifact].")] = None,
    docs: Annotated[int, typer.Option("--docs", min=8, max=100_000, help="Passages in the embedding and build workload.")] = 400,
    articles: Annotated[int, typer.Option("--articles", min=10, max=100_000, help="Synthetic articles for the re-index figure.")] = 1000,
    requests: Annotated[int, typer.Option("--requests", min=10, max=100_000, help="Requests per route and concurrency (at least 10 per client).")] = 200,
    concurrency: Annotated[str, typer.Option("--concurrency", help="Client counts for the HTTP runs.")] = "1,8,32",
    workers: Annotated[str, typer.Option("--workers", help="Server processes for the HTTP runs: 1-64 or auto (rag serve's default).")] = "auto",
    rounds: Annotated[int, typer.Option("--rounds", min=1, max=20, help="Alternating rounds of the throughput runs.")] = 3,
    repeats: Annotated[int, typer.Option("--repeats", min=1, max=100, help="Passes over the questions in the in-process runs.")] = 2,
    cli_runs: Annotated[int, typer.Option("--cli-runs", min=1, max=100, help="Alternating cold runs of the command line.")] = 10,
    only: Annotated[Optional[str], typer.Option("--only", help=f"Sections to run (comma-separated): {', '.join(SECTIONS)}.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="JSON results [default artifacts/bench/bench-<time>.json].")] = None,
) -> None:
    """Measure indexing, the query path, HTTP serving and memory; print tables and write JSON."""
    if ctx.invoked_subcommand is not None:
        return
    from eval.bench.report import render, targets
    from rag.settings import load_settings, worker_count

    settings = load_settings(encoder_backend=backend)
    plan = Plan(
        backends=_choices(compare, BACKENDS, "--compare", "backend"),
        sections=_choices(only or ",".join(SECTIONS), SECTIONS, "--only", "section"),
        levels=_levels(concurrency),
        serve_backend=settings.encoder_backend,
        workers=worker_count(load_settings(encoder_backend=backend, workers=workers)),
        workers_asked=workers,
        data=data, docs=docs, articles=articles, requests=requests, rounds=rounds, repeats=repeats, cli_runs=cli_runs,
    )  # fmt: skip
    out = out or Path("artifacts/bench") / f"bench-{_dt.datetime.now().strftime('%Y%m%dT%H%M%S')}.json"
    results: dict = {
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "threads": settings.threads or os.cpu_count(),
        "serve_backend": plan.serve_backend,
    }
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp_name:
        results.update(_measure(plan, settings, Path(tmp_name), lambda message: typer.echo(message, err=True)))
    results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    results["targets"] = targets(results)
    results["bench_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    typer.echo(render(results))
    typer.echo(f"\nresults: {out}")


@bench_app.command("scale")
def scale_command(
    sizes: Annotated[str, typer.Option("--sizes", help="Numbers of vectors (comma-separated).")] = "10000,100000,1000000",
    queries: Annotated[int, typer.Option("--queries", min=10, max=10_000, help="Queries per size.")] = 200,
    compare_hnsw: Annotated[
        bool, typer.Option("--compare-hnsw/--no-compare-hnsw", help="Also build HNSW at sizes where the product picks exact search.")
    ] = True,
    out: Annotated[Optional[Path], typer.Option("--out", help="JSON results [default artifacts/bench/scale-<time>.json].")] = None,
) -> None:
    """The vector store at growing sizes: build time, memory per vector, search latency, recall@10 (synthetic vectors)."""
    from eval.bench.scale import render, run_scale
    from rag.settings import load_settings

    try:
        counts = [int(x) for x in sizes.replace("_", "").split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--sizes must be comma-separated numbers, got {sizes!r}") from None
    if not counts or min(counts) < 100:
        raise ConfigError("--sizes needs numbers of at least 100")
    out = out or Path("artifacts/bench") / f"scale-{_dt.datetime.now().strftime('%Y%m%dT%H%M%S')}.json"
    results = run_scale(counts, load_settings(), out, n_queries=queries, also_hnsw=compare_hnsw, log=lambda m: typer.echo(m, err=True))
    typer.echo(render(results))
    typer.echo(f"\nresults: {out}")


@bench_app.command("ray")
def ray_command(
    data: Annotated[Path, typer.Option("--data", help="A BEIR folder whose documents the build and memory figures index.")] = Path("../shared/datasets/scifact"),
    docs: Annotated[int, typer.Option("--docs", min=10, help="Documents of the Ray build comparison.")] = 300,
    clients: Annotated[str, typer.Option("--clients", help="Concurrent clients of the serving rows (comma-separated).")] = "1,4",
    duration: Annotated[float, typer.Option("--duration", min=1.0, help="Seconds per serving row.")] = 15.0,
) -> None:
    """Scale-out figures on Ray: build (1 vs 2 actors vs local), serving (replicas, shards), memory per shard."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("ray") is None:
        raise ConfigError("rag bench ray needs the ray extra: pip install -e '.[ray]'")
    if not (data / "corpus.jsonl").is_file():
        raise ConfigError(f"{data}: no corpus.jsonl here; pass --data a BEIR dataset folder (SciFact: ../shared/datasets/scifact)")
    if not all(c.strip().isdigit() and int(c) >= 1 for c in clients.split(",")):
        raise ConfigError(f"--clients must be comma-separated numbers of 1 or more, got {clients!r}")
    for args in (
        ["eval.bench.ray_build", "--data", str(data), "--docs", str(docs)],
        ["eval.bench.ray_serve", "--clients", clients, "--duration", str(duration)],
        ["eval.bench.shard_memory", "--data", str(data)],
    ):
        typer.echo(f"$ python -m {' '.join(args)}", err=True)
        code = subprocess.call([sys.executable, "-m", *args])
        if code:
            raise typer.Exit(code)
