"""What the reader costs a server: ``/ask`` latency at one client and the memory of ``rag serve``, with
``RAG_READER`` on and off, in alternating rounds against the same index (one worker each time).

    python -m eval.bench.reader [--index-dir DIR] [--requests 200] [--rounds 2]

Asks the product's own question set (eval/data/qa.jsonl) in order. Prints a table and writes JSON; a
script that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path

from eval.bench.load import Server, load_level
from eval.bench.workloads import questions


def measure(index_dir: Path, reader: bool, requests: int, tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        RAG_INDEX_DIR=str(index_dir), RAG_CACHE_DIR=str(tmp / "cache"), RAG_RATE_LIMIT="", RAG_READER="on" if reader else "off",
        HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
    )  # fmt: skip
    server = Server(env, workers=1, log_path=tmp / f"serve-{'on' if reader else 'off'}.log").start()
    try:
        qs = questions()
        asyncio.run(load_level(server.url, "ask", 1, len(qs), qs))  # one pass to warm every path
        level = asyncio.run(load_level(server.url, "ask", 1, requests, qs))
        memory = server.memory(index_dir)[0]
    finally:
        server.stop()
    return {"reader": reader, **level, "rss_mb": memory["rss_mb"], "peak_rss_mb": memory["peak_rss_mb"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index-dir", type=Path, default=Path(os.environ.get("RAG_INDEX_DIR", ".rag-index")))
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench/reader.json"))
    args = parser.parse_args(argv)
    if not (args.index_dir / "manifest.json").exists():
        parser.error(f"no index at {args.index_dir}; build one with 'rag index' or pass --index-dir")
    runs = []
    with tempfile.TemporaryDirectory(prefix="rag-bench-reader-") as tmp:
        for round_ in range(args.rounds):
            for reader in (False, True) if round_ % 2 == 0 else (True, False):
                run = measure(args.index_dir, reader, args.requests, Path(tmp))
                runs.append({"round": round_ + 1, **run})
                lat = run["latency_ms"]
                print(
                    f"round {round_ + 1} reader {'on ' if reader else 'off'}: /ask p50 {lat['p50']} ms, p95 {lat['p95']} ms "
                    f"({run['ok']} ok, {run['errors']} errors); rss {run['rss_mb']} MB, peak {run['peak_rss_mb']} MB",
                    flush=True,
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"load_average": os.getloadavg(), "runs": runs}, indent=1), encoding="utf-8")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
