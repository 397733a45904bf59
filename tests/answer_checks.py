"""Shared by the answer, API and streaming tests: the citation invariants, an SSE parser, a test client.

The invariants are stated once here, for both shapes an answer takes (the ``rag.answer.service.Answer``
record and the JSON body of ``POST /ask``), so every test holds the service to the same contract.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

from fastapi.testclient import TestClient

from rag.answer.service import Answer

#: Every reason an abstention (or a partial answer) can give.
REASONS = {"off_topic", "not_mentioned", "not_answered", "references_only", "needs_context"}

#: The exact form of the service's citation markers.
MARKER_RE = re.compile(r"\[(\d+)\]")

#: What a reader takes for a citation marker, written without looking at the service's pattern:
#: any bracket, ASCII or full-width, around numbers with optional spaces, commas or dashes
#: ("[3]", "[ 5 ]", "［5］", "[2, 7]", "[4–6]"). Each one in an answer must be exactly "[n]".
READER_MARKER_RE = re.compile(r"[\[［【]\s*\d+(?:\s*[,;–—-]\s*\d+)*\s*[\]］】]")


def markers_in_order(text: str) -> list[int]:
    """The citation numbers of ``text`` in order of first appearance, read as a reader reads them.

    Fails on a lookalike (a bracketed number a reader would take for a citation that is not in the
    exact ``[n]`` form), so the check does not share a blind spot with the service's own pattern.
    """
    numbers: list[int] = []
    for m in READER_MARKER_RE.finditer(text):
        raw = m.group(0)
        inner = raw[1:-1]
        assert raw[0] == "[" and raw[-1] == "]" and inner.isascii() and inner.isdigit(), (
            f"{raw!r} looks like a citation marker but is not one: {text!r}"
        )
        numbers.append(int(inner))
    return list(dict.fromkeys(numbers))


def check_answer_dict(body: dict) -> None:
    """Every citation invariant of one ``/ask`` JSON body (or ``done`` event)."""
    passages = {p["passage_id"]: p for p in body["passages"]}
    citations = body["citations"]
    if body["abstained"]:
        assert citations == [], body
        # the answer is the abstention's own sentence, with its reason
        assert body["abstention"]["reason"] in REASONS and body["answer"] == body["abstention"]["message"], body
        assert not MARKER_RE.search(body["answer"])
        assert all(p["low_confidence"] for p in body["passages"]), "passages of an abstention are not evidence"
        return
    assert citations, f"an answer without citations: {body['answer']!r}"
    numbers = [c["n"] for c in citations]
    assert numbers == list(range(1, len(citations) + 1)), f"citations not numbered 1..n: {numbers}"
    # every marker names a citation, in order of first use, and every citation is used
    assert markers_in_order(body["answer"]) == numbers, (body["answer"], numbers)
    for c in citations:
        assert c["passage_id"] in passages, f"citation {c['n']} cites a passage that was not returned"
        text = passages[c["passage_id"]]["text"]
        assert c["quote"], f"citation {c['n']} has an empty quote"
        assert 0 <= c["start"] < c["end"] <= len(text)
        assert text[c["start"] : c["end"]] == c["quote"], f"citation {c['n']}: offsets do not slice out the quote"
        assert c["quote"] in text
        passage = passages[c["passage_id"]]
        assert (c["title"], c["section"], c["url"]) == (passage["title"], passage["section"], passage["url"])
    assert not any(p["low_confidence"] for p in body["passages"])


def check_answer(answer: Answer) -> None:
    """Every citation invariant of an :class:`~rag.answer.service.Answer` record, sentences included."""
    passages = {r.chunk.id: r.chunk for r in answer.passages}
    if answer.abstained:
        assert answer.citations == [] and answer.sentences == []
        assert answer.abstention is not None and answer.abstention.reason in REASONS
        assert answer.answer == answer.abstention.message and not MARKER_RE.search(answer.answer)
        return
    # a partial answer says what it leaves out, never with a marker
    assert answer.abstention is None or (answer.abstention.reason == "partial" and not MARKER_RE.search(answer.abstention.message))
    numbers = [c.n for c in answer.citations]
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    assert numbers, answer.answer
    assert markers_in_order(answer.answer) == numbers, (answer.answer, numbers)
    for c in answer.citations:
        chunk = passages[c.passage_id]
        assert chunk.text[c.start : c.end] == c.quote and c.quote
        assert (c.title, c.section, c.url) == (chunk.title, chunk.section, chunk.url)
    # The answer is its sentences, and each sentence's markers are the citations it lists.
    assert " ".join(s.text for s in answer.sentences) == answer.answer
    for s in answer.sentences:
        assert s.citations and markers_in_order(s.text) == list(s.citations), s


class Event(NamedTuple):
    event: str
    data: str

    def json(self):
        return json.loads(self.data)


def iter_sse(lines: Iterable[str]) -> Iterator[Event]:
    """Server-sent events from the lines of a ``text/event-stream`` body, each yielded as soon as its
    blank line arrives (comments and pings skipped), so a test can see when each one came."""
    name, data = "message", []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield Event(name, "\n".join(data))
            name, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    if data:
        yield Event(name, "\n".join(data))


def parse_sse(lines: Iterable[str]) -> list[Event]:
    """Every server-sent event of a complete ``text/event-stream`` body."""
    return list(iter_sse(lines))


@contextmanager
def running(app, **kwargs) -> Iterator[TestClient]:
    """A TestClient with the app's lifespan run; the 'rag' logger is put back as it was afterwards
    (the app configures it at start-up, and other tests should not inherit that)."""
    logger = logging.getLogger("rag")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        with TestClient(app, **kwargs) as client:
            yield client
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


@contextmanager
def captured_log() -> Iterator[io.StringIO]:
    """What the app's log handler writes (request ids included), while the block runs."""
    handlers = [h for h in logging.getLogger("rag").handlers if isinstance(h, logging.StreamHandler)]
    assert handlers, "the app configures a log handler at start-up"
    buffer = io.StringIO()
    previous = [h.setStream(buffer) for h in handlers]
    try:
        yield buffer
    finally:
        for handler, stream in zip(handlers, previous):
            handler.setStream(stream)
