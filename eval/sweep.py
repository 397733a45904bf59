"""Explore retrieval settings on a BEIR dataset: one index, one embedding pass, many fusions and BM25 variants.

A benchmark script, not a test: it prints a table. The dense ranking and BM25 scores of every
query are computed once and then fused with the same functions the Retriever uses
(:mod:`rag.fusion`), so a grid of settings costs seconds each. Settings worth keeping are
then confirmed with ``rag eval beir``, whose figures are the ones reported.

    python -m eval.sweep --data ../shared/datasets/scifact --split train
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from eval.datasets import load_dataset
from eval.trec import strictly_decreasing
from eval.metrics import ir_scores
from rag.fusion import convex_combination, reciprocal_rank_fusion, top


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
    from rag.chunking import breadcrumb_prefix
    from rag.index import lexical_text
    from rag.lexical import BM25Params, LexicalIndex

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


if __name__ == "__main__":
    main()
