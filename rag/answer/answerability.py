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

from rag.text.lexical import analyze
from rag.answer.markers import strip_markers
from rag.answer.question import AGENT, DATE, PLACE, QUANTITY, REASON, YESNO, Focus, QuestionAnalysis

#: Names written differently in questions and documents.
ALIASES: tuple[tuple[str, ...], ...] = (
    ("United States", "U.S.", "US", "USA", "America", "American", "Americans", "Washington"),
    ("Soviet Union", "USSR", "Soviet", "Soviets", "Moscow"),
    ("Russia", "Russian", "Russian Federation", "Moscow"),
    ("United Kingdom", "UK", "Britain", "British"),
    ("United Nations", "UN"),
    ("European Union", "EU"),
    ("European Space Agency", "ESA"),
    ("Türkiye", "Turkey", "Turkish", "Ankara"),
    ("China", "Chinese", "PRC", "Beijing"),
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
_YEAR_RE = re.compile(r"\b(?:1[0-9]{3}|20[0-9]{2})s?\b|\b(?:era|period|age|times|days|years|ago|since|until)\b|\b(?:January|February|March|April|May|June|July|August|September|October|November|December)\b|\bcentury\b|\bdecades?\b", re.I)
_MONTHS = r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
_QUANTITY_RE = re.compile(
    r"(?<![\w.])(?<!Article )(?<!resolution )(?<!No\. )(?!(?:1[5-9]|20)\d\d(?!\d))(?!\d{1,3}[.)](?:\s|$))\d[\d,.]*(?![\w])(?!\s+" + _MONTHS + r")|[$€£%]|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|"
    r"hundred|hundreds|thousand|thousands|million|millions|billion|billions|trillion|dozen|dozens|percent|half|several|majority)\b",
    re.I,
)
_NAME_RE = re.compile(r"(?<=\S\s)[A-Z][\w’'-]+|\b[A-Z]{2,}\b")
_PLACE_RE = re.compile(r"\b(?:in|at|from|near)\s+(?:the\s+)?[A-Z][\w’'-]+")
_REASON_RE = re.compile(
    r"\b(?:because|due\s+to|owing\s+to|since|as\s+a\s+result|result\s+of|in\s+order\s+to|so\s+that|so\s+as\s+to|reasons?|"
    r"caused?|led\s+to|leading\s+to|aim(?:s|ed)?\s+to|purpose|to\s+(?:ensure|prevent|promote|avoid|protect|enhance|establish)|"
    r"concerns?|fears?|object(?:s|ed|ion)?|criticis\w*|enhancing|preventing|ensuring|given\s+that)\b",
    re.I,
)
_AGENT_WORDS = re.compile(
    r"\b(?:states?|countries|country|nations?|agenc(?:y|ies)|organi[sz]ations?|compan(?:y|ies)|firms?|actors?|governments?|"
    r"people|persons?|cosmonauts?|astronauts?|scientists?|authors?|members?|parties|committee|council|office|union|institute)\b",
    re.I,
)


@lru_cache(maxsize=1)
def _surface_aliases() -> dict[tuple[str, ...], tuple[re.Pattern, ...]]:
    """Alias forms that analysis cannot see ("U.S." has no term of two letters), found in the text instead."""
    table: dict[tuple[str, ...], tuple[re.Pattern, ...]] = {}
    for group in ALIASES:
        hidden = tuple(re.compile(r"(?<![\w.])" + re.escape(f) + r"(?![\w])") for f in group if len(analyze(f)) == 0 or len(f) <= 3)
        for form in group:
            if analyze(form) and hidden:
                table[tuple(analyze(form))] = hidden
    return table


@lru_cache(maxsize=1)
def _alias_table() -> dict[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    table: dict[tuple[str, ...], tuple[tuple[str, ...], ...]] = {}
    for group in ALIASES:
        forms = tuple(tuple(analyze(f)) for f in group)
        for form in forms:
            if form:
                table[form] = tuple(f for f in forms if f)
    return table


def acronym_definitions(text: str) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """The acronyms ``text`` defines ("Turkish Space Agency (TUA)"), in order, as (long, short) terms."""
    out = []
    for m in _ACRONYM_RE.finditer(text):
        long, short = tuple(analyze(m.group(1))), tuple(analyze(m.group(2)))
        if long and short:
            out.append((long, short))
    return out


def acronym_table(definitions) -> dict[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """Each form of the (long, short) ``definitions`` to both forms; a later definition wins."""
    out: dict[tuple[str, ...], tuple[tuple[str, ...], ...]] = {}
    for long, short in definitions:
        out[long] = out[short] = (long, short)
    return out


def defined_acronyms(texts: Sequence[str]) -> dict[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """Acronyms the documents define: each form to both forms, as terms."""
    return acronym_table(d for text in texts for d in acronym_definitions(text))


def _forms(focus: Focus, acronyms: dict) -> tuple[tuple[str, ...], ...]:
    forms = {focus.terms}
    for table in (_alias_table(), acronyms):
        forms.update(table.get(focus.terms, ()))
    return tuple(forms)


def present(focus: Focus, terms: set[str], acronyms: dict, text: str = "") -> bool:
    """Whether every term of ``focus`` (or of one of its aliases) is among ``terms``, or an alias that has
    no terms of its own ("U.S.") is written in ``text``."""
    if any(all(t in terms for t in form) for form in _forms(focus, acronyms)):
        return True
    return bool(text) and any(p.search(text) for p in _surface_aliases().get(focus.terms, ()))


def answer_type_present(expects: str | None, text: str, question_names: Sequence[str] = ()) -> bool:
    """Whether ``text`` holds the kind of answer the question expects (always, when it expects none)."""
    if expects == DATE:
        return bool(_YEAR_RE.search(text))
    if expects == QUANTITY:
        return bool(_QUANTITY_RE.search(text))
    if expects == PLACE:
        return bool(_PLACE_RE.search(text))
    if expects == REASON:
        return bool(_REASON_RE.search(text))
    if expects == AGENT:
        asked = {w.casefold() for n in question_names for w in n.split()}
        names = [m.group() for m in _NAME_RE.finditer(text) if m.group().casefold() not in asked]
        return bool(names) or bool(_AGENT_WORDS.search(text))
    return True


#: Kinds of answer whose absence from a unit rules it out (their detectors are reliable; "who" and "where" are not).
STRICT_TYPES = (DATE, QUANTITY)


@dataclass(frozen=True)
class Evidence:
    """One candidate answer unit, as the answerability check sees it."""

    text: str  # the unit
    unit_terms: frozenset[str]  # terms of the unit and its section heading
    passage_terms: frozenset[str]  # terms of the whole passage, its breadcrumb and its title
    cosine: float  # similarity of the unit to the question
    passage_cosine: float  # similarity of its passage to the question
    words: tuple[str, ...] = ()  # content words of the unit and its heading, as written (for close meanings)
    passage_text: str = ""  # for aliases that analysis cannot see
    word_rows: np.ndarray | None = None  # rows of ``words`` in the index's word table, when known


@dataclass(frozen=True)
class AnswerabilityModel:
    """Logistic weights over a unit's features and the two levels that act on the best unit's probability.

    The defaults were fitted on eval/data/fit.jsonl and eval/data/qa.jsonl over the bundled article and the
    space-law documents of eval/data/spacelaw/ (``rag eval fit-answerability``; figures in eval/RESULTS.md).
    """

    bias: float = -10.3461
    cosine: float = 5.2913
    passage_cosine: float = 2.6626
    word_cover: float = 1.7313
    head_word: float = 0.1449
    margin: float = 0.087
    names: float = 2.5335
    answer_type: float = 3.7042
    threshold: float = 0.4288  # below: abstain
    confident: float = 0.7144  # below: the answer says which focus words its quotes do not hold
    min_credit: float = 0.5  # a focus word counts as held when contained, or this close in meaning

    FEATURES = ("cosine", "passage_cosine", "word_cover", "head_word", "margin", "names", "answer_type")

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
    credit: np.ndarray | None = None  # per unit and focus word: contained (1) or closest meaning (0-1)


def uncovered(question: QuestionAnalysis, verdict: Verdict, units: Sequence[int], evidence: Sequence[Evidence], acronyms: dict, min_credit: float) -> tuple[str, ...]:
    """Focus of ``question`` that none of the quoted ``units`` holds: names missing from their passages,
    words neither contained nor matched by a close meaning (credit below ``min_credit``)."""
    terms = frozenset().union(*(evidence[u].passage_terms for u in units)) if units else frozenset()
    text = " ".join(dict.fromkeys(evidence[u].passage_text for u in units))
    names = [n.text for n in question.names if not present(n, terms, acronyms, text)]
    words = question.words
    if verdict.credit is None or not len(words) or not units:
        return tuple(names)
    best = verdict.credit[list(units)].max(axis=0)
    return tuple(names + [f.text for f, c in zip(words, best) if c < min_credit])[:3]


def _word_credit(question: QuestionAnalysis, evidence: Sequence[Evidence], acronyms: dict, word_vectors) -> np.ndarray:
    """``credit[u, j]``: 1 when unit ``u`` contains focus word ``j``, else the closest meaning among its words (0-1)."""
    words = question.words
    forms = [_forms(f, acronyms) for f in words]
    credit = np.zeros((len(evidence), len(words)))
    for u, ev in enumerate(evidence):
        terms = ev.unit_terms
        for j, options in enumerate(forms):
            if any(all(t in terms for t in form) for form in options):
                credit[u, j] = 1.0
    if word_vectors is None or not len(words) or credit.all():
        return credit
    rows = [ev.word_rows if ev.word_rows is not None else word_vectors.rows(ev.words) for ev in evidence]
    flat = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    if not len(flat):
        return credit
    vocabulary, position = np.unique(flat, return_inverse=True)
    close = np.clip(word_vectors.vectors([f.text.casefold() for f in words]) @ word_vectors.table(vocabulary).T, 0.0, 1.0)
    # Each unit's best match per focus word: the max over its own run of columns (a unit without
    # known words gets the zero column appended at the end).
    close = np.concatenate([close, np.zeros((len(words), 1), dtype=close.dtype)], axis=1)
    columns = np.append(position, len(vocabulary))
    lengths = np.array([len(r) for r in rows])
    starts = np.where(lengths > 0, np.cumsum(lengths) - lengths, len(columns) - 1)
    best = np.maximum.reduceat(close[:, columns], starts, axis=1).T  # (units, focus words)
    best[lengths == 0] = 0.0
    return np.maximum(credit, best)


def features(
    question: QuestionAnalysis, evidence: Sequence[Evidence], idf: dict[str, float], acronyms: dict, word_vectors=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feature matrix (one row per unit, columns as ``AnswerabilityModel.FEATURES``), per-unit name check, word credit."""
    names = question.names
    words = question.words
    weight = np.array([max(idf.get(t, 0.0) for t in f.terms) for f in words]) if words else np.zeros(0)
    credit = _word_credit(question, evidence, acronyms, word_vectors)
    head = next((j for j, f in enumerate(words) if f.text == question.head), None) if question.head else None
    total = float(weight.sum())
    n = len(evidence)
    x = np.zeros((n, len(AnswerabilityModel.FEATURES)))
    if not n:
        return x, np.zeros(0, dtype=bool), credit
    x[:, 0] = [ev.cosine for ev in evidence]
    x[:, 1] = [ev.passage_cosine for ev in evidence]
    x[:, 2] = credit @ weight / total if total else 1.0
    x[:, 3] = credit[:, head] if head is not None else 1.0
    x[:, 4] = x[:, 0] - float(np.median(x[:, 0]))
    by_passage: dict[int, bool] = {}  # units of one passage share the answer (by the passage's identity)
    asked = [f.text for f in names]
    for u, ev in enumerate(evidence):
        key = id(ev.passage_terms)
        if key not in by_passage:
            by_passage[key] = all(present(f, ev.passage_terms, acronyms, ev.passage_text) for f in names)
        x[u, 5] = by_passage[key]
        x[u, 6] = answer_type_present(question.expects, ev.text, asked) if question.expects else 1.0
    return x, x[:, 5].astype(bool), credit


def judge(
    question: QuestionAnalysis, evidence: Sequence[Evidence], idf: dict[str, float], acronyms: dict, model: AnswerabilityModel, word_vectors=None
) -> Verdict:
    """Whether any unit answers ``question``; if none does, what the passages leave out."""
    return decide(question, evidence, features(question, evidence, idf, acronyms, word_vectors), idf, acronyms, model)


def unit_probabilities(question: QuestionAnalysis, x: np.ndarray, model: AnswerabilityModel) -> np.ndarray:
    """How likely each unit (a row of features) answers ``question``."""
    p = model.probability(x) if len(x) else np.zeros(0)
    if question.expects in STRICT_TYPES and len(p):
        # a "when" answered without a date, or a "how many" without a number, answers nothing
        p = np.where(x[:, AnswerabilityModel.FEATURES.index("answer_type")] > 0, p, 0.0)
    return p


def decide(question: QuestionAnalysis, evidence: Sequence[Evidence], computed, idf: dict[str, float], acronyms: dict, model: AnswerabilityModel) -> Verdict:
    """:func:`judge` from features already computed (``features(...)``, or rows of them for a subset of units)."""
    x, names_ok, credit = computed
    p = unit_probabilities(question, x, model)
    best = int(np.argmax(p)) if len(p) else None
    top = float(p[best]) if best is not None else 0.0
    if best is not None and top >= model.threshold:
        return Verdict(True, top, best, p, names_ok, credit=credit)
    reason, missing, mentioned = explain(question, evidence, idf, acronyms, best)
    return Verdict(False, top, best, p, names_ok, reason, missing, mentioned, credit)


def explain(question: QuestionAnalysis, evidence: Sequence[Evidence], idf: dict[str, float], acronyms: dict, best: int | None):
    """Reason, missing focus (as written in the question) and focus the passages do mention."""
    everywhere: set[str] = set()
    for ev in evidence:
        everywhere |= ev.passage_terms
    text = " ".join(dict.fromkeys(ev.passage_text for ev in evidence))
    absent = [f for f in question.focus if not present(f, everywhere, acronyms, text)]
    mentioned = tuple(f.text for f in question.names if f not in absent)
    if any(f.kind != "word" for f in absent):
        return "not_mentioned", _rarest([f for f in absent if f.kind != "word"], idf), mentioned
    rare = [f for f in absent if max(idf.get(t, math.inf) for t in f.terms) >= _RARE_IDF]
    if rare and not mentioned:
        return "not_mentioned", _rarest(rare, idf), mentioned
    unit_terms = evidence[best].unit_terms if best is not None else frozenset()
    missing = [f for f in question.words if not present(f, unit_terms, acronyms)] or [f for f in absent]
    return "not_answered", _rarest(missing, idf), mentioned


def _rarest(focus: Sequence[Focus], idf: dict[str, float], limit: int = 3) -> tuple[str, ...]:
    """The ``limit`` rarest of ``focus`` (names first), as written: what a reader should hear is missing."""
    ranked = sorted(focus, key=lambda f: (f.kind == "word", -max(idf.get(t, math.inf) for t in f.terms)))
    return tuple(f.text for f in ranked[:limit])


_RARE_IDF = 1.0  # a word absent from the retrieved passages counts as "not mentioned" when it is at least this rare


_WH_CLAUSE = {DATE: "when", QUANTITY: "how many", AGENT: "who", PLACE: "where", REASON: "why"}
_DO_SUPPORT = re.compile(r"\b(?:did|does|do|will|would|can|could|should|has|have|had|is|are|was|were)\b", re.I)
_CLAUSE_RE = re.compile(r"^\s*((?:how\s+(?:many|much)|when|who|where|why)\b.*?)[?.!\s]*$", re.I | re.S)


def _join(items: Sequence[str], word: str = "or") -> str:
    items = list(dict.fromkeys(items))
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {word} " + items[-1]


def _article(name: str) -> str:
    """"the ISS", "the UN"; longer acronyms read as names ("NASA", "UNOOSA")."""
    return f"the {name}" if name.isupper() and len(name) <= 3 else name


def message(question: QuestionAnalysis, reason: str, missing: Sequence[str], mentioned: Sequence[str]) -> str:
    """One plain sentence that says what the articles do not cover (with no marker-like brackets)."""
    return strip_markers(_message(question, reason, missing, mentioned))


def _message(question: QuestionAnalysis, reason: str, missing: Sequence[str], mentioned: Sequence[str]) -> str:
    if reason == "partial" and missing:
        return f"The quoted passages do not mention {_join(['“' + m + '”' if m[:1].islower() else m for m in missing])}."
    if reason == "not_mentioned" and missing:
        quoted = [m if m[:1].isupper() else f"“{m}”" for m in missing]
        return f"The articles do not mention {_join(quoted)}."
    what = question.expects
    subject = f"The articles mention {_join([_article(m) for m in mentioned], 'and')} but" if mentioned else "The articles"
    if what in _WH_CLAUSE:
        m = _CLAUSE_RE.match(question.question)
        # "how many states are parties" reads as a clause; "when did Japan launch" does not, so say just "when"
        inverted = m and _DO_SUPPORT.search(m.group(1)) and not re.match(r"^\s*(?:how\s+(?:many|much)\s+[\w\s-]+?|who)\s+(?:is|are|was|were|has|have|had)\b", m.group(1), re.I)
        asked = "how much" if what == QUANTITY and re.match(r"\s*how\s+much\b", question.question, re.I) else _WH_CLAUSE[what]
        clause = m.group(1) if m and not inverted else asked
        clause = clause[:1].lower() + clause[1:]
        return f"{subject} do not say {clause}."
    if what == YESNO:
        return f"{subject} do not settle this question."
    if missing:
        return f"{subject} do not mention {_join(['“' + m + '”' for m in missing])}."
    return f"{subject} do not answer this question."
