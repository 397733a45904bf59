"""Answer composition with the fake encoder on small synthetic corpora: numbering, the generator
seam, source brackets, duplicates, abstention and follow-up questions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from answer_checks import READER_MARKER_RE, check_answer, markers_in_order
from corpus import parse_markdown
from embeddings import HashingEncoder
from rag.answer.service import (
    ABSTAIN_MESSAGE,
    AnswerConfig,
    AnswerService,
    Citation,
    contextual_query,
    needs_context,
    renumber,
)
from core.errors import QueryError
from rag.index import build_index, load_index
from rag.search.retrieve import Filters, Retriever, SearchResult

ORBITS = """---
title: Orbits
slug: orbits
url: /wiki/orbits
categories:
  - name: Physics
    slug: physics
tags: [Satellites]
---

# Orbits

## Low orbit

Low orbit lies below two thousand kilometres [3]. A satellite in low orbit circles the planet every ninety minutes.
The observatory opened to visitors in 1931.

## Geostationary orbit

A geostationary satellite stays above one point of the equator [9[4]]. Geostationary orbit lies about thirty six thousand kilometres up [ 12 ].
Geostationary orbit was first proposed in 1945 ［5］.

Relay stations use geostationary satellites for television:

1. **Broadcasting:** satellites relay television to dishes on rooftops.
2. **Weather:** satellites watch storms over the equator.
"""

GARDENS = """---
title: Gardens
slug: gardens
url: /wiki/gardens
categories:
  - name: Botany
    slug: botany
tags: [Plants]
---

# Gardens

## Tomatoes

Tomato plants need full sun and regular watering. Gardeners stake tomato plants so the fruit stays off the soil.
The observatory opened to visitors in 1931.

## Roses

Roses are pruned in late winter before new shoots appear.
"""


def make_service(root: Path, articles: dict[str, str], **config) -> AnswerService:
    encoder = HashingEncoder()
    parsed = [parse_markdown(text, fallback_slug=slug) for slug, text in articles.items()]
    build_index(parsed, root / "index", encoder)
    return AnswerService(Retriever(load_index(root / "index", encoder), encoder), AnswerConfig(**config))


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("answer-corpus")
    make_service(root, {"orbits": ORBITS, "gardens": GARDENS})
    return root


@pytest.fixture(scope="module")
def service(corpus_root) -> AnswerService:
    """Answers whenever there is any evidence (threshold 0): these tests are about composition."""
    encoder = HashingEncoder()
    return AnswerService(Retriever(load_index(corpus_root / "index", encoder), encoder), AnswerConfig(abstain_threshold=0.0))


def citation(n: int, quote: str = "q") -> Citation:
    return Citation(n, f"p{n}", "Title", ("Title", f"Section {n}"), "/wiki/t", quote, 0, len(quote))


# ------------------------------------------------------------------------------------ renumber


def test_renumber_numbers_in_order_of_first_use_and_drops_unused_evidence():
    evidence = [citation(1, "one"), citation(2, "two"), citation(3, "three")]
    text, cited = renumber("Second fact [2]. First fact [1]. Second again [2].", evidence)
    assert text == "Second fact [1]. First fact [2]. Second again [1]."
    assert [(c.n, c.quote) for c in cited] == [(1, "two"), (2, "one")]  # evidence 3 was never cited
    assert cited[0].passage_id == "p2" and cited[0].section == ("Title", "Section 2")


def test_renumber_raises_on_a_marker_without_evidence():
    with pytest.raises(ValueError, match=r"\[7\]"):
        renumber("A claim [1] and an invented one [7].", [citation(1), citation(2)])


def test_renumber_without_markers_cites_nothing():
    text, cited = renumber("No markers here.", [citation(1)])
    assert (text, cited) == ("No markers here.", [])


# ------------------------------------------------------------------------------------ extractive composition


def test_extractive_answer_quotes_the_passage_that_answers(service):
    answer = service.ask("How often does a satellite in low orbit circle the planet?")
    check_answer(answer)
    assert not answer.abstained
    first = answer.citations[0]
    assert first.section == ("Orbits", "Low orbit")
    assert "every ninety minutes" in first.quote
    assert first.url == "/wiki/orbits" and first.title == "Orbits"


def test_bracketed_numbers_in_the_source_never_become_markers(service):
    answer = service.ask("Which geostationary satellite stays above the equator, how far up is geostationary orbit and when was it proposed?")
    check_answer(answer)
    quotes = [c.quote for c in answer.citations]
    assert any("[9[4]]" in q for q in quotes), quotes  # the quote stays exact ...
    assert any("[ 12 ]" in q for q in quotes), quotes
    # ... but no source bracket, nor a lookalike of one, reaches the answer: every [n] there is ours
    for sentence in answer.sentences:
        body = sentence.text.rsplit(" [", 1)[0]
        assert not READER_MARKER_RE.search(body), sentence.text
    assert set(markers_in_order(answer.answer)) == {c.n for c in answer.citations}


def test_the_same_fact_in_two_articles_is_cited_once(service):
    answer = service.ask("When did the observatory open to visitors?")
    check_answer(answer)
    hits = [c for c in answer.citations if "observatory opened" in c.quote]
    assert len(hits) == 1, answer.answer
    assert answer.answer.count("observatory opened") == 1


def test_sentences_of_one_passage_keep_the_passage_order(service):
    answer = service.ask("tomato plants sun watering stake fruit soil")
    check_answer(answer)
    by_passage: dict[str, list[int]] = {}
    for c in answer.citations:
        by_passage.setdefault(c.passage_id, []).append(c.start)
    assert any(len(starts) > 1 for starts in by_passage.values()), answer.answer
    for starts in by_passage.values():
        assert starts == sorted(starts)


def test_answer_is_bounded_by_max_sentences(corpus_root):
    encoder = HashingEncoder()
    one = AnswerService(
        Retriever(load_index(corpus_root / "index", encoder), encoder),
        AnswerConfig(abstain_threshold=0.0, max_sentences=1, relative_cutoff=0.0),
    )
    answer = one.ask("tomato plants sun watering stake fruit soil")
    check_answer(answer)
    assert len(answer.citations) == 1 and len(answer.sentences) == 1


def test_filters_restrict_the_evidence(service):
    answer = service.ask("Which satellites stay above the equator?", filters=Filters(article="gardens"))
    assert {r.chunk.article for r in answer.passages} == {"gardens"}
    assert all(c.passage_id.startswith("gardens") for c in answer.citations)
    nothing = service.ask("Which satellites stay above the equator?", filters=Filters(tag="no-such-tag"))
    assert nothing.passages == [] and nothing.abstained and nothing.citations == []


def test_gibberish_abstains_with_the_plain_message(corpus_root):
    encoder = HashingEncoder()
    strict = AnswerService(Retriever(load_index(corpus_root / "index", encoder), encoder))
    answer = strict.ask("zorbly quanfex trimble wozzit")
    assert answer.abstained and answer.answer == ABSTAIN_MESSAGE
    assert answer.citations == [] and answer.sentences == []
    check_answer(answer)


def test_empty_question_is_refused(service):
    with pytest.raises(QueryError, match="empty"):
        service.ask("   ")


# ------------------------------------------------------------------------------------ the generator seam


class ScriptedGenerator:
    """A stand-in generative model: returns a fixed text (or raises) and records what it was given."""

    def __init__(self, output: str | Exception):
        self.output = output
        self.calls: list[tuple[str, list[SearchResult], list[Citation]]] = []

    def generate(self, question: str, passages: Sequence[SearchResult], evidence: Sequence[Citation]) -> str:
        self.calls.append((question, list(passages), list(evidence)))
        if isinstance(self.output, Exception):
            raise self.output
        return self.output


QUESTION = "tomato plants sun watering stake fruit soil"


def with_generator(service: AnswerService, generator) -> AnswerService:
    return AnswerService(service.retriever, service.config, generator=generator)


def test_a_valid_generated_answer_is_used_and_renumbered(service):
    extractive = service.ask(QUESTION)
    assert len(extractive.citations) >= 2
    generator = ScriptedGenerator("Stake them [2]; they like sun [1].")
    answer = with_generator(service, generator).ask(QUESTION)

    (question, passages, evidence), = generator.calls
    assert question == QUESTION
    assert [r.chunk.id for r in passages] == [r.chunk.id for r in extractive.passages]
    assert [(c.n, c.quote) for c in evidence] == [(c.n, c.quote) for c in extractive.citations]

    assert answer.answer == "Stake them [1]; they like sun [2]."
    assert [c.quote for c in answer.citations] == [evidence[1].quote, evidence[0].quote]
    assert not answer.abstained
    check_answer(answer)


@pytest.mark.parametrize(
    "output",
    [RuntimeError("model crashed"), "An invented source [9].", "A claim with no citation at all.", ""],
    ids=["raises", "unknown-marker", "no-marker", "empty"],
)
def test_an_unusable_generator_falls_back_to_the_extractive_answer(service, output):
    extractive = service.ask(QUESTION)
    generator = ScriptedGenerator(output)
    answer = with_generator(service, generator).ask(QUESTION)
    assert len(generator.calls) == 1
    assert answer.answer == extractive.answer
    assert answer.citations == extractive.citations
    check_answer(answer)


def test_the_generator_is_not_asked_when_the_service_abstains(corpus_root):
    encoder = HashingEncoder()
    generator = ScriptedGenerator("Anything [1].")
    strict = AnswerService(Retriever(load_index(corpus_root / "index", encoder), encoder), generator=generator)
    answer = strict.ask("zorbly quanfex trimble wozzit")
    assert answer.abstained and generator.calls == []


# ------------------------------------------------------------------------------------ follow-up questions

ISS = "When was the International Space Station initiated?"


@pytest.mark.parametrize(
    "question",
    ["And who took part in it?", "What about its budget?", "Who built it?", "why?", "And the partners?"],
)
def test_follow_ups_need_the_previous_question(question):
    assert needs_context(question)
    assert contextual_query(question, ["When did the space race begin?", ISS]) == f"{ISS} {question}"


@pytest.mark.parametrize(
    "question",
    [
        "When was Sputnik launched?",
        "Which countries signed the Outer Space Treaty in 1967?",
        "What does the Moon Agreement say about national sovereignty?",
        "Who built the Apollo-Soyuz spacecraft?",  # a pronoun-free question with a name stands alone
    ],
)
def test_self_contained_questions_are_searched_as_asked(question):
    assert not needs_context(question)
    assert contextual_query(question, [ISS]) == question


def test_a_follow_up_without_history_is_searched_as_asked():
    assert contextual_query("And who took part in it?", []) == "And who took part in it?"


def test_retrieve_uses_the_most_recent_non_blank_history(service):
    retrieval = service.retrieve("And what about it?", history=["Where do roses grow?", ISS, "   ", ""])
    assert retrieval.query == f"{ISS} And what about it?"
    assert service.retrieve("When are roses pruned?", history=[ISS]).query == "When are roses pruned?"


def test_history_is_bounded_by_max_history(corpus_root, monkeypatch):
    # Today only the most recent turn shapes the query, so the bound is checked where the
    # history is handed on: the follow-up rewriting never sees more than max_history turns.
    import rag.answer.service

    seen: list[list[str]] = []
    real = rag.answer.service.contextual_query

    def spy(question, history):
        seen.append(list(history))
        return real(question, history)

    monkeypatch.setattr(rag.answer.service, "contextual_query", spy)
    encoder = HashingEncoder()
    retriever = Retriever(load_index(corpus_root / "index", encoder), encoder)
    long_history = [f"Question number {i} about tomatoes?" for i in range(1000)] + [ISS, "  "]
    bounded = AnswerService(retriever, AnswerConfig(max_history=2))
    assert bounded.retrieve("And who took part in it?", history=long_history).query == f"{ISS} And who took part in it?"
    assert seen[-1] == ["Question number 999 about tomatoes?", ISS]  # the two most recent non-blank turns
    forgetful = AnswerService(retriever, AnswerConfig(max_history=0))
    assert forgetful.retrieve("And who took part in it?", history=[ISS]).query == "And who took part in it?"
    assert seen[-1] == []


# ------------------------------------------------------------------------------------ configuration


def test_the_abstention_threshold_is_configurable(corpus_root, monkeypatch):
    from rag.service import answer_config
    from rag.settings import load_settings

    encoder = HashingEncoder()
    retriever = Retriever(load_index(corpus_root / "index", encoder), encoder)
    question = "How often does a satellite in low orbit circle the planet?"
    assert not AnswerService(retriever, answer_config(load_settings(abstain_threshold=0.0))).ask(question).abstained
    monkeypatch.setenv("RAG_ABSTAIN_THRESHOLD", "0.99")
    strict = AnswerService(retriever, answer_config(load_settings()))
    answer = strict.ask(question)
    assert answer.abstained and answer.citations == [] and answer.passages  # nearest passages still listed
