"""Serving on Ray: requests/s and latency through Ray Serve with 1 and 2 replicas and 1 and 2 shards,
against local ``rag serve``.

    python -m eval.bench.ray_serve [--backend onnx-int8] [--clients 1,4] [--duration 15]

Indexes the bundled corpus twice (one index, and two shards), then runs ``rag serve --workers 1``,
``rag serve --engine ray --replicas 1`` and ``--replicas 2`` on the one index, and the same two on the
sharded build (each on a one-machine Ray cluster it starts itself) one after the other, and loads each
with ``eval.bench.loadtest`` (two /ask for one /search) at each number of concurrent clients. Prints
requests/s, /ask p50 and p95, errors, the machine's load average before and after each run, and the
memory (proportional set size, PSS: shared pages divided among their users) of each kind of Serve
replica after the load. The load generator shares the machine's cores with the server it measures.
Needs the ray extra.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from eval.live_server import LiveServer

#: name -> (arguments of rag serve, which index)
CONFIGS = {
    "local rag serve (1 worker)": ([], "index"),
    "ray, 1 replica": (["--engine", "ray", "--replicas", "1"], "index"),
    "ray, 2 replicas": (["--engine", "ray", "--replicas", "2"], "index"),
    "ray, 2 shards, 1 replica": (["--engine", "ray", "--replicas", "1"], "sharded"),
    "ray, 2 shards, 2 replicas": (["--engine", "ray", "--replicas", "2"], "sharded"),
}


def _index(root: Path, backend: str) -> dict[str, str]:
    """The bundled corpus indexed with ``backend``, once whole and once in two shards (folder "sharded");
    the environment every server of the run gets."""
    from corpus import DEFAULT_CORPUS_DIR
    from rag.service import index_corpus
    from rag.settings import load_settings

    env = {
        "RAG_INDEX_DIR": str(root / "index"), "RAG_CACHE_DIR": str(root / "cache"), "RAG_CORPUS_DIR": str(DEFAULT_CORPUS_DIR),
        "RAG_ENCODER_BACKEND": backend, "RAG_RATE_LIMIT": "", "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1",
    }
    settings = load_settings(index_dir=root / "index", cache_dir=root / "cache", corpus_dir=DEFAULT_CORPUS_DIR, encoder_backend=backend)
    index_corpus(settings, progress=False)
    index_corpus(settings.model_copy(update={"index_dir": root / "sharded", "shards": 2}), progress=False)
    return env


def replica_memory() -> dict[str, list[float]]:
    """PSS in MB of each running Serve replica process of the app, by deployment (RagApp, Shard000, ...)."""
    out: dict[str, list[float]] = {}
    for proc in Path("/proc").iterdir():
        try:
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "ServeReplica:rag:" not in title:
                continue
            deployment = title.split("ServeReplica:rag:", 1)[1].split()[0]
            rollup = (proc / "smaps_rollup").read_text()
        except OSError:
            continue
        pss = next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
        out.setdefault(deployment, []).append(round(pss / 1024, 1))
    return out


def _load(url: str, clients: int, duration: float) -> dict:
    from eval.bench.loadtest import run

    args = argparse.Namespace(url=url, concurrency=clients, duration=duration, api_key=None, reindex_at=None)
    return asyncio.run(run(args))


def _measure(name: str, extra: list[str], env: dict[str, str], clients: list[int], duration: float, root: Path) -> list[dict]:
    extra, index = extra
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | env | {"RAG_INDEX_DIR": str(root / index)}
    server = LiveServer(server_env, args=extra).start(root / f"{len(os.listdir(root))}.log", timeout=300)
    rows = []
    try:
        _load(server.url, 1, min(5.0, duration))  # warm-up, not counted
        for n in clients:
            before = os.getloadavg()[0]
            report = _load(server.url, n, duration)
            ask = report["latency_ms"]["ask"]
            rows.append({
                "server": name, "clients": n, "req_per_s": report["requests_per_s"], "ask_p50_ms": ask["p50"],
                "ask_p95_ms": ask["p95"], "errors": report["errors"], "load": f"{before:.1f} -> {os.getloadavg()[0]:.1f}",
            })
            print(_line(rows[-1]), flush=True)
        memory = replica_memory()
        if memory:
            print(f"{'':28} replica PSS (MB): " + "; ".join(f"{d} {', '.join(map(str, v))}" for d, v in sorted(memory.items())), flush=True)
    finally:
        server.stop(timeout=120)
    return rows


def _line(row: dict) -> str:
    return (
        f"{row['server']:28} {row['clients']:>7} {row['req_per_s']:>8} {row['ask_p50_ms']!s:>10} {row['ask_p95_ms']!s:>10} "
        f"{row['errors']:>6}   {row['load']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="onnx-int8")
    parser.add_argument("--clients", default="1,4", help="Concurrent clients, comma-separated.")
    parser.add_argument("--duration", type=float, default=15.0, help="Seconds per measurement.")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    root = Path(tempfile.mkdtemp(prefix="rag-ray-serve-bench-"))
    env = _index(root, args.backend)
    print(f"{os.cpu_count()} cores; backend {args.backend}; {args.duration:g} s per row; /ask:/search = 2:1")
    print(f"{'server':28} {'clients':>7} {'req/s':>8} {'ask p50':>10} {'ask p95':>10} {'errors':>6}   load avg")
    rows = [row for name, extra in CONFIGS.items() for row in _measure(name, extra, env, clients, args.duration, root)]
    by = {(r["server"], r["clients"]): r for r in rows}
    for n in clients:
        one, two, local = by[("ray, 1 replica", n)], by[("ray, 2 replicas", n)], by[("local rag serve (1 worker)", n)]
        print(
            f"{n} clients: ray 2 replicas / 1 replica {two['req_per_s'] / one['req_per_s']:.2f}x req/s; "
            f"/ask p50 ray (1 replica) {one['ask_p50_ms']} ms vs local {local['ask_p50_ms']} ms"
        )
        s1, s2 = by[("ray, 2 shards, 1 replica", n)], by[("ray, 2 shards, 2 replicas", n)]
        print(
            f"{n} clients: 2 shards vs 1, 1 replica: /ask p50 {s1['ask_p50_ms']} vs {one['ask_p50_ms']} ms "
            f"({s1['ask_p50_ms'] - one['ask_p50_ms']:+.1f} ms); 2 shards, 2 replicas / 1 replica {s2['req_per_s'] / s1['req_per_s']:.2f}x req/s"
        )


if __name__ == "__main__":
    main()
