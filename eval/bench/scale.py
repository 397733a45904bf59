"""``rag bench scale``: the vector store at 10^4, 10^5 and 10^6 chunks, with synthetic vectors.

For each size: the index kind the product chooses (exact below ``RAG_HNSW_THRESHOLD``, HNSW
above, with the configured parameters), its build time, bytes per vector on disk and in a
process's memory, single-query search latency for the product's candidate pool (100) and
recall@10 against exact search. The largest HNSW index is then opened by two processes
memory-mapped and by two reading it into memory, to show what ``rag serve --workers 2`` shares.

Vectors are unit-length points around 2,000 random centres in 384 dimensions: clustered like
real sentence embeddings rather than uniform on the sphere (a worst case no real corpus has).
Queries are fresh points from the same distribution, never copies of indexed vectors.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from eval.bench.memory import mapping_mb, process_mb
from eval.metrics import percentile
from eval.report import machine_info, table

DIM = 384
CENTRES = 2000
SPREAD = 0.06  # noise per coordinate around a centre; gives neighbours at cosine 0.3-0.9, as real chunks have


def synthetic_vectors(n: int, seed: int, dim: int = DIM, block: int = 100_000) -> np.ndarray:
    """``n`` unit vectors scattered around fixed random centres (deterministic for a seed)."""
    centres = np.random.default_rng(12345).standard_normal((CENTRES, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, block):
        m = min(block, n - start)
        x = centres[rng.integers(0, CENTRES, m)] + rng.standard_normal((m, dim), dtype=np.float32) * SPREAD
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def exact_top(base: np.ndarray, queries: np.ndarray, k: int = 10, block: int = 200_000) -> np.ndarray:
    """Ids of the exact top-``k`` inner products, by blocks so that memory stays bounded."""
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(base), block):
        scores = queries @ base[start : start + block].T
        part = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        s = np.take_along_axis(scores, part, axis=1)
        all_s = np.hstack([best_s, s])
        all_i = np.hstack([best_i, part + start])
        order = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(all_s, order, axis=1), np.take_along_axis(all_i, order, axis=1)
    return best_i


def _child_load(path: str, params: dict, mmap: bool, n_queries: int) -> None:
    """In a fresh process: open the index, search, report memory, then wait so a sibling can be measured alongside."""
    import faiss  # noqa: F401  # imported before the first measurement: only the index should count

    from embeddings.vectorstore import VectorStore, VectorStoreParams

    queries = synthetic_vectors(n_queries, seed=99)
    before = process_mb()
    store = VectorStore.load(Path(path), VectorStoreParams(**params), mmap=mmap)
    for q in queries:
        store.search(q, 100)
    print(json.dumps({"event": "ready"}), flush=True)
    sys.stdin.readline()  # the parent measures both processes while they are alive
    after = process_mb()
    mapped = mapping_mb(str(Path(path).resolve()))
    print(json.dumps({"before": before, "after": after, "mapped": mapped, "vectors": len(store)}), flush=True)
    sys.stdin.readline()  # stay alive until every sibling has been measured


def memory_of_processes(path: Path, params: dict, mmap: bool, processes: int = 2, n_queries: int = 200) -> list[dict]:
    """Memory of ``processes`` processes that opened the same index file at once."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "eval.bench.scale", "load", str(path), json.dumps(params), "1" if mmap else "0", str(n_queries)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for p in procs:
        line = p.stdout.readline()
        if not line:
            raise RuntimeError("a memory probe process failed to open the index")
    for p in procs:
        p.stdin.write("\n")
        p.stdin.flush()
    reports = [json.loads(p.stdout.readline()) for p in procs]
    for p in procs:
        p.stdin.write("\n")
        p.stdin.flush()
    out = []
    for p, report in zip(procs, reports):
        out.append(
            {
                "mmap": mmap,
                "rss_mb": round(report["after"].get("VmRSS", 0), 1),
                "rss_file_mb": round(report["after"].get("RssFile", 0), 1),
                "rss_anon_mb": round(report["after"].get("RssAnon", 0) - report["before"].get("RssAnon", 0), 1),
                "pss_mb": round(report["after"].get("Pss", 0), 1),
                "index_file_rss_mb": round(report["mapped"]["rss"], 1),
                "index_file_pss_mb": round(report["mapped"]["pss"], 1),
                "index_rss_mb": round(report["after"].get("VmRSS", 0) - report["before"].get("VmRSS", 0), 1),
            }
        )
        p.wait(timeout=60)
    return out


def bench_size(n: int, kind: str, params, tmp: Path, n_queries: int, log) -> dict:
    from dataclasses import asdict

    from embeddings.vectorstore import VectorStore, VectorStoreParams

    t = time.perf_counter()
    base = synthetic_vectors(n, seed=1)
    gen_s = time.perf_counter() - t
    queries = synthetic_vectors(n_queries, seed=2)
    truth = exact_top(base, queries)
    store_params = VectorStoreParams(**{**asdict(params), "kind": kind})
    t = time.perf_counter()
    store = VectorStore.build(base, store_params)
    build_s = time.perf_counter() - t
    del base
    path = tmp / f"{kind}-{n}.faiss"
    store.save(path)
    times, hits = [], []
    for q, gold in zip(queries, truth):
        started = time.perf_counter()
        _, ids = store.search(q, 100)  # the product's dense candidate pool
        times.append(time.perf_counter() - started)
        hits.append(len(set(ids[0][:10].tolist()) & set(gold.tolist())) / 10)
    del store
    memory = memory_of_processes(path, asdict(store_params), mmap=False, processes=1)[0]
    result = {
        "vectors": n,
        "kind": kind,
        "params": asdict(store_params),
        "generate_s": round(gen_s, 1),
        "build_s": round(build_s, 1),
        "build_vectors_per_s": round(n / build_s, 1),
        "file_bytes_per_vector": round(path.stat().st_size / n, 1),
        "memory_bytes_per_vector": round(memory["index_rss_mb"] * 1024 * 1024 / n, 1),
        "search_p50_ms": round(percentile(times, 50) * 1000, 3),
        "search_p95_ms": round(percentile(times, 95) * 1000, 3),
        "recall_at_10": round(float(np.mean(hits)), 4),
        "queries": n_queries,
        "path": str(path),
    }
    log(
        f"  {n:>9,} {kind:<5} build {result['build_s']:7.1f} s  {result['memory_bytes_per_vector']:7.0f} B/vector in memory  "
        f"search p50 {result['search_p50_ms']:6.2f} ms  recall@10 {result['recall_at_10']:.3f}"
    )
    return result


def run_scale(sizes: list[int], settings, out: Path | None, n_queries: int = 200, also_hnsw: bool = True, log=print) -> dict:
    """Every size with the kind the product picks, plus HNSW where the product would pick exact search (for comparison)."""
    import faiss

    from embeddings.vectorstore import choose_kind
    from rag.settings import vector_store_params

    threads = settings.threads or os.cpu_count() or 1
    faiss.omp_set_num_threads(threads)
    params = vector_store_params(settings)
    results = {
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "threads": threads,
        "hnsw_threshold": settings.hnsw_threshold,
        "runs": [],
    }
    log(f"vector store at {', '.join(f'{n:,}' for n in sizes)} vectors ({DIM} dimensions, {n_queries} queries)")
    with tempfile.TemporaryDirectory(prefix="rag-scale-") as tmp_name:
        tmp = Path(tmp_name)
        largest_hnsw = None
        for n in sizes:
            kind = choose_kind("auto", n, settings.hnsw_threshold)
            kinds = [kind] + (["hnsw"] if also_hnsw and kind == "flat" and n >= 100_000 else [])
            for k in kinds:
                run = bench_size(n, k, params, tmp, n_queries, log)
                run["chosen_by_product"] = k == kind
                results["runs"].append(run)
                if k == "hnsw":
                    largest_hnsw = run
        if largest_hnsw is not None:
            log(f"  two processes opening the {largest_hnsw['vectors']:,}-vector HNSW index ...")
            path = Path(largest_hnsw["path"])
            results["sharing"] = {
                "vectors": largest_hnsw["vectors"],
                "file_mb": round(path.stat().st_size / 1024 / 1024, 1),
                "mmap": memory_of_processes(path, largest_hnsw["params"], mmap=True),
                "read": memory_of_processes(path, largest_hnsw["params"], mmap=False),
            }
    results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return results


def render(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"machine: {m['cores']} cores ({m['cpu_model']}), threads {results['threads']}, load {m['load_average']} -> "
        f"{results['load_average_end']}; faiss {m['versions'].get('faiss-cpu')}; HNSW above {results['hnsw_threshold']:,} vectors"
    ]
    rows = [
        [f"{r['vectors']:,}", r["kind"] + ("" if r["chosen_by_product"] else " (compare)"), r["build_s"], r["build_vectors_per_s"],
         r["memory_bytes_per_vector"], r["file_bytes_per_vector"], r["search_p50_ms"], r["search_p95_ms"], r["recall_at_10"]]  # fmt: skip
        for r in results["runs"]
    ]
    lines.append(table(rows, ["vectors", "index", "build s", "vectors/s", "B/vector RAM", "B/vector file", "p50 ms", "p95 ms", "recall@10"]))
    share = results.get("sharing")
    if share:
        lines.append(f"\ntwo processes with the {share['vectors']:,}-vector HNSW index ({share['file_mb']} MB file) open:")
        rows = [
            ["mmap" if p["mmap"] else "read", i + 1, p["rss_mb"], p["pss_mb"], p["index_file_rss_mb"], p["index_file_pss_mb"], p["rss_anon_mb"]]
            for key in ("mmap", "read")
            for i, p in enumerate(share[key])
        ]
        lines.append(
            table(rows, ["load", "process", "RSS MB", "PSS MB", "index map RSS MB", "index map PSS MB", "private index copy MB"])
        )
    return "\n".join(lines)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "load":
    _child_load(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5]))
