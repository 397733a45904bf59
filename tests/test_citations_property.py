"""Property tests of the citation invariants, over many questions and many corpora.

(a) generated questions, most of them quoting the corpus so that they are answered, against a
    real-model index of four articles, with filters that exclude some of them;
(b) generated articles (sections, list items, source brackets, unicode) with the fake encoder.
Whatever the question or the text, every quote is an exact slice of its passage and every
``[n]`` in the answer names a citation, numbered 1..n in order of first use; markers are read
with a pattern of the tests' own, so a lookalike such as ``[ 5 ]`` in an answer fails them.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from answer_checks import check_answer
from corpus import parse_markdown
from embeddings import HashingEncoder
from rag.answer.service import AnswerConfig, AnswerService, dangling_reference
from rag.answer.answerability import AnswerabilityModel
from rag.index import build_index, load_index
from rag.search.retrieve import MODES, Filters, Retriever

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def service(mixed_retriever) -> AnswerService:
    return AnswerService(mixed_retriever)


@pytest.fixture(scope="module")
def article_words(mixed_retriever) -> list[str]:
    words = {w for c in mixed_retriever.index.chunks for w in re.findall(r"[\w'’.-]+", c.text)}
    return sorted(words)


@pytest.fixture(scope="module")
def article_sentences(mixed_retriever) -> dict[str, list[list[str]]]:
    """Per article, the words of each sentence with at least six of them (questions are drawn from these)."""
    found: dict[str, list[list[str]]] = {}
    for chunk in mixed_retriever.index.chunks:
        for sentence in re.split(r"(?<=[.!?])\s+", chunk.text):
            words = sentence.split()
            if len(words) >= 6:
                found.setdefault(chunk.article, []).append(words)
    return found


# ------------------------------------------------------------------------------------ (a) a real index of four articles

OTHER_WORDS = ["sourdough", "penalty", "recursion", "banana", "who", "what", "when", "why", "it", "and", "the"]
#: Filters and the articles each allows, read off the articles' front matter by hand; every one
#: excludes at least one of the four articles (the last excludes all).
FILTERS = [
    ({"article": "space-diplomacy"}, {"space-diplomacy"}),
    ({"article": ["aardvarks", "Bicycles"]}, {"aardvarks", "bicycles"}),
    ({"category": "Law"}, {"space-diplomacy"}),
    ({"category": "animals"}, {"aardvarks"}),
    ({"tag": "Europe"}, {"cathedrals"}),
    ({"tag": ["space law", "vehicles"]}, {"space-diplomacy", "bicycles"}),
    ({"article": "cathedrals", "tag": "space law"}, set()),
]
MIN_ANSWERED = 0.7  # share of questions quoting an allowed article that must be answered (measured: 1.0)


@st.composite
def questions(draw, vocabulary: list[str]) -> str:
    words = draw(
        st.lists(
            st.one_of(
                st.sampled_from(vocabulary),
                st.sampled_from(OTHER_WORDS),
                st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "Zs")), min_size=1, max_size=12),
            ),
            min_size=1,
            max_size=14,
        )
    )
    question = " ".join(words).strip() or "space"
    return question + draw(st.sampled_from(["", "?", " [2]?", " [ 5 ]?", "!"]))


@st.composite
def quoting_questions(draw, sentences: list[list[str]]) -> str:
    """A question made of a run of words from one sentence of the corpus: the corpus answers it."""
    words = draw(st.sampled_from(sentences))
    size = draw(st.integers(5, min(12, len(words))))
    start = draw(st.integers(0, len(words) - size))
    lead = draw(st.sampled_from(["", "Tell me: ", "Is it true that "]))
    return lead + " ".join(words[start : start + size]) + "?"


def test_invariants_hold_for_any_question_on_a_real_index(service, article_words, article_sentences):
    index = service.index
    quoting_answered: list[bool] = []

    def ask_and_check(question, history, top_k, mode, spec, allowed):
        filters = Filters.from_mapping(spec) if spec else None
        answer = service.ask(question, top_k=top_k, mode=mode, history=history, filters=filters)
        check_answer(answer)
        assert len(answer.passages) <= top_k
        assert len(answer.sentences) <= service.config.max_sentences
        if allowed is not None:
            assert {r.chunk.article for r in answer.passages} <= allowed, (spec, [r.chunk.article for r in answer.passages])
            cited = {index.chunks[index.row_of[c.passage_id]].article for c in answer.citations}
            assert cited <= allowed, (spec, cited)
        return answer

    @settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def check(data):
        spec, allowed = data.draw(st.one_of(st.just((None, None)), st.sampled_from(FILTERS)), label="filters")
        top_k = data.draw(st.integers(1, 12), label="top_k")
        mode = data.draw(st.sampled_from(MODES), label="mode")
        # Each example asks two questions: anything at all, with a history of anything ...
        anything = data.draw(questions(article_words), label="question")
        history = data.draw(st.lists(questions(article_words), max_size=2), label="history")
        ask_and_check(anything, history, top_k, mode, spec, allowed)
        # ... and one quoting an article the filter lets through, which the corpus answers.
        sources = [s for a, found in article_sentences.items() if allowed is None or a in allowed for s in found]
        if sources:
            quoting = data.draw(quoting_questions(sources), label="quoting question")
            answer = ask_and_check(quoting, [], top_k, mode, spec, allowed)
            quoting_answered.append(not answer.abstained)

    check()
    answered = sum(quoting_answered)
    assert len(quoting_answered) >= 25, "too few examples quoted the corpus to judge the answered share"
    assert answered >= MIN_ANSWERED * len(quoting_answered), (
        f"only {answered} of {len(quoting_answered)} questions quoting the corpus were answered"
    )


# ------------------------------------------------------------------------------------ (b) generated corpora

WORDS = [
    "orbit", "treaty", "station", "moon", "launch", "agency", "satellite", "mission", "law", "garden",
    "Türkiye", "café", "naïve", "über", "Ελλάδα", "東京", "Москва", "1957", "3.5", "U.S.", "e.g.", "Dr.",
    "co-operation", "state's", "“quoted”", "(aside)", "$450", "—",
]
BRACKETS = ["[1]", "[3]", "[12]", "[1[2]]", "[[4]]", "[9[4]]", "[ 5 ]", "[a]", "［6］", "[2, 7]", "[4–6]"]


@st.composite
def sentences(draw) -> str:
    words = draw(st.lists(st.sampled_from(WORDS), min_size=2, max_size=14))
    for _ in range(draw(st.integers(0, 2))):
        words.insert(draw(st.integers(0, len(words))), draw(st.sampled_from(BRACKETS)))
    text = " ".join(words)
    return text[:1].upper() + text[1:] + draw(st.sampled_from([".", "?", "!", ":", ". [7]", "[2]."]))


@st.composite
def blocks(draw) -> str:
    kind = draw(st.sampled_from(["paragraph", "numbered", "bullets"]))
    if kind == "paragraph":
        return " ".join(draw(st.lists(sentences(), min_size=1, max_size=5)))
    items = draw(st.lists(sentences(), min_size=1, max_size=4))
    if kind == "numbered":
        label = draw(st.sampled_from(WORDS))
        return "\n".join(f"{i}. **{label}:** {item}" for i, item in enumerate(items, start=1))
    return "\n".join(f"- {item}" for item in items)


@st.composite
def articles(draw, slug: str) -> str:
    title = " ".join(draw(st.lists(st.sampled_from(WORDS[:10]), min_size=1, max_size=3))).title()
    parts = [f"---\ntitle: {title}\nslug: {slug}\nurl: /wiki/{slug}\ncategories: [Cat{slug[-1]}]\n---", f"# {title}"]
    parts.extend(draw(st.lists(blocks(), min_size=0, max_size=2)))
    for _ in range(draw(st.integers(1, 3))):
        level = draw(st.sampled_from(["##", "###"]))
        parts.append(f"{level} " + " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=4))))
        parts.extend(draw(st.lists(blocks(), min_size=1, max_size=3)))
    return "\n\n".join(parts) + "\n"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_invariants_hold_on_generated_corpora(data):
    slugs = data.draw(st.lists(st.sampled_from(["a1", "b2", "c3"]), min_size=1, max_size=3, unique=True), label="slugs")
    parsed = [parse_markdown(data.draw(articles(slug), label=slug), fallback_slug=slug) for slug in slugs]
    encoder = HashingEncoder()
    with tempfile.TemporaryDirectory() as tmp:
        build_index(parsed, Path(tmp) / "index", encoder)
        retriever = Retriever(load_index(Path(tmp) / "index", encoder), encoder)
        # Always answering exercises composition on every draw; the default config exercises abstention.
        eager = AnswerService(
            retriever, AnswerConfig(abstain_threshold=-1.0, min_known_words=0.0, answerability=AnswerabilityModel(threshold=0.0))
        )
        default = AnswerService(retriever)
        for _ in range(3):
            question = " ".join(data.draw(st.lists(st.sampled_from(WORDS + BRACKETS), min_size=1, max_size=8), label="q"))
            top_k = data.draw(st.integers(1, 8), label="top_k")
            mode = data.draw(st.sampled_from(MODES), label="mode")
            answer = eager.ask(question, top_k=top_k, mode=mode)
            check_answer(answer)
            if answer.passages and not dangling_reference(question):  # bm25 finds nothing for a question of brackets only
                assert not answer.abstained and answer.citations
            check_answer(default.ask(question, top_k=top_k, mode=mode))
