"""The search mode and the filters are one definition each, shared by retrieval, the API and the CLI;
retrieval and answering are modules that import one way."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import pytest

from api.chat import ChatCompletionRequest
from api.schemas import AskRequest
from core.errors import QueryError
from rag.search.filters import Filters
from rag.search.modes import MODES, Mode, check_mode

ROOT = Path(__file__).resolve().parent.parent


def test_every_request_declares_the_one_mode_type():
    assert MODES == ("hybrid", "dense", "bm25") == get_args(Mode)
    for model in (AskRequest, ChatCompletionRequest):
        assert get_args(model.model_fields["mode"].annotation) == MODES, model


def test_an_unknown_mode_is_refused_with_the_modes_listed():
    assert check_mode("bm25") == "bm25"
    with pytest.raises(QueryError, match="^unknown mode 'fuzzy'; choose one of: hybrid, dense, bm25$"):
        check_mode("fuzzy")


def test_the_filters_of_a_request_are_the_filters_retrieval_reads():
    body = AskRequest(question="When?", filters={"tag": ["Space Law", " "], "language": "French", "category": "LAW"})
    assert type(body.filters) is Filters
    assert body.filters.tags == {"space law"}  # blank values drop out, case folds
    assert body.filters.categories == {"law"}
    assert body.filters.languages == {"fr"}  # language names become ISO 639-1 codes
    assert body.filters.articles == frozenset()
    assert body.filters and not AskRequest(question="When?").filters


def test_loose_input_gives_the_same_filters_as_a_request():
    loose = Filters.from_mapping({"tag": "Space Law", "article": ("Space-Diplomacy",), "language": None})
    strict = Filters(tag="space law", article=["space-diplomacy"])
    assert (loose.articles, loose.categories, loose.tags, loose.languages) == (
        strict.articles, strict.categories, strict.tags, strict.languages
    )
    assert not Filters.from_mapping({"tag": "   "}) and not Filters.from_mapping(None)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"colour": "red"}, "unknown filter 'colour'; filters are: article, category, tag, language"),
        ({"tag": 5}, "filter 'tag' must be a string or a list of strings"),
        ({"article": ["a", 3]}, "filter 'article' must be a string or a list of strings"),
    ],
)
def test_loose_input_that_is_not_a_filter_says_what_filters_are(raw, message):
    with pytest.raises(QueryError) as caught:
        Filters.from_mapping(raw)
    assert str(caught.value) == message


#: The retrieval and answer modules (paths under rag/): each imports only modules listed before it (and
#: modules outside this list). The rooms' own rules are in tests/test_architecture.py; this is the order within.
RETRIEVAL_AND_ANSWER = (
    "answer.markers", "faults", "search.modes", "search.fusion", "text.lexical", "text.words", "text.units",
    "search.filters", "answer.question", "answer.answerability", "search.retrieve", "answer.config",
    "answer.candidates", "answer.unit_cache", "answer.judge", "answer.abstention", "answer.compose",
    "answer.service", "service",
)


def _rag_imports(module: str) -> set[str]:
    """Modules of rag/ (dotted, without ``rag.``) that ``rag/<module>.py`` imports anywhere (inside functions too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(ROOT.joinpath("rag", *module.split(".")).with_suffix(".py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rag."):
            found.add(node.module.removeprefix("rag."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("rag.") for a in node.names if a.name.startswith("rag."))
    return found


def test_retrieval_and_answer_modules_import_one_way():
    for position, module in enumerate(RETRIEVAL_AND_ANSWER):
        later = set(RETRIEVAL_AND_ANSWER[position:])
        assert not _rag_imports(module) & later, f"rag.{module} imports {sorted(_rag_imports(module) & later)}"
