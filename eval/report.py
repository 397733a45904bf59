"""Readable reports: text tables, the machine the figures belong to, the markdown table of failed questions,
and comparisons of two runs."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from eval.errors import EvalDataError

#: Results files carry this version; ``compare`` refuses files it does not understand.
RESULTS_VERSION = 1


def fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    """A plain-text table with aligned columns under a dashed rule; an empty cell (None) shows as "-".

    The one table renderer of the harness's reports (evaluation, benchmarks)."""
    cells = [[str(c) for c in header], *(["-" if c is None else str(c) for c in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([line(cells[0]), line(["-" * w for w in widths]), *(line(r) for r in cells[1:])])


#: Libraries whose versions the performance figures depend on.
MEASURED_PACKAGES = (
    "torch", "onnxruntime", "sentence-transformers", "transformers", "optimum", "optimum-onnx",
    "faiss-cpu", "bm25s", "numpy", "fastapi", "uvicorn", "httpx",
)  # fmt: skip


def machine_info() -> dict:
    """Cores, CPU model and vector extensions, memory, load and library versions: the context of every
    figure a benchmark reports (the one machine description of the harness, from ``core.machine``)."""
    import platform

    from core.machine import cpu_flags, cpu_model, package_versions

    model, flags = cpu_model(), cpu_flags()
    mem_total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_total = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model,
        "vector_extensions": sorted(f for f in flags if f in {"avx", "avx2", "fma", "avx_vnni", "f16c"} or f.startswith("avx512")),
        "memory_gib": mem_total,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": package_versions(MEASURED_PACKAGES),
    }


def summary_table(summary: Mapping[str, object]) -> str:
    return table([(name, fmt(value)) for name, value in summary.items()], ("metric", "value"))


def write_json(path: str | Path, payload: dict) -> Path:
    """Write a results file atomically, stamped with the results format version."""
    return write_json_as_is(path, {"version": RESULTS_VERSION, **payload})


def write_json_as_is(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` atomically and unstamped, for files whose layout is fixed elsewhere (SQuAD predictions)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _cell(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def failures_markdown(results: Sequence[Mapping], summary: Mapping[str, object], title: str) -> str:
    """A markdown page: the headline figures, then one row per question that failed a check."""
    failed = [r for r in results if not r["passed"]]
    lines = [f"# {title}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {fmt(value)} |" for name, value in summary.items()]
    lines += ["", f"## Failures ({len(failed)} of {len(results)} questions)", ""]
    if not failed:
        lines.append("Every question passed every check.")
        return "\n".join(lines) + "\n"
    lines += ["| id | kind | question | problems | answer | first cited section | gold section |", "|---|---|---|---|---|---|---|"]
    for r in failed:
        cited = " > ".join(r["cited_sections"][0]) if r["cited_sections"] else "-"
        gold = " > ".join(r["gold_sections"][0]) if r["gold_sections"] else "-"
        answer = "(abstained)" if r["abstained"] else r["answer"]
        lines.append(
            f"| {r['id']} | {r['kind']} | {_cell(r['question'])} | {_cell('; '.join(r['problems']))} "
            f"| {_cell(answer)} | {_cell(cited, 80)} | {_cell(gold, 80)} |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------- compare


def load_results(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalDataError(f"{path}: no such results file; write one with 'rag eval qa --out' or 'rag eval beir --out'") from None
    except (OSError, ValueError) as exc:
        raise EvalDataError(f"{path}: not a readable results file ({exc.__class__.__name__})") from None
    if not isinstance(data, dict) or data.get("kind") not in ("qa", "beir") or "summary" not in data:
        raise EvalDataError(f"{path}: not a results file of 'rag eval qa' or 'rag eval beir'")
    if data.get("version") != RESULTS_VERSION:
        raise EvalDataError(f"{path}: results format version {data.get('version')!r}; this harness reads version {RESULTS_VERSION}")
    return data


def _outcomes(data: dict) -> dict[str, dict]:
    if data["kind"] == "qa":
        return {r["id"]: r for r in data["per_question"]}
    return {q: {"id": q, **v} for q, v in data["per_query"].items()}


def paired_bootstrap(deltas: Sequence[float], *, samples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean of per-query deltas, by resampling queries (fixed seed: reproducible).

    An interval that excludes zero says the change is unlikely to be noise on this query set.
    """
    import numpy as np

    values = np.asarray(deltas, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(samples, len(values)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def compare(a: dict, b: dict, *, measure: str = "nDCG@10", limit: int = 20) -> str:
    """Metric deltas from ``a`` to ``b`` and the questions whose outcome changed."""
    if a["kind"] != b["kind"]:
        raise EvalDataError(f"cannot compare a {a['kind']} result with a {b['kind']} result")
    rows = []
    for name in dict.fromkeys([*a["summary"], *b["summary"]]):
        va, vb = a["summary"].get(name), b["summary"].get(name)
        delta = vb - va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
        rows.append((name, fmt(va), fmt(vb), "" if delta is None else f"{delta:+.4f}" if isinstance(delta, float) else f"{delta:+d}"))
    out = [table(rows, ("metric", "A", "B", "B - A")), ""]
    qa, qb = _outcomes(a), _outcomes(b)
    common = [q for q in qa if q in qb]
    if len(common) < max(len(qa), len(qb)):
        out.append(f"note: {len(qa) - len(common)} question(s) only in A, {len(qb) - len(common)} only in B; they are not compared")
    if a["kind"] == "qa":
        won = [q for q in common if not qa[q]["passed"] and qb[q]["passed"]]
        lost = [q for q in common if qa[q]["passed"] and not qb[q]["passed"]]
        out.append(f"won ({len(won)}): failed in A, pass in B")
        out += [f"  + {q}  {_cell(qb[q]['question'], 70)}  (was: {'; '.join(qa[q]['problems'])})" for q in won]
        out.append(f"lost ({len(lost)}): passed in A, fail in B")
        out += [f"  - {q}  {_cell(qb[q]['question'], 70)}  ({'; '.join(qb[q]['problems'])})" for q in lost]
        changed = [q for q in common if qa[q]["passed"] == qb[q]["passed"] and not qb[q]["passed"] and qa[q]["problems"] != qb[q]["problems"]]
        if changed:
            out.append(f"failing in both, differently ({len(changed)})")
            out += [f"  ~ {q}  A: {'; '.join(qa[q]['problems'])}  B: {'; '.join(qb[q]['problems'])}" for q in changed]
    else:
        if measure not in a["summary"]:
            raise EvalDataError(f"unknown measure {measure!r}; choose one of: {', '.join(a['summary'])}")
        deltas = sorted(((qb[q][measure] - qa[q][measure], q) for q in common), key=lambda d: (d[0], d[1]))
        won = [(d, q) for d, q in reversed(deltas) if d > 0]
        lost = [(d, q) for d, q in deltas if d < 0]
        out.append(f"{measure}: {len(won)} queries better, {len(lost)} worse, {len(common) - len(won) - len(lost)} unchanged")
        if common:
            lo, hi = paired_bootstrap([d for d, _ in deltas])
            out.append(f"mean per-query delta {sum(d for d, _ in deltas) / len(deltas):+.4f}, 95% bootstrap interval [{lo:+.4f}, {hi:+.4f}]")
        out.append(f"most improved (up to {limit}):")
        out += [f"  + {q}  {qa[q][measure]:.4f} -> {qb[q][measure]:.4f}" for _, q in won[:limit]]
        out.append(f"most worsened (up to {limit}):")
        out += [f"  - {q}  {qa[q][measure]:.4f} -> {qb[q][measure]:.4f}" for _, q in lost[:limit]]
    return "\n".join(out)
