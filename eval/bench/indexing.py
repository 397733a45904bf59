"""Indexing figures: each encoder backend's throughput on the same passages, each backend's full build
in a fresh process with a cold cache, and re-indexing a synthetic corpus after editing one article."""

from __future__ import annotations

import time
from pathlib import Path

from eval.bench.children import run_child
from eval.bench.workloads import Workload, synthetic_articles


def bench_encoders(backends: list[str], passages: list[str], settings, rounds: int, log) -> tuple[dict, dict]:
    """Throughput of each backend on the same passages, through the product's embedding path.

    Rounds alternate between backends and the best round counts, so a burst of load from
    elsewhere hits every backend alike instead of one of them.
    """
    from embeddings import get_encoder
    from embeddings.cache import embed_cached

    encoders, result = {}, {}
    for backend in backends:
        t = time.perf_counter()
        encoder = get_encoder("minilm", threads=settings.threads, backend=backend, cache_dir=settings.cache_dir)
        encoder.warm_up()
        encoder.embed_batch(passages[:8])
        encoders[backend] = encoder
        result[backend] = {"load_s": round(time.perf_counter() - t, 2)}
    tokens = sum(min(encoders[backends[0]].count_tokens(p), 256) for p in passages)
    best: dict[str, tuple[float, float]] = {}
    vectors = {}
    for r in range(rounds):
        for backend, encoder in encoders.items():
            wall, cpu = time.perf_counter(), time.process_time()
            vectors[backend], _ = embed_cached(encoder, passages, None, progress=False)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            log(f"  round {r + 1}: {backend:<10} {len(passages) / wall:6.1f} passages/s")
            if backend not in best or wall < best[backend][0]:
                best[backend] = (wall, cpu)
    reference = vectors.get("torch")
    for backend in backends:
        wall, cpu = best[backend]
        entry = result[backend]
        entry.update(
            passages=len(passages),
            tokens=tokens,
            seconds=round(wall, 3),
            cpu_seconds=round(cpu, 3),
            passages_per_s=round(len(passages) / wall, 2),
            tokens_per_s=round(tokens / wall, 1),
        )
        if reference is not None:
            cos = (vectors[backend] * reference).sum(axis=1)
            entry["cosine_to_torch"] = {"mean": round(float(cos.mean()), 5), "min": round(float(cos.min()), 5)}
            entry["speedup_vs_torch"] = round(best["torch"][0] / wall, 2)
    return result, encoders


def word_pieces(index_dir: Path) -> tuple[int, int, dict]:
    """Word pieces the encoder read for the chunks and the answer units of a built index, and its file sizes."""
    from embeddings.minilm import MiniLMEncoder
    from rag.text.chunking import embed_text
    from rag.index import load_index

    counter = MiniLMEncoder()  # only its tokenizer is used
    index = load_index(index_dir, None, verify=False)
    pieces = sum(min(counter.count_tokens(embed_text(c)), 256) for c in index.chunks)
    units = 0
    if index.unit_spans is not None:
        units = sum(min(counter.count_tokens(index.chunks[r].text[s:e]), 256) for r, s, e in index.unit_spans)
    return pieces, units, {name: meta["bytes"] for name, meta in index.manifest["files"].items()}


def bench_build(backends: list[str], workload: Workload, settings, tmp: Path, log) -> dict:
    """Each backend's full build of the workload in a fresh process, with an empty embedding cache."""
    result = {}
    for backend in backends:
        args = {
            "backend": backend,
            "threads": settings.threads,
            "model_cache": str(Path(settings.cache_dir).resolve()),
            "corpus": str(workload.corpus_file),
            "index_dir": str(tmp / f"build-{backend}" / "index"),
            "embedding_cache": str(tmp / f"build-{backend}" / "embeddings.sqlite"),
        }
        log(f"  building the workload with {backend} ...")
        child = run_child("build", args)
        report, timings = child["report"], child["report"]["timings"]
        embed_s = timings.get("embed", 0.0)
        units_s = timings.get("embed_sentences", 0.0)
        pieces, unit_pieces, files = word_pieces(Path(args["index_dir"]))
        size = sum(files.values())
        result[backend] = {
            "chunks": report["chunks"],
            "units": report["sentences"],
            "embed_chunks_per_s": round(report["chunks"] / embed_s, 2) if embed_s else None,
            "embed_word_pieces_per_s": round(pieces / embed_s, 1) if embed_s else None,
            "embed_units_per_s": round(report["sentences"] / units_s, 2) if units_s else None,
            "embed_unit_word_pieces_per_s": round(unit_pieces / units_s, 1) if units_s else None,
            "timings_s": {"parse": child["parse_s"], **timings},
            "build_s": report["seconds"],
            "process_wall_s": child["process_wall_s"],
            "peak_rss_mb": child["peak_rss_mb"],
            "index_bytes": size,
            "bytes_per_chunk": round(size / report["chunks"], 1),
            "bytes_per_chunk_by_file": {k: round(v / report["chunks"], 1) for k, v in sorted(files.items())},
        }
    return result


def bench_reindex(backend: str, n_articles: int, settings, tmp: Path, log) -> dict:
    """Full build of a synthetic corpus, then a rebuild after editing one article, each in a fresh process.

    The process wall time is what a user waits for ``rag index``; ``build_s`` is the build itself.
    """
    root = tmp / "reindex"
    corpus = root / "corpus"
    files = synthetic_articles(n_articles)
    corpus.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (corpus / name).write_text(text, encoding="utf-8")
    args = {
        "backend": backend,
        "threads": settings.threads,
        "model_cache": str(Path(settings.cache_dir).resolve()),
        "corpus": str(corpus),
        "index_dir": str(root / "index"),
        "embedding_cache": str(root / "embeddings.sqlite"),
    }
    log(f"  full build of {n_articles} synthetic articles with {backend} ...")
    full = run_child("build", args)
    victim = corpus / sorted(files)[n_articles // 2]
    text = victim.read_text(encoding="utf-8").rstrip("\n")
    victim.write_text(text + " This sentence was added by an editor to one paragraph of one article.\n", encoding="utf-8")
    log("  rebuild after editing one article ...")
    edited = run_child("build", args)

    def view(child: dict) -> dict:
        report = child["report"]
        return {
            "process_wall_s": child["process_wall_s"],
            "build_s": report["seconds"],
            "parse_s": child["parse_s"],
            "timings_s": report["timings"],
            "chunks_embedded": report["embedded"],
            "units_embedded": report["sentences_embedded"],
            "articles_rechunked": report["articles"] - report["reused_chunking"],
            "peak_rss_mb": child["peak_rss_mb"],
        }

    return {
        "backend": backend,
        "articles": n_articles,
        "chunks": full["report"]["chunks"],
        "units": full["report"]["sentences"],
        "full": view(full),
        "after_one_edit": view(edited),
        "share_of_full_process": round(edited["process_wall_s"] / full["process_wall_s"], 4),
        "share_of_full_build": round(
            (edited["report"]["seconds"] + edited["parse_s"]) / (full["report"]["seconds"] + full["parse_s"]), 4
        ),
    }
