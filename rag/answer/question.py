"""What a question asks for: its focus (names, numbers, rare content words), the kind of answer it
expects (a date, a quantity, an agent, a yes or no), its parts when it asks two things at once, and
whether it leans on the question before it (a follow-up).

Pure functions over text. Answerability (rag/answer/answerability.py) holds the evidence against this.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.text.lexical import STOPWORDS, analyze, fold
from rag.answer.markers import strip_markers
from rag.text.words import FUNCTION_WORDS, WORD_RE, plain_words

# Words that frame a question without being what it asks about ("according to the article, ...").
FRAME_WORDS = frozenset(
    """
    according article articles text document documents corpus passage passages source sources mention mentions
    mentioned say says said describe described describes explain explains explained tell name named list listed
    give given kind kinds type types example examples main key role way ways sort mean means meaning
    refer refers referred called call considered consider regarded regard also exactly specifically actually
    """.split()
)
_FRAME_TERMS = frozenset(t for w in FRAME_WORDS for t in analyze(w))

# Capitalised words that start a question without naming anything.
_QUESTION_OPENERS = frozenset(
    """
    who whom whose what which when where why how is are was were do does did can could will would should shall
    has have had may might must in on at for from by to according name list give tell describe explain
    and but so then please
    """.split()
)
_CONNECTORS = frozenset({"of", "for", "the", "and", "on", "de", "du", "der", "la", "le", "von", "van", "&", "-"})
_AUXILIARIES = frozenset("is are was were do does did can could will would should shall has have had may might must".split())

DATE, QUANTITY, AGENT, PLACE, REASON, YESNO = "date", "quantity", "agent", "place", "reason", "yes/no"

_EXPECTS = (
    (DATE, re.compile(r"^\s*(?:since\s+)?when\b|\b(?:what|which)\s+(?:year|years|date|day|month|decade|century)\b|\bhow\s+long\s+ago\b", re.I)),
    (
        QUANTITY,
        re.compile(
            r"\bhow\s+(?:many|much|large|big|long|far|old|high|fast|heavy)\b"
            r"|\bwhat\s+(?:is|was|are|were)\s+the\s+(?:number|amount|cost|budget|price|value|size|share|percentage|total|population|mass|length)\b"
            r"|\bwhat\s+(?:number|amount|percentage|share|proportion|fraction)\b"
            r"|\b(?:budget|cost|price|population|percentage|revenue|funding|salary|distance|speed|mass|weight)s?\b",
            re.I,
        ),
    ),
    (AGENT, re.compile(r"^\s*(?:who|whom|whose)\b|\b(?:by\s+whom|who)\b", re.I)),
    (PLACE, re.compile(r"^\s*where\b|\bin\s+(?:which|what)\s+(?:city|country|place|location)\b", re.I)),
    (REASON, re.compile(r"^\s*why\b|\bfor\s+what\s+reason\b|\bwhat\s+(?:was|is|were|are)\s+the\s+reasons?\b", re.I)),
)

_HEAD_RE = re.compile(r"\b(?:which|what|how\s+many|how\s+much)\s+(?:of\s+the\s+)?([A-Za-z][\w-]*)", re.I)
_NOT_HEADS = frozenset("is are was were do does did can could will would should has have had of kind kinds type types sort".split())

_SPLIT_RE = re.compile(
    r"\?\s+(?=\S)|[;,]?\s+and\s+(?=(?:who|whom|whose|what|which|when|where|why|how|is|are|was|were|does|did|do|can)\b)",
    re.I,
)


@dataclass(frozen=True)
class Focus:
    """One thing the question is about: a name, a number or a content word, as written and as terms."""

    text: str  # as the question writes it ("Japan", "astronauts")
    terms: tuple[str, ...]  # analysed terms (see rag.text.lexical.analyze)
    kind: str  # "name", "number" or "word"


@dataclass(frozen=True)
class QuestionAnalysis:
    question: str
    expects: str | None  # DATE, QUANTITY, AGENT, PLACE, YESNO or None
    focus: tuple[Focus, ...]
    head: str = ""  # the kind of thing asked for in "which court ...", "what rocket ...", "how many states ..."

    @property
    def names(self) -> tuple[Focus, ...]:
        return tuple(f for f in self.focus if f.kind in ("name", "number"))

    @property
    def words(self) -> tuple[Focus, ...]:
        return tuple(f for f in self.focus if f.kind == "word")

    @property
    def factoid(self) -> bool:
        """Whether a short span can answer it: a date, quantity, agent or place, or a thing named by its kind
        ("which court ..."); not an explanation, a definition or a yes or no."""
        return self.expects in (DATE, QUANTITY, AGENT, PLACE) or bool(self.head)


def expected_answer(question: str) -> str | None:
    """The kind of answer a question asks for, from its wording (None when any statement may answer)."""
    for kind, pattern in _EXPECTS:
        if pattern.search(question):
            return kind
    first = WORD_RE.search(question)
    if first and first.group().casefold() in _AUXILIARIES:
        return YESNO
    return None


def _names(question: str) -> list[tuple[int, int]]:
    """Spans of names: runs of capitalised words or acronyms ("Outer Space Treaty", "NASA", "Türkiye's")."""
    words = list(WORD_RE.finditer(question))
    spans: list[tuple[int, int]] = []
    run: list[re.Match] = []

    def close() -> None:
        # "the US and Russia" are two names; "Institute for Foreign Affairs and Trade" is one (an "of" or
        # "for" before the "and" makes it an organisation's name)
        pieces: list[list[re.Match]] = [[]]
        for m in run:
            word = m.group().casefold()
            if word == "and" and not any(w.group().casefold() in ("of", "for") for w in pieces[-1]):
                pieces.append([])
            else:
                pieces[-1].append(m)
        for piece in pieces:
            while piece and piece[0].group().casefold() in _CONNECTORS:
                piece.pop(0)
            while piece and piece[-1].group().casefold() in _CONNECTORS:
                piece.pop()
            if piece:
                spans.append((piece[0].start(), piece[-1].end()))
        run.clear()

    for i, m in enumerate(words):
        word = m.group()
        capital = word[:1].isupper() or (any(c.isupper() for c in word[1:]) and not word.islower())
        # a question's first word is capitalised anyway: it names something only when written as an acronym
        opener = i == 0 and (word.casefold() in _QUESTION_OPENERS or not any(c.isupper() for c in word[1:]))
        if run and run[-1].group().isdigit() and not word.isdigit():
            close()  # a number ends a name: "Iridium 33 and Kosmos 2251" are two
        if capital and not opener and not (word.casefold() in STOPWORDS and not word.isupper()):
            run.append(m)
        elif run and word.isdigit() and run[-1].group().casefold() not in _CONNECTORS:
            run.append(m)  # "Kosmos 954", "Apollo 11"
        elif run and word.casefold() in _CONNECTORS:
            run.append(m)
        else:
            close()
    close()
    return spans


def analyze_question(question: str) -> QuestionAnalysis:
    """Focus and expected answer of ``question``."""
    focus: list[Focus] = []
    taken: set[str] = set()
    covered = [False] * len(question)
    for start, end in _names(question):
        text = strip_markers(question[start:end]).strip()  # "Dr. [1] $450": brackets are not a name
        text = text[:-2] if text.endswith(("'s", "’s")) else text
        terms = tuple(t for t in analyze(text) if t not in _FRAME_TERMS)
        if terms:
            kind = "number" if all(t.isdigit() for t in terms) else "name"
            focus.append(Focus(text, terms, kind))
            taken.update(terms)
        for i in range(start, end):
            covered[i] = True
    for m in WORD_RE.finditer(question):
        if covered[m.start()]:
            continue
        word = m.group().strip(".-'’")
        if not word or fold(word) in STOPWORDS or fold(word) in FUNCTION_WORDS:
            continue
        terms = tuple(t for t in analyze(word) if t not in _FRAME_TERMS and t not in taken)
        if not terms:
            continue
        taken.update(terms)
        focus.append(Focus(word, terms, "number" if word.isdigit() else "word"))
    head = ""
    if (m := _HEAD_RE.search(question)) and m.group(1).casefold() not in _NOT_HEADS | STOPWORDS:
        word = m.group(1).casefold()
        head = next((f.text for f in focus if f.kind == "word" and f.text.casefold() == word), "")
    return QuestionAnalysis(question, expected_answer(question), tuple(focus), head)


def question_parts(question: str) -> list[str]:
    """The separate questions in one ("When was NASA founded and who leads it?" -> two), else ``[question]``."""
    pieces = [p.strip(" ,;?") for p in _SPLIT_RE.split(question.strip())]
    pieces = [p for p in pieces if len(analyze(p)) >= 1]
    return pieces if len(pieces) > 1 else [question]


# ------------------------------------------------------------------ follow-ups

_CONNECTIVE_RE = re.compile(r"^\s*(?:and|but|also|so|then|what about|how about|and what about)\b", re.I)
_ANAPHORA = frozenset(
    "it its it's they them their theirs this that these those he him his she her there such former latter".split()
)


def _names_after_first(words: list[str]) -> list[str]:
    return [w for w in words[1:] if w[:1].isupper() or (len(w) > 1 and w.isupper())]


def needs_context(question: str) -> bool:
    """Whether a question leans on the conversation before it ("And who took part in it?")."""
    if _CONNECTIVE_RE.match(question):
        return True
    words = plain_words(question)
    if not words:
        return False
    content = analyze(question)
    names = _names_after_first(words)
    anaphoric = any(w.casefold() in _ANAPHORA for w in words)
    return (anaphoric and not names and len(content) <= 4) or len(content) <= 1


def contextual_query(question: str, history: Sequence[str]) -> str:
    """The text to search with: the question, preceded by the last question when it depends on it."""
    if history and needs_context(question):
        return f"{history[-1].strip()} {question.strip()}"
    return question


def dangling_reference(question: str) -> str | None:
    """The pronoun a question leans on when it cannot stand alone ("And who took part in it?" -> "it")."""
    words = plain_words(question)
    if not words:
        return None
    content = analyze(question)
    names = _names_after_first(words)
    pronouns = [w for w in words if w.casefold() in _ANAPHORA - {"there", "this", "that", "these", "those", "such"}]
    if names or not pronouns:
        return None
    if _CONNECTIVE_RE.match(question) or len(content) <= 3:
        return pronouns[-1]
    return None
