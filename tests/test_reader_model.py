"""The bundled reader itself: it loads offline, points at the span that answers, says "no answer" to a
question written to look answerable from a paragraph that does not answer it, and, in the answer service
over the bundled article, abstains on near-domain questions and returns short answers that are the
article's own text."""

from __future__ import annotations

from dataclasses import replace

import pytest

from answer_checks import check_answer
from rag.answer.reader import BUNDLED_READER_DIR, Reader
from rag.answer.service import AnswerConfig, AnswerService

pytestmark = pytest.mark.model

PARAGRAPH = (
    "The launch of the Sputnik-1 satellite by the Soviet Union in 1957 marked the beginning of the space race. "
    "This development prompted the United States to accelerate its space initiatives, leading to the establishment "
    "of NASA in 1958. The first human spaceflight by Soviet cosmonaut Yuri Gagarin in 1961 further intensified the rivalry."
)


@pytest.fixture(scope="module")
def reader() -> Reader:
    return Reader(BUNDLED_READER_DIR).load()


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Who made the first human spaceflight?", "Yuri Gagarin"),
        ("Which satellite did the Soviet Union launch in 1957?", "Sputnik-1"),
    ],
)
def test_the_bundled_reader_points_at_the_span_that_answers(reader, question, expected):
    span = reader.answer(question, [PARAGRAPH])
    assert span is not None and expected in span.text and len(span.text) <= 3 * len(expected)
    assert PARAGRAPH[span.start : span.end] == span.text


@pytest.mark.parametrize(
    "question",
    [
        "Who was the first American in space?",  # the paragraph names only the first person, a Soviet cosmonaut
        "When was the European Space Agency established?",  # NASA's year is there, ESA's is not
    ],
)
def test_the_bundled_reader_finds_no_answer_where_a_careless_reader_would(reader, question):
    assert reader.answer(question, [PARAGRAPH]) is None


def test_inside_a_quote_the_reader_points_at_the_best_span_of_that_quote_alone(reader):
    question = "In which year was NASA established?"
    look = reader.look(question, [PARAGRAPH])
    assert look.spans == reader.read(question, [PARAGRAPH])  # one model run serves both
    last = PARAGRAPH.index("The first human")  # a quote that does not hold NASA's year
    nasa = PARAGRAPH.index("This development")
    inside = look.best_within([(0, nasa, last)])
    assert inside is not None and "1958" in inside.text and nasa <= inside.start < inside.end <= last
    elsewhere = look.best_within([(0, last, len(PARAGRAPH))])
    assert elsewhere is not None and last <= elsewhere.start and "1958" not in elsewhere.text
    assert PARAGRAPH[elsewhere.start : elsewhere.end] == elsewhere.text
    assert look.best_within([(0, 0, 0)]) is None and look.best_within([(3, 0, 10)]) is None


def test_the_bundled_reader_says_which_model_it_is(reader):
    name, fingerprint = reader.label.split()
    assert name == "reader" and len(fingerprint) == 12 and reader.meta["fingerprint"].startswith(fingerprint)


@pytest.fixture(scope="module")
def service(bundled_retriever, reader) -> AnswerService:
    return AnswerService(bundled_retriever, AnswerConfig(), reader=reader)


def test_an_answerable_question_carries_a_short_answer_in_the_article_text(service):
    answer = service.ask("Which satellite did the Soviet Union launch in 1957?")
    check_answer(answer)
    short = answer.short_answer
    assert not answer.abstained and short is not None and "Sputnik-1" in short.text
    cited = next(c for c in answer.citations if c.n == short.citation)
    passage = next(p for p in answer.passages if p.chunk.id == cited.passage_id).chunk.text
    assert passage[short.start : short.end] == short.text and cited.start <= short.start < short.end <= cited.end
    assert answer.reader == service.reader.label


def test_a_near_domain_question_abstains_with_what_the_article_holds(service, bundled_retriever):
    question = "How big is China's space budget?"  # the article gives the space economy's size, not China's budget
    assert not AnswerService(bundled_retriever, AnswerConfig()).ask(question).abstained  # words alone quote the economy figure
    answer = service.ask(question)
    assert answer.abstained and answer.short_answer is None and answer.citations == []
    assert answer.abstention.reason == "not_answered" and answer.abstention.message.startswith("The articles mention China but do not say how")


@pytest.mark.parametrize("question", ["Who was the first American in space?", "Who was the first woman in space?"])
def test_no_short_answer_puts_the_trap_in_bold(service, question):
    """The words answer these with the Gagarin sentence (who-questions are theirs to decide); the reader does
    not read that sentence as answering them, so no short answer names Gagarin."""
    answer = service.ask(question)
    assert answer.short_answer is None or "Gagarin" not in answer.short_answer.text
    assert answer.abstained or any("Gagarin" in c.quote for c in answer.citations)  # the case the test is about
    loose = AnswerService(service.retriever, replace(service.config, pointed_margin=float("-inf")), reader=service.reader)
    assert "Gagarin" in loose.ask(question).short_answer.text  # without the floor the reader points at the trap
