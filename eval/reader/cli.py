"""``rag train-reader`` (train, validate, export a reader) and ``rag eval squad`` (measure an exported reader on a
SQuAD 2.0 file). Heavy modules load inside the commands."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def train_reader_command(
    squad: Annotated[Path, typer.Option("--squad", help="SQuAD 2.0 JSON file to train and validate on (split by article).")],
    qnli: Annotated[
        Optional[Path], typer.Option("--qnli", help="GLUE QNLI TSV: its 'not entailment' pairs add \"no answer\" examples.")
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", help="Run folder: checkpoint, curve.json, float/, and the reader in model/.")
    ] = Path("models/reader"),
    epochs: Annotated[int, typer.Option("--epochs", min=1, max=20)] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the batch order, the span head and dropout.")] = 0,
    max_length: Annotated[int, typer.Option("--max-length", min=64, max=512, help="Word pieces per window (256 or 384).")] = 256,
    stride: Annotated[int, typer.Option("--stride", min=8, max=256, help="Word pieces shared by consecutive windows.")] = 128,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=256)] = 16,
    learning_rate: Annotated[float, typer.Option("--lr", min=1e-7, max=1e-2)] = 2e-4,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Use only the first N questions of each part (smoke tests).")] = 0,
    max_steps: Annotated[int, typer.Option("--max-steps", help="Stop after N steps in all, then validate and export (-1: all).")] = -1,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=1, help="Steps between checkpoints.")] = 200,
    quantize: Annotated[
        str, typer.Option("--quantize", help="int8 recipe: all (22 MB), keep-last-ffn-output (the last feed-forward output in float, 25 MB) or keep-ffn-output (closer to float, about 32 MB).")
    ] = "all",
    log_every: Annotated[int, typer.Option("--log-every", min=1, help="Steps between points of the learning curve.")] = 20,
    threads: Annotated[int, typer.Option("--threads", min=1, max=256, help="CPU threads for PyTorch and ONNX Runtime.")] = 2,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Train a reader (span head on the bundled encoder) on SQuAD 2.0 and export it as int8 ONNX with a model card.

    Re-running the same command resumes from the last checkpoint in --output; Ctrl-C saves one first.
    """
    from eval.reader.config import MODEL_DIR, ReaderTrainConfig
    from eval.reader.train import train_reader

    config = ReaderTrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        max_length=max_length,
        stride=stride,
        limit=limit,
        max_steps=max_steps,
        checkpoint_every=checkpoint_every,
        log_every=log_every,
        threads=threads,
        quantize=quantize,
    )
    command = "rag train-reader " + shlex.join(sys.argv[2:]) if sys.argv[1:2] == ["train-reader"] else ""
    log = lambda message: typer.echo(message, err=True)  # noqa: E731
    report = train_reader(squad, output, config, qnli=qnli, log=log, progress=not quiet, command=command)
    f, q = report.float_figures, report.int8_figures
    typer.echo(
        f"validation ({report.data['validation_questions']} questions): float F1 {f['f1']:.2f}, int8 F1 {q['f1']:.2f}, "
        f"exact {q['exact']:.2f}, no-answer accuracy {q.get('NoAns_exact', 0):.2f} at threshold {q['threshold']}"
    )
    typer.echo(
        f"reader written to {output / MODEL_DIR} ({report.export['model_bytes'] / 2**20:.1f} MB) after "
        f"{report.state.step} steps, {report.state.seconds / 60:.1f} min"
    )


def squad_command(
    data: Annotated[Path, typer.Option("--data", help="SQuAD 2.0 JSON file to answer.")],
    predictions_out: Annotated[
        Path, typer.Option("--predictions", help="Write the official predictions file here: {question id: answer or \"\"}.")
    ],
    reader: Annotated[
        Optional[Path], typer.Option("--reader", help="Reader folder made by 'rag train-reader' [default: models/reader/model].")
    ] = None,
    threads: Annotated[int, typer.Option("--threads", min=1, max=256, help="ONNX Runtime threads.")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print the official summary as JSON.")] = False,
) -> None:
    """Answer a SQuAD 2.0 file with an exported reader and score it with the official SQuAD 2.0 measures."""
    import json

    from tqdm.auto import tqdm

    from eval.reader.predict import answers_at, predictions
    from eval.reader.squad import load_squad, summary
    from eval.report import write_json_as_is
    from rag.answer.reader import DEFAULT_READER_DIR, Reader

    questions = load_squad(data)
    model = Reader(reader or DEFAULT_READER_DIR, threads=threads).load()
    with tqdm(total=len(questions), desc="reading", unit="question", file=sys.stderr, disable=as_json) as bar:
        found = predictions(questions, model.read_batch, bar.update)
    answers = answers_at(found, model.settings.threshold)
    write_json_as_is(predictions_out, answers)  # the official layout: nothing but id -> answer text
    figures = summary(questions, answers)
    if as_json:
        typer.echo(json.dumps({"reader": str(model.folder), "threshold": model.settings.threshold, **figures}, indent=1))
        return
    typer.echo(
        f"{figures['total']} questions: exact {figures['exact']:.2f}, F1 {figures['f1']:.2f}, "
        f"answerable F1 {figures.get('HasAns_f1', 0):.2f}, no-answer accuracy {figures.get('NoAns_exact', 0):.2f} "
        f"(threshold {model.settings.threshold}); predictions: {predictions_out}"
    )
