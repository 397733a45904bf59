"""`rag eval qa`: question-set checks, an in-process run, and a run against a live server with the real model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.errors import EvalDataError
from eval.qa import DEFAULT_QUESTIONS, QAItem, load_question_set, score_response
from conftest import build_fake_index, run_rag, server_env


def write_questions(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_bundled_question_set_names_real_sections(bundled_article):
    items = load_question_set(DEFAULT_QUESTIONS)
    assert len(items) >= 60
    sections = {tuple(s.breadcrumb) for s in bundled_article.sections}
    for item in items:
        if item.answerable:
            assert item.gold_sections and item.answer_key, item.id
            assert all(g in sections for g in item.gold_sections), f"{item.id} names a section the article lacks"
        else:
            assert item.kind in ("off-topic", "near-domain", "references"), item.id


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"id": "a", "answerable": true}', 'line 1: the field "question" is missing'),
        ('{"id": "a", "question": "q?", "answerable": "yes"}', '"answerable" must be true or false'),
        ('{"id": "a", "question": "q?", "answerable": true, "answer_key": [["x", 3]]}', "answer-key group must be a list"),
        ("not json", "line 1: not valid JSON"),
    ],
)
def test_question_set_errors(tmp_path, line, message):
    path = tmp_path / "q.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(EvalDataError, match=message):
        load_question_set(path)


def test_lenient_shapes_of_sections_and_keys(tmp_path):
    rows = [
        {"id": "a", "question": "q?", "answerable": True, "gold_sections": ["Space Diplomacy", "History"], "answer_key": ["1957", "Sputnik"]},
        {"id": "b", "question": "q?", "answerable": True, "gold_sections": ["Space Diplomacy > History", "Space Diplomacy"]},
        {"id": "c", "question": "q?", "kind": "off-topic"},
        {"id": "d", "question": "q?", "kind": "factoid"},
    ]
    a, b, c, d = load_question_set(write_questions(tmp_path / "q.jsonl", rows))
    assert a.gold_sections == (("Space Diplomacy", "History"),) and a.answer_key == (("1957",), ("Sputnik",))
    assert b.gold_sections == (("Space Diplomacy", "History"), ("Space Diplomacy",))
    assert not c.answerable and d.answerable
    with pytest.raises(EvalDataError, match='"answerable" is missing'):
        load_question_set(write_questions(tmp_path / "bad.jsonl", [{"id": "x", "question": "q?"}]))


def test_duplicate_ids_are_refused(tmp_path):
    row = {"id": "same", "question": "q?", "answerable": False}
    with pytest.raises(EvalDataError, match="used twice"):
        load_question_set(write_questions(tmp_path / "q.jsonl", [row, row]))


def test_scoring_one_response():
    item = QAItem("x", "When?", "factoid", True, (("A", "History"),), (("1957",),))
    response = {
        "answer": "It flew in 1957. [1]",
        "abstained": False,
        "support": 0.5,
        "citations": [{"n": 1, "passage_id": "p", "section": ["A", "History"], "quote": "It flew in 1957.", "start": 5, "end": 21}],
        "passages": [{"passage_id": "p", "section": ["A", "History"], "text": "Yes. It flew in 1957.", "rank": 1}],
    }
    result = score_response(item, response, 12.0, lambda pid: None)
    assert result.passed and result.citation_rank == 1 and result.passage_rank == 1 and result.key_match
    response["citations"][0]["start"] = 4  # quote no longer matches the offsets
    assert "quote is not passage text" in score_response(item, response, 12.0, lambda pid: None).problems[0]
    off_topic = QAItem("o", "Who won?", "off-topic", False)
    assert score_response(off_topic, {**response, "abstained": False}, 1.0, lambda pid: None).problems[-1].startswith(
        "answered an unanswerable"
    )


QUESTIONS = [
    {"id": "aard", "question": "What do aardvarks eat?", "kind": "factoid", "answerable": True,
     "gold_sections": [["Aardvarks"], ["Aardvarks", "Diet"]], "answer_key": [["termites"]]},
    {"id": "gibberish", "question": "asdf qwerty zxcv", "kind": "off-topic", "answerable": False},
]


def test_eval_qa_in_process_writes_results_and_failures(rag_cli, small_corpus, tmp_path):
    build_fake_index(tmp_path, small_corpus)
    questions = write_questions(tmp_path / "q.jsonl", QUESTIONS)
    out = tmp_path / "res" / "qa.json"
    result = rag_cli(["eval", "qa", str(questions), "--out", str(out)])
    assert result.returncode == 0, result.stderr
    assert "citation_validity" in result.stdout and "latency_p95_ms" in result.stdout
    data = json.loads(out.read_text())
    assert data["kind"] == "qa" and [r["id"] for r in data["per_question"]] == ["aard", "gibberish"]
    assert data["summary"]["citation_validity"] == 1.0
    assert data["summary"]["off-topic_abstained"] == 1.0
    failures = (tmp_path / "res" / "qa-failures.md").read_text()
    assert failures.startswith("# QA evaluation: q.jsonl")
    assert ("| aard |" in failures) != data["per_question"][0]["passed"]


def test_eval_qa_reports_a_missing_question_set(rag_cli, tmp_path):
    result = rag_cli(["eval", "qa", str(tmp_path / "nope.jsonl")])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: {tmp_path / 'nope.jsonl'}: no such question set; pass a JSONL file of questions"


def test_eval_qa_against_an_unreachable_server(rag_cli):
    result = rag_cli(["eval", "qa", "--url", "http://127.0.0.1:9", "--wait", "0"])
    assert result.returncode != 0
    assert result.stderr.strip().startswith("error: cannot reach http://127.0.0.1:9")


@pytest.mark.model
@pytest.mark.slow
def test_eval_qa_against_a_live_server(model_server, bundled_index, tmp_path):
    """The real model behind a real `rag serve`, asked over HTTP as a user of the harness would."""
    by_id = {json.loads(line)["id"]: json.loads(line) for line in DEFAULT_QUESTIONS.read_text().splitlines() if line.strip()}
    chosen = [by_id[q] for q in ("qa-020", "qa-021", "qa-022", "qa-075")]
    questions = write_questions(tmp_path / "q.jsonl", chosen)
    env = server_env(tmp_path, bundled_index.index_dir)  # the client's; the server is the session's
    server = model_server
    out = tmp_path / "qa.json"
    result = run_rag(["eval", "qa", str(questions), "--url", server.url, "--out", str(out)], env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["target"].startswith(f"server {server.url}")
    per = {r["id"]: r for r in data["per_question"]}
    assert set(per) == {"qa-020", "qa-021", "qa-022", "qa-075"}
    summary = data["summary"]
    assert summary["errors"] == 0
    assert summary["citation_validity"] == 1.0
    assert summary["off-topic_abstained"] == 1.0 and per["qa-075"]["abstained"]
    assert per["qa-020"]["passed"], per["qa-020"]["problems"]  # "When was Sputnik-1 launched?" -> 1957, cited
    assert "1957" in per["qa-020"]["answer"]
    assert all(r["latency_ms"] > 0 for r in per.values())
    assert summary["latency_p50_ms"] <= summary["latency_p95_ms"]
