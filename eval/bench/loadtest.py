"""Load a running server with concurrent clients, optionally re-indexing and reloading mid-run.

    python -m eval.bench.loadtest --url http://127.0.0.1:8000 --concurrency 32 --duration 60 \\
        --reindex-at 30 --admin-key KEY          # or --sighup PID instead of an admin key

Prints requests/s, latency percentiles and every failed request; exits non-zero when any
request failed. A script that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from eval.metrics import summary_ms

QUESTIONS = [
    "When did the Soviet Union launch its first satellite?",
    "What are the four pillars of space diplomacy?",
    "Which countries take part in the International Space Station?",
    "What does the Moon Agreement say about sovereignty?",
    "How big is the space economy expected to become?",
    "What is the Turkish Space Agency trying to achieve?",
    "How do I bake sourdough bread?",
    "Who wrote the article on the final frontier of theory and practice?",
]
SEARCHES = ["Outer Space Treaty", "Apollo-Soyuz", "space mining", "UNOOSA", "Cold War rivalry"]


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"ask": [], "search": []})
    failures: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    builds: set[str] = field(default_factory=set)


async def client(worker: int, http: httpx.AsyncClient, stop: float, tally: Tally, headers: dict) -> None:
    n = worker
    while time.monotonic() < stop:
        n += 1
        kind = "ask" if n % 3 else "search"
        started = time.perf_counter()
        try:
            if kind == "ask":
                response = await http.post("/ask", json={"question": QUESTIONS[n % len(QUESTIONS)]}, headers=headers)
            else:
                response = await http.get("/search", params={"q": SEARCHES[n % len(SEARCHES)], "k": 5}, headers=headers)
        except httpx.HTTPError as exc:
            tally.failures.append(f"{kind}: {exc.__class__.__name__}: {exc}")
            continue
        elapsed = time.perf_counter() - started
        tally.statuses[response.status_code] = tally.statuses.get(response.status_code, 0) + 1
        if response.status_code == 200:
            tally.latencies[kind].append(elapsed)
        else:
            tally.failures.append(f"{kind}: HTTP {response.status_code}: {response.text[:200]}")


async def reindex_and_reload(args, http: httpx.AsyncClient, tally: Tally) -> dict:
    await asyncio.sleep(args.reindex_at)
    started = time.perf_counter()
    env = dict(os.environ)
    if args.index_dir:
        env["RAG_INDEX_DIR"] = str(args.index_dir)
    if args.corpus:
        env["RAG_CORPUS_DIR"] = str(args.corpus)
    rag = Path(sys.executable).parent / "rag"
    proc = await asyncio.create_subprocess_exec(
        str(rag), "index", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await proc.communicate()
    event = {"reindex_seconds": round(time.perf_counter() - started, 2), "reindex_output": (out or err).decode().strip()}
    if proc.returncode != 0:
        event["reindex_error"] = err.decode().strip()
        return event
    started = time.perf_counter()
    if args.sighup:
        os.kill(args.sighup, signal.SIGHUP)
        event["reload"] = "SIGHUP sent"
    elif args.admin_key:
        response = await http.post("/admin/reload", headers={"X-API-Key": args.admin_key}, timeout=120)
        event["reload"] = f"HTTP {response.status_code}: {response.text[:300]}"
    else:
        event["reload"] = "skipped (give --admin-key or --sighup)"
    event["reload_seconds"] = round(time.perf_counter() - started, 2)
    return event


async def watch_builds(http: httpx.AsyncClient, stop: float, tally: Tally) -> None:
    while time.monotonic() < stop:
        try:
            response = await http.get("/ready")
            if response.status_code == 200:
                tally.builds.add(response.json()["build_id"])
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.5)


async def run(args) -> dict:
    tally = Tally()
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    limits = httpx.Limits(max_connections=args.concurrency + 4, max_keepalive_connections=args.concurrency + 4)
    async with httpx.AsyncClient(base_url=args.url, timeout=60, limits=limits) as http:
        await http.get("/ready")
        started = time.monotonic()
        stop = started + args.duration
        tasks = [asyncio.create_task(client(i, http, stop, tally, headers)) for i in range(args.concurrency)]
        tasks.append(asyncio.create_task(watch_builds(http, stop, tally)))
        reload_task = asyncio.create_task(reindex_and_reload(args, http, tally)) if args.reindex_at is not None else None
        await asyncio.gather(*tasks)
        event = await reload_task if reload_task else None
        wall = time.monotonic() - started
    done = sum(len(v) for v in tally.latencies.values())
    report = {
        "url": args.url,
        "concurrency": args.concurrency,
        "duration_s": round(wall, 1),
        "requests_ok": done,
        "requests_per_s": round(done / wall, 2),
        "errors": len(tally.failures),
        "statuses": tally.statuses,
        "builds_seen": sorted(tally.builds),
        "latency_ms": {
            kind: summary_ms(values, digits=1)
            for kind, values in tally.latencies.items()
        },
        "reindex": event,
        "failures": tally.failures[:20],
    }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds")
    parser.add_argument("--reindex-at", type=float, default=None, help="seconds into the run to re-index and reload")
    parser.add_argument("--index-dir", type=Path, default=None, help="the server's index (default RAG_INDEX_DIR / .rag-index)")
    parser.add_argument("--corpus", type=Path, default=None, help="corpus to re-index (default RAG_CORPUS_DIR / bundled)")
    parser.add_argument("--admin-key", default=os.environ.get("RAG_LOAD_ADMIN_KEY"), help="reload through POST /admin/reload")
    parser.add_argument("--sighup", type=int, default=None, metavar="PID", help="reload by sending SIGHUP to the server")
    parser.add_argument("--api-key", default=None, help="client key, when the server requires one")
    parser.add_argument("--out", type=Path, default=None, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.duration <= 0:
        parser.error("--concurrency must be >= 1 and --duration > 0")
    try:
        report = asyncio.run(run(args))
    except httpx.HTTPError as exc:
        print(f"error: cannot reach {args.url} ({exc.__class__.__name__}); start the server first (make run)", file=sys.stderr)
        return 2
    lat = report["latency_ms"]
    print(
        f"{report['requests_ok']} requests in {report['duration_s']} s at concurrency {report['concurrency']}: "
        f"{report['requests_per_s']} req/s, {report['errors']} errors"
    )
    for kind in ("ask", "search"):
        print(f"  {kind:6} n={lat[kind]['n']:<6} p50 {lat[kind]['p50']} ms  p95 {lat[kind]['p95']} ms  p99 {lat[kind]['p99']} ms")
    print(f"  statuses {report['statuses']}  builds seen {report['builds_seen']}")
    if report["reindex"]:
        print(f"  re-index: {json.dumps(report['reindex'])}")
    for failure in report["failures"]:
        print(f"  failed: {failure}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
