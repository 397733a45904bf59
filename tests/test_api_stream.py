"""``POST /ask`` as server-sent events: the answer rebuilt from the events equals the JSON answer,
and no citation is lost on the way (real bundled index, FastAPI TestClient)."""

from __future__ import annotations

import pytest

from answer_checks import check_answer_dict, parse_sse, running
from api.app import create_app
from rag.answer.service import ABSTAIN_MESSAGE, AnswerService
from rag.settings import load_settings

pytestmark = pytest.mark.model

SSE = {"Accept": "text/event-stream"}


@pytest.fixture(scope="module")
def client(tmp_path_factory, bundled_index_dir, bundled_retriever):
    tmp = tmp_path_factory.mktemp("stream")
    settings = load_settings(index_dir=bundled_index_dir, cache_dir=tmp / "cache", rate_limit="")
    with running(create_app(settings, service=AnswerService(bundled_retriever))) as client:
        yield client


def stream(client, body: dict):
    with client.stream("POST", "/ask", json=body, headers=SSE) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-request-id"]
        return parse_sse(response.iter_lines())


def without_timings(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "timings_ms"}


REQUESTS = {
    "answered": {"question": "When did the Soviet Union launch its first satellite?"},
    "list": {"question": "What are the four key pillars of space diplomacy?", "top_k": 3},
    "bm25": {"question": "Which firms lead commercial space activities?", "mode": "bm25"},
    "follow-up": {"question": "And who took part in it?", "history": ["When was the International Space Station initiated?"]},
    "filtered": {"question": "Which treaty governs the International Space Station?", "filters": {"category": "Law"}},
}


@pytest.mark.parametrize("name", REQUESTS)
def test_streamed_answer_equals_the_json_answer(client, name):
    request = REQUESTS[name]
    expected = client.post("/ask", json=request).json()
    check_answer_dict(expected)
    assert not expected["abstained"]

    events = stream(client, request)
    kinds = [e.event for e in events]
    assert kinds[0] == "passages" and kinds[-1] == "done", kinds
    # no error, no abstention; a note on what the answer leaves out comes after the sentences, as in the body
    has_note = expected["abstention"] is not None
    assert kinds[1:-1] == ["sentence"] * (len(kinds) - 2 - has_note) + ["partial"] * has_note, kinds
    if has_note:
        assert expected["abstention"]["reason"] == "partial" and events[-2].json() == expected["abstention"]

    passages = events[0].json()
    assert passages["question"] == expected["question"]
    assert passages["search_query"] == expected["search_query"]
    assert [p["passage_id"] for p in passages["passages"]] == [p["passage_id"] for p in expected["passages"]]
    texts = {p["passage_id"]: p["text"] for p in passages["passages"]}

    # Rebuild the answer and its citations from the sentence events alone.
    sentences = [e.json() for e in events[1:-1] if e.event == "sentence"]
    assert [s["index"] for s in sentences] == list(range(len(sentences)))
    rebuilt_answer = " ".join(s["text"] for s in sentences)
    rebuilt_citations: dict[int, dict] = {}
    for s in sentences:
        assert s["citations"], f"sentence {s['index']} arrived without its citations"
        for c in s["citations"]:
            assert f"[{c['n']}]" in s["text"]
            assert texts[c["passage_id"]][c["start"] : c["end"]] == c["quote"]  # checkable on arrival
            assert rebuilt_citations.setdefault(c["n"], c) == c
    assert rebuilt_answer == expected["answer"]
    assert [rebuilt_citations[n] for n in sorted(rebuilt_citations)] == expected["citations"]

    done = events[-1].json()
    check_answer_dict(done)
    assert without_timings(done) == without_timings(expected)


def test_an_abstention_streams_the_message_and_no_citations(client):
    request = {"question": "What is the best way to season a cast iron pan?"}
    expected = client.post("/ask", json=request).json()
    assert expected["abstained"]

    events = stream(client, request)
    assert [e.event for e in events] == ["passages", "abstained", "done"]
    assert [p["passage_id"] for p in events[0].json()["passages"]] == [p["passage_id"] for p in expected["passages"]]
    assert events[1].json() == {"reason": "off_topic", "message": ABSTAIN_MESSAGE, "missing": [], "mentioned": []}
    assert events[1].json() == expected["abstention"]
    done = events[2].json()
    check_answer_dict(done)
    assert done["citations"] == [] and done["abstained"] is True
    assert without_timings(done) == without_timings(expected)


def test_an_unmatched_filter_is_refused_before_any_stream(client):
    response = client.post("/ask", json={"question": "When was NASA established?", "filters": {"tag": "Football"}}, headers=SSE)
    assert response.status_code == 400 and response.headers["content-type"].startswith("application/json")
    assert response.json()["detail"].startswith("no document matches the filter tag 'football'; the values that exist are:")


def test_invalid_requests_are_refused_before_any_stream(client):
    response = client.post("/ask", json={"question": "  ", "top_k": 3}, headers=SSE)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/json")
    assert "question" in response.json()["detail"]


class BrokenService(AnswerService):
    def finish(self, retrieval):
        raise RuntimeError("/srv/app/rag/answer/service.py: composition failed")


def test_a_failure_mid_stream_ends_with_an_error_event(tmp_path, bundled_index_dir, bundled_retriever):
    settings = load_settings(index_dir=bundled_index_dir, cache_dir=tmp_path / "cache", rate_limit="")
    with running(create_app(settings, service=BrokenService(bundled_retriever))) as broken:
        events = stream(broken, {"question": "When was NASA established?"})
    assert [e.event for e in events] == ["passages", "error"]
    detail = events[1].json()["detail"]
    assert "internal error" in detail and "answer.py" not in detail and "Traceback" not in events[1].data
