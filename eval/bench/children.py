"""Builds measured in a fresh process: ``python -m eval.bench build ...``, its wall time, CPU time
(from wait4) and peak memory (VmHWM, which starts afresh at exec)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from eval.bench.memory import status_mb


def child_build(args: dict) -> dict:
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
        "peak_rss_mb": status_mb(os.getpid(), "VmHWM"),
    }


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


def child_main(argv: list[str]) -> int:
    job, args, out = argv[0], json.loads(argv[1]), Path(argv[2])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if job == "build":
        result = child_build(args)
    else:
        print(f"unknown job {job!r}", file=sys.stderr)
        return 2
    out.write_text(json.dumps(result))
    return 0
