"""Memory a shard server holds, at S = 1 and S = 2: what a shard replica of ``rag serve --engine ray`` adds
to its process for its part of the index.

    python -m eval.bench.shard_memory [--data ../shared/datasets/scifact] [--docs 0] [--questions 50]

Indexes the dataset's documents (a BEIR folder: SciFact's 5,183 abstracts by default) with a hashing
encoder of the bundled model's width (384; memory depends on the width, not on the model), once as one
index and once in two shards. Then, each in a fresh process, opens one shard the way a shard replica
does (memory-mapped, verified; the one index through the same server code), asks it the candidates
and the evidence of ``--questions`` questions (the dataset's own queries), and prints the process's proportional set size (PSS: shared pages divided
among their users) and resident size once the libraries are imported (before opening) and after the
questions: the difference is what the index costs. A Serve replica adds its runtime (Python, the
libraries, Ray: about 135 MB for a shard replica, docs/benchmarks.md) to these figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

DIM = 384


def _memory() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("Pss", "Rss"):
            out[key] = round(int(line.split()[1]) / 1024, 1)
    return out


def probe(build: str, shard: int, questions: list[str]) -> dict:
    """In this process: open shard ``shard`` of ``build`` (or the whole index when it is not sharded) and ask it."""
    import gc

    import numpy as np

    from embeddings import HashingEncoder
    from rag.index.shards import is_sharded

    import bm25s  # noqa: F401  (the libraries every replica loads count as its runtime, not as index)
    import faiss  # noqa: F401

    from rag.index import load_index
    from rag.text.lexical import term_names
    from rag.shards.server import ShardServer, _Build

    encoder = HashingEncoder(dim=DIM)
    vectors = encoder.embed_batch(questions)
    gc.collect()
    before = _memory()
    server = ShardServer(shard)
    if is_sharded(build):
        server.open(build)
    else:  # one index served the way a shard is, so that both run the same code
        index = load_index(build, None, mmap=True)
        rows = np.arange(len(index), dtype=np.int64)
        server._builds[str(Path(build))] = _Build(index, rows, rows, term_names(index.lexical.vocabulary()))
    opened = _memory()
    for q, v in zip(questions, vectors):
        got = server.candidates(build, q, v, 100, "hybrid", None)
        server.evidence(build, got.local[:5].tolist(), [], [])
    gc.collect()
    return {"before": before, "opened": opened, "after": _memory()}


def _build(articles, where: Path, shards: int) -> None:
    from embeddings import HashingEncoder
    from rag.index.shard_build import build_sharded

    build_sharded(articles, where, HashingEncoder(dim=DIM), shards=shards, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/datasets/scifact", type=Path)
    parser.add_argument("--docs", type=int, default=0, help="Only the first N documents (0: all).")
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--probe", nargs=2, metavar=("BUILD", "SHARD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    from eval.datasets import load_dataset, load_queries

    if args.probe:
        questions = json.loads(sys.stdin.read())
        print(json.dumps(probe(args.probe[0], int(args.probe[1]), questions)))
        return
    from corpus import load_corpus

    dataset = load_dataset(args.data, split="train")
    articles = load_corpus(dataset.corpus_path)
    if args.docs:
        articles = articles[: args.docs]
    questions = list(load_queries(dataset.root / "queries.jsonl").values())[: args.questions]
    root = Path(tempfile.mkdtemp(prefix="rag-shard-memory-"))
    for shards in (1, 2):
        _build(articles, root / f"s{shards}", shards)
    print(f"{len(articles)} documents; hashing encoder of width {DIM}; {len(questions)} questions per process")
    print(f"{'build':10} {'shard':>5} {'index on disk MB':>17} {'PSS before':>11} {'opened':>8} {'after':>8} {'added PSS':>10} {'added RSS':>10}")
    for shards in (1, 2):
        build = (root / f"s{shards}").resolve()
        for shard in range(shards):
            folder = build / f"shard-{shard:03d}" if shards > 1 else build
            disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
            proc = subprocess.run(
                [sys.executable, "-m", "eval.bench.shard_memory", "--probe", str(build), str(shard)],
                input=json.dumps(questions), capture_output=True, text=True, check=True,
            )
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            b, o, a = got["before"], got["opened"], got["after"]
            print(
                f"S = {shards:<6} {shard:>5} {disk:>17.1f} {b['Pss']:>11} {o['Pss']:>8} {a['Pss']:>8} "
                f"{a['Pss'] - b['Pss']:>10.1f} {a['Rss'] - b['Rss']:>10.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
