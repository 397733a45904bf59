"""Whether retrieved evidence answers a question, and if not, what it leaves out.

A passage can be about a question's topic without answering it ("When did Japan launch its first
satellite?" against the Sputnik sentence). For every candidate answer unit this module measures
what the question asks against what the unit holds:

* the question's names and numbers must appear in the unit's passage (its text, breadcrumb or title,
  directly or by a known alias: "U.S." for "United States", an acronym the corpus defines);
* the share of its content words (IDF-weighted) that the unit or its heading contains;
* the kind of answer it expects: a year for "when", a quantity for "how many", a name for "who";
* the unit's similarity to the question, which lets paraphrases through.

A logistic combination of these, fitted on labelled questions (``rag eval fit-answerability``),
gives the probability that the unit answers the question. When no unit reaches the threshold the
service abstains and says which part of the question the passages do not contain.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from rag.lexical import analyze
from rag.question import AGENT, DATE, PLACE, QUANTITY, YESNO, Focus, QuestionAnalysis

#: Names written differently in questions and documents.
ALIASES: tuple[tuple[str, ...], ...] = (
    ("United States", "U.S.", "US", "USA", "America", "American", "Americans"),
    ("Soviet Union", "USSR", "Soviet", "Soviets"),
    ("Russia", "Russian", "Russian Federation"),
    ("United Kingdom", "UK", "Britain", "British"),
    ("United Nations", "UN"),
    ("European Union", "EU"),
    ("European Space Agency", "ESA"),
    ("Türkiye", "Turkey", "Turkish"),
    ("China", "Chinese", "PRC"),
    ("Japan", "Japanese"),
    ("India", "Indian"),
    ("International Space Station", "ISS"),
    ("Outer Space Treaty", "OST"),
    ("National Aeronautics and Space Administration", "NASA"),
    ("United Nations Office for Outer Space Affairs", "UNOOSA"),
    ("Committee on the Peaceful Uses of Outer Space", "COPUOS"),
    ("Moon", "lunar"),
)

_ACRONYM_RE = re.compile(r"((?:[A-Z][\w’'-]*\s+(?:(?:of|for|the|and|on)\s+)*){1,8})\(([A-Z][A-Za-z]{1,9})\)")
_YEAR_RE = re.compile(r"\b(?:1[0-9]{3}|20[0-9]{2})s?\b|\b(?:January|February|March|April|May|June|July|August|September|October|November|December)\b|\bcentury\b|\bdecades?\b", re.I)
_QUANTITY_RE = re.compile(
    r"(?<![\w.])\d[\d,.]*(?![\w])|[$€£%]|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|"
    r"hundred|hundreds|thousand|thousands|million|millions|billion|billions|trillion|dozen|dozens|percent|half|several|majority)\b",
    re.I,
)
_NAME_RE = re.compile(r"(?<=\S\s)[A-Z][\w’'-]+|\b[A-Z]{2,}\b")
_AGENT_WORDS = re.compile(
    r"\b(?:states?|countries|country|nations?|agenc(?:y|ies)|organi[sz]ations?|compan(?:y|ies)|firms?|actors?|governments?|"
    r"people|persons?|cosmonauts?|astronauts?|scientists?|authors?|members?|parties|committee|council|office|union|institute)\b",
    re.I,
)


@lru_cache(maxsize=1)
def _alias_table() -> dict[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    table: dict[tuple[str, ...], tuple[tuple[str, ...], ...]] = {}
    for group in ALIASES:
        forms = tuple(tuple(analyze(f)) for f in group)
        for form in forms:
            if form:
                table[form] = tuple(f for f in forms if f)
    return table


def defined_acronyms(texts: Sequence[str]) -> dict[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """Acronyms the documents define ("Turkish Space Agency (TUA)"): each form to both forms, as terms."""
    out: dict[tuple[str, ...], tuple[tuple[str, ...], ...]] = {}
    for text in texts:
        for m in _ACRONYM_RE.finditer(text):
            long, short = tuple(analyze(m.group(1))), tuple(analyze(m.group(2)))
            if long and short:
                out[long] = out[short] = (long, short)
    return out


def _forms(focus: Focus, acronyms: dict) -> tuple[tuple[str, ...], ...]:
    forms = {focus.terms}
    for table in (_alias_table(), acronyms):
        forms.update(table.get(focus.terms, ()))
    return tuple(forms)


def present(focus: Focus, terms: set[str], acronyms: dict) -> bool:
    """Whether every term of ``focus`` (or of one of its aliases) is among ``terms``."""
    return any(all(t in terms for t in form) for form in _forms(focus, acronyms))


def answer_type_present(expects: str | None, text: str, question_names: Sequence[str] = ()) -> bool:
    """Whether ``text`` holds the kind of answer the question expects (always, when it expects none)."""
    if expects == DATE:
        return bool(_YEAR_RE.search(text))
    if expects == QUANTITY:
        return bool(_QUANTITY_RE.search(text))
    if expects in (AGENT, PLACE):
        asked = {n.casefold() for n in question_names}
        names = [m.group() for m in _NAME_RE.finditer(text) if m.group().casefold() not in asked]
        return bool(names) or (expects == AGENT and bool(_AGENT_WORDS.search(text)))
    return True


@dataclass(frozen=True)
class Evidence:
    """One candidate answer unit, as the answerability check sees it."""

    text: str  # the unit
    unit_terms: frozenset[str]  # terms of the unit and its section heading
    passage_terms: frozenset[str]  # terms of the whole passage, its breadcrumb and its title
    cosine: float  # similarity of the unit to the question
    passage_cosine: float  # similarity of its passage to the question


@dataclass(frozen=True)
class AnswerabilityModel:
    """Logistic weights over a unit's features; fitted by ``rag eval fit-answerability``."""

    bias: float = -6.0
    cosine: float = 6.0
    passage_cosine: float = 2.0
    word_cover: float = 4.0
    names: float = 2.5
    answer_type: float = 1.0
    threshold: float = 0.5

    FEATURES = ("cosine", "passage_cosine", "word_cover", "names", "answer_type")

    def probability(self, features: np.ndarray) -> np.ndarray:
        w = np.array([getattr(self, f) for f in self.FEATURES])
        z = self.bias + features @ w
        return 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class Verdict:
    answerable: bool
    probability: float  # of the best unit
    best: int | None  # index of the unit that answers best
    probabilities: np.ndarray  # per unit
    names_ok: np.ndarray  # per unit: the question's names are in its passage
    reason: str | None = None  # when not answerable: "not_mentioned" or "not_answered"
    missing: tuple[str, ...] = ()
    mentioned: tuple[str, ...] = ()


def features(question: QuestionAnalysis, evidence: Sequence[Evidence], idf: dict[str, float], acronyms: dict) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix (one row per unit, columns as ``AnswerabilityModel.FEATURES``) and per-unit name check."""
    names = question.names
    words = question.words
    word_weight = np.array([max(idf.get(t, 0.0) for t in f.terms) for f in words]) if words else np.zeros(0)
    total = float(word_weight.sum())
    rows = []
    names_ok = []
    for ev in evidence:
        in_passage = all(present(n, ev.passage_terms, acronyms) for n in names)
        covered = np.array([present(f, ev.unit_terms, acronyms) for f in words], dtype=float)
        cover = float(covered @ word_weight) / total if total else 1.0
        typed = answer_type_present(question.expects, ev.text, [n.text for n in names])
        rows.append([ev.cosine, ev.passage_cosine, cover, float(in_passage), float(typed)])
        names_ok.append(in_passage)
    return np.array(rows, dtype=float).reshape(len(evidence), 5), np.array(names_ok, dtype=bool)


def judge(question: QuestionAnalysis, evidence: Sequence[Evidence], idf: dict[str, float], acronyms: dict, model: AnswerabilityModel) -> Verdict:
    """Whether any unit answers ``question``; if none does, what the passages leave out."""
    x, names_ok = features(question, evidence, idf, acronyms)
    p = model.probability(x) if len(x) else np.zeros(0)
    best = int(np.argmax(p)) if len(p) else None
    top = float(p[best]) if best is not None else 0.0
    if best is not None and top >= model.threshold:
        return Verdict(True, top, best, p, names_ok)
    reason, missing, mentioned = explain(question, evidence, idf, acronyms, best)
    return Verdict(False, top, best, p, names_ok, reason, missing, mentioned)


def explain(question: QuestionAnalysis, evidence: Sequence[Evidence], idf: dict[str, float], acronyms: dict, best: int | None):
    """Reason, missing focus (as written in the question) and focus the passages do mention."""
    everywhere: set[str] = set()
    for ev in evidence:
        everywhere |= ev.passage_terms
    absent = [f for f in question.focus if not present(f, everywhere, acronyms)]
    mentioned = tuple(f.text for f in question.names if f not in absent)
    if any(f.kind != "word" for f in absent):
        return "not_mentioned", tuple(f.text for f in absent if f.kind != "word"), mentioned
    rare = [f for f in absent if max(idf.get(t, math.inf) for t in f.terms) >= _RARE_IDF]
    if rare and not mentioned:
        return "not_mentioned", tuple(f.text for f in rare), mentioned
    unit_terms = evidence[best].unit_terms if best is not None else frozenset()
    missing = tuple(f.text for f in question.words if not present(f, unit_terms, acronyms)) or tuple(f.text for f in absent)
    return "not_answered", missing, mentioned


_RARE_IDF = 1.0  # a word absent from the retrieved passages counts as "not mentioned" when it is at least this rare


_WH_CLAUSE = {DATE: "when", QUANTITY: "how many", AGENT: "who", PLACE: "where"}
_DO_SUPPORT = re.compile(r"^\s*(?:when|where|who|how\s+\w+|what\s+\w+|which\s+\w+)\s+(?:did|does|do)\b", re.I)
_CLAUSE_RE = re.compile(r"^\s*((?:how\s+(?:many|much)|when|who|where)\b.*?)[?.!\s]*$", re.I | re.S)


def _join(items: Sequence[str]) -> str:
    items = list(dict.fromkeys(items))
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]


def _article(name: str) -> str:
    return f"the {name}" if name.isupper() and len(name) <= 6 and not name.endswith("S") else name


def message(question: QuestionAnalysis, reason: str, missing: Sequence[str], mentioned: Sequence[str]) -> str:
    """One plain sentence that says what the articles do not cover."""
    if reason == "not_mentioned" and missing:
        quoted = [m if m[:1].isupper() else f"“{m}”" for m in missing]
        return f"The articles do not mention {_join(quoted)}."
    what = question.expects
    subject = f"The articles mention {_join([_article(m) for m in mentioned])} but" if mentioned else "The articles"
    if what in _WH_CLAUSE:
        m = _CLAUSE_RE.match(question.question)
        clause = m.group(1) if m and not _DO_SUPPORT.match(question.question) else _WH_CLAUSE[what]
        clause = clause[:1].lower() + clause[1:]
        return f"{subject} do not say {clause}."
    if what == YESNO:
        return f"{subject} do not settle this question."
    if missing:
        return f"{subject} do not mention {_join(['“' + m + '”' for m in missing])}."
    return f"{subject} do not answer this question."
