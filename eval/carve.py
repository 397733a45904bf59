"""Carve a held-out part from a BEIR split, for measuring ``rag tune`` on questions it neither trains nor validates on.

    python -m eval.carve --data ../shared/datasets/scifact --split train --fraction 0.2 --seed 0 --out artifacts/tune

writes ``<out>/fit.tsv`` (the queries ``rag tune --qrels`` may use) and ``<out>/heldout.tsv``
(the queries ``rag eval beir --qrels`` measures on). The split is the same seeded hash split
that ``rag tune`` uses for its validation part, so it is reproducible on any machine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from eval.datasets import load_dataset
from eval.tune.data import split_queries, write_qrels


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("artifacts/tune"))
    args = parser.parse_args(argv)
    dataset = load_dataset(args.data, args.split)
    fit, heldout = split_queries(dataset.qrels, args.fraction, args.seed)
    for name, ids in (("fit", fit), ("heldout", heldout)):
        path = write_qrels(args.out / f"{name}.tsv", dataset.qrels, ids)
        print(f"{path}: {len(ids)} queries, {sum(len(dataset.qrels[q]) for q in ids)} judgements")


if __name__ == "__main__":
    main()
