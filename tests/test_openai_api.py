"""The OpenAI-compatible API as its users call it: the official ``openai`` client against a real
``rag serve``, non-streamed and streamed, with citations that match ``/ask`` and errors that map
to the client's exceptions. The conversions themselves are checked without a server first."""

from __future__ import annotations

import httpx
import openai
import pytest

from api import chat
from conftest import build_fake_index, rag_env
from corpus import DEFAULT_CORPUS_DIR
from eval.live_server import LiveServer

QUESTION = "Which agreement says the Moon cannot be claimed by any nation?"
OFF_TOPIC = "Who won the 2018 World Cup?"
CLIENT_KEY = "client-key-0123456789abcdef"


# ------------------------------------------------------------------------------ pure conversions


def test_stream_pieces_rebuild_the_content_and_cut_after_markers():
    content = "First quote [1] second quote [2][3] tail"
    pieces = chat.stream_pieces(content)
    assert "".join(piece for _, piece in pieces) == content
    assert [piece for _, piece in pieces] == ["First quote [1]", " second quote [2][3]", " tail"]
    assert all(content[offset : offset + len(piece)] == piece for offset, piece in pieces)
    assert chat.stream_pieces("") == [(0, "")]


def test_annotations_point_at_their_markers():
    citations = [
        {"n": 1, "url": "/a", "title": "A"},
        {"n": 2, "url": "/b", "title": "B"},
    ]
    content = "One [1] two [2] one again [1]"
    notes = chat.url_citations(content, citations)
    assert [(content[a["url_citation"]["start_index"] : a["url_citation"]["end_index"]], a["url_citation"]["url"]) for a in notes] == [
        ("[1]", "/a"),
        ("[2]", "/b"),
        ("[1]", "/a"),
    ]
    # Each streamed piece carries exactly the annotations of its own markers.
    rag = {"answer": content, "citations": citations}
    chunks = chat.answer_chunks(rag, completion_id="x", created=0, model="m")
    streamed = [a for c in chunks for a in c["choices"][0]["delta"].get("annotations", [])]
    assert streamed == notes
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["rag"] is rag


def test_a_chat_becomes_the_ask_request_it_stands_for():
    request = chat.ChatCompletionRequest(
        model=chat.MODEL_ID,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "When was the International Space Station initiated?"},
            {"role": "assistant", "content": "In 1998 [1]"},
            {"role": "user", "content": [{"type": "text", "text": "And who took"}, {"type": "text", "text": "part in it?"}]},
        ],
        top_k=3,
    )
    ask = chat.to_ask_request(request)
    assert ask.question == "And who took part in it?"
    assert ask.history == ["When was the International Space Station initiated?"]
    assert ask.top_k == 3


@pytest.mark.parametrize(
    "messages, needle",
    [
        ([{"role": "system", "content": "hello"}], "no user message"),
        ([{"role": "user", "content": "   "}], "is empty"),
        ([{"role": "user", "content": None}], "is empty"),
        ([{"role": "user", "content": "x" * 2001}], "at most 2000 characters"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}], "only text parts"),
    ],
)
def test_a_chat_without_a_usable_question_is_refused_with_a_reason(messages, needle):
    with pytest.raises(chat.ChatRequestError, match=needle):
        chat.to_ask_request(chat.ChatCompletionRequest(model=chat.MODEL_ID, messages=messages))


# ------------------------------------------------------------------------------ a real server, the real client


@pytest.fixture(scope="module")
def server(model_server):
    return model_server  # the session's real-model server (conftest)


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def ask(server, question: str, **body) -> dict:
    response = httpx.post(server.url + "/ask", json={"question": question, **body}, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def without_timings(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "timings_ms"}


@pytest.mark.model
@pytest.mark.slow
def test_models_lists_the_service(client):
    ids = [m.id for m in client.models.list()]
    assert ids == [chat.MODEL_ID]
    assert client.models.retrieve(chat.MODEL_ID).id == chat.MODEL_ID
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


@pytest.mark.model
@pytest.mark.slow
def test_a_completion_carries_the_ask_answer_and_its_citations(server, client):
    expected = ask(server, QUESTION)
    assert not expected["abstained"] and expected["citations"]
    done = client.chat.completions.create(model=chat.MODEL_ID, messages=[{"role": "user", "content": QUESTION}])
    message = done.choices[0].message
    assert done.object == "chat.completion" and done.choices[0].finish_reason == "stop"
    # the cited answer, led by the short answer and its marker when the reader found one
    assert message.role == "assistant" and message.content == chat.message_content(expected)
    assert message.content.endswith(expected["answer"]) and "1979 Moon Agreement" in message.content
    # Every marker has an annotation, every citation is annotated, and each annotation is its citation.
    by_n = {c["n"]: c for c in expected["citations"]}
    seen = set()
    for note in message.annotations:
        span = message.content[note.url_citation.start_index : note.url_citation.end_index]
        n = int(span.strip("[]"))
        assert span == f"[{n}]"
        assert (note.type, note.url_citation.url, note.url_citation.title) == ("url_citation", by_n[n]["url"], by_n[n]["title"])
        seen.add(n)
    assert seen == set(by_n) and len(message.annotations) == message.content.count("[")
    # The extension field is the /ask body itself.
    rag = done.model_extra["rag"]
    assert without_timings(rag) == without_timings(expected)
    assert done.usage.completion_tokens > 0 and done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens


@pytest.mark.model
@pytest.mark.slow
def test_a_streamed_completion_equals_the_plain_one(client):
    messages = [{"role": "user", "content": QUESTION}]
    plain = client.chat.completions.create(model=chat.MODEL_ID, messages=messages)
    chunks = list(
        client.chat.completions.create(model=chat.MODEL_ID, messages=messages, stream=True, stream_options={"include_usage": True})
    )
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    content = "".join(d.content or "" for d in deltas)
    assert content == plain.choices[0].message.content
    assert len([d for d in deltas if d.content]) >= 2  # it arrives in pieces, not as one block
    annotations = [a for d in deltas for a in (d.model_extra or {}).get("annotations", [])]
    assert annotations == [a.model_dump() for a in plain.choices[0].message.annotations]
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in final] == ["stop"]
    assert without_timings(final[0].model_extra["rag"]) == without_timings(plain.model_extra["rag"])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


@pytest.mark.model
@pytest.mark.slow
def test_an_abstention_is_an_ordinary_message_with_the_reason_in_the_extension(server, client):
    done = client.chat.completions.create(model=chat.MODEL_ID, messages=[{"role": "user", "content": OFF_TOPIC}])
    expected = ask(server, OFF_TOPIC)
    assert expected["abstained"]
    message = done.choices[0].message
    assert message.content == expected["answer"] and not message.annotations
    assert done.choices[0].finish_reason == "stop"
    assert without_timings(done.model_extra["rag"]) == without_timings(expected)


@pytest.mark.model
@pytest.mark.slow
def test_earlier_user_messages_are_the_history(server, client):
    first, follow_up = "When was the International Space Station initiated?", "And who took part in it?"
    done = client.chat.completions.create(
        model=chat.MODEL_ID,
        messages=[
            {"role": "user", "content": first},
            {"role": "assistant", "content": "whatever the client shows"},
            {"role": "user", "content": follow_up},
        ],
        extra_body={"top_k": 3},
    )
    expected = ask(server, follow_up, history=[first], top_k=3)
    assert without_timings(done.model_extra["rag"]) == without_timings(expected)
    assert first in done.model_extra["rag"]["search_query"]


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"messages": [{"role": "user", "content": ""}]}, "messages"),
        ({"messages": [{"role": "user", "content": "x" * 2001}]}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": QUESTION}], "extra_body": {"top_k": 0}}, "top_k"),
        ({"messages": [{"role": "user", "content": QUESTION}], "n": 2}, "n"),
        ({"messages": [{"role": "wizard", "content": QUESTION}]}, "messages.0.role"),
    ],
)
def test_bad_requests_raise_bad_request_error_with_a_reason(client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=chat.MODEL_ID, **kwargs)
    error = caught.value
    assert error.status_code == 400 and error.type == "invalid_request_error"
    assert error.message and "Traceback" not in error.message
    assert error.param == param


@pytest.mark.model
@pytest.mark.slow
def test_unknown_model_and_malformed_json(server, client):
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": QUESTION}])
    response = httpx.post(server.url + "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["type"] == "invalid_request_error" and "JSON" in body["error"]["message"] and body["request_id"]


@pytest.mark.slow
def test_keys_and_rate_limits_map_to_openai_exceptions(tmp_path):
    """Same keys and limits as /ask (a fake-encoder server: this is about the edge, not answers)."""
    build_fake_index(tmp_path, DEFAULT_CORPUS_DIR)
    env = rag_env(tmp_path, RAG_API_KEYS=CLIENT_KEY, RAG_RATE_LIMIT="3/minute")
    live = LiveServer(env).start(tmp_path / "server.log", timeout=120)
    try:
        messages = [{"role": "user", "content": QUESTION}]
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=live.url + "/v1", api_key="wrong-key-0123456789", max_retries=0).chat.completions.create(
                model=chat.MODEL_ID, messages=messages
            )
        good = openai.OpenAI(base_url=live.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        with pytest.raises(openai.RateLimitError) as caught:
            for _ in range(4):
                assert good.chat.completions.create(model=chat.MODEL_ID, messages=messages).choices[0].message.content
        assert caught.value.type == "rate_limit_error" and caught.value.response.headers["retry-after"]
    finally:
        live.stop()


@pytest.mark.model
@pytest.mark.slow
def test_an_oversized_body_is_refused_in_the_openai_shape(client):
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=chat.MODEL_ID, messages=[{"role": "user", "content": "x" * 70_000}])
    assert caught.value.status_code == 413 and caught.value.type == "invalid_request_error"
    assert "larger than" in caught.value.message
