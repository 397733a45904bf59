"""Answerability with the real model: questions the articles do not answer are abstained on with a reason
that names what is missing, or answered only with a note that says so; answerable ones are answered.

The question-set test holds the service to floors under the figures measured on
``eval/data/validate.jsonl`` (eval/RESULTS.md), so that a change that loses the check is caught.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from answer_checks import check_answer
from corpus import load_corpus
from eval.askers import InProcessAsker
from eval.qa import load_question_set, run_questions, summarise
from rag.answer.service import AnswerService
from rag.index import build_index, load_index
from rag.search.retrieve import Retriever

pytestmark = pytest.mark.model

EVAL_DATA = Path(__file__).resolve().parent.parent / "eval" / "data"


@pytest.fixture(scope="module")
def service(bundled_retriever) -> AnswerService:
    return AnswerService(bundled_retriever)


@pytest.mark.parametrize(
    "question, named",
    [
        ("Who was the first person to walk on the Moon?", "walk"),
        ("When did Japan launch its first satellite?", "Japan"),
        ("How many astronauts have lived aboard the ISS?", "astronauts"),
    ],
)
def test_near_domain_questions_are_abstained_on_with_what_is_missing(service, question, named):
    answer = service.ask(question)
    check_answer(answer)
    assert answer.abstained, answer.answer
    assert answer.abstention.reason in ("not_mentioned", "not_answered")
    assert named in answer.abstention.message, answer.abstention
    assert answer.passages  # the closest passages stay as related reading


def test_a_question_the_quotes_only_touch_is_answered_with_what_they_leave_out(service):
    answer = service.ask("Which court settles disputes under the Outer Space Treaty?")
    check_answer(answer)
    # the treaty's passages answer in part: quoted, with a note that they say nothing of a court
    assert not answer.abstained, answer.abstention
    assert answer.abstention.reason == "partial" and "court" in answer.abstention.missing
    assert "court" in answer.abstention.message


def test_an_answerable_question_is_answered_without_a_note(service):
    answer = service.ask("When was NASA established?")
    check_answer(answer)
    assert not answer.abstained and answer.abstention is None
    assert "1958" in answer.citations[0].quote
    # one complete quote: nothing that merely restates the topic is appended
    assert len(answer.citations) == 1


def test_two_questions_in_one_answer_one_part_and_name_the_other(service):
    answer = service.ask("When was NASA established and what is its annual budget?")
    check_answer(answer)
    assert not answer.abstained and "1958" in answer.answer
    assert answer.abstention.reason == "partial"
    assert "budget" in answer.abstention.message, answer.abstention


def test_the_reference_list_is_searchable_but_never_quoted(service):
    question = "Who wrote the source that appeared in The Hague Journal of Diplomacy?"
    answer = service.ask(question)
    check_answer(answer)
    assert answer.abstained and answer.abstention.reason == "references_only"
    assert any(r.chunk.section[-1] == "Academic Sources and References" for r in answer.passages)
    for q in ("What is space diplomacy?", "Which journals appear among the article's academic sources?"):
        a = service.ask(q)
        assert all(c.section[-1] != "Academic Sources and References" for c in a.citations), a.answer


@pytest.mark.parametrize(
    "question, entry_words",
    [
        ("Who wrote 'Uzay Hukuku, Uzayda Güvenlik ve Diplomasi'?", "Kıllıoğlu, Mehmet Erkan"),
        ("who wrote 'exploring the final frontier'?", "Moroz, Andrii, and Nataliia Borotkanych"),
        ("Which journal published Space Diplomacy: The Final Frontier of Theory and Practice?", "The Hague Journal of Diplomacy"),
    ],
)
def test_a_question_about_a_listed_work_by_its_title_is_answered_from_its_reference_line(service, question, entry_words):
    answer = service.ask(question)
    check_answer(answer)
    assert not answer.abstained, answer.answer
    assert len(answer.citations) == 1 and answer.citations[0].section[-1] == "Academic Sources and References"
    assert entry_words in answer.citations[0].quote


@pytest.mark.parametrize(
    "question",
    ["What does the Final Frontier of Theory and Practice argue?", "Who wrote about space diplomacy?"],
)
def test_a_question_that_does_not_ask_who_wrote_a_named_work_stays_unquoted(service, question):
    answer = service.ask(question)
    assert answer.abstained and answer.abstention.reason == "references_only", answer.answer


def test_a_follow_up_without_its_context_asks_for_it(service):
    alone = service.ask("And who took part in it?")
    assert alone.abstained and alone.abstention.reason == "needs_context" and "“it”" in alone.answer
    followed = service.ask("And who took part in it?", history=["When was the International Space Station initiated?"])
    check_answer(followed)
    assert not followed.abstained and any("Japan" in c.quote for c in followed.citations)


def test_a_yes_no_question_leads_with_its_best_quote_and_names_no_item_twice(service):
    answer = service.ask("Does the Outer Space Treaty ban nuclear weapons in orbit?")
    check_answer(answer)
    assert not answer.abstained
    assert len(answer.citations) <= 2
    assert "Outer Space Treaty" in answer.citations[0].quote
    assert sum("Outer Space Treaty:" in c.quote for c in answer.citations) <= 1
    assert not answer.answer.startswith(("1.", "2.", "3."))  # list numbering never starts a sentence


@pytest.fixture(scope="module")
def both_corpora(tmp_path_factory, real_encoder):
    """The bundled article and the six space-law documents of eval/data/spacelaw/, indexed together."""
    root = tmp_path_factory.mktemp("spacelaw")
    build_index(load_corpus(EVAL_DATA / "spacelaw"), root / "index", real_encoder)
    return AnswerService(Retriever(load_index(root / "index", real_encoder), real_encoder))


@pytest.mark.slow
def test_validation_figures_hold(both_corpora):
    """Floors a little under the figures measured on validate.jsonl (RESULTS.md): near-domain handled
    0.615, answerable abstained 0 of 31, answered correctly 0.774, citation validity 1.0."""
    items = load_question_set(EVAL_DATA / "validate.jsonl")
    results = run_questions(items, InProcessAsker(None, service=both_corpora), progress=False)
    summary = summarise(results)
    assert summary["citation_validity"] == 1.0
    assert summary["off-topic_abstained"] == 1.0
    assert summary["answerable_abstained"] <= 0.04, summary
    assert summary["near-domain_handled"] >= 0.55, summary
    assert summary["answered_correctly"] >= 0.7, summary
