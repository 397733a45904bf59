"""Which kinds of question the reader should decide (``AnswerConfig.reader_kinds``): every question of the
given sets is asked with the reader deciding every kind and deciding none, at its own threshold and at
thresholds around it, and the figures are split by the kind the question asks for (``expects``).

    python -m eval.bench.reader_kinds --index-dir DIR [--reader DIR] [--offsets -2 0 2] SET.jsonl ...

A kind is worth giving to the reader when, deciding it, the reader handles more near-domain questions
(abstains, or names what is missing) than it abstains on answerable ones. Run it on the fitting sets only
(``fit.jsonl`` and ``validate.jsonl``), never on a held-out one. Prints a table; writes nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from eval.askers import InProcessAsker
from eval.qa import QAResult, load_question_set, run_questions
from rag.answer.question import AGENT, DATE, PLACE, QUANTITY, REASON, YESNO, analyze_question

KINDS = (None, AGENT, DATE, PLACE, QUANTITY, REASON, YESNO)


def kind_of(question: str) -> str:
    return analyze_question(question).expects or "none"


def by_kind(results: list[QAResult]) -> dict[str, tuple[int, int, int, int]]:
    """Per kind: near-domain handled, near-domain questions, answerable abstained, answerable questions."""
    table: dict[str, list[int]] = {}
    for r in results:
        row = table.setdefault(kind_of(r.question), [0, 0, 0, 0])
        if r.kind == "near-domain":
            row[0] += bool(r.handled)
            row[1] += 1
        elif r.answerable:
            row[2] += bool(r.abstained)
            row[3] += 1
    return {k: tuple(v) for k, v in table.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m eval.bench.reader_kinds", description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="+", type=Path)
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--reader", type=Path, default=None, help="A reader folder (default: the bundled one).")
    parser.add_argument("--offsets", type=float, nargs="+", default=[0.0], help="Thresholds relative to the reader's own.")
    args = parser.parse_args(argv)

    from rag.service import open_service
    from rag.settings import Settings

    settings = Settings(index_dir=args.index_dir, reader=True, reader_path=args.reader)
    service = open_service(settings)
    own = service.reader.settings.threshold
    items = [item for path in args.sets for item in load_question_set(path)]
    base = service.config
    print(f"{len(items)} questions; reader {service.reader.label}, its threshold {own:.3f}")
    every = frozenset(KINDS)
    rows: dict[tuple[float, str], dict] = {}
    for offset in args.offsets:
        for name, kinds in (("none", frozenset()), ("all", every)):
            service.config = dataclasses.replace(base, reader_kinds=kinds, reader_threshold=own + offset)
            results = run_questions(items, InProcessAsker(settings, service=service), progress=False)
            rows[(offset, name)] = by_kind(results)
    print("| threshold | kind | near-domain handled: none -> all | answerable abstained: none -> all |")
    print("| --- | --- | --- | --- |")
    for offset in args.offsets:
        none, every_kind = rows[(offset, "none")], rows[(offset, "all")]
        for kind in sorted(none):
            a, b = none[kind], every_kind[kind]
            print(f"| {own + offset:+.2f} | {kind} | {a[0]}/{a[1]} -> {b[0]}/{b[1]} | {a[2]}/{a[3]} -> {b[2]}/{b[3]} |")


if __name__ == "__main__":
    main()
