"""``rag bench``: performance figures of indexing, the query path, the HTTP service and memory, side by side.

One run measures, on a fixed workload (SciFact abstracts when the dataset is present, else a
synthetic corpus; the bundled article for the query path):

* encoders: passages/s and word pieces/s of every backend on whole passages (up to 256 word pieces);
* builds: each backend's full ``build_index`` in a fresh process with a cold cache (timings per step,
  peak RSS, size on disk per chunk), and re-indexing a 1,000-article corpus after editing one article;
* the query path in-process: encode + search, and a full cited answer, p50/p95;
* HTTP against a real ``rag serve`` process: ``/ask`` and ``/search`` at concurrency 1, 8 and 32;
* the machine, its load and the library versions the figures belong to.

It prints tables and writes JSON. Figures, never pass/fail: the exit code only says whether it ran.
Wall-clock figures on a shared machine move with its load; the load averages are recorded with them.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from core.machine import cpu_flags, cpu_model, package_versions
from eval.live_server import LiveServer

BACKENDS = ("torch", "onnx", "onnx-int8")
SECTIONS = ("encoders", "build", "reindex", "query", "cli", "http")
DEFAULT_DATA = Path("../shared/datasets/scifact")
QA_FILE = Path(__file__).resolve().parent / "data" / "qa.jsonl"

bench_app = typer.Typer(
    help="Performance benchmarks: print tables and write JSON (figures, never pass/fail).",
    no_args_is_help=False,
    add_completion=False,
    rich_markup_mode=None,
)


# ------------------------------------------------------------------------------------ statistics


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary_ms(seconds: list[float]) -> dict:
    return {
        "n": len(seconds),
        "p50": round(percentile(seconds, 0.50) * 1000, 2),
        "p95": round(percentile(seconds, 0.95) * 1000, 2),
        "p99": round(percentile(seconds, 0.99) * 1000, 2),
        "mean": round(statistics.fmean(seconds) * 1000, 2) if seconds else None,
    }


# ------------------------------------------------------------------------------------ the machine


def machine_info() -> dict:
    """Cores, CPU model and vector extensions, memory, load and library versions: the context of every figure."""
    model, flags = cpu_model(), cpu_flags()
    mem_total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_total = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    versions = package_versions((
        "torch", "onnxruntime", "sentence-transformers", "transformers", "optimum", "optimum-onnx",
        "faiss-cpu", "bm25s", "numpy", "fastapi", "uvicorn", "httpx",
    ))  # fmt: skip
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model,
        "vector_extensions": sorted(f for f in flags if f in {"avx", "avx2", "fma", "avx_vnni", "f16c"} or f.startswith("avx512")),
        "memory_gib": mem_total,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
    }


# ------------------------------------------------------------------------------------ workloads


@dataclass(frozen=True)
class Workload:
    """Passages to embed and a corpus file to index (the same documents)."""

    name: str
    passages: list[str]
    corpus_file: Path  # a BEIR-style corpus.jsonl of the same documents


_SYLLABLES = "ka lo mi ne ru sa te vo zi da pe lu ma no ri so ta ve xi ga bo de fi ha".split()


def _vocabulary(rng: random.Random, size: int = 3000) -> list[str]:
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))))
    return sorted(words)


def _sentence(rng: random.Random, words: list[str]) -> str:
    body = " ".join(rng.choice(words) for _ in range(rng.randint(8, 22)))
    return body[0].upper() + body[1:] + "."


def synthetic_articles(n: int, seed: int = 0) -> dict[str, str]:
    """``n`` deterministic markdown articles shaped like the bundled one: front matter, four to six
    sections of two or three paragraphs, about a thousand words each."""
    rng = random.Random(seed)
    words = _vocabulary(rng)
    files = {}
    for i in range(n):
        title = f"{rng.choice(words).capitalize()} {rng.choice(words)} {i}"
        parts = [f"---\ntitle: {title}\nslug: article-{i:05d}\nurl: /wiki/article-{i:05d}\ntags: [{rng.choice(words)}]\n---\n\n# {title}\n"]
        for s in range(rng.randint(4, 6)):
            parts.append(f"\n## {rng.choice(words).capitalize()} {s}\n")
            for _ in range(rng.randint(2, 3)):
                parts.append("\n" + " ".join(_sentence(rng, words) for _ in range(rng.randint(4, 6))) + "\n")
        files[f"article-{i:05d}.md"] = "".join(parts)
    return files


def load_workload(data: Path | None, docs: int, tmp: Path) -> Workload:
    """The first ``docs`` SciFact abstracts (title + text) when the dataset is there, else synthetic passages."""
    candidates = [data] if data else [DEFAULT_DATA, Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"]
    corpus_file = tmp / "workload" / "corpus.jsonl"
    corpus_file.parent.mkdir(parents=True, exist_ok=True)
    for root in candidates:
        source = root / "corpus.jsonl" if root.is_dir() else root
        if source.is_file():
            lines, passages = [], []
            with source.open(encoding="utf-8") as handle:
                for line in handle:
                    if not line.strip():
                        continue
                    record = json.loads(line)
                    lines.append(line if line.endswith("\n") else line + "\n")
                    passages.append(f"{record.get('title', '')} {record.get('text', '')}".strip())
                    if len(passages) >= docs:
                        break
            corpus_file.write_text("".join(lines), encoding="utf-8")
            return Workload(f"scifact (first {len(passages)} abstracts of {source})", passages, corpus_file)
    if data:
        raise typer.BadParameter(f"{data}: no corpus.jsonl there", param_hint="--data")
    rng = random.Random(1)
    words = _vocabulary(rng)
    passages = [" ".join(_sentence(rng, words) for _ in range(rng.randint(6, 12))) for _ in range(docs)]
    with corpus_file.open("w", encoding="utf-8") as handle:
        for i, text in enumerate(passages):
            handle.write(json.dumps({"_id": f"s{i}", "title": "", "text": text}) + "\n")
    return Workload(f"synthetic ({docs} passages; SciFact not found)", passages, corpus_file)


def questions() -> list[str]:
    """The product's own question set (eval/data/qa.jsonl): answerable and off-topic questions."""
    with QA_FILE.open(encoding="utf-8") as handle:
        return [json.loads(line)["question"] for line in handle if line.strip()]


# ------------------------------------------------------------------------------------ encoders


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


# ------------------------------------------------------------------------------------ builds in a child process


def _child_build(args: dict) -> dict:
    """Run in a fresh process: one ``build_index`` with the given backend and cache; report what it did."""
    from corpus.loader import load_corpus
    from embeddings import get_encoder
    from embeddings.cache import EmbeddingCache
    from rag.index import build_index

    started = time.perf_counter()
    encoder = get_encoder("minilm", threads=args["threads"], backend=args["backend"], cache_dir=args["model_cache"])
    t = time.perf_counter()
    articles = load_corpus(Path(args["corpus"]))
    parse_s = time.perf_counter() - t
    cache = EmbeddingCache(Path(args["embedding_cache"]))
    try:
        report = build_index(articles, Path(args["index_dir"]), encoder, cache=cache, progress=False)
    finally:
        cache.close()
    elapsed = time.perf_counter() - started
    return {
        "report": report.__dict__,
        "parse_s": round(parse_s, 3),
        "build_s": round(elapsed - parse_s, 3),
        "in_process_s": round(elapsed, 3),
        # VmHWM starts afresh at exec, unlike wait4's ru_maxrss, which keeps the forking parent's size.
        "peak_rss_mb": _status_mb(os.getpid(), "VmHWM"),
    }


def word_pieces(index_dir: Path) -> tuple[int, int, dict]:
    """Word pieces the encoder read for the chunks and the answer units of a built index, and its file sizes."""
    from embeddings.minilm import MiniLMEncoder
    from rag.chunking import embed_text
    from rag.index import load_index

    counter = MiniLMEncoder()  # only its tokenizer is used
    index = load_index(index_dir, None, verify=False)
    pieces = sum(min(counter.count_tokens(embed_text(c)), 256) for c in index.chunks)
    units = 0
    if index.unit_spans is not None:
        units = sum(min(counter.count_tokens(index.chunks[r].text[s:e]), 256) for r, s, e in index.unit_spans)
    return pieces, units, {name: meta["bytes"] for name, meta in index.manifest["files"].items()}


def run_child(job: str, args: dict, timeout: float = 7200) -> dict:
    """``python -m eval.bench <job>`` in a fresh process: its answer, wall time and CPU time (from wait4)."""
    out = Path(tempfile.mkstemp(prefix="rag-bench-", suffix=".json")[1])
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "eval.bench", job, json.dumps(args), str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # wait4, not wait: it returns the child's own resource usage.
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{job} did not finish in {timeout:.0f} s")
        time.sleep(0.05)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{job} failed ({proc.returncode}): {err.strip().splitlines()[-1] if err.strip() else ''}")
    result = json.loads(out.read_text())
    out.unlink(missing_ok=True)
    result["process_wall_s"] = round(wall, 3)
    result["process_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    return result


def _status_mb(pid: int, field: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _rollup_mb(pid: int) -> dict:
    """RSS and PSS (proportional: shared pages divided among their users) from /proc/<pid>/smaps_rollup."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key = line.split(":")[0]
            if key in ("Rss", "Pss", "Shared_Clean", "Private_Dirty", "Pss_File", "Pss_Anon"):
                out[key.lower()] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return out


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


# ------------------------------------------------------------------------------------ the query path in-process


def bench_query(backends: list[str], encoders: dict, settings, tmp: Path, repeats: int, log) -> tuple[dict, dict]:
    """Encode + search, and a whole answer, for the product's questions over the bundled article.

    The index is built once per backend (its own vectors) and opened memory-mapped, as the server does.
    """
    from corpus.loader import DEFAULT_CORPUS_DIR, load_corpus
    from embeddings import get_encoder
    from embeddings.cache import EmbeddingCache
    from rag.index import build_index, load_index
    from rag.service import open_answer_service

    qs = questions()
    result, index_dirs = {}, {}
    for backend in backends:
        encoder = encoders.get(backend)
        if encoder is None:
            encoder = get_encoder("minilm", threads=settings.threads, backend=backend, cache_dir=settings.cache_dir)
            encoder.warm_up()
        index_dir = tmp / f"query-{backend}" / "index"
        cache = EmbeddingCache(tmp / f"query-{backend}" / "embeddings.sqlite")
        try:
            build_index(load_corpus(DEFAULT_CORPUS_DIR), index_dir, encoder, cache=cache, progress=False)
        finally:
            cache.close()
        index_dirs[backend] = index_dir
        service = open_answer_service(settings, load_index(index_dir, encoder, mmap=True), encoder)
        retriever = service.retriever
        for q in qs[:5]:
            service.ask(q)
        encode_search, encode_only, answers, parts = [], [], [], []
        for q in qs * repeats:
            # alternated per question, so that load from elsewhere falls on both alike
            t0 = time.perf_counter()
            vector = retriever.encode(q)
            t1 = time.perf_counter()
            retriever.search(q, k=5, query_vector=vector)
            t2 = time.perf_counter()
            answer = service.ask(q, top_k=5)
            t3 = time.perf_counter()
            encode_only.append(t1 - t0)
            encode_search.append(t2 - t0)
            answers.append(t3 - t2)
            parts.append(answer.timings_ms)
        result[backend] = {
            "questions": len(qs),
            "chunks": len(service.index),
            "encode_ms": summary_ms(encode_only),
            "encode_search_ms": summary_ms(encode_search),
            "answer_ms": summary_ms(answers),
            "answer_parts_p50_ms": {k: round(statistics.median(p[k] for p in parts), 2) for k in parts[0]},
        }
        log(
            f"  {backend:<10} encode+search p50 {result[backend]['encode_search_ms']['p50']} ms, "
            f"answer p50 {result[backend]['answer_ms']['p50']} ms"
        )
    return result, index_dirs


# ------------------------------------------------------------------------------------ HTTP against a real server


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Server(LiveServer):
    """``rag serve --workers N`` in a subprocess on a free port, ready once every worker has loaded."""

    def __init__(self, env: dict[str, str], workers: int, log_path: Path):
        super().__init__(env, args=["--workers", str(workers)])
        self.workers, self.bench_log = workers, log_path

    def start(self, timeout: float = 600) -> Server:
        super().start(self.bench_log, timeout)
        return self

    def started(self) -> bool:
        # Each worker logs "ready: N passages ..." once its model and index are loaded (api/app.py).
        return self.log().count("ready: ") >= self.workers

    def pids(self) -> list[int]:
        """The serving processes: the one process, or the workers under uvicorn's supervisor."""
        assert self.proc is not None
        kids = _children(self.proc.pid)
        return kids if self.workers > 1 and kids else [self.proc.pid]

    def memory(self, index_dir: Path | None = None) -> list[dict]:
        """Per serving process: peak and current RSS, PSS, and what the mapped index files take (shared between workers)."""
        from eval.scale import _mapping_mb

        out = []
        for pid in self.pids():
            entry = {"pid": pid, "peak_rss_mb": _status_mb(pid, "VmHWM"), "rss_mb": _status_mb(pid, "VmRSS"), **_rollup_mb(pid)}
            if index_dir is not None:
                mapped = _mapping_mb(str(Path(index_dir).resolve()), pid)
                entry.update(index_map_rss_mb=round(mapped["rss"], 1), index_map_pss_mb=round(mapped["pss"], 1))
            out.append(entry)
        return out

    def stop(self, timeout: float = 60) -> int | None:
        return super().stop(timeout)


async def load_level(url: str, endpoint: str, concurrency: int, n: int, qs: list[str]) -> dict:
    """``n`` requests from ``concurrency`` clients that each send their next request as soon as one returns."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(n))  # shared: every request number is taken by exactly one client
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:

        async def client() -> None:
            for i in counter:
                q = qs[i % len(qs)]
                started = time.perf_counter()
                try:
                    if endpoint == "ask":
                        response = await http.post("/ask", json={"question": q, "top_k": 5})
                    elif endpoint == "search":
                        response = await http.get("/search", params={"q": q, "k": 5})
                    else:  # the floor: an endpoint that does no work, so the rest is HTTP and the client
                        response = await http.get("/health")
                except httpx.HTTPError as exc:
                    errors.append(f"{exc.__class__.__name__}: {exc}")
                    continue
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors.append(f"HTTP {response.status_code}: {response.text[:160]}")

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {
        "endpoint": endpoint,
        "concurrency": concurrency,
        "requests": n,
        "ok": len(latencies),
        "errors": len(errors),
        "seconds": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 2),
        "latency_ms": summary_ms(latencies),
        "error_samples": errors[:5],
    }


def paired_ask_chat(url: str, n: int, qs: list[str]) -> list[dict]:
    """One client asking each question through ``/ask`` and then ``/v1/chat/completions``, ``n`` times
    each: alternating keeps drift in the machine's speed off the comparison."""
    import httpx

    latencies: dict[str, list[float]] = {"ask": [], "chat": []}
    errors: dict[str, int] = {"ask": 0, "chat": 0}
    with httpx.Client(base_url=url, timeout=120) as http:
        for i in range(n):
            q = qs[i % len(qs)]
            for name, path, body in (
                ("ask", "/ask", {"question": q, "top_k": 5}),
                ("chat", "/v1/chat/completions", {"model": "space-diplomacy-rag", "messages": [{"role": "user", "content": q}], "top_k": 5}),
            ):
                started = time.perf_counter()
                ok = http.post(path, json=body).status_code == 200
                if ok:
                    latencies[name].append(time.perf_counter() - started)
                else:
                    errors[name] += 1
    return [
        {"endpoint": f"{name} (paired)", "concurrency": 1, "requests": n, "ok": len(latencies[name]), "errors": errors[name],
         "requests_per_s": None, "latency_ms": summary_ms(latencies[name])}  # fmt: skip
        for name in ("ask", "chat")
    ]


def bench_http(backend: str, index_dir: Path, settings, levels: list[int], requests: int, workers: int, tmp: Path, log) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        RAG_INDEX_DIR=str(index_dir),
        RAG_CACHE_DIR=str(Path(settings.cache_dir).resolve()),
        RAG_ENCODER_BACKEND=backend,
        RAG_THREADS=str(settings.threads),
        RAG_RATE_LIMIT="",  # the benchmark is one client sending as fast as it can
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    server = Server(env, workers, tmp / f"server-{backend}-{workers}.log")
    t = time.perf_counter()
    server.start()
    startup = time.perf_counter() - t
    qs = questions()
    try:
        asyncio.run(load_level(server.url, "ask", 4, 20, qs))  # warm connections and code paths
        floor = asyncio.run(load_level(server.url, "health", 1, max(100, requests // 2), qs))
        log(f"  /health c=1   p50 {floor['latency_ms']['p50']:7.2f} ms (HTTP and client alone)")
        runs = []
        for endpoint, endpoint_levels in (("ask", levels), ("search", levels)):
            for c in endpoint_levels:
                run = asyncio.run(load_level(server.url, endpoint, c, max(requests, 10 * c), qs))
                runs.append(run)
                lat = run["latency_ms"]
                log(
                    f"  /{endpoint:<6} c={c:<3} {run['requests_per_s']:7.1f} req/s  p50 {lat['p50']:7.1f} ms  "
                    f"p95 {lat['p95']:7.1f} ms  p99 {lat['p99']:7.1f} ms  errors {run['errors']}"
                )
        # /v1/chat/completions against /ask: one client, the two requests in alternation, same questions.
        pair = paired_ask_chat(server.url, max(requests, 20), qs)
        runs.extend(pair)
        log(f"  /ask vs /v1/chat/completions c=1 alternating: p50 {pair[0]['latency_ms']['p50']} vs {pair[1]['latency_ms']['p50']} ms")
        memory = server.memory(index_dir)
    finally:
        server.stop()
    return {
        "backend": backend,
        "workers": workers,
        "startup_s": round(startup, 1),
        "floor": floor,
        "runs": runs,
        "server_memory": memory,
    }


# ------------------------------------------------------------------------------------ the report


def targets(results: dict) -> list[dict]:
    """The figures the performance goals are stated in, computed from this run."""
    rows = []
    enc = results.get("encoders", {})
    if "torch" in enc and "onnx-int8" in enc:
        rows.append({"goal": "onnx-int8 embedding throughput / torch (>= 2.0)", "value": enc["onnx-int8"]["speedup_vs_torch"]})
    http, query = results.get("http"), results.get("query", {})
    if http and http["backend"] in query:
        by = {(r["endpoint"], r["concurrency"]): r for r in http["runs"]}
        base = query[http["backend"]]["encode_search_ms"]["p50"]
        if ("ask", 1) in by:
            rows.append(
                {"goal": "/ask p50 over HTTP at c=1 / in-process encode+search p50 (<= 1.5)",
                 "value": round(by[("ask", 1)]["latency_ms"]["p50"] / base, 2)}  # fmt: skip
            )
        if ("ask", 1) in by and ("ask", 32) in by:
            top = by[("ask", 32)]
            rows.append({"goal": "/ask req/s at c=32 / c=1 (>= 1.6)", "value": round(top["requests_per_s"] / by[("ask", 1)]["requests_per_s"], 2)})
            rows.append({"goal": "/ask p99 / p50 at c=32 (< 5)", "value": round(top["latency_ms"]["p99"] / top["latency_ms"]["p50"], 2)})
            rows.append({"goal": "errors over all HTTP runs (0)", "value": sum(r["errors"] for r in http["runs"])})
    if http:
        by = {(r["endpoint"], r["concurrency"]): r for r in http["runs"]}
        if ("chat (paired)", 1) in by and ("ask (paired)", 1) in by:
            rows.append({"goal": "/v1/chat/completions p50 / /ask p50, one client, alternating (<= 1.10)",
                         "value": round(by[("chat (paired)", 1)]["latency_ms"]["p50"] / by[("ask (paired)", 1)]["latency_ms"]["p50"], 3)})  # fmt: skip
    cli = results.get("cli")
    if cli:
        rows.append({"goal": "rag search cold wall / rag --help, same run (<= 6)", "value": cli["search"]["wall_x_help"]})
        rows.append({"goal": "rag ask cold wall / rag --help, same run", "value": cli["ask"]["wall_x_help"]})
    re = results.get("reindex")
    if re:
        rows.append({"goal": "re-index after one edit / full build, rag index process (< 0.02)", "value": re["share_of_full_process"]})
        rows.append({"goal": "re-index after one edit / full build, build work (< 0.02)", "value": re["share_of_full_build"]})
    return rows


def _table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(h) for h in headers]] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render(results: dict) -> str:
    out = []
    m = results["machine"]
    out.append(
        f"machine: {m['cores']} cores ({m['cpu_model']}; {', '.join(m['vector_extensions'])}), {m['memory_gib']} GiB, "
        f"load {m['load_average']} -> {results.get('load_average_end')}, threads {results['threads']}"
    )
    out.append("versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()))
    out.append(f"workload: {results['workload']}")
    if "encoders" in results:
        rows = [
            [b, e["passages_per_s"], e["tokens_per_s"], e.get("speedup_vs_torch"), e["cpu_seconds"],
             (e.get("cosine_to_torch") or {}).get("mean"), (e.get("cosine_to_torch") or {}).get("min"), e["load_s"]]  # fmt: skip
            for b, e in results["encoders"].items()
        ]
        out.append("\nembedding throughput (passages up to 256 word pieces, best of rounds)")
        out.append(_table(["backend", "passages/s", "word pieces/s", "x torch", "cpu s", "cos mean", "cos min", "load s"], rows))
    if "build" in results:
        rows = [
            [b, e["chunks"], e["embed_chunks_per_s"], e["embed_word_pieces_per_s"], e["units"], e["embed_units_per_s"],
             e["build_s"], e["process_wall_s"], e["peak_rss_mb"], e["bytes_per_chunk"]]  # fmt: skip
            for b, e in results["build"].items()
        ]
        out.append("\nfull index build of the workload (fresh process, empty embedding cache)")
        out.append(
            _table(["backend", "chunks", "chunks/s", "pieces/s", "units", "units/s", "build s", "process s", "peak RSS MB", "bytes/chunk"], rows)
        )
        for b, e in results["build"].items():
            out.append(f"  {b}: steps {e['timings_s']}")
    if "reindex" in results:
        r = results["reindex"]
        rows = [
            [k, r[k]["process_wall_s"], r[k]["build_s"], r[k]["parse_s"], r[k]["chunks_embedded"], r[k]["units_embedded"], r[k]["peak_rss_mb"]]
            for k in ("full", "after_one_edit")
        ]
        out.append(f"\nre-index: {r['articles']} synthetic articles, {r['chunks']} chunks, {r['units']} units ({r['backend']})")
        out.append(_table(["build", "process s", "build s", "parse s", "chunks embedded", "units embedded", "peak RSS MB"], rows))
        out.append(f"  after one edit: {r['share_of_full_process']:.2%} of the full rag index process, {r['share_of_full_build']:.2%} of the build work")
        out.append(f"  steps after the edit: {r['after_one_edit']['timings_s']}")
    if "query" in results:
        rows = [
            [b, q["encode_ms"]["p50"], q["encode_search_ms"]["p50"], q["encode_search_ms"]["p95"], q["answer_ms"]["p50"], q["answer_ms"]["p95"],
             q["answer_parts_p50_ms"].get("compose")]  # fmt: skip
            for b, q in results["query"].items()
        ]
        out.append("\nquery path in-process (bundled article, product questions; ms)")
        out.append(_table(["backend", "encode p50", "enc+search p50", "enc+search p95", "answer p50", "answer p95", "compose p50"], rows))
    if "http" in results:
        h = results["http"]
        rows = [
            [f"/{r['endpoint']}", r["concurrency"], r["requests"], r["requests_per_s"], r["latency_ms"]["p50"], r["latency_ms"]["p95"],
             r["latency_ms"]["p99"], r["errors"]]  # fmt: skip
            for r in h["runs"]
        ]
        out.append(
            f"\nHTTP against rag serve ({h['backend']}, {h['workers']} worker(s), ready in {h['startup_s']} s; ms); "
            f"GET /health p50 {h['floor']['latency_ms']['p50']} ms"
        )
        out.append(_table(["route", "clients", "requests", "req/s", "p50", "p95", "p99", "errors"], rows))
        for mem in h["server_memory"]:
            out.append(
                f"  server pid {mem['pid']}: peak RSS {mem['peak_rss_mb']} MB, RSS {mem.get('rss_mb')} MB, PSS {mem.get('pss')} MB; "
                f"mapped index files RSS {mem.get('index_map_rss_mb')} MB, PSS {mem.get('index_map_pss_mb')} MB"
            )
    if "cli" in results:
        from eval.bench_cli import render_cli

        out.extend(render_cli(results["cli"]))
    goals = targets(results)
    if goals:
        out.append("\nratios the goals are stated in (one run, one machine)")
        out.append(_table(["figure", "value"], [[g["goal"], g["value"]] for g in goals]))
    return "\n".join(out)


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
    from core.errors import ConfigError
    from rag.settings import load_settings

    settings = load_settings(encoder_backend=backend)
    backends = [b.strip() for b in compare.split(",") if b.strip()]
    for b in backends:
        if b not in BACKENDS:
            raise ConfigError(f"unknown backend {b!r} in --compare; choose from: {', '.join(BACKENDS)}")
    sections = [s.strip() for s in (only or ",".join(SECTIONS)).split(",") if s.strip()]
    for s in sections:
        if s not in SECTIONS:
            raise ConfigError(f"unknown section {s!r} in --only; choose from: {', '.join(SECTIONS)}")
    try:
        levels = sorted({int(c) for c in concurrency.split(",") if c.strip()})
    except ValueError:
        raise ConfigError(f"--concurrency must be comma-separated numbers, got {concurrency!r}") from None
    if not levels or levels[0] < 1:
        raise ConfigError("--concurrency needs at least one client count of 1 or more")
    serve_backend = settings.encoder_backend
    from rag.settings import worker_count

    workers_asked = workers
    workers = worker_count(load_settings(encoder_backend=backend, workers=workers))
    log = lambda message: typer.echo(message, err=True)  # noqa: E731
    out = out or Path("artifacts/bench") / f"bench-{_dt.datetime.now().strftime('%Y%m%dT%H%M%S')}.json"

    results: dict = {
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "threads": settings.threads or os.cpu_count(),
        "serve_backend": serve_backend,
    }
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp_name:
        tmp = Path(tmp_name)
        workload = load_workload(data, docs, tmp)
        results["workload"] = workload.name
        encoders: dict = {}
        if "encoders" in sections:
            log(f"embedding throughput: {len(workload.passages)} passages x {rounds} rounds, backends {', '.join(backends)}")
            results["encoders"], encoders = bench_encoders(backends, workload.passages, settings, rounds, log)
        if "build" in sections:
            log("index builds:")
            results["build"] = bench_build(backends, workload, settings, tmp, log)
        if "reindex" in sections:
            log("re-index after one edit:")
            results["reindex"] = bench_reindex(serve_backend, articles, settings, tmp, log)
        index_dirs: dict = {}
        if "query" in sections or "http" in sections or "cli" in sections:
            log("query path in-process:")
            query_backends = backends if "query" in sections else [serve_backend]
            if serve_backend not in query_backends:
                query_backends = [*query_backends, serve_backend]
            results["query"], index_dirs = bench_query(query_backends, encoders, settings, tmp, repeats, log)
        encoders.clear()  # free the models before the server takes the cores
        if "cli" in sections:
            from eval.bench_cli import bench_cli

            log("command line cold start:")
            results["cli"] = bench_cli(index_dirs[serve_backend], settings.cache_dir, serve_backend, cli_runs, log)
        if "http" in sections:
            log(f"HTTP against rag serve ({serve_backend}, {workers} worker(s), --workers {workers_asked}):")
            results["http"] = bench_http(serve_backend, index_dirs[serve_backend], settings, levels, requests, workers, tmp, log)
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
    from eval.scale import render, run_scale
    from core.errors import ConfigError
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


# ------------------------------------------------------------------------------------ entry points


def _child_main(argv: list[str]) -> int:
    job, args, out = argv[0], json.loads(argv[1]), Path(argv[2])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if job == "build":
        result = _child_build(args)
    else:
        print(f"unknown job {job!r}", file=sys.stderr)
        return 2
    out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
