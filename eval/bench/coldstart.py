"""Cold start of the command line, timed from outside the process: ``rag search`` and ``rag ask``
against ``rag --help`` in the same run, in alternation, so that a machine whose speed drifts
moves both alike and the ratio stays meaningful."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from statistics import median
from pathlib import Path

RAG_BIN = Path(sys.executable).parent / "rag"
QUESTION = "What does the Outer Space Treaty say about the Moon?"


def _run(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one ``rag`` process, start-up included."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([str(RAG_BIN), *args], env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"rag {' '.join(args)} failed: {proc.stderr.strip()[-300:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def bench_cli(index_dir: Path, cache_dir: Path, backend: str, runs: int, log) -> dict:
    """Median wall and CPU seconds of ``rag --help``, ``rag search`` and ``rag ask`` (each a fresh
    process, after one warm-up run that also makes the ONNX export if it is missing), and the
    median of the per-pair ratios to ``rag --help``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        RAG_INDEX_DIR=str(index_dir),
        RAG_CACHE_DIR=str(Path(cache_dir).resolve()),
        RAG_ENCODER_BACKEND=backend,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    commands = {"help": ["--help"], "search": ["search", QUESTION], "ask": ["ask", QUESTION]}
    for args in commands.values():
        _run(args, env)  # warm-up: page cache, and the export on a fresh cache
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, args in commands.items():  # help, search, ask, help, search, ask, ...
            times[name].append(_run(args, env))
    out: dict = {"runs": runs, "backend": backend}
    for name, pairs in times.items():
        out[name] = {"wall_s": round(median([w for w, _ in pairs]), 3), "cpu_s": round(median([c for _, c in pairs]), 3)}
        if name != "help":
            out[name]["wall_x_help"] = round(median([w / h for (w, _), (h, _) in zip(pairs, times["help"])]), 2)
            out[name]["cpu_x_help"] = round(median([c / h for (_, c), (_, h) in zip(pairs, times["help"])]), 2)
    for name in ("search", "ask"):
        log(f"  rag {name:<6} {out[name]['wall_s']:.3f} s wall ({out[name]['wall_x_help']}x rag --help), "
            f"{out[name]['cpu_s']:.3f} s cpu ({out[name]['cpu_x_help']}x)")  # fmt: skip
    log(f"  rag --help {out['help']['wall_s']:.3f} s wall, {out['help']['cpu_s']:.3f} s cpu")
    return out


def render_cli(result: dict) -> list[str]:
    rows = [f"\ncommand line cold start ({result['backend']} index, {result['runs']} alternating runs, medians)"]
    rows.append("command     wall s   cpu s   wall / help   cpu / help")
    for name in ("help", "search", "ask"):
        r = result[name]
        rows.append(f"rag {name:<7} {r['wall_s']:>6.3f}  {r['cpu_s']:>6.3f}   {r.get('wall_x_help', '-'):>11}   {r.get('cpu_x_help', '-'):>10}")
    return rows
