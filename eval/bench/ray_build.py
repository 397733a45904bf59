"""Build throughput on Ray: one embedding actor, two actors, and the local build, in the same run.

    python -m eval.bench.ray_build --data ../shared/datasets/scifact --docs 200 [--backend onnx] [--address ADDR]

Each build starts from an empty embedding cache (the ONNX export is shared), so every chunk, answer
unit and word is embedded. Printed: seconds, chunks/s and texts/s per build, the ratios the scale-out
targets name, the machine's load average before and after, and a projection to 10^8 chunks from the
measured per-actor rate (a projection, not a measurement). Needs the ray extra.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def _subset(data: Path, docs: int, where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    out = where / "corpus.jsonl"
    with (data / "corpus.jsonl").open(encoding="utf-8") as src, out.open("w", encoding="utf-8") as dst:
        for i, line in enumerate(src):
            if i >= docs:
                break
            dst.write(line)
    return out


def _cache(shared: Path, where: Path) -> Path:
    where.mkdir(parents=True)
    for item in shared.iterdir():
        if not item.name.startswith("embeddings"):
            os.symlink(item, where / item.name)
    return where


def _build(kind: str, settings, actors: int | None) -> dict:
    from rag.service import index_corpus

    load = os.getloadavg()[0]
    started = time.perf_counter()
    if kind == "local":
        report = index_corpus(settings, progress=False)
    else:
        from rag.shards.ray_build import index_with_ray

        report = index_with_ray(settings, actors=actors, progress=False)
    seconds = time.perf_counter() - started
    texts = report.embedded + report.sentences_embedded + report.words_embedded
    return {
        "build": kind if kind == "local" else f"ray, {actors} actor{'s' * (actors != 1)}",
        "seconds": round(seconds, 1),
        "embed_seconds": report.timings.get("embed", report.timings.get("embed", 0.0)),
        "chunks": report.chunks,
        "texts_embedded": texts,
        "chunks_per_s": round(report.chunks / seconds, 2),
        "texts_per_s": round(texts / seconds, 2),
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="A BEIR folder (corpus.jsonl).")
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--address", default=None, help="A running Ray cluster; default: a local one with 2 CPUs.")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    from embeddings.onnx import ensure_export
    from rag.shards.ray_build import connect
    from rag.settings import load_settings

    root = Path(tempfile.mkdtemp(prefix="rag-ray-bench-"))
    corpus = _subset(args.data, args.docs, root / "corpus")
    shared = root / "shared-cache"
    ensure_export(shared, log_fn=lambda m: None)
    connect(args.address, num_cpus=os.cpu_count())
    rows = []
    for n, (kind, actors) in enumerate((("ray", 1), ("ray", 2), ("local", None))):
        settings = load_settings(
            corpus_dir=corpus,
            index_dir=root / f"index-{n}",
            cache_dir=_cache(shared, root / f"cache-{n}"),
            encoder_backend=args.backend,
            engine="ray" if kind == "ray" else "local",
            shards=2 if kind == "ray" else 1,
            threads=0,
        )
        rows.append(_build(kind, settings, actors))
        print(json.dumps(rows[-1]))
    one, two, local = rows
    print(f"2 actors / 1 actor: {two['texts_per_s'] / one['texts_per_s']:.2f}x; ray (2 actors) / local: {two['texts_per_s'] / local['texts_per_s']:.2f}x")
    per_actor = one["chunks_per_s"]
    hours = 1e8 / per_actor / 3600
    print(
        f"projection (not measured): 10^8 chunks at {per_actor:.1f} chunks/s per actor (chunks, units and words embedded) "
        f"= {hours:,.0f} actor-hours; on 50 nodes of 32 cores (1,600 actors) about {hours / 1600:.1f} h if scaling stays linear"
    )


if __name__ == "__main__":
    main()
