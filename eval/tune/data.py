"""Labelled questions for tuning the encoder: loading, a seeded split, training pairs with BM25 hard negatives.

Everything is keyed by *documents*: a BEIR document, or a section of an article for the
project's own question sets. A passage is a chunk of a document exactly as the index embeds
it (breadcrumb then text), so the model is tuned on what it will see. A passage of a document
judged for a question (relevant or not) is never used as that question's negative.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eval.errors import EvalDataError

#: BM25 ranks among which a hard negative is drawn (the best-ranked unjudged passages).
NEGATIVE_DEPTH = 10


@dataclass(frozen=True)
class LabelledSet:
    """Questions, the passages they may retrieve, and which documents answer which question."""

    name: str
    queries: dict[str, str]  # query id -> text (judged queries only)
    qrels: dict[str, dict[str, int]]  # query id -> {document id: relevance}
    passages: tuple[str, ...]  # passage text as the encoder sees it
    passage_doc: tuple[str, ...]  # document id of each passage

    def relevant(self, qid: str) -> list[str]:
        return sorted(d for d, r in self.qrels.get(qid, {}).items() if r > 0)

    def rows_of(self) -> dict[str, list[int]]:
        """Passage rows of every document."""
        rows: dict[str, list[int]] = {}
        for row, doc in enumerate(self.passage_doc):
            rows.setdefault(doc, []).append(row)
        return rows


@dataclass(frozen=True)
class Pair:
    """One training example: a question, a passage of a relevant document and, if mined, a hard negative."""

    query_id: str
    query: str
    positive: str
    positive_doc: str
    negative: str | None = None
    negative_doc: str | None = None


def _chunk_all(articles, fits) -> list:
    from rag.text.chunking import ChunkerConfig, chunk_article

    config = ChunkerConfig()
    return [chunk for article in articles for chunk in chunk_article(article, config, fits_model=fits)]


def load_beir_set(root: str | Path, split: str = "train", qrels_file: str | Path | None = None, fits=None) -> LabelledSet:
    """A BEIR folder's judged queries of ``split`` (or of ``qrels_file``) and its corpus, chunked like the index."""
    from corpus.loader import load_corpus
    from eval.datasets import load_dataset
    from rag.text.chunking import embed_text

    dataset = load_dataset(root, split, qrels_file=qrels_file)
    chunks = _chunk_all(load_corpus(dataset.corpus_path), fits)
    known = {c.article for c in chunks}
    qrels = {q: docs for q, docs in dataset.qrels.items() if any(r > 0 and d in known for d, r in docs.items())}
    if not qrels:
        raise EvalDataError(f"{root}: no judged query has a relevant document in {dataset.corpus_path.name}; nothing to tune on")
    return LabelledSet(
        name=f"{dataset.name}/{dataset.split}",
        queries={q: dataset.queries[q] for q in qrels},
        qrels=qrels,
        passages=tuple(embed_text(c) for c in chunks),
        passage_doc=tuple(c.article for c in chunks),
    )


def section_doc(article: str, section: Sequence[str]) -> str:
    return f"{article}#{' > '.join(section)}"


def load_qa_set(path: str | Path, corpus_dir: str | Path, fits=None) -> LabelledSet:
    """A question set in the project's format (``eval/data/qa.jsonl``) over a corpus: a gold section is a relevant document."""
    from corpus.loader import load_corpus
    from eval.qa import load_question_set
    from rag.text.chunking import embed_text

    items = [i for i in load_question_set(path) if i.answerable and i.gold_sections]
    chunks = _chunk_all(load_corpus(corpus_dir), fits)
    by_breadcrumb: dict[tuple[str, ...], set[str]] = {}
    for c in chunks:
        by_breadcrumb.setdefault(tuple(c.section), set()).add(section_doc(c.article, c.section))
    qrels: dict[str, dict[str, int]] = {}
    for item in items:
        docs = {d for gold in item.gold_sections for d in by_breadcrumb.get(tuple(gold), ())}
        if docs:
            qrels[item.id] = {d: 1 for d in sorted(docs)}
    if not qrels:
        raise EvalDataError(f"{path}: no answerable question names a gold section found in {corpus_dir}; nothing to tune on")
    questions = {i.id: i.question for i in items}
    return LabelledSet(
        name=Path(path).stem,
        queries={q: questions[q] for q in qrels},
        qrels=qrels,
        passages=tuple(embed_text(c) for c in chunks),
        passage_doc=tuple(section_doc(c.article, c.section) for c in chunks),
    )


def split_queries(query_ids: Iterable[str], fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """``(rest, part)``: ``part`` holds round(fraction * n) query ids (at least one when 0 < fraction), chosen by a
    seeded hash of each id, so the split does not depend on the order of the file and is the same on every machine."""
    ids = sorted(set(query_ids))
    if not 0 <= fraction < 1:
        raise EvalDataError(f"a split fraction must be at least 0 and below 1 (got {fraction})")
    n_part = min(len(ids) - 1, max(1, round(fraction * len(ids)))) if fraction > 0 else 0
    order = sorted(ids, key=lambda q: hashlib.sha256(f"{seed}:{q}".encode()).hexdigest())
    part = set(order[:n_part])
    return [q for q in ids if q not in part], [q for q in ids if q in part]


def write_qrels(path: str | Path, qrels: dict[str, dict[str, int]], query_ids: Iterable[str]) -> Path:
    """The judgements of ``query_ids`` as a BEIR qrels file (``rag eval beir --qrels`` reads it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["query-id\tcorpus-id\tscore"]
    lines += [f"{q}\t{d}\t{r}" for q in query_ids for d, r in qrels[q].items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def bm25_index(data: LabelledSet):
    """The product's BM25 over the set's passages (used to mine negatives and to build the validation pool)."""
    from rag.text.lexical import LexicalIndex

    return LexicalIndex.build(list(data.passages))


def build_pairs(data: LabelledSet, query_ids: Sequence[str], lexical=None, *, negatives: bool = True, seed: int = 0) -> list[Pair]:
    """One pair per (question, relevant document), with the document's passage that BM25 ranks best for the
    question; with ``negatives``, a passage drawn from BM25's best-ranked passages of documents not judged
    for the question (relevant or not) is added as a hard negative."""
    rows_of = data.rows_of()
    pairs: list[Pair] = []
    for qid in query_ids:
        query = data.queries[qid]
        scores = lexical.scores(query) if lexical is not None else np.zeros(len(data.passages), dtype=np.float32)
        judged = set(data.qrels[qid])
        candidates: list[int] = []
        if negatives:
            for row in np.argsort(-scores, kind="stable"):
                if data.passage_doc[row] not in judged:
                    candidates.append(int(row))
                    if len(candidates) == NEGATIVE_DEPTH:
                        break
        for doc in data.relevant(qid):
            rows = rows_of.get(doc)
            if not rows:
                continue
            best = max(rows, key=lambda r: (scores[r], -r))
            negative = None
            if candidates:
                rng = random.Random(f"{seed}:{qid}:{doc}")
                negative = rng.choice(candidates)
            pairs.append(
                Pair(
                    query_id=qid,
                    query=query,
                    positive=data.passages[best],
                    positive_doc=doc,
                    negative=None if negative is None else data.passages[negative],
                    negative_doc=None if negative is None else data.passage_doc[negative],
                )
            )
    return pairs


def validation_pool(data: LabelledSet, query_ids: Sequence[str], lexical, depth: int = 10) -> list[int]:
    """Passage rows to rank for validation: every passage of a relevant document plus BM25's ``depth`` best per
    question. Re-ranking a pool costs seconds where embedding the whole corpus after every epoch would cost minutes."""
    rows_of = data.rows_of()
    pool: set[int] = set()
    for qid in query_ids:
        for doc in data.relevant(qid):
            pool.update(rows_of.get(doc, ()))
        scores = lexical.scores(data.queries[qid])
        pool.update(int(r) for r in np.argsort(-scores, kind="stable")[:depth] if scores[r] > 0)
    return sorted(pool)
