"""The report of a benchmark run: the ratios the performance goals are stated in, and the printed tables."""

from __future__ import annotations

from eval.bench.coldstart import render_cli
from eval.report import table


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


def _encoders(results: dict) -> list[str]:
    """Embedding throughput of each backend."""
    out = []
    rows = [
        [b, e["passages_per_s"], e["tokens_per_s"], e.get("speedup_vs_torch"), e["cpu_seconds"],
         (e.get("cosine_to_torch") or {}).get("mean"), (e.get("cosine_to_torch") or {}).get("min"), e["load_s"]]  # fmt: skip
        for b, e in results["encoders"].items()
    ]
    out.append("\nembedding throughput (passages up to 256 word pieces, best of rounds)")
    out.append(table(rows, ["backend", "passages/s", "word pieces/s", "x torch", "cpu s", "cos mean", "cos min", "load s"]))
    return out


def _builds(results: dict) -> list[str]:
    """Each backend's full build."""
    out = []
    rows = [
        [b, e["chunks"], e["embed_chunks_per_s"], e["embed_word_pieces_per_s"], e["units"], e["embed_units_per_s"],
         e["build_s"], e["process_wall_s"], e["peak_rss_mb"], e["bytes_per_chunk"]]  # fmt: skip
        for b, e in results["build"].items()
    ]
    out.append("\nfull index build of the workload (fresh process, empty embedding cache)")
    out.append(
        table(rows, ["backend", "chunks", "chunks/s", "pieces/s", "units", "units/s", "build s", "process s", "peak RSS MB", "bytes/chunk"])
    )
    for b, e in results["build"].items():
        out.append(f"  {b}: steps {e['timings_s']}")
    return out


def _reindex(results: dict) -> list[str]:
    """The full build and the rebuild after one edit."""
    out = []
    r = results["reindex"]
    rows = [
        [k, r[k]["process_wall_s"], r[k]["build_s"], r[k]["parse_s"], r[k]["chunks_embedded"], r[k]["units_embedded"], r[k]["peak_rss_mb"]]
        for k in ("full", "after_one_edit")
    ]
    out.append(f"\nre-index: {r['articles']} synthetic articles, {r['chunks']} chunks, {r['units']} units ({r['backend']})")
    out.append(table(rows, ["build", "process s", "build s", "parse s", "chunks embedded", "units embedded", "peak RSS MB"]))
    out.append(f"  after one edit: {r['share_of_full_process']:.2%} of the full rag index process, {r['share_of_full_build']:.2%} of the build work")
    out.append(f"  steps after the edit: {r['after_one_edit']['timings_s']}")
    return out


def _query(results: dict) -> list[str]:
    """The query path in-process."""
    out = []
    rows = [
        [b, q["encode_ms"]["p50"], q["encode_search_ms"]["p50"], q["encode_search_ms"]["p95"], q["answer_ms"]["p50"], q["answer_ms"]["p95"],
         q["answer_parts_p50_ms"].get("compose")]  # fmt: skip
        for b, q in results["query"].items()
    ]
    out.append("\nquery path in-process (bundled article, product questions; ms)")
    out.append(table(rows, ["backend", "encode p50", "enc+search p50", "enc+search p95", "answer p50", "answer p95", "compose p50"]))
    return out


def _http(results: dict) -> list[str]:
    """HTTP against rag serve, and the serving processes' memory."""
    out = []
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
    out.append(table(rows, ["route", "clients", "requests", "req/s", "p50", "p95", "p99", "errors"]))
    for mem in h["server_memory"]:
        out.append(
            f"  server pid {mem['pid']}: peak RSS {mem['peak_rss_mb']} MB, RSS {mem.get('rss_mb')} MB, PSS {mem.get('pss')} MB; "
            f"mapped index files RSS {mem.get('index_map_rss_mb')} MB, PSS {mem.get('index_map_pss_mb')} MB"
        )
    return out


def render(results: dict) -> str:
    """The whole report: the machine and workload, then one table per section that ran, then the goals' ratios."""
    m = results["machine"]
    out = [
        f"machine: {m['cores']} cores ({m['cpu_model']}; {', '.join(m['vector_extensions'])}), {m['memory_gib']} GiB, "
        f"load {m['load_average']} -> {results.get('load_average_end')}, threads {results['threads']}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        f"workload: {results['workload']}",
    ]
    for section, lines in (("encoders", _encoders), ("build", _builds), ("reindex", _reindex), ("query", _query), ("http", _http)):
        if section in results:
            out.extend(lines(results))
    if "cli" in results:
        out.extend(render_cli(results["cli"]))
    goals = targets(results)
    if goals:
        out.append("\nratios the goals are stated in (one run, one machine)")
        out.append(table([[g["goal"], g["value"]] for g in goals], ["figure", "value"]))
    return "\n".join(out)
