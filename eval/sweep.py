"""Explore retrieval settings on a BEIR dataset, and answer-composition settings on question sets.

A benchmark script, not a test: it prints tables. Retrieval: the dense ranking and BM25 scores of
every query are computed once and then fused with the same functions the Retriever uses
(:mod:`rag.search.fusion`), so a grid of settings costs seconds each. Settings worth keeping are
then confirmed with ``rag eval beir``, whose figures are the ones reported.

    python -m eval.sweep --data ../shared/datasets/scifact --split train

Composition (``composition``): every question is retrieved once and
composed under each grid point; questions are split into a fit and a validate part by a seeded hash
of their id, the setting is chosen on the fit part and reported on both.

    python -m eval.sweep composition --set eval/data/qa.jsonl .rag-index --set eval/data/fit.jsonl .rag-eval-index
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from eval.datasets import load_dataset
from eval.trec import strictly_decreasing
from eval.metrics import ir_scores
from rag.search.fusion import convex_combination, reciprocal_rank_fusion, top


@dataclass(frozen=True)
class Variant:
    name: str
    fusion: str  # dense | bm25 | rrf | convex
    rrf_k: int = 60
    alpha: float = 0.5
    weights: tuple[float, float] = (1.0, 1.0)  # dense, BM25 (weighted RRF)
    doc_level: bool = False  # collapse each list to documents before fusing
    bm25: str = "default"  # key of the BM25 variant


@dataclass
class QueryLists:
    dense_rows: np.ndarray
    dense_scores: np.ndarray
    bm25: dict[str, np.ndarray]  # BM25 variant -> scores of all rows


def _collapse(rows, scores, doc_of, exclude, depth) -> list[tuple[str, float]]:
    seen: dict[str, float] = {}
    for row, score in zip(rows, scores):
        doc = doc_of[row]
        if doc not in seen and doc != exclude:
            seen[doc] = float(score)
            if len(seen) == depth:
                break
    return list(seen.items())


def _doc_ranking(rows, doc_of) -> list[str]:
    return list(dict.fromkeys(doc_of[r] for r in rows))


def fuse(v: Variant, lists: QueryLists, doc_of: list[str], qid: str, pool: int, depth: int) -> list[tuple[str, float]]:
    """One query's documents under variant ``v``, mirroring Retriever.search then best-chunk collapse."""
    bm = lists.bm25[v.bm25]
    positive = np.flatnonzero(bm > 0)
    bm_rows = positive[np.lexsort((positive, -bm[positive]))][:pool]
    if v.fusion == "dense":
        return _collapse(lists.dense_rows, lists.dense_scores, doc_of, qid, depth)
    if v.fusion == "bm25":
        return _collapse(bm_rows, bm[bm_rows], doc_of, qid, depth)
    if v.doc_level:
        d_docs, b_docs = _doc_ranking(lists.dense_rows, doc_of), _doc_ranking(bm_rows, doc_of)
        ids = {d: i for i, d in enumerate(dict.fromkeys(d_docs + b_docs))}
        names = list(ids)
        if v.fusion == "rrf":
            scores = reciprocal_rank_fusion([[ids[d] for d in d_docs], [ids[d] for d in b_docs]], k=v.rrf_k, weights=v.weights)
        else:
            best_d = {}
            for r, s in zip(lists.dense_rows, lists.dense_scores):
                best_d.setdefault(ids[doc_of[r]], float(s))
            best_b = {}
            for r in bm_rows:
                best_b.setdefault(ids[doc_of[r]], float(bm[r]))
            scores = convex_combination(best_d, best_b, alpha=v.alpha)
        return [(names[i], scores[i]) for i in top(scores, len(scores)) if names[i] != qid][:depth]
    dense_rows = [int(r) for r in lists.dense_rows]
    if v.fusion == "rrf":
        scores = reciprocal_rank_fusion([dense_rows, [int(r) for r in bm_rows]], k=v.rrf_k, weights=v.weights)
    else:
        cos = dict(zip(dense_rows, map(float, lists.dense_scores)))
        pool_ids = sorted(set(dense_rows) | {int(r) for r in bm_rows})
        missing = [i for i in pool_ids if i not in cos]
        if missing:
            cos.update(zip(missing, map(float, lists.extra_cos(missing))))  # type: ignore[attr-defined]
        scores = convex_combination({i: cos[i] for i in pool_ids}, {int(i): float(bm[i]) for i in pool_ids if bm[i] > 0}, alpha=v.alpha)
    ranked = top(scores, len(scores))
    return _collapse(ranked, [scores[r] for r in ranked], doc_of, qid, depth)


def default_variants() -> list[Variant]:
    out = [Variant("dense", "dense"), Variant("bm25", "bm25")]
    out += [Variant(f"rrf k={k}", "rrf", rrf_k=k) for k in (5, 10, 20, 30, 60, 100)]
    out += [Variant(f"convex a={a}", "convex", alpha=a) for a in (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7)]
    out += [Variant(f"rrf k=60 w={w}", "rrf", weights=(w, 1.0)) for w in (0.7, 1.5)]
    out += [Variant("rrf k=60 doc-level", "rrf", doc_level=True), Variant("convex a=0.5 doc-level", "convex", doc_level=True)]
    return out


def bm25_builders(index) -> dict[str, Callable]:
    """BM25 index variants over the same chunks: parameters, analysis, and whether titles are indexed."""
    from rag.text.chunking import breadcrumb_prefix
    from rag.index import lexical_text
    from rag.text.lexical import BM25Params, LexicalIndex

    with_title = [lexical_text(c) for c in index.chunks]
    without_title = [c.text for c in index.chunks]
    title_twice = [breadcrumb_prefix(c.section) + t for c, t in zip(index.chunks, with_title)]
    return {
        "k1=0.9 b=0.4": lambda: LexicalIndex.build(with_title, BM25Params(k1=0.9, b=0.4)),
        "k1=1.2 b=0.5": lambda: LexicalIndex.build(with_title, BM25Params(k1=1.2, b=0.5)),
        "k1=1.2 b=0.9": lambda: LexicalIndex.build(with_title, BM25Params(k1=1.2, b=0.9)),
        "k1=1.5 b=0.75": lambda: LexicalIndex.build(with_title, BM25Params(k1=1.5, b=0.75)),
        "k1=0.9 b=0.75": lambda: LexicalIndex.build(with_title, BM25Params(k1=0.9, b=0.75)),
        "no stemming": lambda: LexicalIndex.build(with_title, BM25Params(stemmer="")),
        "no stop words": lambda: LexicalIndex.build(with_title, BM25Params(stopwords="")),
        "no title": lambda: LexicalIndex.build(without_title, BM25Params()),
        "title twice": lambda: LexicalIndex.build(title_twice, BM25Params()),
    }


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["composition"]:
        return composition_main(argv[1:])
    from eval.beir import index_dataset
    from rag.settings import load_settings
    from rag.service import make_encoder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--depth", type=int, default=100, help="documents per query (100 is enough for the figures)")
    parser.add_argument("--pool", type=int, default=1000, help="candidates taken from each retriever")
    parser.add_argument("--bm25-variants", action="store_true", help="also try BM25 parameters and text variants")
    args = parser.parse_args(argv)

    settings = load_settings()
    dataset = load_dataset(args.data, args.split)
    encoder = make_encoder(settings)
    index, report = index_dataset(dataset, settings, encoder, log=lambda m: print(m, file=sys.stderr))
    doc_of = [c.article for c in index.chunks]
    qids = list(dataset.queries)
    qvecs = encoder.embed([dataset.queries[q] for q in qids], progress=None, desc="queries")
    pool = min(args.pool, len(index))
    _, rows = index.vectors.search(qvecs, pool)
    cos = np.asarray(qvecs @ index.vectors.vectors(np.arange(len(index))).T, dtype=np.float32)

    bm25_indexes = {"default": index.lexical}
    if args.bm25_variants:
        for name, build in bm25_builders(index).items():
            t = time.perf_counter()
            bm25_indexes[name] = build()
            print(f"built BM25 '{name}' in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    lists = {}
    for i, q in enumerate(qids):
        ql = QueryLists(rows[i], cos[i, rows[i]], {k: ix.scores(dataset.queries[q]) for k, ix in bm25_indexes.items()})
        ql.extra_cos = lambda ids, i=i: cos[i, ids]  # type: ignore[attr-defined]
        lists[q] = ql

    variants = default_variants()
    if args.bm25_variants:
        for name in bm25_indexes:
            if name != "default":
                variants += [
                    Variant(f"bm25 {name}", "bm25", bm25=name),
                    Variant(f"rrf k=60 / {name}", "rrf", bm25=name),
                    Variant(f"convex a=0.5 / {name}", "convex", bm25=name),
                ]
    header = f"{'variant':<34} {'nDCG@10':>8} {'R@100':>7} {'MRR@10':>7} {'MAP@100':>8}"
    print(f"{dataset.name} [{args.split}] {len(qids)} queries, {report.chunks} chunks, pool {pool}, depth {args.depth}")
    print(header)
    print("-" * len(header))
    for v in variants:
        run = {}
        for q in qids:
            docs = fuse(v, lists[q], doc_of, q, pool, args.depth)
            run[q] = list(zip([d for d, _ in docs], strictly_decreasing([s for _, s in docs])))
        s = ir_scores(dataset.qrels, run).aggregate
        print(f"{v.name:<34} {s['nDCG@10']:>8.4f} {s['Recall@100']:>7.4f} {s['MRR@10']:>7.4f} {s['MAP@100']:>8.4f}", flush=True)


# ------------------------------------------------------------------------------- answer composition

#: The split for tuning answer composition: a question is in the fit part when the SHA-256 of
#: "<SPLIT_SEED>:<id>", read as a 64-bit number, falls in the first FIT_SHARE of its range, otherwise in
#: the validate part. It depends on the id alone (not on the file, order or other questions), so a
#: question stays in its part when sets grow. Changing the seed or the share makes a different split.
SPLIT_SEED = "composition-split-1"
FIT_SHARE = 0.6
CENTERING_GRID = (0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)
CUTOFF_GRID = (0.5, 0.6, 0.75)


def split_part(qid: str, seed: str = SPLIT_SEED, fit_share: float = FIT_SHARE) -> str:
    """``"fit"`` or ``"validate"``: the part of the composition split that question ``qid`` belongs to."""
    digest = hashlib.sha256(f"{seed}:{qid}".encode("utf-8")).digest()
    return "fit" if int.from_bytes(digest[:8], "big") < fit_share * 2**64 else "validate"


@dataclass(frozen=True)
class Setting:
    centering: float
    cutoff: float

    @property
    def name(self) -> str:
        return f"centring {self.centering:g}, cut-off {self.cutoff:g}"


@dataclass(frozen=True)
class PartFigures:
    """Counts of one grid point on one part; ``right`` is what the choice maximises."""

    questions: int
    answerable: int
    correct: int  # answered, a gold section among the first 3 citations, every answer-key group stated
    hit3: int  # a gold section among the first 3 citations (answerable questions with gold sections)
    key: int  # every answer-key group stated
    abstained: int  # answerable questions abstained on
    citations: float  # mean citations per answered answerable question
    unanswerable: int
    handled: int  # unanswerable questions abstained on, or answered with a note naming what is missing

    @property
    def right(self) -> int:
        return self.correct + self.handled

    def rank_key(self) -> tuple[int, int, int]:
        return (self.right, self.key, self.hit3)


def part_figures(results) -> PartFigures:
    """Count the outcomes of scored questions (:class:`eval.qa.QAResult`)."""
    from eval.metrics import hit_at

    answerable = [r for r in results if r.answerable]
    answered = [r for r in answerable if not r.abstained]
    unanswerable = [r for r in results if not r.answerable]
    return PartFigures(
        questions=len(results),
        answerable=len(answerable),
        correct=sum(bool(r.answered_correctly) for r in answerable),
        hit3=sum(hit_at(r.citation_rank, 3) for r in answerable if r.gold_sections),
        key=sum(bool(r.key_match) for r in answerable if r.key_groups),
        abstained=len(answerable) - len(answered),
        citations=sum(len(r.cited_sections) for r in answered) / max(len(answered), 1),
        unanswerable=len(unanswerable),
        handled=sum(r.handled for r in unanswerable),
    )


def choose_setting(figures: dict[Setting, PartFigures], current: Setting) -> Setting:
    """The rule, fixed before the sweep ran: most questions right (answerable answered correctly plus
    unanswerable handled), then most answer keys, then most gold sections in the first 3 citations;
    among settings tied on all three, the current default if it is one of them (no change without a gain),
    else the first in grid order."""
    best = max(f.rank_key() for f in figures.values())
    tied = [s for s, f in figures.items() if f.rank_key() == best]
    return current if current in tied else tied[0]


def _figure_row(name: str, f: PartFigures) -> str:
    return (
        f"{name:<28} {f.right:>3}/{f.questions:<3} {f.correct:>3}/{f.answerable:<3} {f.hit3:>5} {f.key:>5}"
        f" {f.citations:>6.2f} {f.abstained:>5} {f.handled:>3}/{f.unanswerable:<3}"
    )


def _print_part(part: str, figures: dict[Setting, PartFigures], marks: dict[Setting, str]) -> None:
    header = f"{'setting [' + part + ']':<28} {'right':>7} {'correct':>7} {'hit@3':>5} {'key':>5} {'cites':>6} {'abst':>5} {'handled':>7}"
    print(header)
    print("-" * len(header))
    for s, f in figures.items():
        print(_figure_row(s.name + marks.get(s, ""), f), flush=True)


def composition_main(argv: list[str]) -> None:
    """Sweep centring x extra-sentence cut-off on the fit part, choose there, and report both parts."""
    from rag.payloads import AskResponse
    from eval.qa import load_question_set, score_response
    from rag.answer.service import AnswerService
    from rag.service import answer_config, make_encoder, open_answer_service
    from rag.settings import load_settings

    parser = argparse.ArgumentParser(prog="python -m eval.sweep composition", description=composition_main.__doc__)
    parser.add_argument("--set", nargs=2, action="append", required=True, metavar=("QUESTIONS", "INDEX_DIR"),
                        help="a question set and the index to ask it of (repeatable)")
    parser.add_argument("--k", type=int, default=5, help="passages per question (top_k of /ask)")
    parser.add_argument("--centering", type=float, nargs="+", default=CENTERING_GRID)
    parser.add_argument("--cutoff", type=float, nargs="+", default=CUTOFF_GRID)
    args = parser.parse_args(argv)

    settings = load_settings()
    encoder = make_encoder(settings)
    base = answer_config(settings)
    current = Setting(base.centering, base.relative_cutoff)
    grid = [Setting(c, x) for c in args.centering for x in args.cutoff]
    grid += [current] if current not in grid else []
    asked: dict[str, list] = {"fit": [], "validate": []}  # part -> (item, service, retrieval)
    for path, index_dir in args.set:
        service = open_answer_service(load_settings(index_dir=index_dir), encoder=encoder)
        items = load_question_set(path)
        counts = {"fit": 0, "validate": 0}
        for item in items:
            part = split_part(item.id)
            counts[part] += 1
            asked[part].append((item, service, service.retrieve(item.question, top_k=args.k)))
        print(f"{path} ({index_dir}): fit {counts['fit']}, validate {counts['validate']}", file=sys.stderr)

    figures: dict[str, dict[Setting, PartFigures]] = {"fit": {}, "validate": {}}
    for setting in grid:
        config = replace(base, centering=setting.centering, relative_cutoff=setting.cutoff)
        for part, rows in asked.items():
            results = []
            for item, service, retrieval in rows:
                answer = AnswerService(service.retriever, config).finish(retrieval)
                response = AskResponse.of(answer).model_dump(mode="json")
                results.append(score_response(item, response, 0.0, lambda pid, s=service: _passage_text(s, pid)))
            figures[part][setting] = part_figures(results)
    chosen = choose_setting(figures["fit"], current)
    marks = {current: " (default)"} | ({chosen: " (chosen)"} if chosen != current else {})
    for part in ("fit", "validate"):
        print()
        _print_part(part, figures[part], marks)
    print(f"\nchosen on fit: {chosen.name}; current default: {current.name}")
    for part in ("fit", "validate"):
        print(_figure_row(f"{part}: chosen", figures[part][chosen]))


def _passage_text(service, passage_id: str) -> str | None:
    chunk = service.index.chunk(passage_id)
    return None if chunk is None else chunk.text


if __name__ == "__main__":
    main()
