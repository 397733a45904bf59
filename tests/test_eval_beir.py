"""`rag eval beir` on a tiny dataset in the BEIR layout written by the tests (fake encoder, so it is fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.datasets import load_dataset, load_qrels
from eval.trec import read_trec_run
from eval.errors import EvalDataError

FILLER = " ".join(f"Sentence {i} of the long report repeats ordinary words about weather and rivers." for i in range(40))

CORPUS = [
    {"_id": "d1", "title": "Aardvarks", "text": "The aardvark digs burrows and eats termites at night."},
    {"_id": "d2", "title": "Bicycles", "text": "A bicycle has two wheels, pedals and a chain."},
    {"_id": "d3", "title": "Cathedrals", "text": "Gothic cathedrals have flying buttresses and stained glass."},
    {"_id": "d4", "title": "Volcanoes", "text": "A volcano erupts lava, ash and gases from the mantle."},
    {"_id": "d5", "title": "Glaciers", "text": "Glaciers are rivers of ice that carve valleys."},
    # Longer than one chunk; the only mention of zeppelins is at its very end.
    {"_id": "long", "title": "A long report", "text": FILLER + " At the end the report finally mentions a zeppelin airship."},
]
QUERIES = [
    {"_id": "q1", "text": "what do aardvarks eat"},
    {"_id": "q2", "text": "stained glass in gothic cathedrals"},
    {"_id": "q3", "text": "zeppelin airship"},
    {"_id": "q4", "text": "lava from a volcano"},
    {"_id": "unjudged", "text": "bicycle chain"},
]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t1\nq3\tlong\t1\nq4\td4\t2\nq4\td5\t0\n"


def write_dataset(root: Path, qrels: dict[str, str] | None = None) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in CORPUS))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUERIES))
    for split, text in (qrels or {"test": QRELS}).items():
        (root / "qrels" / f"{split}.tsv").write_text(text)
    return root


@pytest.fixture
def dataset(tmp_path) -> Path:
    return write_dataset(tmp_path / "tiny")


def test_loader_reads_judged_queries_and_qrels(dataset):
    ds = load_dataset(dataset, "test")
    assert ds.name == "tiny"
    assert list(ds.queries) == ["q1", "q2", "q3", "q4"]  # the unjudged query is not asked
    assert ds.qrels["q4"] == {"d4": 2, "d5": 0}
    assert ds.queries["q3"] == "zeppelin airship"


def test_qrels_formats(tmp_path):
    trec = tmp_path / "trec.tsv"
    trec.write_text("q1 0 d1 1\nq1 0 d2 0\n")
    assert load_qrels(trec) == {"q1": {"d1": 1, "d2": 0}}
    no_header = tmp_path / "plain.tsv"
    no_header.write_text("q1\td1\t2\n\nq2\td 3\t1\n")  # tabs separate, so ids may hold spaces
    assert load_qrels(no_header) == {"q1": {"d1": 2}, "q2": {"d 3": 1}}


@pytest.mark.parametrize(
    "text, message",
    [
        ("query-id\tcorpus-id\tscore\nq1\td1\n", "line 2: expected 3 columns"),
        ("q1\td1\t1\nq2\td2\thigh\n", "line 2: the score 'high' is not an integer"),
        ("query-id\tcorpus-id\tscore\n", "no judgements"),
    ],
)
def test_qrels_errors_name_the_line(tmp_path, text, message):
    path = tmp_path / "bad.tsv"
    path.write_text(text)
    with pytest.raises(EvalDataError, match=message):
        load_qrels(path)


def _one_line_error(result) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_missing_split_lists_the_available_ones(rag_cli, tmp_path):
    root = write_dataset(tmp_path / "ds", {"dev": QRELS, "train": QRELS})
    line = _one_line_error(rag_cli(["eval", "beir", "--data", str(root)]))
    assert "no qrels for split 'test'" in line and "available splits: dev, train" in line and "--split" in line


def test_malformed_qrels_line_is_named(rag_cli, tmp_path):
    root = write_dataset(tmp_path / "ds", {"test": QRELS + "q5\td1\n"})
    line = _one_line_error(rag_cli(["eval", "beir", "--data", str(root)]))
    assert "test.tsv: line 7: expected 3 columns" in line


def test_unknown_query_id_is_named(rag_cli, tmp_path):
    root = write_dataset(tmp_path / "ds", {"test": QRELS + "ghost\td1\t1\n"})
    line = _one_line_error(rag_cli(["eval", "beir", "--data", str(root)]))
    assert "'ghost'" in line and "not in queries.jsonl" in line and "--skip-unknown-queries" in line


def test_missing_dataset_files(rag_cli, tmp_path):
    root = write_dataset(tmp_path / "ds")
    (root / "queries.jsonl").unlink()
    line = _one_line_error(rag_cli(["eval", "beir", "--data", str(root)]))
    assert "queries.jsonl is missing" in line


def test_eval_beir_end_to_end(rag_cli, dataset, tmp_path):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    run_file, results = tmp_path / "out" / "tiny.run", tmp_path / "out" / "tiny.json"
    first = rag_cli(["eval", "beir", "--data", str(dataset), "--run-out", str(run_file), "--out", str(results)])
    assert first.returncode == 0, first.stderr
    assert "nDCG@10" in first.stdout and str(run_file) in first.stdout

    data = json.loads(results.read_text())
    assert data["counts"]["documents"] == len(CORPUS)
    assert data["counts"]["chunks"] > len(CORPUS)  # the long report was split
    assert data["counts"]["queries"] == 4

    # One line per (query, document): a long document appears once, ranked by its best chunk.
    lines = [line.split() for line in run_file.read_text().splitlines()]
    assert {line[0] for line in lines} == {"q1", "q2", "q3", "q4"}
    for qid in ("q1", "q2", "q3", "q4"):
        rows = [line for line in lines if line[0] == qid]
        docs = [row[2] for row in rows]
        assert sorted(docs) == sorted(d["_id"] for d in CORPUS)
        assert [int(row[3]) for row in rows] == list(range(1, len(rows) + 1))
        scores = [float(row[4]) for row in rows]
        assert all(a > b for a, b in zip(scores, scores[1:]))
    run = read_trec_run(run_file)
    assert run["q3"][0][0] == "long"
    assert run["q1"][0][0] == "d1" and run["q2"][0][0] == "d3"

    # An independent evaluation of the file gives the figures the harness reported.
    qrels = {"q1": {"d1": 1}, "q2": {"d3": 1}, "q3": {"long": 1}, "q4": {"d4": 2, "d5": 0}}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100", "map_cut.100"})
    theirs = evaluator.evaluate({q: dict(docs) for q, docs in run.items()})
    mean = lambda key: sum(v[key] for v in theirs.values()) / len(theirs)  # noqa: E731
    assert data["summary"]["nDCG@10"] == pytest.approx(mean("ndcg_cut_10"))
    assert data["summary"]["Recall@100"] == pytest.approx(mean("recall_100"))
    assert data["summary"]["MAP@100"] == pytest.approx(mean("map_cut_100"))

    # A second run of the same data embeds nothing: every vector comes from the cache.
    second = rag_cli(["eval", "beir", "--data", str(dataset), "--run-out", str(run_file), "--out", str(results)])
    assert second.returncode == 0, second.stderr
    assert "(embedded 0, cached" in second.stderr
    assert json.loads(results.read_text())["summary"] == data["summary"]


def test_eval_beir_bm25_mode_and_skipping_unknown_queries(rag_cli, tmp_path):
    root = write_dataset(tmp_path / "ds", {"test": QRELS + "ghost\td1\t1\n"})
    run_file = tmp_path / "bm25.run"
    result = rag_cli(["eval", "beir", "--data", str(root), "--mode", "bm25", "--run-out", str(run_file), "--skip-unknown-queries"])
    assert result.returncode == 0, result.stderr
    assert "warning: 1 judged query id(s) are not in queries.jsonl" in result.stderr
    run = read_trec_run(run_file)
    # BM25 ranks only documents sharing a term with the query.
    assert [d for d, _ in run["q3"]] == ["long"]
    assert json.loads(run_file.with_suffix(".json").read_text())["summary"]["MRR@10"] == pytest.approx(1.0)
