"""Question analysis and the answerability check, as pure functions: names, expected answers, aliases,
and the sentence that says what is missing."""

from __future__ import annotations

import numpy as np
import pytest

from rag.answer.service import dangling_reference
from rag.answer.unit_cache import is_reference
from rag.answer.answerability import (
    AnswerabilityModel,
    Evidence,
    answer_type_present,
    defined_acronyms,
    judge,
    message,
    present,
    uncovered,
)
from rag.text.chunking import Chunk
from rag.text.lexical import analyze
from rag.answer.question import AGENT, DATE, PLACE, QUANTITY, REASON, YESNO, analyze_question, question_parts


@pytest.mark.parametrize(
    "question, expects",
    [
        ("When was NASA established?", DATE),
        ("In what year did the Moon Agreement enter into force?", DATE),
        ("How many states are parties to the Rescue Agreement?", QUANTITY),
        ("What is NASA's annual budget?", QUANTITY),
        ("Who wrote the Outer Space Treaty?", AGENT),
        ("Where was the ISS Agreement signed?", PLACE),
        ("Why did Saudi Arabia withdraw from the Moon Agreement?", REASON),
        ("Does the Outer Space Treaty ban nuclear weapons in orbit?", YESNO),
        ("What is space diplomacy?", None),
    ],
)
def test_the_kind_of_answer_a_question_expects(question, expects):
    assert analyze_question(question).expects == expects


def names(question: str) -> list[str]:
    return [f.text for f in analyze_question(question).focus if f.kind in ("name", "number")]


def test_names_are_runs_of_capitalised_words_split_at_and():
    assert names("How did relations between the US and Russia change?") == ["US", "Russia"]
    assert names("Which European body works alongside the Americans and the Russians?") == ["European", "Americans", "Russians"]
    # an organisation's name keeps its "and" after an "of" or "for"
    assert names("What did the Institute for Foreign Affairs and Trade publish?") == ["Institute for Foreign Affairs and Trade"]
    assert names("Was a claim made after Iridium 33 and Kosmos 2251 collided in 2009?") == ["Iridium 33", "Kosmos 2251", "2009"]
    # a capitalised first word is a name only when written as an acronym
    assert names("Under which programme does the TUA work?") == ["TUA"]
    assert names("NASA was founded when?") == ["NASA"]


def test_focus_leaves_out_frame_and_function_words():
    focus = analyze_question("According to the article, when did Japan launch its first satellite?")
    assert [f.text for f in focus.focus] == ["Japan", "launch", "first", "satellite"]
    assert analyze_question("Which rocket launched Sputnik-1?").head == "rocket"


def test_two_questions_in_one_are_split_but_a_single_one_is_not():
    assert question_parts("When was NASA established and who leads it today?") == ["When was NASA established", "who leads it today"]
    assert question_parts("What is the difference between a treaty and an agreement?") == [
        "What is the difference between a treaty and an agreement?"
    ]


@pytest.mark.parametrize(
    "expects, text, found",
    [
        (DATE, "NASA was established in 1958.", True),
        (DATE, "The treaty governs the station.", False),
        (QUANTITY, "104 states are parties.", True),
        (QUANTITY, "It rests on four key pillars.", True),
        (QUANTITY, "The economy passed $450 billion.", True),
        (QUANTITY, "It was signed in 1967.", False),  # a year is not a quantity
        (QUANTITY, "It opened for signature on 27 January 1967.", False),  # nor is a day of a date
        (QUANTITY, "Article 4 sets out the rule.", False),  # nor an article number
        (QUANTITY, "3. Scientific Cooperation: joint projects.", False),  # nor list numbering
        (REASON, "Few states joined because the regime was vague.", True),
        (REASON, "Saudi Arabia gave notice of withdrawal in January 2023.", False),
        (PLACE, "It was signed in Washington.", True),
        (None, "Anything at all.", True),
    ],
)
def test_the_expected_kind_of_answer_is_found_in_text(expects, text, found):
    assert answer_type_present(expects, text) is found


def test_aliases_and_defined_acronyms_count_as_the_name():
    focus = {f.text: f for f in analyze_question("What did the Americans and the Turkish Space Agency do?").focus}
    terms = set(analyze("... between the U.S. and the Soviet Union ..."))
    # "U.S." has no term of two letters: it is found in the text instead
    assert present(focus["Americans"], terms, {}, "between the U.S. and the Soviet Union")
    assert not present(focus["Americans"], terms, {})
    acronyms = defined_acronyms(["initiatives led by the Turkish Space Agency (TUA) and others"])
    tua = analyze_question("Which programme does the TUA run?").names[0]
    assert present(tua, set(analyze("the Turkish Space Agency aims to ...")), acronyms)
    assert not present(tua, set(analyze("the Turkish Space Agency aims to ...")), {})


def evidence(text: str, cosine: float = 0.5, passage: str = "") -> Evidence:
    passage = passage or text
    return Evidence(text, frozenset(analyze(text)), frozenset(analyze(passage)), cosine, cosine, (), passage)


def test_a_name_missing_from_every_passage_is_said_not_mentioned():
    question = analyze_question("When did Germany sign the Artemis Accords?")
    units = [evidence("The Artemis Accords were signed on 13 October 2020 by eight states.", 0.45)]
    verdict = judge(question, units, {"germani": 3.0, "sign": 1.0}, {}, AnswerabilityModel())
    assert not verdict.answerable
    assert (verdict.reason, verdict.missing) == ("not_mentioned", ("Germany",))
    assert message(question, verdict.reason, verdict.missing, verdict.mentioned) == "The articles do not mention Germany."


def test_a_when_question_without_a_date_in_any_unit_is_not_answered():
    question = analyze_question("When was the Turkish Space Agency founded?")
    units = [evidence("The Turkish Space Agency aims to establish international partnerships.", 0.9)]
    verdict = judge(question, units, {}, {}, AnswerabilityModel())
    # a close unit (its features alone give well over the threshold) without a date cannot answer "when"
    assert not verdict.answerable and verdict.probabilities.tolist() == [0.0]
    assert (verdict.reason, verdict.mentioned) == ("not_answered", ("Turkish Space Agency",))
    assert message(question, verdict.reason, verdict.missing, verdict.mentioned) == (
        "The articles mention Turkish Space Agency but do not say when."
    )


def test_messages_read_as_sentences():
    q = analyze_question("How many astronauts have lived aboard the ISS?")
    assert message(q, "not_answered", ("astronauts",), ("ISS",)) == (
        "The articles mention the ISS but do not say how many astronauts have lived aboard the ISS."
    )
    # a "how much" question that reads inverted is told "how much", not "how many"
    q = analyze_question("How much did the Rescue Agreement cost to negotiate?")
    assert message(q, "not_answered", ("cost",), ("Rescue Agreement",)) == (
        "The articles mention Rescue Agreement but do not say how much."
    )
    q = analyze_question("Which court settles disputes under the Outer Space Treaty?")
    assert message(q, "partial", ("court", "disputes"), ()) == "The quoted passages do not mention “court” or “disputes”."
    assert message(q, "not_mentioned", ("court",), ()) == "The articles do not mention “court”."


def test_uncovered_names_what_the_quoted_units_lack():
    question = analyze_question("Which court settles disputes under the Outer Space Treaty?")
    units = [evidence("The Outer Space Treaty prohibits the military use of space.")]
    verdict = judge(question, units, {}, {}, AnswerabilityModel(threshold=0.0))
    assert set(uncovered(question, verdict, [0], units, {}, 0.6)) == {"court", "settles", "disputes"}
    units = [evidence("Disputes under the Outer Space Treaty are settled by a court.")]
    verdict = judge(question, units, {}, {}, AnswerabilityModel(threshold=0.0))
    assert uncovered(question, verdict, [0], units, {}, 0.6) == ()


@pytest.mark.parametrize(
    "question, word",
    [
        ("And who took part in it?", "it"),
        ("What did they sign?", "they"),
        ("Who founded it?", "it"),
        ("What is NASA?", None),
        ("Which treaty bans the military use of space, and when was it signed?", None),  # "it" points inside
        ("Sputnik?", None),
    ],
)
def test_a_question_that_leans_on_earlier_ones_is_recognised(question, word):
    assert dangling_reference(question) == word


def chunk(section: tuple[str, ...], text: str) -> Chunk:
    return Chunk(id="a-1", article="a", title=section[0], url="", section=section, text=text, start=0, end=len(text), n_tokens=10, ordinal=0)


def test_reference_lists_and_bibliography_entries_are_not_evidence():
    entry = '2. Cross, Mai’a K. Davis, and Saadia M. Pekkanen. "Space Diplomacy." The Hague Journal of Diplomacy, 2023.'
    assert is_reference(chunk(("Space Diplomacy", "Academic Sources and References"), "x"), "x")
    assert is_reference(chunk(("Space Diplomacy", "History"), entry), entry)
    fact = "The launch of the Sputnik-1 satellite by the Soviet Union in 1957 marked the beginning of the space race."
    assert not is_reference(chunk(("Space Diplomacy", "History"), fact), fact)


def test_the_model_weighs_features_in_the_documented_order():
    model = AnswerabilityModel(bias=0.0, cosine=1.0, passage_cosine=0, word_cover=0, head_word=0, margin=0, names=0, answer_type=0)
    x = np.zeros((2, len(AnswerabilityModel.FEATURES)))
    x[1, AnswerabilityModel.FEATURES.index("cosine")] = 2.0
    p = model.probability(x)
    assert p[0] == pytest.approx(0.5) and p[1] == pytest.approx(1 / (1 + np.exp(-2.0)))


@pytest.mark.parametrize(
    "question, named",
    [
        ("Who wrote 'Exploring the Final Frontier'?", True),  # the main title, before the colon
        ("When was Exploring the Final Frontier: The Significance of Space Diplomacy in a Rapidly Evolving Cosmos published?", True),
        ("Which journal printed ‘exploring the final frontier’?", True),
        ("What does Exploring the Final Frontier argue?", False),  # asks what it says, which its entry does not
        ("Who wrote about the final frontier?", False),  # two words of nine
        ("Who wrote about space diplomacy?", False),  # a two-word main title is not named by a topic
    ],
)
def test_a_listed_work_is_named_by_its_title_in_a_who_when_where_question(question, named):
    from rag.answer.unit_cache import listed_work_named

    entry = '4. Moroz, Andrii. "Exploring the Final Frontier: The Significance of Space Diplomacy in a Rapidly Evolving Cosmos." LCP, 2023.'
    assert (listed_work_named(question, entry)[0] >= 0.6) is named
