"""TREC run files (``qid Q0 docid rank score tag``): written so that every evaluation tool reads
the ranking that was made, and read back the way those tools order them."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from eval.errors import EvalDataError



def strictly_decreasing(scores: Sequence[float]) -> list[float]:
    """Scores as float32 values made strictly decreasing by the smallest steps, keeping the given order.

    Tools that read a run file order documents by score and break ties each their own way
    (trec_eval by document id, descending), and pytrec_eval compares scores in single
    precision. Separating ties at float32 precision means every tool reads the ranking we made.
    """
    out: list[np.float32] = []
    for score in scores:
        value = np.float32(score)
        if out and value >= out[-1]:
            value = np.nextafter(out[-1], np.float32(-np.inf))
        out.append(value)
    return [float(v) for v in out]


def write_trec_run(path: str | Path, run: Mapping[str, Sequence[tuple[str, float]]], tag: str) -> Path:
    """Write ``qid Q0 docid rank score tag`` lines, atomically (a temporary file renamed into place)."""
    path = Path(path)
    for qid, docs in run.items():
        bad = next((i for i in (qid, *(d for d, _ in docs)) if not i or any(ch.isspace() for ch in i)), None)
        if bad is not None:
            raise EvalDataError(f"the id {bad!r} is empty or holds whitespace and cannot be written to a TREC run file; rename it in the dataset")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as handle:
        for qid, docs in run.items():
            for rank, ((doc, _), score) in enumerate(zip(docs, strictly_decreasing([s for _, s in docs])), start=1):
                # repr() round-trips the float exactly, so a reader sees the same order we wrote.
                handle.write(f"{qid} Q0 {doc} {rank} {score!r} {tag}\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def read_trec_run(path: str | Path) -> dict[str, list[tuple[str, float]]]:
    """A TREC run file as qid -> [(docid, score)], ordered by score as evaluation tools order it."""
    run: dict[str, list[tuple[str, float]]] = {}
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        cols = line.split()
        if len(cols) != 6:
            raise EvalDataError(f"{path}: line {lineno}: expected 'qid Q0 docid rank score tag'")
        run.setdefault(cols[0], []).append((cols[2], float(cols[4])))
    for docs in run.values():
        docs.sort(key=lambda d: -d[1])
    return run
