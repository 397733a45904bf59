"""Words as every stage reads them: the plain words of a text, and its content words (no stop or
function words, no numbers), which the index keeps vectors for and the answer steps weigh.

Split out of ``rag/answer/question.py`` so that building an index (which stores each text's content
words) needs nothing of the answer room. Pure functions over text.
"""

from __future__ import annotations

import re

from rag.text.lexical import STOPWORDS

#: A word as a question or a passage writes it (inner apostrophes, dots and hyphens kept).
WORD_RE = re.compile(r"[\w'’.-]*\w", re.UNICODE)
_PLAIN_WORD_RE = re.compile(r"[\w'’]+", re.UNICODE)

# Function words that bm25's stop list keeps but that never carry a question's focus.
FUNCTION_WORDS = frozenset(
    """
    who whom whose what which when where why how is are was were be been being do does did done can could will
    would should shall has have had may might must its it it's their them they he she his her him we our you your
    i me my this that these those there here many much some any each every all both either neither other another
    such very more most less least one ones thing things something anything did doing get got make made
    from under after before about into onto over with within without between among through during against
    toward towards upon via per like near since until off out up down than then too also just only
    """.split()
)


def content_words(text: str) -> tuple[str, ...]:
    """Distinct case-folded words of ``text`` that can carry meaning (no stop or function words, no numbers)."""
    return tuple(
        dict.fromkeys(w for w in (m.casefold() for m in WORD_RE.findall(text)) if w not in STOPWORDS and w not in FUNCTION_WORDS and not w.isdigit())
    )


def plain_words(text: str) -> list[str]:
    """The words of ``text`` as written (letters, digits and apostrophes)."""
    return _PLAIN_WORD_RE.findall(text)
