"""The reader in the answer path, with a scripted stand-in for the model (the bundled reader's own behaviour
is tested in tests/test_reader_model.py): which questions it decides, what an abstention then says, and the
short answer's citation and offsets. Fast: the fake encoder on two small articles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from answer_checks import check_answer
from corpus import parse_markdown
from embeddings import HashingEncoder
from rag.answer.question import DATE, QUANTITY
from rag.answer.reader import ReaderSettings, Span
from rag.answer.service import AnswerConfig, AnswerService
from rag.index import build_index, load_index
from rag.search.retrieve import Retriever

LAUNCHES = """---
title: Launches
slug: launches
url: /wiki/launches
---

# Launches

## Early satellites

The first artificial satellite, Sputnik 1, was launched by the Soviet Union in 1957. It carried a radio transmitter.
Explorer 1 followed from Cape Canaveral in 1958 and found the radiation belts.

## Crewed flight

Yuri Gagarin became the first person in orbit in 1961 aboard Vostok 1. The flight lasted 108 minutes.
Gardeners stake tomato plants so that the fruit stays off the soil, because wet fruit rots.
"""

TREATIES = """---
title: Treaties
slug: treaties
url: /wiki/treaties
---

# Treaties

## Outer Space Treaty

The Outer Space Treaty entered into force in October 1967. It bans nuclear weapons in orbit.
"""


class ScriptedReader:
    """Finds ``phrase`` in the passages it is given (the first that holds it), or nothing when ``phrase`` is None."""

    label = "scripted 0123456789ab"

    def __init__(self, phrase: str | None, pointed: str | None = None, pointed_margin: float = 1.0):
        self.phrase, self.pointed, self.pointed_margin, self.calls = phrase, pointed, pointed_margin, []

    def look(self, question: str, passages) -> ScriptedReading:
        self.calls.append((question, list(passages)))
        return ScriptedReading(self.phrase, list(passages), self.pointed, self.pointed_margin)


@dataclass
class ScriptedReading:
    """The answer is the phrase where it occurs; inside a quote the reader points at ``pointed`` (if given)."""

    phrase: str | None
    passages: list[str]
    pointed: str | None = None
    pointed_margin: float = 1.0  # the pointed span's margin over the null answer
    settings: ReaderSettings = ReaderSettings(threshold=0.0)

    def threshold(self, override=None) -> float:
        return self.settings.threshold if override is None else override

    def answer(self, threshold=None) -> Span | None:
        for i, text in enumerate(self.passages):
            if self.phrase is not None and (at := text.find(self.phrase)) >= 0:
                return Span(i, at, at + len(self.phrase), self.phrase, 5.0, 0.0)
        return None

    def best_within(self, ranges) -> Span | None:
        for p, lo, hi in ranges:
            if self.pointed is not None and (at := self.passages[p].find(self.pointed, lo, hi)) >= 0:
                return Span(p, at, at + len(self.pointed), self.pointed, self.pointed_margin, 0.0)
        return None


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root: Path = tmp_path_factory.mktemp("reader-answers")
    encoder = HashingEncoder()
    build_index([parse_markdown(LAUNCHES, fallback_slug="launches"), parse_markdown(TREATIES, fallback_slug="treaties")], root / "index", encoder)
    return load_index(root / "index", encoder), encoder


def service(index, reader=None, **config) -> AnswerService:
    loaded, encoder = index
    config = {"reader_kinds": frozenset({DATE, QUANTITY}), **config}  # the rules, whichever kinds the default lets the reader decide
    return AnswerService(Retriever(loaded, encoder), AnswerConfig(abstain_threshold=0.0, **config), reader=reader)


WHEN = "When did Yuri Gagarin become the first person in orbit?"


def test_a_span_found_is_the_short_answer_inside_its_citation_and_leads_the_answer(index):
    reader = ScriptedReader("1961")
    answer = service(index, reader).ask(WHEN)
    check_answer(answer)
    assert not answer.abstained and answer.reader == "scripted 0123456789ab"
    short = answer.short_answer
    assert short is not None and short.text == "1961"
    cited = next(c for c in answer.citations if c.n == short.citation)
    passage = next(p for p in answer.passages if p.chunk.id == cited.passage_id).chunk.text
    assert passage[short.start : short.end] == "1961"
    assert cited.start <= short.start < short.end <= cited.end
    assert answer.sentences[0].citations == (short.citation,)  # the quote that holds it comes first
    assert "Gagarin" in answer.sentences[0].text


def test_no_span_for_a_when_question_abstains_and_says_what_the_passages_hold(index):
    without = service(index).ask(WHEN)
    assert not without.abstained  # the words and similarities alone would answer it
    answer = service(index, ScriptedReader(None)).ask(WHEN)
    assert answer.abstained and answer.short_answer is None and answer.citations == []
    assert answer.abstention.reason == "not_answered"
    assert answer.abstention.message.startswith("The articles mention Yuri Gagarin but do not say when")
    assert answer.reader == "scripted 0123456789ab"


def test_a_name_the_passages_lack_abstains_whatever_span_the_reader_finds(index):
    answer = service(index, ScriptedReader("1961")).ask("When did the Soviet Union launch Mir?")
    assert answer.abstained and answer.abstention.reason == "not_mentioned"
    assert "Mir" in answer.abstention.message


def test_kinds_the_reader_does_not_decide_are_answered_as_before_with_a_short_answer_when_one_fits(index):
    why = "Why do gardeners stake tomato plants?"
    before = service(index).ask(why)
    assert not before.abstained and before.reader is None and before.short_answer is None
    unread = service(index, ScriptedReader(None)).ask(why)
    assert (unread.abstained, unread.answer, unread.short_answer) == (False, before.answer, None)
    read = service(index, ScriptedReader("because wet fruit rots")).ask(why)
    assert read.answer == before.answer and read.short_answer is not None
    assert read.short_answer.text == "because wet fruit rots"


def test_a_span_across_two_quotes_leaves_the_decision_to_the_words(index):
    across = "1961 aboard Vostok 1. The flight"
    answer = service(index, ScriptedReader(across)).ask(WHEN)
    assert answer.answer == service(index).ask(WHEN).answer
    assert answer.short_answer is None  # no quote holds the whole span


def test_an_answered_factoid_question_gets_the_span_the_reader_points_at_inside_its_quotes(index):
    # "who" is not a kind the reader decides here: the words answer it, and the reader, below its own
    # threshold, still points at the words of the quote that answer it.
    who = "Who became the first person in orbit?"
    before = service(index).ask(who)
    answer = service(index, ScriptedReader(None, pointed="Yuri Gagarin")).ask(who)
    check_answer(answer)
    assert (answer.abstained, answer.answer) == (False, before.answer)
    short = answer.short_answer
    assert short is not None and short.text == "Yuri Gagarin"
    cited = next(c for c in answer.citations if c.n == short.citation)
    passage = next(p for p in answer.passages if p.chunk.id == cited.passage_id).chunk.text
    assert passage[short.start : short.end] == "Yuri Gagarin" and cited.start <= short.start < short.end <= cited.end


def test_a_span_the_reader_does_not_read_as_answering_is_not_pointed_at(index):
    # Below the reader's threshold the quote does not answer for the reader: the words' answer stands, in
    # its quotes, without a short answer that would put the trap in bold ("Yuri Gagarin" for the first American).
    who = "Who became the first person in orbit?"
    unsure = service(index, ScriptedReader(None, pointed="Yuri Gagarin", pointed_margin=-0.5)).ask(who)
    assert not unsure.abstained and unsure.short_answer is None
    looser = service(index, ScriptedReader(None, pointed="Yuri Gagarin", pointed_margin=-0.5), pointed_margin=-1.0).ask(who)
    assert looser.short_answer is not None and looser.short_answer.text == "Yuri Gagarin"


def test_an_explanation_gets_no_pointed_short_answer(index):
    why = "Why do gardeners stake tomato plants?"
    answer = service(index, ScriptedReader(None, pointed="because wet fruit rots")).ask(why)
    assert not answer.abstained and answer.short_answer is None


def test_the_reader_reads_only_the_top_passages(index):
    reader = ScriptedReader("1961")
    service(index, reader, reader_passages=2).ask(WHEN)
    [(question, passages)] = reader.calls
    assert question == WHEN and len(passages) == 2


def test_without_a_reader_answers_are_unchanged(index):
    for question in (WHEN, "What does the Outer Space Treaty ban?", "When did the Outer Space Treaty enter into force?"):
        a, b = service(index).ask(question), service(index, None).ask(question)
        assert (a.answer, a.abstained, a.short_answer, a.reader) == (b.answer, b.abstained, None, None)


def test_the_quote_that_holds_the_span_leads_even_when_the_words_prefer_another(index):
    question = "When was the first artificial satellite launched?"
    assert "Sputnik" in service(index).ask(question).sentences[0].text
    answer = service(index, ScriptedReader("1958")).ask(question)
    assert "Explorer 1" in answer.sentences[0].text and answer.short_answer.citation == answer.sentences[0].citations[0]


# ------------------------------------------------------------------------------------ a missing or damaged reader


@pytest.fixture
def fake_index(tmp_path, small_corpus):
    from conftest import build_fake_index

    build_fake_index(tmp_path, small_corpus)
    return tmp_path


def _broken_reader(tmp_path: Path) -> Path:
    """A copy of the bundled reader whose model file has been cut short."""
    import shutil

    from rag.answer.reader import BUNDLED_READER_DIR, MODEL_FILE

    broken = tmp_path / "broken-reader"
    shutil.copytree(BUNDLED_READER_DIR, broken)
    data = (broken / MODEL_FILE).read_bytes()
    (broken / MODEL_FILE).write_bytes(data[: len(data) // 2])
    return broken


@pytest.mark.parametrize("command", [["ask", "When was the treaty signed?"], ["serve", "--port", "8765"]])
@pytest.mark.parametrize("which", ["missing", "damaged"])
def test_a_missing_or_damaged_reader_fails_at_start_in_one_line(fake_index, rag_cli, command, which):
    path = fake_index / "nowhere" if which == "missing" else _broken_reader(fake_index)
    run = rag_cli(command, RAG_READER="on", RAG_READER_PATH=path)
    assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr
    *before, line = run.stderr.strip().splitlines()  # after at most the line that says what is being loaded
    assert line.startswith("error: ") and str(path) in line and all(b.startswith("loading ") for b in before), run.stderr
    assert ("RAG_READER=off" in line) if which == "missing" else ("damaged or replaced" in line)


def test_rag_ask_prints_the_short_answer_and_its_marker_before_the_answer(index, capsys):
    from rag.cli import _print_answer
    from rag.payloads import AskResponse

    body = AskResponse.of(service(index, ScriptedReader("1961")).ask(WHEN)).model_dump(mode="json")
    _print_answer(body)
    short, answer, _ = capsys.readouterr().out.split("\n\n", 2)
    assert short == f"1961 [{body['short_answer']['citation']}]" and answer == body["answer"]
