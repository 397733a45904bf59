"""BEIR dataset folders: ``corpus.jsonl`` (``{"_id", "title", "text"}``), ``queries.jsonl``
(``{"_id", "text"}``) and ``qrels/<split>.tsv`` (``query-id corpus-id score``, tab-separated, an
optional header line), read and checked with messages that say how to fix the folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.jsonl import JsonLinesError, beir_records
from eval.errors import EvalDataError

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_DIR = "qrels"


@dataclass(frozen=True)
class BeirDataset:
    """One split of a BEIR dataset: the judged queries and their judgements (the corpus is read when indexing)."""

    root: Path
    name: str
    split: str
    queries: dict[str, str]  # judged query id -> text, in qrels order
    qrels: dict[str, dict[str, int]]  # query id -> {doc id: relevance}
    warnings: tuple[str, ...] = ()

    @property
    def corpus_path(self) -> Path:
        return self.root / CORPUS_FILE


def available_splits(root: Path) -> list[str]:
    folder = root / QRELS_DIR
    return sorted(p.stem for p in folder.glob("*.tsv")) if folder.is_dir() else []


def load_queries(path: Path) -> dict[str, str]:
    """Query id -> text from a BEIR ``queries.jsonl``."""
    queries: dict[str, str] = {}
    try:
        for lineno, record in beir_records(path, "queries"):
            if not isinstance(record["text"], str):
                raise EvalDataError(f'{path}: line {lineno}: "text" must be a string (BEIR queries format)')
            queries[str(record["_id"])] = " ".join(record["text"].split())
    except JsonLinesError as exc:
        raise EvalDataError(f"{path}: {exc}") from None
    return queries


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Judgements from a qrels file: ``query-id corpus-id score`` (BEIR) or ``query-id 0 corpus-id score`` (TREC).

    Columns are separated by tabs (or, in a file without tabs, by spaces). The first line may
    be a header; every other line must have 3 or 4 columns and an integer score.
    """
    qrels: dict[str, dict[str, int]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EvalDataError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise EvalDataError(f"{path}: not valid UTF-8; re-save the file as UTF-8") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        cols = [c.strip() for c in line.split("\t")] if "\t" in line else line.split()
        if len(cols) not in (3, 4):
            raise EvalDataError(
                f"{path}: line {lineno}: expected 3 columns (query-id corpus-id score) or 4 (query-id 0 corpus-id score), "
                f"found {len(cols)}: {line.strip()[:80]!r}"
            )
        qid, doc, score = (cols[0], cols[1], cols[2]) if len(cols) == 3 else (cols[0], cols[2], cols[3])
        try:
            rel = int(score)
        except ValueError:
            if lineno == 1 and not qrels:
                continue  # a header line such as "query-id corpus-id score"
            raise EvalDataError(f"{path}: line {lineno}: the score {score!r} is not an integer") from None
        if not qid or not doc:
            raise EvalDataError(f"{path}: line {lineno}: empty query or document id")
        qrels.setdefault(qid, {})[doc] = rel
    if not qrels:
        raise EvalDataError(f"{path}: no judgements in the file")
    return qrels


def load_dataset(
    root: str | Path, split: str = "test", *, skip_unknown_queries: bool = False, qrels_file: str | Path | None = None
) -> BeirDataset:
    """Read and check a BEIR dataset folder's queries and the qrels of ``split``.

    ``qrels_file`` is judgements kept outside the folder (a subset of queries, such as a part held
    out from training); it replaces ``qrels/<split>.tsv`` and its name becomes the split's.

    A judgement for a query id that ``queries.jsonl`` lacks is an error (the query cannot be
    asked, so any figure would be wrong); ``skip_unknown_queries`` drops such queries with a
    warning instead.
    """
    root = Path(root)
    if not root.is_dir():
        raise EvalDataError(f"{root}: no such dataset folder; pass --data a folder with {CORPUS_FILE}, {QUERIES_FILE} and {QRELS_DIR}/")
    for name in (CORPUS_FILE, QUERIES_FILE):
        if not (root / name).is_file():
            raise EvalDataError(f"{root}: {name} is missing; a BEIR dataset folder has {CORPUS_FILE}, {QUERIES_FILE} and {QRELS_DIR}/<split>.tsv")
    qrels_path = Path(qrels_file) if qrels_file else root / QRELS_DIR / f"{split}.tsv"
    if qrels_file:
        split = qrels_path.stem
        if not qrels_path.is_file():
            raise EvalDataError(f"{qrels_path}: no such qrels file; pass --qrels a file of 'query-id corpus-id score' lines")
    if not qrels_path.is_file():
        splits = available_splits(root)
        hint = f"available splits: {', '.join(splits)}" if splits else f"{root / QRELS_DIR} has no .tsv files"
        raise EvalDataError(f"{root}: no qrels for split {split!r} ({qrels_path} is missing); {hint}; choose one with --split")
    qrels = load_qrels(qrels_path)
    all_queries = load_queries(root / QUERIES_FILE)
    unknown = [q for q in qrels if q not in all_queries]
    warnings: list[str] = []
    if unknown:
        if not skip_unknown_queries:
            more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
            raise EvalDataError(
                f"{qrels_path}: query id {unknown[0]!r}{more} is judged but not in {QUERIES_FILE}; "
                "fix the dataset or pass --skip-unknown-queries to leave such queries out"
            )
        warnings.append(f"{len(unknown)} judged query id(s) are not in {QUERIES_FILE} and were left out (first: {unknown[0]!r})")
        qrels = {q: docs for q, docs in qrels.items() if q in all_queries}
    empty = [q for q in qrels if not all_queries[q]]
    if empty:
        raise EvalDataError(f"{root / QUERIES_FILE}: query {empty[0]!r} has empty text; give every judged query some text")
    return BeirDataset(root, root.resolve().name, split, {q: all_queries[q] for q in qrels}, qrels, tuple(warnings))
