"""The short answer on every surface that carries an answer: the ``/ask`` JSON body, its server-sent
events, the OpenAI-compatible completion (plain and streamed) and the MCP tool ``ask``.

Fast: the fake encoder over the bundled article, and a stand-in for the reader (a subclass of the
answer service that puts a known span of one quote on the answer), so every expectation is exact.
"""

from __future__ import annotations

from dataclasses import replace

import anyio
import pytest

from answer_checks import check_answer_dict, parse_sse, running
from api import chat
from api.app import create_app
from api.schemas import AskResponse
from conftest import build_fake_index
from corpus import DEFAULT_CORPUS_DIR
from embeddings import HashingEncoder
from rag.answer.config import AnswerConfig
from rag.answer.service import AnswerService, ShortAnswer
from rag.index import load_index
from rag.payloads import short_answer_line
from rag.search.retrieve import Retriever
from rag.settings import load_settings

#: Answered from three quotes by the fake encoder; the second is "1979 Moon Agreement: A treaty stating ...".
QUESTION = "Which agreement says the Moon cannot be claimed by any nation?"
OFF_TOPIC = "Who won the 2018 World Cup?"
#: The span the stand-in reader finds: in the second quote, so its marker is [2], not the answer's first.
SPAN = "1979 Moon Agreement"
READER = "reader-test 0123456789ab"
SSE = {"Accept": "text/event-stream"}


class ReadingService(AnswerService):
    """The answer service with a stand-in reader: the short answer is ``span`` in the first quote that holds
    it, in the passage's offsets. It also puts one on an abstention, which no surface may show."""

    span = SPAN

    def finish(self, retrieval):
        answer = super().finish(retrieval)
        if answer.abstained:
            return replace(answer, short_answer=ShortAnswer("the cup", 1, 0, 7), reader=READER)
        c = next(c for c in answer.citations if self.span in c.quote)
        at = c.start + c.quote.index(self.span)
        return replace(answer, short_answer=ShortAnswer(self.span, c.n, at, at + len(self.span)), reader=READER)


@pytest.fixture(scope="module")
def index_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("short-answer")
    build_fake_index(root, DEFAULT_CORPUS_DIR)
    return root


def service_over(root, cls=ReadingService) -> AnswerService:
    encoder = HashingEncoder()
    return cls(Retriever(load_index(root / "index", encoder), encoder), AnswerConfig())


@pytest.fixture(scope="module")
def client(index_root):
    settings = load_settings(encoder="hashing", index_dir=index_root / "index", cache_dir=index_root / "cache", rate_limit="")
    with running(create_app(settings, service=service_over(index_root))) as c:
        yield c


@pytest.fixture(scope="module")
def plain_client(index_root):
    """The same app without a reader: no short answer anywhere."""
    settings = load_settings(encoder="hashing", index_dir=index_root / "index", cache_dir=index_root / "cache", rate_limit="")
    with running(create_app(settings, service=service_over(index_root, AnswerService))) as c:
        yield c


def ask(client, question: str = QUESTION) -> dict:
    response = client.post("/ask", json={"question": question})
    assert response.status_code == 200, response.text
    return response.json()


def check_short_answer(body: dict) -> dict:
    """The short answer's contract: its text is the span of its citation's quote at its offsets."""
    short = body["short_answer"]
    c = next(c for c in body["citations"] if c["n"] == short["citation"])
    assert c["start"] <= short["start"] < short["end"] <= c["end"]
    assert c["quote"][short["start"] - c["start"] : short["end"] - c["start"]] == short["text"]
    return c


# ------------------------------------------------------------------------------ JSON and SSE


def test_the_ask_body_carries_the_short_answer_in_its_citations_offsets_and_the_reader(client):
    body = ask(client)
    check_answer_dict(body)
    AskResponse.model_validate(body)
    assert not body["abstained"] and len(body["citations"]) >= 2
    assert body["short_answer"]["text"] == SPAN and body["short_answer"]["citation"] == 2
    assert set(body["short_answer"]) == {"text", "citation", "start", "end"}
    c = check_short_answer(body)
    assert c["start"] > 0  # so offsets into the quote would not pass for offsets into the passage
    passage = next(p for p in body["passages"] if p["passage_id"] == c["passage_id"])
    assert passage["text"][body["short_answer"]["start"] : body["short_answer"]["end"]] == SPAN
    assert body["reader"] == READER


def test_an_abstention_has_no_short_answer_but_names_its_reader(client):
    body = ask(client, OFF_TOPIC)
    assert body["abstained"] and body["short_answer"] is None and body["reader"] == READER
    events = stream(client, OFF_TOPIC)
    assert [e.event for e in events] == ["passages", "abstained", "done"]
    assert events[-1].json()["short_answer"] is None


def test_without_a_reader_both_fields_are_null_and_no_event_is_sent(plain_client):
    body = ask(plain_client)
    assert not body["abstained"] and body["short_answer"] is None and body["reader"] is None
    assert "short_answer" not in [e.event for e in stream(plain_client, QUESTION)]


def stream(client, question: str):
    with client.stream("POST", "/ask", json={"question": question}, headers=SSE) as response:
        assert response.status_code == 200
        return parse_sse(response.iter_lines())


def test_the_stream_sends_the_short_answer_before_the_sentences_and_done_carries_it(client):
    events = stream(client, QUESTION)
    kinds = [e.event for e in events]
    assert kinds == ["passages", "short_answer"] + ["sentence"] * (len(kinds) - 3) + ["done"], kinds
    done = events[-1].json()
    assert events[1].json() == done["short_answer"] == ask(client)["short_answer"]
    check_short_answer(done)


def test_the_schema_documents_the_short_answer(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    fields = schemas["ShortAnswerModel"]["properties"]
    assert set(fields) == {"text", "citation", "start", "end"} and all(f.get("description") for f in fields.values())
    ask_fields = schemas["AskResponse"]["properties"]
    assert ask_fields["short_answer"]["description"] and ask_fields["reader"]["description"]


# ------------------------------------------------------------------------------ OpenAI-compatible


def marker_annotations(content: str, annotations: list[dict]) -> list[str]:
    return [content[a["url_citation"]["start_index"] : a["url_citation"]["end_index"]] for a in annotations]


def test_a_chat_completion_leads_with_the_short_answer_and_annotates_its_marker(client):
    body = ask(client)
    response = client.post("/v1/chat/completions", json={"model": chat.MODEL_ID, "messages": [{"role": "user", "content": QUESTION}]})
    assert response.status_code == 200, response.text
    done = response.json()
    message = done["choices"][0]["message"]
    content = message["content"]
    assert content == f"{SPAN} [2]\n\n{body['answer']}"
    first = message["annotations"][0]["url_citation"]
    assert (first["start_index"], first["end_index"]) == (len(SPAN) + 1, len(SPAN) + 4)
    assert content[first["start_index"] : first["end_index"]] == "[2]"
    c2 = body["citations"][1]
    assert (first["url"], first["title"]) == (c2["url"], c2["title"])
    # the short answer's marker, then one annotation per marker of the answer, each on its marker
    answer_markers = chat.url_citations(body["answer"], body["citations"])
    assert marker_annotations(content, message["annotations"]) == ["[2]"] + marker_annotations(body["answer"], answer_markers)
    assert done["rag"]["short_answer"] == body["short_answer"]
    assert done["usage"]["completion_tokens"] == chat.usage("", content)["completion_tokens"]


def test_a_streamed_chat_completion_sends_the_short_answer_first_with_its_annotation(client):
    plain = client.post("/v1/chat/completions", json={"model": chat.MODEL_ID, "messages": [{"role": "user", "content": QUESTION}]}).json()
    request = {"model": chat.MODEL_ID, "stream": True, "messages": [{"role": "user", "content": QUESTION}]}
    with client.stream("POST", "/v1/chat/completions", json=request) as response:
        events = [e.data for e in parse_sse(response.iter_lines())]
    assert events[-1] == "[DONE]"
    import json

    chunks = [json.loads(e) for e in events[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    pieces = [d["content"] for d in deltas if d.get("content")]
    content = "".join(pieces)
    assert content == plain["choices"][0]["message"]["content"] and pieces[0] == f"{SPAN} [2]"
    streamed = [a for d in deltas for a in d.get("annotations", [])]
    # indices are into the whole content, as in the plain completion, and each lands on its marker
    assert streamed == plain["choices"][0]["message"]["annotations"]
    assert marker_annotations(content, streamed)[0] == "[2]"
    assert deltas[1].get("annotations") == [plain["choices"][0]["message"]["annotations"][0]]
    assert chunks[-1]["rag"]["short_answer"] == plain["rag"]["short_answer"]


def test_an_abstained_chat_completion_has_no_short_answer(client):
    done = client.post("/v1/chat/completions", json={"model": chat.MODEL_ID, "messages": [{"role": "user", "content": OFF_TOPIC}]}).json()
    message = done["choices"][0]["message"]
    assert done["rag"]["abstained"] and done["rag"]["short_answer"] is None
    assert message["content"] == done["rag"]["answer"] and message["annotations"] == []


def test_the_short_answer_line_keeps_one_marker_and_one_line():
    citations = [{"n": 1, "url": "/a", "title": "A"}, {"n": 2, "url": "/b", "title": "B"}]
    # a bracket of the source inside the span is left out, as it is from the answer's quotes
    body = {"answer": "Quote one. [1] Quote two. [2]", "abstained": False, "citations": citations,
            "short_answer": {"text": "20 July\n1969[1]", "citation": 2, "start": 10, "end": 25}}
    assert short_answer_line(body) == "20 July 1969 [2]"
    content = chat.message_content(body)
    assert content == "20 July 1969 [2]\n\nQuote one. [1] Quote two. [2]"
    notes = chat.url_citations(content, citations)
    assert [(n, a["url_citation"]["url"]) for n, a in zip(marker_annotations(content, notes), notes)] == [("[2]", "/b"), ("[1]", "/a"), ("[2]", "/b")]
    assert short_answer_line({**body, "abstained": True}) == "" and short_answer_line({**body, "short_answer": None}) == ""
    assert chat.message_content({**body, "short_answer": None}) == body["answer"]


# ------------------------------------------------------------------------------ MCP


def test_the_mcp_ask_tool_carries_the_short_answer_and_leads_its_text_with_it(index_root, monkeypatch):
    from mcp import Client

    from api import mcp_server

    service = service_over(index_root)
    monkeypatch.setattr(mcp_server._Service, "get", lambda self: service)
    settings = load_settings(encoder="hashing", index_dir=index_root / "index", cache_dir=index_root / "cache")
    server = mcp_server.create_server(settings)

    async def main():
        async with Client(server) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            return tools["ask"], await client.call_tool("ask", {"question": QUESTION}), await client.call_tool("ask", {"question": OFF_TOPIC})

    tool, answered, abstained = anyio.run(main)
    assert "short_answer" in tool.output_schema["properties"]
    body = answered.structured_content
    assert not answered.is_error and body["short_answer"]["text"] == SPAN and body["reader"] == READER
    check_short_answer(body)
    assert answered.content[0].text.startswith(f"{SPAN} [2]\n\n{body['answer']}\n")
    assert abstained.structured_content["short_answer"] is None
    assert abstained.content[0].text.startswith(abstained.structured_content["answer"])
