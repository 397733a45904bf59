"""Sentence spans: exact offsets, abbreviations and initials, list lines, and coverage properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.text.units import split_sentences


def sentences(text: str, start: int = 0, end: int | None = None) -> list[str]:
    spans = split_sentences(text, start, end)
    for s, e in spans:
        piece = text[s:e]
        assert piece and piece == piece.strip(), (s, e, piece)
    return [text[s:e] for s, e in spans]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("It launched in 1957. The race began.", ["It launched in 1957.", "The race began."]),
        (
            "The rivalry between the U.S. and the Soviet Union grew. NASA followed.",
            ["The rivalry between the U.S. and the Soviet Union grew.", "NASA followed."],
        ),
        ("The U.S. Navy sailed. It returned.", ["The U.S. Navy sailed.", "It returned."]),
        (
            "Cross, Mai’a K. Davis, and Saadia M. Pekkanen wrote it. Then came more.",
            ["Cross, Mai’a K. Davis, and Saadia M. Pekkanen wrote it.", "Then came more."],
        ),
        ("Some bodies, e.g. Mars and the Moon, matter. Others not.", ["Some bodies, e.g. Mars and the Moon, matter.", "Others not."]),
        ("Ask Dr. Jones. She knows.", ["Ask Dr. Jones.", "She knows."]),
        ("Did it work? Yes! Really.", ["Did it work?", "Yes!", "Really."]),
        ('He said "stop." Then left.', ['He said "stop."', "Then left."]),
        ("Ends with a year 1957. 1958 was next.", ["Ends with a year 1957.", "1958 was next."]),
        ("lower case after a stop. does not split", ["lower case after a stop. does not split"]),
        ("version 2.5 is out. Good", ["version 2.5 is out.", "Good"]),
        ("  padded sentence.   Next one.  ", ["padded sentence.", "Next one."]),
        ("", []),
        ("  \n \n\t", []),
    ],
)
def test_examples(text, expected):
    assert sentences(text) == expected


def test_list_lines_are_separate_sentences():
    text = (
        "It has four pillars:\n\n"
        "1. Space Law: International treaties. Regulatory frameworks too.\n"
        "2. Security Policies: Preventing military competition\n"
        "3. 1967 Outer Space Treaty: The first agreement."
    )
    assert sentences(text) == [
        "It has four pillars:",
        "1. Space Law: International treaties.",
        "Regulatory frameworks too.",
        "2. Security Policies: Preventing military competition",
        "3. 1967 Outer Space Treaty: The first agreement.",
    ]


def test_bundled_reference_list_keeps_initials(bundled_article):
    refs = bundled_article.sections[-1]
    found = sentences(bundled_article.text, refs.start, refs.end)
    assert "2. Cross, Mai’a K. Davis, and Saadia M. Pekkanen." in found
    assert not any(s.endswith(" K.") or s.endswith(" M.") for s in found)


def test_bundled_cold_war_sentences(bundled_article):
    section = bundled_article.sections[3]
    found = sentences(bundled_article.text, section.start, section.end)
    assert found[0] == "The launch of the Sputnik-1 satellite by the Soviet Union in 1957 marked the beginning of the space race."
    assert found[-1] == "2. 1972 Apollo-Soyuz Test Project: The first joint space mission between the U.S. and the Soviet Union."
    assert len(found) == 6


def test_spans_are_absolute_offsets_of_a_sub_range():
    text = "Ignore this. Keep one. Keep two. Ignore too."
    start = text.index("Keep one")
    end = text.index(" Ignore too")
    spans = split_sentences(text, start, end)
    assert [text[s:e] for s, e in spans] == ["Keep one.", "Keep two."]
    assert spans[0][0] == start


# ------------------------------------------------------------------------ properties

_WORDS = st.sampled_from(
    ["the", "U.S.", "e.g.", "K.", "Dr.", "1957.", "Mars", "space", "treaty", "ISS", "(ESA)", '"quoted."', "etc.", "2.5", "x"]
)
_PUNCT = st.sampled_from([".", "!", "?", "...", ".\"", ".)", ",", ":", ";", ""])
_SPACE = st.sampled_from([" ", " ", " ", "  ", "\n", "\n\n", "\t", "\u00a0"])


@st.composite
def prose(draw) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 40))):
        parts.append(draw(_WORDS) + draw(_PUNCT) + draw(_SPACE))
    return draw(_SPACE) + "".join(parts)


def _check_spans(text: str, start: int, end: int) -> None:
    spans = split_sentences(text, start, end)
    previous = start
    for s, e in spans:
        assert previous <= s < e <= end  # ordered, non-overlapping, inside the range
        piece = text[s:e]
        assert piece == piece.strip() and piece
        previous = e
    covered = set()
    for s, e in spans:
        covered.update(range(s, e))
    for i in range(start, end):
        if not text[i].isspace():
            assert i in covered, (i, text[i], text)
    # a span never crosses a line break: lines are hard boundaries
    assert all("\n" not in text[s:e] for s, e in spans)


@settings(max_examples=100, deadline=None)
@given(prose(), st.data())
def test_spans_ordered_inside_range_and_cover_all_text(text, data):
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    _check_spans(text, start, end)
    _check_spans(text, 0, len(text))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_spans_cover_arbitrary_unicode(text):
    _check_spans(text, 0, len(text))
