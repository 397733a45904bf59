"""The HTTP API on the real-model index of the bundled article: response contracts, every 4xx,
request ids, filters, abstention and follow-up questions (FastAPI TestClient, lifespan run)."""

from __future__ import annotations

import json
import os
import re
import threading

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

import rag

from answer_checks import captured_log, check_answer_dict, running
from api.app import create_app
from api.schemas import AskResponse
from conftest import SMALL_CORPUS, build_fake_index, write_files
from rag.answer.service import ABSTAIN_MESSAGE, AnswerService
from rag.cli import search_payload
from rag.settings import load_settings

pytestmark = pytest.mark.model

COLD_WAR = "The Cold War Era and the Emergence of Space Diplomacy"
POST_COLD_WAR = "Post-Cold War Evolution of Space Diplomacy"
LAW = "Space Diplomacy and International Law"
ECONOMY = "Geopolitical and Economic Dimensions of Space Diplomacy"
TURKIYE = "Türkiye's Space Diplomacy Strategies"
DEFINITION = "The Definition and Significance of Space Diplomacy"

ASK_KEYS = {"abstention", "question", "answer", "short_answer", "abstained", "citations", "passages", "search_query", "support",
            "timings_ms", "reader"}
CITATION_KEYS = {"n", "passage_id", "title", "section", "url", "quote", "start", "end", "page", "anchor"}
SEARCH_RESULT_KEYS = {"passage_id", "title", "section", "url", "text", "score", "rank", "dense_score", "bm25_score", "article", "start", "end",
                      "page", "anchor", "language"}
PASSAGE_KEYS = SEARCH_RESULT_KEYS | {"low_confidence"}


def settings_for(tmp, index_dir, **overrides):
    return load_settings(index_dir=index_dir, cache_dir=tmp / "cache", rate_limit="", **overrides)


@pytest.fixture(scope="module")
def service(bundled_retriever) -> AnswerService:
    return AnswerService(bundled_retriever)


@pytest.fixture(scope="module")
def client(tmp_path_factory, bundled_index_dir, service):
    app = create_app(settings_for(tmp_path_factory.mktemp("api"), bundled_index_dir), service=service)
    with running(app) as client:
        yield client


def ask(client, question: str, **fields) -> dict:
    response = client.post("/ask", json={"question": question, **fields})
    assert response.status_code == 200, response.text
    body = response.json()
    check_answer_dict(body)
    return body


def sections_cited(body: dict) -> list[str]:
    return [c["section"][-1] for c in body["citations"]]


# ------------------------------------------------------------------------------------ response contracts


def test_ask_returns_a_cited_answer_in_the_documented_shape(client):
    body = ask(client, "When did the Soviet Union launch its first satellite?")
    assert set(body) == ASK_KEYS
    AskResponse.model_validate(body)
    assert body["question"] == "When did the Soviet Union launch its first satellite?"
    assert body["abstained"] is False and body["answer"].endswith("]")
    for c in body["citations"]:
        assert set(c) == CITATION_KEYS
        assert c["title"] == "Space Diplomacy" and c["url"] == "/detay/space-diplomacy"
        assert c["section"][0] == "Space Diplomacy"
    first = body["citations"][0]
    assert first["section"][-1] == COLD_WAR, body["answer"]
    assert "Sputnik-1" in first["quote"] and "1957" in first["quote"]
    assert 1 <= len(body["passages"]) <= 5
    for rank, p in enumerate(body["passages"], start=1):
        assert set(p) == PASSAGE_KEYS
        assert p["rank"] == rank and p["article"] == "space-diplomacy" and p["low_confidence"] is False
        assert isinstance(p["score"], float) and isinstance(p["text"], str) and p["text"]
    assert {"encode", "retrieve", "compose", "total"} <= set(body["timings_ms"])
    assert all(v >= 0 for v in body["timings_ms"].values())
    assert body["search_query"] == body["question"]
    assert 0 < body["support"] <= 1


def test_top_k_and_mode_are_honoured(client):
    for mode in ("hybrid", "dense", "bm25"):
        body = ask(client, "Which treaty prohibits the military use of space?", top_k=2, mode=mode)
        assert len(body["passages"]) == 2
        if mode == "bm25":
            assert all(p["dense_score"] is not None for p in body["passages"])  # composition still reads meaning
    assert len(ask(client, "Which treaty prohibits the military use of space?", top_k=50)["passages"]) == 10


def test_search_has_the_shape_of_rag_search_json(client, bundled_retriever):
    for mode in ("hybrid", "dense", "bm25"):
        response = client.get("/search", params={"q": "Outer Space Treaty peaceful use", "k": 3, "mode": mode})
        assert response.status_code == 200, response.text
        body = response.json()
        expected = search_payload(
            "Outer Space Treaty peaceful use", bundled_retriever.search("Outer Space Treaty peaceful use", k=3, mode=mode)
        )
        assert set(body) == {"query", "results"}
        assert [set(r) for r in body["results"]] == [SEARCH_RESULT_KEYS] * 3
        assert body == json.loads(json.dumps(expected)), mode


def test_passage_detail_has_article_metadata_and_neighbours(client, bundled_retriever):
    chunks = bundled_retriever.index.chunks
    cold_war = next(i for i, c in enumerate(chunks) if c.section[-1] == COLD_WAR)
    response = client.get(f"/passages/{chunks[cold_war].id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"passage_id", "title", "section", "url", "text", "start", "end", "n_tokens", "article", "previous", "next",
                         "page", "pages", "anchor", "language"}
    assert body["page"] is None and body["pages"] == [] and body["anchor"] == "" and body["language"] == "en"
    assert body["passage_id"] == chunks[cold_war].id and body["text"] == chunks[cold_war].text
    assert body["section"] == ["Space Diplomacy", "Historical Development of Space Diplomacy", COLD_WAR]
    assert body["end"] - body["start"] == len(body["text"]) and body["n_tokens"] > 0
    article = body["article"]
    assert article["slug"] == "space-diplomacy" and article["title"] == "Space Diplomacy"
    assert article["url"] == "/detay/space-diplomacy" and article["author"] == "Ahsen Karakaş"
    assert "Law" in [c["name"] for c in article["categories"]]
    assert "Space Law" in article["tags"] and article["language"] == "English"
    assert body["previous"] == {"passage_id": chunks[cold_war - 1].id, "section": list(chunks[cold_war - 1].section), "text": chunks[cold_war - 1].text}
    assert body["next"]["passage_id"] == chunks[cold_war + 1].id and body["next"]["section"][-1] == POST_COLD_WAR

    first = client.get(f"/passages/{chunks[0].id}").json()
    last = client.get(f"/passages/{chunks[-1].id}").json()
    assert first["previous"] is None and first["next"]["passage_id"] == chunks[1].id
    assert last["next"] is None and last["previous"]["passage_id"] == chunks[-2].id


def test_health_and_ready(client, bundled_retriever):
    assert client.get("/health").json() == {"status": "ok", "version": rag.__version__}
    ready = client.get("/ready")
    assert ready.status_code == 200
    index = bundled_retriever.index
    assert ready.json() == {
        "status": "ready",
        "pid": os.getpid(),  # the process that answered
        "build_id": index.build_id,
        "articles": 1,
        "chunks": len(index),
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        # one process here; with several workers every one is listed (tests/test_workers_auto.py)
        "workers_loaded": 1,
        "workers_total": 1,
        "workers": [{"pid": os.getpid(), "loaded": True, "build_id": index.build_id}],
    }
    # answers name the build they came from
    assert client.post("/ask", json={"question": "When was NASA established?"}).headers["x-build-id"] == index.build_id


def test_before_the_index_loads_the_process_is_alive_but_not_ready(tmp_path, bundled_index_dir):
    # Without entering the client, the lifespan never runs: the state of a server still loading.
    loading = TestClient(create_app(settings_for(tmp_path, bundled_index_dir)))
    assert loading.get("/health").status_code == 200
    ready = loading.get("/ready")
    assert ready.status_code == 503 and "not loaded yet (0 of 1 workers loaded" in ready.json()["detail"]
    assert ready.json()["workers_loaded"] == 0 and ready.json()["workers_total"] == 1 and ready.headers["retry-after"] == "5"
    asked = loading.post("/ask", json={"question": "When was NASA established?"})
    assert_clean_error(asked, 503)
    assert "not loaded" in asked.json()["detail"]


def metric_samples(client) -> dict[tuple, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_metrics_count_requests_per_route_and_report_the_index(client, bundled_retriever):
    def count(samples, route, status, method):
        key = ("rag_http_requests_total", (("method", method), ("route", route), ("status", status)))
        return samples.get(key, 0.0)

    before = metric_samples(client)
    client.post("/ask", json={"question": ""})
    client.post("/ask", json={"question": "", "top_k": 0})
    client.get("/search", params={"q": "treaty"})
    client.get("/passages/no-such-passage")
    after = metric_samples(client)

    assert count(after, "/ask", "422", "POST") - count(before, "/ask", "422", "POST") == 2
    assert count(after, "/search", "200", "GET") - count(before, "/search", "200", "GET") == 1
    # the route template, not the raw path: one series however many ids are asked for
    assert count(after, "/passages/{passage_id}", "404", "GET") - count(before, "/passages/{passage_id}", "404", "GET") == 1
    assert not any("no-such-passage" in str(labels) for _, labels in after)
    buckets = [v for (name, labels), v in after.items() if name == "rag_http_request_duration_seconds_bucket" and ("route", "/search") in labels]
    assert buckets and max(buckets) >= 1
    assert after[("rag_index_chunks", ())] == len(bundled_retriever.index)
    assert after[("rag_index_articles", ())] == 1


def test_openapi_schema_documents_the_api_with_examples(client):
    schema = client.get("/openapi.json").json()
    for path in ("/ask", "/search", "/passages/{passage_id}", "/health", "/ready", "/metrics"):
        assert path in schema["paths"], path
    ask_request = schema["components"]["schemas"]["AskRequest"]
    examples = ask_request["examples"]
    assert any(e.get("history") for e in examples) and all(e["question"] for e in examples)
    assert set(ask_request["properties"]) == {"question", "top_k", "mode", "history", "filters"}
    assert "AskResponse" in schema["components"]["schemas"]
    assert "text/event-stream" in schema["paths"]["/ask"]["post"]["responses"]["200"]["content"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text.lower() and "/openapi.json" in docs.text


# ------------------------------------------------------------------------------------ every 4xx

LONG = "a" * 2001
BAD_REQUESTS = {
    "empty-question": ("POST", "/ask", {"json": {"question": ""}}, 422, "question"),
    "whitespace-question": ("POST", "/ask", {"json": {"question": " \t\n "}}, 422, "question: is empty"),
    "invisible-question": ("POST", "/ask", {"json": {"question": "\u200b\u200b"}}, 422, "question: is empty"),
    "long-question": ("POST", "/ask", {"json": {"question": LONG}}, 422, "question"),
    "missing-question": ("POST", "/ask", {"json": {"top_k": 3}}, 422, "question"),
    "top-k-zero": ("POST", "/ask", {"json": {"question": "NASA?", "top_k": 0}}, 422, "top_k"),
    "top-k-51": ("POST", "/ask", {"json": {"question": "NASA?", "top_k": 51}}, 422, "top_k"),
    "top-k-text": ("POST", "/ask", {"json": {"question": "NASA?", "top_k": "five"}}, 422, "top_k"),
    "top-k-float": ("POST", "/ask", {"json": {"question": "NASA?", "top_k": 2.5}}, 422, "top_k"),
    "unknown-mode": ("POST", "/ask", {"json": {"question": "NASA?", "mode": "semantic"}}, 422, "mode"),
    "question-number": ("POST", "/ask", {"json": {"question": 42}}, 422, "question"),
    "history-string": ("POST", "/ask", {"json": {"question": "NASA?", "history": "earlier"}}, 422, "history"),
    "history-numbers": ("POST", "/ask", {"json": {"question": "NASA?", "history": [1]}}, 422, "history"),
    "history-too-long": ("POST", "/ask", {"json": {"question": "NASA?", "history": ["q?"] * 21}}, 422, "history"),
    "unknown-field": ("POST", "/ask", {"json": {"question": "NASA?", "k": 3}}, 422, "k"),
    "filters-unknown-key": ("POST", "/ask", {"json": {"question": "NASA?", "filters": {"planet": "Mars"}}}, 422, "filters.planet"),
    "filters-wrong-type": ("POST", "/ask", {"json": {"question": "NASA?", "filters": {"tag": 5}}}, 422, "filters.tag"),
    "filters-not-object": ("POST", "/ask", {"json": {"question": "NASA?", "filters": "Law"}}, 422, "filters"),
    "body-list": ("POST", "/ask", {"json": ["NASA?"]}, 422, "body"),
    "malformed-json": ("POST", "/ask", {"content": b'{"question": "NASA?",', "headers": {"content-type": "application/json"}}, 400, "JSON"),
    "empty-body": ("POST", "/ask", {"content": b"", "headers": {"content-type": "application/json"}}, 422, "body"),
    # curl -d without -H labels the body as a form; the detail says which header to send
    "json-as-form": (
        "POST", "/ask", {"content": b'{"question": "NASA?"}', "headers": {"content-type": "application/x-www-form-urlencoded"}},
        415, "sent as 'application/x-www-form-urlencoded'; send it as JSON with the header 'Content-Type: application/json'",
    ),
    "json-as-text": ("POST", "/ask", {"content": b'{"question": "NASA?"}', "headers": {"content-type": "text/plain"}}, 415, "'text/plain'"),
    "json-unlabelled": ("POST", "/ask", {"content": b'{"question": "NASA?"}'}, 415, "without a Content-Type header"),
    "unknown-passage": ("GET", "/passages/space-diplomacy-0000000000000000", {}, 404, "space-diplomacy-0000000000000000"),
    "passage-bad-characters": ("GET", "/passages/bad$id", {}, 422, "passage_id"),
    "passage-too-long": ("GET", "/passages/" + "p" * 201, {}, 422, "passage_id"),
    "search-missing-q": ("GET", "/search", {}, 422, "q"),
    "search-blank-q": ("GET", "/search", {"params": {"q": "   "}}, 422, "q: is empty"),
    "search-long-q": ("GET", "/search", {"params": {"q": LONG}}, 422, "q"),
    "search-k-zero": ("GET", "/search", {"params": {"q": "treaty", "k": 0}}, 422, "k"),
    "search-k-51": ("GET", "/search", {"params": {"q": "treaty", "k": 51}}, 422, "k"),
    "search-bad-mode": ("GET", "/search", {"params": {"q": "treaty", "mode": "fuzzy"}}, 422, "mode"),
    "unknown-route": ("GET", "/no-such-endpoint", {}, 404, "Not Found"),
    "wrong-method": ("GET", "/ask", {}, 405, "Method Not Allowed"),
}
PATH_RE = re.compile(r"(/[\w.-]+){2,}\.py|/work/|site-packages|\.venv")


def assert_clean_error(response, status: int) -> dict:
    """A JSON error with a detail string and the request id, and nothing of the server's insides."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"detail", "request_id"} and isinstance(body["detail"], str) and body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text and not PATH_RE.search(response.text), response.text
    return body


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_bad_requests_get_a_4xx_that_names_the_problem(client, case):
    method, path, kwargs, status, needle = BAD_REQUESTS[case]
    body = assert_clean_error(client.request(method, path, **kwargs), status)
    assert needle in body["detail"], body["detail"]
    assert "should match pattern" not in body["detail"] and "\\x00" not in body["detail"], body["detail"]


def test_limits_are_inclusive(client):
    assert ask(client, "What did NASA do? " + "x" * (2000 - 18), top_k=50)["question"].startswith("What did NASA")
    assert len(ask(client, "NASA?", top_k=1)["passages"]) == 1
    assert ask(client, "NASA?", history=["q?"] * 20)["question"] == "NASA?"


# ------------------------------------------------------------------------------------ request ids


def test_every_response_carries_a_request_id_that_the_log_repeats(client):
    with captured_log() as log:
        echoed = client.post("/ask", json={"question": "When was NASA established?"}, headers={"X-Request-ID": "client-req-42"})
        fresh = client.get("/health")
        refused = client.get("/search", params={"q": ""}, headers={"X-Request-ID": "not a valid id!"})
    assert echoed.headers["x-request-id"] == "client-req-42"
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-request-id"])
    assert refused.headers["x-request-id"] != "not a valid id!"
    assert re.fullmatch(r"[0-9a-f]{32}", refused.headers["x-request-id"])
    assert refused.json()["request_id"] == refused.headers["x-request-id"]
    lines = log.getvalue().splitlines()
    for response, path in ((echoed, "POST /ask 200"), (fresh, "GET /health 200"), (refused, "GET /search 422")):
        rid = response.headers["x-request-id"]
        assert any(f"[{rid}]" in line and path in line for line in lines), (rid, lines)


class BrokenService(AnswerService):
    """Fails while composing, as an unexpected bug would, with a path in the message."""

    def finish(self, retrieval):
        raise RuntimeError("/srv/app/rag/answer/service.py: something broke")


def test_an_unexpected_error_is_a_500_without_internals(tmp_path, bundled_index_dir, bundled_retriever):
    app = create_app(settings_for(tmp_path, bundled_index_dir), service=BrokenService(bundled_retriever))
    with running(app, raise_server_exceptions=False) as broken, captured_log() as log:
        response = broken.post("/ask", json={"question": "When was NASA established?"}, headers={"X-Request-ID": "req-500"})
    body = assert_clean_error(response, 500)
    assert body["request_id"] == "req-500" and "internal error" in body["detail"]
    assert "something broke" not in response.text
    # the log keeps the details, under the same request id
    assert any("[req-500]" in line and "unhandled error" in line for line in log.getvalue().splitlines()), log.getvalue()


class BlockedService(AnswerService):
    """Composes only once released, like a long CPU-bound answer."""

    def __init__(self, retriever):
        super().__init__(retriever)
        self.entered = threading.Event()
        self.release = threading.Event()

    def finish(self, retrieval):
        self.entered.set()
        assert self.release.wait(timeout=120)
        return super().finish(retrieval)


def test_answering_never_blocks_the_event_loop(tmp_path, bundled_index_dir, bundled_retriever):
    service = BlockedService(bundled_retriever)
    with running(create_app(settings_for(tmp_path, bundled_index_dir), service=service)) as app_client:
        answers = []
        asker = threading.Thread(target=lambda: answers.append(app_client.post("/ask", json={"question": "When was NASA established?"})))
        asker.start()
        try:
            assert service.entered.wait(timeout=120), "the question never reached composition"
            # An answer is being composed and cannot finish yet: the loop must still serve others.
            others = []
            prober = threading.Thread(target=lambda: others.extend([app_client.get("/health"), app_client.get("/ready")]))
            prober.start()
            prober.join(timeout=60)
            assert not prober.is_alive(), "the event loop was blocked by a running answer"
            assert [r.status_code for r in others] == [200, 200]
        finally:
            service.release.set()
            asker.join(timeout=120)
    assert answers and answers[0].status_code == 200 and not answers[0].json()["abstained"]


# ------------------------------------------------------------------------------------ filters


@pytest.mark.parametrize("filters", [{"category": "Law"}, {"category": "hukuk"}, {"tag": "space law"}, {"article": "space-diplomacy"}, {"category": ["Cooking", "LAW"]}])
def test_matching_filters_keep_the_answer(client, filters):
    body = ask(client, "When was NASA established?", filters=filters)
    assert not body["abstained"] and body["passages"]
    assert COLD_WAR in sections_cited(body)


@pytest.mark.parametrize(
    "filters, needles",
    [
        ({"category": "Cooking"}, ["no document matches the filter category 'cooking'", "'Law'"]),
        ({"tag": "Football"}, ["no document matches the filter tag 'football'", "'Space Law'"]),
        ({"article": "pasta"}, ["no document matches the filter article 'pasta'", "'space-diplomacy'"]),
        ({"category": "Law", "tag": "Football"}, ["filter tag 'football'"]),
    ],
)
def test_unmatched_filters_say_so_and_list_the_values_that_exist(client, filters, needles):
    """Not an abstention ("the corpus does not cover this"): the filter is what excluded everything."""
    answer = assert_clean_error(client.post("/ask", json={"question": "When was NASA established?", "filters": filters}), 400)
    search = assert_clean_error(client.get("/search", params={"q": "NASA", **filters}), 400)
    for detail in (answer["detail"], search["detail"]):
        for needle in needles:
            assert needle in detail, detail
    streamed = client.post(
        "/ask", json={"question": "NASA?", "filters": filters}, headers={"accept": "text/event-stream"}
    )
    assert streamed.status_code == 400 and streamed.json()["detail"] == answer["detail"]


def test_filters_that_match_nothing_together_say_so(small_client):
    both = {"category": "Transport", "tag": "Africa"}  # each matches an article, not the same one
    detail = small_client.post("/ask", json={"question": "What is it?", "filters": both}).json()["detail"]
    assert detail.startswith("no document matches all the filters together (category transport; tag africa)"), detail


@pytest.fixture(scope="module")
def small_client(tmp_path_factory):
    """Three small articles (animals, transport, architecture) with the fake encoder."""
    tmp = tmp_path_factory.mktemp("small-api")
    build_fake_index(tmp, write_files(tmp / "corpus", SMALL_CORPUS))
    with running(create_app(settings_for(tmp, tmp / "index", encoder="hashing"))) as client:
        yield client


def test_filters_restrict_a_larger_corpus_to_one_part(small_client):
    question = "Which animals, bicycles and cathedrals are described in Europe and Africa?"
    everything = small_client.post("/ask", json={"question": question, "top_k": 10}).json()
    assert {p["article"] for p in everything["passages"]} == {"aardvarks", "bicycles", "cathedrals"}
    for filters, allowed in (
        ({"category": "transport"}, {"bicycles"}),
        ({"tag": ["Europe"]}, {"cathedrals"}),
        ({"article": ["aardvarks", "cathedrals"]}, {"aardvarks", "cathedrals"}),
    ):
        body = small_client.post("/ask", json={"question": question, "top_k": 10, "filters": filters}).json()
        check_answer_dict(body)
        assert body["passages"] and {p["article"] for p in body["passages"]} <= allowed, filters
        key, value = next(iter(filters.items()))
        search = small_client.get("/search", params={"q": question, "k": 10, key: value}).json()
        assert search["results"] and {r["article"] for r in search["results"]} <= allowed, filters


# ------------------------------------------------------------------------------------ abstention

OFF_TOPIC = [
    "What is the best recipe for chocolate chip cookies?",
    "How long should I boil an egg for a runny yolk?",
    "Who scored the winning goal in the 2014 World Cup final?",
    "How many players are on a basketball team?",
    "How do I sort a dictionary by value in Python?",
    "What causes a segmentation fault in C?",
    "zorbly quanfex trimble wozzit",
    "flarn gibbet snorkwax plimp?",
]


@pytest.mark.parametrize("question", OFF_TOPIC)
def test_off_topic_questions_abstain(client, question):
    body = ask(client, question)
    assert body["abstained"] is True
    assert body["answer"] == ABSTAIN_MESSAGE and body["citations"] == []
    assert body["passages"] and all(p["low_confidence"] for p in body["passages"])


ANSWERABLE = [
    ("In which year was NASA set up?", COLD_WAR, "1958"),
    ("Which Soviet cosmonaut made the first human spaceflight?", COLD_WAR, "Gagarin"),
    ("Which agreement says the Moon cannot be claimed by any nation?", LAW, "Moon Agreement"),
    ("How much is the space economy worth today?", ECONOMY, "$450 billion"),
    ("What does the Turkish Space Agency aim to establish?", TURKIYE, "international partnerships"),
    ("What are the four key pillars of space diplomacy?", DEFINITION, "four key pillars"),
    ("What was the first joint space mission between the U.S. and the Soviet Union?", COLD_WAR, "Apollo-Soyuz"),
]


@pytest.mark.parametrize("question, section, phrase", ANSWERABLE)
def test_answerable_questions_are_answered_from_the_right_section(client, question, section, phrase):
    body = ask(client, question)
    assert body["abstained"] is False
    assert any(c["section"][-1] == section and phrase in c["quote"] for c in body["citations"]), body["citations"]


# ------------------------------------------------------------------------------------ follow-up questions

ISS = "When was the International Space Station initiated?"


def test_a_follow_up_is_answered_in_the_context_of_the_previous_question(client):
    body = ask(client, "And who took part in it?", history=[ISS])
    assert body["abstained"] is False
    assert body["search_query"] == f"{ISS} And who took part in it?"
    partners = [c for c in body["citations"] if c["section"][-1] == POST_COLD_WAR and all(
        name in c["quote"] for name in ("Russia", "European Space Agency", "Japan", "Canada")
    )]
    assert partners, body["citations"]
    # without the history the same words have nothing to go on
    alone = ask(client, "And who took part in it?")
    assert alone["search_query"] == "And who took part in it?"
    assert not any(c["section"][-1] == POST_COLD_WAR for c in alone["citations"])


@pytest.mark.parametrize(
    "question",
    [
        "In which year was NASA set up?",
        # pronouns that point inside the question itself do not make it a follow-up
        "Which treaty bans the military use of space, and when was it signed?",
        "Why did the launch of Sputnik-1 matter and what did it start?",
    ],
)
def test_a_self_contained_question_ignores_unrelated_history(client, question):
    plain = ask(client, question)
    with_history = ask(client, question, history=["How much is the space economy worth today?", ISS])
    assert with_history["search_query"] == plain["search_query"] == question
    assert with_history["answer"] == plain["answer"]
    assert with_history["citations"] == plain["citations"]
    assert [p["passage_id"] for p in with_history["passages"]] == [p["passage_id"] for p in plain["passages"]]
