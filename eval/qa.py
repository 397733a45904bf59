"""Score the answer service on a question set, in-process or through a running server's HTTP API.

A question set is a JSONL file, one question a line::

    {"id": "qa-020", "question": "When was Sputnik-1 launched?", "kind": "factoid", "answerable": true,
     "gold_sections": [["Space Diplomacy", "History", "The Cold War"]], "answer_key": [["1957"]]}

``gold_sections`` lists the breadcrumbs where the answer is written (any one counts);
``answer_key`` is a list of groups that must all match, and a group matches when any of its
alternatives occurs in the answer (case-insensitive, whitespace normalised). Unanswerable
questions (``"answerable": false``) have kind ``off-topic`` or ``near-domain``. Also accepted:
a gold section as one flat list or as ``"A > B"`` strings, an answer-key group as a bare string,
and a missing ``answerable`` when ``kind`` says off-topic or near-domain.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eval import metrics as m
from eval.askers import Asker
from eval.errors import EvalDataError
from rag.text.chunking import BREADCRUMB_SEPARATOR

#: The question set that ships with the product (the default of ``rag eval qa``).
DEFAULT_QUESTIONS = Path(__file__).resolve().parent / "data" / "qa.jsonl"
UNANSWERABLE_KINDS = ("off-topic", "near-domain", "references")


@dataclass(frozen=True)
class QAItem:
    id: str
    question: str
    kind: str
    answerable: bool
    gold_sections: tuple[tuple[str, ...], ...] = ()
    answer_key: tuple[tuple[str, ...], ...] = ()
    notes: str = ""
    corpus: str = ""  # which corpus the question is about ("bundled", "spacelaw"), for reports
    missing: tuple[str, ...] = ()  # what an unanswerable (or partial) question asks that the documents lack


def _strings(value, what: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise EvalDataError(f"{where}: {what} must be a list of non-empty strings")
    return tuple(value)


def _breadcrumbs(value, where: str) -> tuple[tuple[str, ...], ...]:
    """Gold sections: a list of breadcrumbs (lists of headings); one flat list, or "A > B" strings, are accepted too."""
    if not value:
        return ()
    if not isinstance(value, list):
        raise EvalDataError(f'{where}: "gold_sections" must be a list of breadcrumbs (lists of headings)')
    if all(isinstance(v, str) for v in value):
        if any(BREADCRUMB_SEPARATOR in v for v in value):
            return tuple(tuple(p.strip() for p in v.split(BREADCRUMB_SEPARATOR.strip())) for v in value)
        return (_strings(value, "a gold section", where),)
    return tuple(_strings(s, "each gold section", where) for s in value)


def _groups(value, where: str) -> tuple[tuple[str, ...], ...]:
    """Answer-key groups; a bare string is a group with one alternative."""
    if not value:
        return ()
    if not isinstance(value, list):
        raise EvalDataError(f'{where}: "answer_key" must be a list of groups (lists of alternative strings)')
    return tuple((g,) if isinstance(g, str) and g.strip() else _strings(g, "each answer-key group", where) for g in value)


def load_question_set(path: str | Path) -> list[QAItem]:
    """Parse and check a question set; every problem names the file, the line and the fix."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise EvalDataError(f"{path}: no such question set; pass a JSONL file of questions") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalDataError(f"{path}: cannot read the question set ({exc.__class__.__name__})") from None
    items: list[QAItem] = []
    seen: set[str] = set()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}: line {lineno}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalDataError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(raw, dict):
            raise EvalDataError(f"{where}: expected a JSON object")
        for key in ("id", "question"):
            if key not in raw:
                raise EvalDataError(f'{where}: the field "{key}" is missing')
        if not isinstance(raw["question"], str) or not raw["question"].strip():
            raise EvalDataError(f'{where}: "question" must be a non-empty string')
        if "answerable" not in raw and raw.get("kind") is None:
            raise EvalDataError(f'{where}: the field "answerable" is missing (true, or false for questions the corpus does not cover)')
        # Without "answerable", the kind decides: off-topic and near-domain questions are the unanswerable ones.
        answerable = raw.get("answerable", str(raw.get("kind")) not in (*UNANSWERABLE_KINDS, "unanswerable"))
        if not isinstance(answerable, bool):
            raise EvalDataError(f'{where}: "answerable" must be true or false')
        qid = str(raw["id"])
        if qid in seen:
            raise EvalDataError(f"{where}: the id {qid!r} is used twice; give each question its own id")
        seen.add(qid)
        items.append(
            QAItem(
                id=qid,
                question=raw["question"],
                kind=str(raw.get("kind") or ("answerable" if answerable else "unanswerable")),
                answerable=answerable,
                gold_sections=_breadcrumbs(raw.get("gold_sections"), where),
                answer_key=_groups(raw.get("answer_key"), where),
                notes=str(raw.get("notes") or ""),
                corpus=str(raw.get("corpus") or ""),
                missing=_strings(raw["missing"], '"missing"', where) if raw.get("missing") else (),
            )
        )
    if not items:
        raise EvalDataError(f"{path}: the question set is empty")
    return items


# --------------------------------------------------------------------------------------- scoring


@dataclass
class QAResult:
    """One question's outcome: what came back, and every check on it."""

    id: str
    kind: str
    question: str
    answerable: bool
    abstained: bool
    answer: str
    support: float | None
    latency_ms: float
    cited_sections: list[list[str]]
    passage_sections: list[list[str]]
    citation_rank: int | None  # rank of the first citation from a gold section
    passage_rank: int | None  # rank of the first retrieved passage from a gold section
    key_groups: list[bool]  # per answer-key group: stated in the answer (empty when the question has no key)
    citation_problems: list[str]
    gold_sections: list[list[str]] = field(default_factory=list)
    error: str | None = None
    problems: list[str] = field(default_factory=list)
    abstention_reason: str | None = None  # why the service abstained, or "partial"
    abstention_message: str = ""
    names_missing: bool | None = None  # the abstention names what the question's "missing" lists
    corpus: str = ""
    short_answer: str | None = None  # the reader's span, when the answer has one
    short_answer_key: bool | None = None  # a factoid question's (FACTOID_RE) short answer holds every answer-key group

    @property
    def handled(self) -> bool:
        """Abstained, or answered with a "not covered" note that names what the question's ``missing`` says."""
        return self.abstained or (self.abstention_reason == "partial" and bool(self.names_missing))

    @property
    def answered_correctly(self) -> bool | None:
        """Answerable, answered, from a gold section among the first 3 citations and with the answer key."""
        if not self.answerable:
            return None
        return not self.abstained and not self.citation_problems and (
            not self.gold_sections or m.hit_at(self.citation_rank, 3)
        ) and self.key_match is not False

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def key_match(self) -> bool | None:
        return (bool(self.key_groups) and all(self.key_groups)) if self.key_groups else None

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed, "key_match": self.key_match}


def _problems(item: QAItem, result: QAResult, abstained: bool) -> list[str]:
    """What a response got wrong for its question: invalid citations, a wrong abstention, a missed gold section or key."""
    problems = list(result.citation_problems)
    if item.kind == "partial" and not abstained and result.abstention_reason != "partial":
        problems.append("a partial answer not marked as partial")
    if item.answerable:
        if abstained:
            problems.append("abstained on an answerable question")
        else:
            if item.gold_sections and not m.hit_at(result.citation_rank, 3):
                problems.append("no gold section among the first 3 citations")
            missing = [" | ".join(g) for g, ok in zip(item.answer_key, result.key_groups) if not ok]
            if missing:
                problems.append("answer lacks: " + "; ".join(missing))
    elif not abstained:
        problems.append(f"answered an unanswerable ({item.kind}) question")
    elif item.kind == "references" and result.abstention_reason not in (None, "references_only"):
        problems.append(f"a question answered only by the references abstained as {result.abstention_reason}, not references_only")
    return problems


#: The questions whose short answer is scored against the answer key: who, when, where, how many, which.
FACTOID_RE = re.compile(r"^\s*(?:who|whom|when|where|how\s+many|which)\b", re.I)


def short_answer_problems(short: dict | None, citations: Sequence[dict], texts: dict[str, str]) -> list[str]:
    """What is wrong with a response's ``short_answer``: it must lie inside the quote of the citation it names,
    and its text must be the passage text at its offsets."""
    if not short:
        return []
    cited = next((c for c in citations if c.get("n") == short.get("citation")), None)
    if cited is None:
        return [f"short answer names citation {short.get('citation')}, which the answer does not have"]
    start, end, text = short.get("start"), short.get("end"), short.get("text")
    if not (isinstance(start, int) and isinstance(end, int) and cited["start"] <= start < end <= cited["end"]):
        return [f"short answer offsets {start}-{end} lie outside the quote of citation {cited['n']}"]
    passage = texts.get(cited["passage_id"])
    if passage is not None and passage[start:end] != text:
        return [f"short answer {text!r} is not the passage text at {start}-{end}"]
    return []


def score_response(item: QAItem, response: dict, latency_ms: float, passage_text: Callable[[str], str | None]) -> QAResult:
    """Check one ``/ask`` response against the question's gold sections and answer key."""
    if "error" in response:
        result = QAResult(
            item.id, item.kind, item.question, item.answerable, False, "", None, round(latency_ms, 2), [], [], None, None,
            [False] * len(item.answer_key), [], [list(s) for s in item.gold_sections], error=response["error"],
        )
        result.problems = [f"request failed: {response['error']}"]
        return result
    citations = response.get("citations") or []
    passages = response.get("passages") or []
    texts = {p["passage_id"]: p["text"] for p in passages}
    for c in citations:
        if c["passage_id"] not in texts:
            text = passage_text(c["passage_id"])
            if text is not None:
                texts[c["passage_id"]] = text
    abstained = bool(response.get("abstained"))
    answer = response.get("answer") or ""
    cited = [list(c["section"]) for c in sorted(citations, key=lambda c: c["n"])]
    retrieved = [list(p["section"]) for p in sorted(passages, key=lambda p: p["rank"])]
    result = QAResult(
        id=item.id,
        kind=item.kind,
        question=item.question,
        answerable=item.answerable,
        abstained=abstained,
        answer=answer,
        support=response.get("support"),
        latency_ms=round(latency_ms, 2),
        cited_sections=cited,
        passage_sections=retrieved,
        citation_rank=m.first_hit(cited, item.gold_sections),
        passage_rank=m.first_hit(retrieved, item.gold_sections),
        key_groups=m.answer_key_groups("" if abstained else answer, item.answer_key),
        citation_problems=m.citation_problems(answer, abstained, citations, texts)
        + short_answer_problems(response.get("short_answer"), citations, texts),
        gold_sections=[list(s) for s in item.gold_sections],
    )
    short = response.get("short_answer") or {}
    result.short_answer = short.get("text")
    if item.answerable and item.answer_key and FACTOID_RE.match(item.question):
        result.short_answer_key = all(m.answer_key_groups(result.short_answer or "", item.answer_key))
    abstention = response.get("abstention") or {}
    result.abstention_reason = abstention.get("reason")
    result.abstention_message = abstention.get("message") or ""
    result.corpus = item.corpus
    if item.missing and result.abstention_reason:
        said = " ".join([result.abstention_message, *abstention.get("missing", [])])
        result.names_missing = names_missing(item.missing, said, abstention.get("mentioned", []))
    problems = _problems(item, result, abstained)
    result.problems = problems
    return result


# Words of a "missing" annotation that say what kind of fact is missing, and the wording that names it.
_KIND_WORDS = {
    "number": ("how many", "how much"), "count": ("how many",), "amount": ("how much",),
    "year": ("when",), "date": ("when",), "day": ("when",), "time": ("when",),
    "place": ("where",), "location": ("where",), "city": ("where",), "reason": ("why",), "cause": ("why",),
}


def names_missing(expected: Sequence[str], message: str, mentioned: Sequence[str]) -> bool:
    """Whether an abstention message names what an annotation says is missing: one of the annotation's
    words (as BM25 terms, so "founding" meets "founded") that the message does not call mentioned, or its
    kind of fact ("number of ..." and "how many")."""
    from rag.text.lexical import analyze

    said = set(analyze(message))
    known = {t for m in mentioned for t in analyze(m)}
    lowered = " ".join(message.casefold().split())
    for phrase in expected:
        words = phrase.casefold().split()
        if any(any(k in lowered for k in _KIND_WORDS.get(w, ())) for w in words):
            return True
        if (set(analyze(phrase)) - known - set(analyze(" ".join(_KIND_WORDS)))) & said:
            return True
    return False


def run_questions(
    items: Sequence[QAItem], asker: Asker, *, progress: bool | None = None
) -> list[QAResult]:
    """Ask every question (one at a time, so latencies are not queueing delays) and score the answers."""
    from tqdm.auto import tqdm

    results = []
    disable = None if progress is None else not progress
    for item in tqdm(items, desc="questions", unit="q", disable=disable, leave=False):
        started = time.perf_counter()
        response = asker.ask(item.question)
        latency = (time.perf_counter() - started) * 1000
        results.append(score_response(item, response, latency, asker.passage_text))
    return results


def _share(flags: Sequence[bool]) -> float | None:
    return m.ratio(sum(flags), len(flags))


def summarise(results: Sequence[QAResult]) -> dict:
    """The headline figures. Shares are over the questions a check applies to (n/a when none)."""
    answerable = [r for r in results if r.answerable]
    # Section metrics apply to answerable questions that name gold sections, the key to those with a key.
    gold = [r for r in answerable if r.gold_sections]
    keyed = [r for r in answerable if r.key_groups]
    unanswerable = [r for r in results if not r.answerable]
    ok = [r for r in results if r.error is None]
    abst = m.abstention((r.answerable, r.abstained) for r in ok)
    latencies = [r.latency_ms for r in ok]
    summary = {
        "questions": len(results),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "errors": len(results) - len(ok),
    }
    for k in (1, 3, 5):
        summary[f"citation_hit@{k}"] = _share([m.hit_at(r.citation_rank, k) for r in gold])
    summary["citation_mrr"] = _mean([m.reciprocal_rank(r.citation_rank) for r in gold])
    for k in (1, 3, 5):
        summary[f"passage_hit@{k}"] = _share([m.hit_at(r.passage_rank, k) for r in gold])
    summary["passage_mrr"] = _mean([m.reciprocal_rank(r.passage_rank) for r in gold])
    summary["answer_key_recall"] = _share([bool(r.key_match) for r in keyed])
    factoid = [r for r in answerable if r.short_answer_key is not None and r.error is None]
    summary["factoid_questions"] = len(factoid)
    summary["short_answer_key"] = _share([bool(r.short_answer_key) for r in factoid])
    summary["short_answered"] = _share([r.short_answer is not None for r in answerable if not r.abstained and r.error is None])
    summary["citation_validity"] = _share([not r.citation_problems for r in ok])
    summary["abstention_precision"] = abst.precision
    summary["abstention_recall"] = abst.recall
    for kind in UNANSWERABLE_KINDS:
        summary[f"{kind}_abstained"] = _share([r.abstained for r in unanswerable if r.kind == kind])
    summary["answerable_abstained"] = _share([r.abstained for r in answerable if r.error is None])
    summary["answered_correctly"] = _share([bool(r.answered_correctly) for r in answerable if r.error is None])
    partial = [r for r in results if r.kind == "partial" and r.error is None]
    summary["partial_marked"] = _share([r.abstention_reason == "partial" for r in partial])
    named = [r.names_missing for r in results if r.names_missing is not None]
    summary["abstention_names_missing"] = _share(named)
    near = [r for r in unanswerable if r.kind == "near-domain" and r.error is None]
    # Handled: abstained, or answered with a "not covered" note that names what is missing.
    summary["near-domain_handled"] = _share([r.handled for r in near])
    summary["answerable_marked_partial"] = _share(
        [r.abstention_reason == "partial" for r in answerable if r.error is None and r.kind != "partial"]
    )
    reasons: dict[str, int] = {}
    for r in unanswerable:
        if r.abstained:
            reasons[r.abstention_reason or "unknown"] = reasons.get(r.abstention_reason or "unknown", 0) + 1
    summary["abstention_reasons"] = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "-"
    corpora = sorted({r.corpus for r in results if r.corpus})
    for corpus in corpora if len(corpora) > 1 else ():
        mine = [r for r in results if r.corpus == corpus and r.error is None]
        summary[f"{corpus}: answered_correctly"] = _share([bool(r.answered_correctly) for r in mine if r.answerable and r.kind != "partial"])
        summary[f"{corpus}: answerable_abstained"] = _share([r.abstained for r in mine if r.answerable])
        summary[f"{corpus}: near-domain_handled"] = _share([r.handled for r in mine if r.kind == "near-domain"])
    for q in (50, 95):
        value = m.percentile(latencies, q)
        summary[f"latency_p{q}_ms"] = None if value is None else round(value, 2)
    summary["passed"] = _share([r.passed for r in results])
    return summary


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
