"""Evaluation metrics against values worked out by hand, run files, comparisons and calibration."""

from __future__ import annotations

import math

import pytest

from eval import metrics as m
from eval.trec import read_trec_run, strictly_decreasing, write_trec_run
from eval.calibration import calibrate
from eval.qa import QAResult
from eval.report import compare

# q1 has graded judgements, q2 retrieves nothing relevant, q3 is judged but absent from the run.
QRELS = {"q1": {"d1": 2, "d2": 1}, "q2": {"d5": 1}, "q3": {"d9": 1}}
RUN = {
    "q1": [("d3", 3.0), ("d1", 2.0), ("d4", 1.5), ("d2", 1.0)],
    "q2": [("d6", 1.0), ("d7", 0.5)],
    "q-unjudged": [("d1", 1.0)],
}


def test_ir_measures_match_hand_computed_values():
    scores = m.ir_scores(QRELS, RUN)
    # q1: relevant at ranks 2 (gain 2) and 4 (gain 1).
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    q1 = scores.per_query["q1"]
    assert q1["nDCG@10"] == pytest.approx(dcg / idcg)
    assert q1["MRR@10"] == pytest.approx(1 / 2)
    assert q1["MAP@100"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert q1["Recall@100"] == pytest.approx(1.0)
    assert scores.per_query["q2"] == {"nDCG@10": 0.0, "Recall@100": 0.0, "MRR@10": 0.0, "MAP@100": 0.0}
    assert scores.per_query["q3"]["nDCG@10"] == 0.0  # judged, not retrieved: counts as zero
    assert "q-unjudged" not in scores.per_query
    # Means over the three judged queries.
    assert scores.aggregate["nDCG@10"] == pytest.approx(dcg / idcg / 3)
    assert scores.aggregate["MRR@10"] == pytest.approx(0.5 / 3)
    assert scores.aggregate["Recall@100"] == pytest.approx(1 / 3)


def test_cutoffs_apply():
    qrels = {"q": {"late": 1}}
    run = {"q": [(f"d{i}", 100.0 - i) for i in range(10)] + [("late", 1.0)]}  # relevant at rank 11
    scores = m.ir_scores(qrels, run).per_query["q"]
    assert scores["nDCG@10"] == 0.0 and scores["MRR@10"] == 0.0
    assert scores["Recall@100"] == 1.0
    assert scores["MAP@100"] == pytest.approx(1 / 11)


def test_strictly_decreasing_separates_ties_in_order():
    import numpy as np

    out = strictly_decreasing([0.5, 0.5, 0.5, 0.2, 0.2, 0.7, 1e-9 + 0.1, 0.1])
    # Distinct even in single precision, which pytrec_eval compares in.
    assert all(np.float32(a) > np.float32(b) for a, b in zip(out, out[1:]))
    assert out[0] == 0.5 and out[3] == pytest.approx(0.2)
    assert out[1] == pytest.approx(0.5) and out[4] == pytest.approx(0.2) and out[7] == pytest.approx(0.1)


def test_run_file_round_trip_and_independent_recomputation(tmp_path):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    run = {"q1": [("d3", 1.0), ("d1", 1.0), ("d4", 1.0), ("d2", 0.5)], "q2": [("d6", 1.0), ("d5", 1.0)]}
    path = write_trec_run(tmp_path / "run.trec", run, tag="test")
    lines = path.read_text().splitlines()
    assert lines[0].split()[:4] == ["q1", "Q0", "d3", "1"] and lines[0].split()[5] == "test"
    read = read_trec_run(path)
    assert [d for d, _ in read["q1"]] == ["d3", "d1", "d4", "d2"]  # our order survives the tied scores
    ours = m.ir_scores(QRELS, read)
    # pytrec_eval (trec_eval) on the file's contents, as an outside checker would compute it.
    evaluator = pytrec_eval.RelevanceEvaluator(
        {q: dict(d) for q, d in QRELS.items()}, {"ndcg_cut.10", "recip_rank", "map_cut.100", "recall.100"}
    )
    theirs = evaluator.evaluate({q: dict(docs) for q, docs in read.items()})
    # trec_eval's recip_rank has no cutoff; here every first hit is within 10, so they agree.
    for q, values in theirs.items():
        assert ours.per_query[q]["nDCG@10"] == pytest.approx(values["ndcg_cut_10"])
        assert ours.per_query[q]["MAP@100"] == pytest.approx(values["map_cut_100"])
        assert ours.per_query[q]["Recall@100"] == pytest.approx(values["recall_100"])
        assert ours.per_query[q]["MRR@10"] == pytest.approx(values["recip_rank"])


def test_run_file_refuses_ids_with_spaces(tmp_path):
    from eval.errors import EvalDataError

    with pytest.raises(EvalDataError, match="'doc 1'.*holds whitespace"):
        write_trec_run(tmp_path / "run.trec", {"q1": [("doc 1", 1.0)]}, tag="t")
    assert not (tmp_path / "run.trec").exists()


def test_answer_key_groups_must_all_match_with_any_alternative():
    key = [["Outer Space Treaty", "OST"], ["1967"]]
    assert m.answer_key_match("The Outer   Space\nTreaty [1] was signed in 1967 [2].", key)
    assert m.answer_key_groups("the OST was signed [1].", key) == [True, False]
    assert not m.answer_key_match("anything", [])
    # Citation markers do not glue words together.
    assert m.answer_key_match("signed in 19[1]67", [["1967"]])


def test_sections_match_exactly_not_by_prefix():
    gold = [("Space Diplomacy", "History")]
    ranked = [("Space Diplomacy",), ("Space Diplomacy", "History", "Cold War"), ("space diplomacy", " history ")]
    assert m.first_hit(ranked, gold) == 3
    assert m.first_hit(ranked[:2], gold) is None
    assert m.hit_at(3, 3) and not m.hit_at(3, 1) and not m.hit_at(None, 5)
    assert m.reciprocal_rank(4) == 0.25 and m.reciprocal_rank(None) == 0.0


def _citation(n, pid, quote, start):
    return {"n": n, "passage_id": pid, "quote": quote, "start": start, "end": start + len(quote)}


def test_citation_problems():
    texts = {"p1": "Sputnik flew in 1957. NASA came in 1958.", "p2": "The treaty dates from 1967."}
    good = [_citation(1, "p1", "Sputnik flew in 1957.", 0), _citation(2, "p2", "The treaty dates from 1967.", 0)]
    assert m.citation_problems("Sputnik flew in 1957. [1] The treaty dates from 1967. [2]", False, good, texts) == []
    wrong_offsets = [_citation(1, "p1", "NASA came in 1958.", 0)]
    assert "quote is not passage text" in m.citation_problems("x [1]", False, wrong_offsets, texts)[0]
    assert any("names no citation" in p for p in m.citation_problems("a [1] b [3]", False, good, texts))
    out_of_order = m.citation_problems("b [2] a [1]", False, good, texts)
    assert any("order of first use" in p for p in out_of_order)
    unused = m.citation_problems("a [1]", False, good, texts)
    assert any("order of first use" in p for p in unused)
    assert m.citation_problems("x [1]", False, [_citation(1, "gone", "x", 0)], texts) == ["[1] cites unknown passage gone"]
    assert m.citation_problems("no", True, [], texts) == []
    assert m.citation_problems("no [1]", True, good[:1], texts) == ["an abstention carries citations"]
    assert m.citation_problems("an answer", False, [], texts) == ["an answer without citations"]


def test_abstention_precision_and_recall():
    # (answerable, abstained): one right abstention, one wrong, one missed.
    a = m.abstention([(False, True), (True, True), (False, False), (True, False)])
    assert (a.precision, a.recall) == (0.5, 0.5)
    none = m.abstention([(True, False)])
    assert none.precision is None and none.recall is None


def test_percentile():
    """The one percentile of the harness: q from 0 to 100, linear between ranks, None for no values."""
    assert m.percentile([10, 20, 30, 40], 50) == 25
    assert m.percentile([1.0] * 19 + [100.0], 95) == pytest.approx(5.95)
    values = [0.4, 0.1, 0.3, 0.2]
    assert m.percentile(values, 0) == 0.1 and m.percentile(values, 100) == 0.4
    assert abs(m.percentile(values, 50) - 0.25) < 1e-12
    assert m.percentile([], 95) is None
    with pytest.raises(ValueError, match="0..100"):
        m.percentile(values, 0.95 * 1000)


def test_latency_summary_in_milliseconds():
    assert m.summary_ms([0.001, 0.002, 0.003, 0.004]) == {"n": 4, "p50": 2.5, "p95": 3.85, "p99": 3.97, "mean": 2.5}
    assert m.summary_ms([]) == {"n": 0, "p50": None, "p95": None, "p99": None, "mean": None}


def test_one_table_renderer_aligns_columns_and_marks_empty_cells():
    from eval.report import table

    assert table([["a", None], ["long name", 1.5]], ["name", "value"]).splitlines() == [
        "name       value",
        "---------  -----",
        "a          -",
        "long name  1.5",
    ]


def _result(qid, kind, answerable, abstained, support, problems=()):
    return QAResult(
        id=qid, kind=kind, question=f"question {qid}", answerable=answerable, abstained=abstained, answer="",
        support=support, latency_ms=1.0, cited_sections=[], passage_sections=[], citation_rank=None,
        passage_rank=None, key_groups=[], citation_problems=[], problems=list(problems),
    )


def test_calibration_proposes_the_midpoint():
    results = [
        _result("a1", "factoid", True, False, 0.40),
        _result("a2", "factoid", True, False, 0.30),
        _result("o1", "off-topic", False, True, 0.10),
        _result("o2", "off-topic", False, True, 0.20),
        _result("n1", "near-domain", False, False, 0.35),
    ]
    cal = calibrate(results, current=0.24)
    assert cal.answerable_min.id == "a2" and cal.off_topic_max.id == "o2"
    assert cal.proposed == pytest.approx(0.25) and cal.separable
    assert cal.errors_at_proposed == {"answerable_below": 0, "off_topic_above": 0, "near_domain_above": 1}
    results.append(_result("o3", "off-topic", False, False, 0.5))
    assert not calibrate(results).separable


def test_compare_lists_what_changed():
    def payload(outcomes):
        per = [{"id": q, "question": q, "passed": ok, "problems": [] if ok else ["abstained on an answerable question"]} for q, ok in outcomes.items()]
        return {"kind": "qa", "summary": {"passed": sum(outcomes.values()) / len(outcomes)}, "per_question": per}

    a = payload({"q1": True, "q2": False, "q3": True})
    b = payload({"q1": False, "q2": True, "q3": True})
    text = compare(a, b)
    assert "won (1)" in text and "+ q2" in text
    assert "lost (1)" in text and "- q1" in text
    assert "passed" in text and "+0.0000" in text


def test_compare_beir_per_query_deltas():
    a = {"kind": "beir", "summary": {"nDCG@10": 0.5}, "per_query": {"x": {"nDCG@10": 0.2}, "y": {"nDCG@10": 0.8}}}
    b = {"kind": "beir", "summary": {"nDCG@10": 0.6}, "per_query": {"x": {"nDCG@10": 0.9}, "y": {"nDCG@10": 0.3}}}
    text = compare(a, b)
    assert "+0.1000" in text
    assert "1 queries better, 1 worse" in text and "bootstrap interval" in text
    assert "+ x  0.2000 -> 0.9000" in text and "- y  0.8000 -> 0.3000" in text


def test_paired_bootstrap_interval():
    from eval.report import paired_bootstrap

    lo, hi = paired_bootstrap([0.1, 0.2, 0.0, 0.1] * 20)
    assert 0 < lo <= 0.1 <= hi
    lo, hi = paired_bootstrap([1.0, -1.0] * 40)
    assert lo < 0 < hi
    assert paired_bootstrap([0.3, -0.1, 0.2]) == paired_bootstrap([0.3, -0.1, 0.2])  # seeded
