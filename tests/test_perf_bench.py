"""The benchmark's own arithmetic and inputs (the figures themselves are never asserted)."""

from __future__ import annotations

import numpy as np

from corpus import load_corpus
from eval.bench.scale import exact_top, synthetic_vectors
from eval.bench.workloads import synthetic_articles

from conftest import write_files


def test_synthetic_articles_are_deterministic_and_parse(tmp_path):
    files = synthetic_articles(5)
    assert files == synthetic_articles(5) and files != synthetic_articles(5, seed=1)
    articles = load_corpus(write_files(tmp_path / "corpus", files))
    assert [a.slug for a in articles] == [f"article-{i:05d}" for i in range(5)]
    assert all(len(a.sections) >= 4 and 500 < len(a.text.split()) < 2000 for a in articles)


def test_exact_top_matches_a_full_sort():
    base = synthetic_vectors(1500, seed=3)
    queries = synthetic_vectors(7, seed=4)
    assert np.allclose(np.linalg.norm(base, axis=1), 1.0, atol=1e-5)
    expected = np.argsort(-(queries @ base.T), axis=1, kind="stable")[:, :10]
    got = exact_top(base, queries, k=10, block=400)  # blocks smaller than the base: the merge is exercised
    assert [set(r) for r in got] == [set(r) for r in expected]


def test_bench_ray_refuses_a_folder_without_a_dataset_in_one_line(rag_cli, tmp_path):
    run = rag_cli(["bench", "ray", "--data", str(tmp_path)])
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip() == f"error: {tmp_path}: no corpus.jsonl here; pass --data a BEIR dataset folder (SciFact: ../shared/datasets/scifact)"


def test_bench_rejects_an_unknown_section_in_one_line(rag_cli):
    run = rag_cli(["bench", "--only", "everything"])
    assert run.returncode == 2
    assert run.stderr.strip() == "error: unknown section 'everything' in --only; choose from: encoders, build, reindex, query, cli, http"
