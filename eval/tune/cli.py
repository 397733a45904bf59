"""``rag tune``: adapt the bundled encoder to labelled questions (a BEIR folder or a question set over a corpus)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def tune_command(
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/) or a question set (JSONL, the eval/data/qa.jsonl format) over --corpus.",
        ),
    ],
    split: Annotated[str, typer.Option("--split", help="Which qrels/<split>.tsv of a BEIR folder to train on.")] = "train",
    qrels: Annotated[
        Optional[Path], typer.Option("--qrels", help="Train on the queries of this qrels file instead of qrels/<split>.tsv.")
    ] = None,
    corpus: Annotated[
        Optional[Path], typer.Option("--corpus", help="Articles a question set refers to [env RAG_CORPUS_DIR; default: bundled corpus].")
    ] = None,
    output: Annotated[Path, typer.Option("--output", help="Folder to write the tuned model to.")] = Path("models/tuned"),
    epochs: Annotated[int, typer.Option("--epochs", min=1, max=50, help="Most epochs; the best on the validation part is kept.")] = 2,
    batch_size: Annotated[int, typer.Option("--batch-size", min=2, max=1024, help="Pairs per batch (in-batch negatives).")] = 32,
    learning_rate: Annotated[float, typer.Option("--learning-rate", min=1e-7, max=1e-2)] = 8e-5,
    hard_negatives: Annotated[
        bool, typer.Option("--hard-negatives/--no-hard-negatives", help="Add one BM25-mined negative per pair.")
    ] = True,
    dev_fraction: Annotated[
        float, typer.Option("--dev-fraction", min=0.0, max=0.5, help="Share of the questions held out for validation (0: none).")
    ] = 0.1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the validation split, the negatives and training.")] = 0,
    max_steps: Annotated[int, typer.Option("--max-steps", help="Stop after this many steps (-1: every epoch).")] = -1,
    max_pairs: Annotated[
        int, typer.Option("--max-pairs", min=0, help="Train on only as many questions as give this many pairs (0: all).")
    ] = 0,
    threads: Annotated[int, typer.Option("--threads", min=0, max=256, help="CPU threads for training (0: one per core).")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --output folder.")] = False,
) -> None:
    """Fine-tune the bundled encoder on labelled questions and write a model folder with a model card.

    Validates on a part of the questions it does not train on; use the result with --model or RAG_MODEL_PATH.
    """
    from eval.tune.config import TuneConfig, check_output

    config = TuneConfig(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        hard_negatives=hard_negatives,
        dev_fraction=dev_fraction,
        seed=seed,
        max_steps=max_steps,
        max_pairs=max_pairs,
        threads=threads,
    )
    check_output(output, overwrite)  # before the seconds that importing the trainer takes
    from eval.tune.train import tune

    labelled = _labelled(data, split, qrels, corpus)
    report = tune(labelled, output, config, overwrite=overwrite, log=lambda m: typer.echo(m, err=True))
    _echo_validation(report)
    typer.echo(f"tuned model written to {report.output} in {report.seconds:.0f} s ({report.cpu_seconds:.0f} CPU-seconds); use it with --model {report.output} or RAG_MODEL_PATH")


def _labelled(data: Path, split: str, qrels: Path | None, corpus: Path | None):
    """The labelled questions of a BEIR folder or of a question set over a corpus."""
    from core.errors import ConfigError
    from embeddings.minilm import MiniLMEncoder
    from eval.tune.data import load_beir_set, load_qa_set
    from rag.settings import load_settings

    settings = load_settings(corpus_dir=corpus)
    fits = MiniLMEncoder().fits  # chunks as the index makes them for the bundled model's window
    if data.is_dir():
        return load_beir_set(data, split, qrels, fits=fits)
    if data.is_file():
        return load_qa_set(data, settings.corpus_dir, fits=fits)
    raise ConfigError(f"{data}: no such folder or file; pass --data a BEIR folder or a question set (JSONL)")


def _echo_validation(report) -> None:
    """Base against tuned figures on the validation part, with a warning when tuning made things worse."""
    if not (report.base and report.epochs):
        return
    best = max(report.epochs, key=lambda h: h["hybrid_ndcg@10"])
    typer.echo(
        f"validation nDCG@10 ({report.dev_queries} questions): hybrid {report.base['hybrid_ndcg@10']:.4f} -> {best['hybrid_ndcg@10']:.4f}, "
        f"dense {report.base['dense_ndcg@10']:.4f} -> {best['dense_ndcg@10']:.4f}"
    )
    if best["hybrid_ndcg@10"] < report.base["hybrid_ndcg@10"]:
        typer.echo("warning: the tuned model is worse than the bundled one on the validation questions; keep the bundled model", err=True)
