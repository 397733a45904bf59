"""Predictions of a reader (PyTorch during training, ONNX after export) on SQuAD questions, and the "no answer"
threshold chosen on them.

Both models go through :func:`rag.answer.reader.read_items`, the service's own windowing and post-processing, and
differ only in the function that turns a padded batch into logits. The threshold is the one the official
evaluate-v2.0 script's ``find_best_thresh`` would pick: the margin (best span score - null score) above which
answering maximises F1 over the questions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from eval.reader.squad import Question, question_scores, summary
from rag.answer.reader import LogitsFn, ReaderSettings, Span, read_items

#: Questions per call of the reader (their windows share padded model runs).
CHUNK = 64


@dataclass(frozen=True)
class Prediction:
    """A question's best span and its margin over "no answer" (-inf when the paragraph gave no valid span)."""

    id: str
    text: str
    margin: float


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    figures: dict[str, float | int]  # the official summary at this threshold


def predictions(
    questions: Sequence[Question], read: Callable[[list[tuple[str, list[str]]]], list[list[Span | None]]], progress=None
) -> list[Prediction]:
    """Each question's best span over its paragraph, with ``read`` = a ``read_batch``-like function."""
    out = []
    for at in range(0, len(questions), CHUNK):
        chunk = questions[at : at + CHUNK]
        for q, (span,) in zip(chunk, read([(q.question, [q.context]) for q in chunk])):
            out.append(Prediction(q.id, span.text, span.margin) if span and span.text.strip() else Prediction(q.id, "", -math.inf))
        if progress is not None:
            progress(len(chunk))
    return out


def torch_logits(model) -> LogitsFn:
    """A :data:`rag.answer.reader.LogitsFn` over a ``transformers`` question-answering model (no gradients)."""
    import torch

    def run(batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            out = model(**{k: torch.from_numpy(v) for k, v in batch.items()})
        return out.start_logits.float().numpy(), out.end_logits.float().numpy()

    return run


def torch_reader(model, tokenizers, settings: ReaderSettings, batch_size: int = 32):
    """A ``read_batch``-like function over a PyTorch model (the model is put in eval mode)."""
    model.eval()
    run = torch_logits(model)
    return lambda items: read_items(items, tokenizers, settings, run, batch_size)


def answers_at(found: Sequence[Prediction], threshold: float) -> dict[str, str]:
    """The predictions file: question id -> answer text, or "" where the margin does not exceed ``threshold``."""
    return {p.id: p.text if p.margin > threshold else "" for p in found}


def choose_threshold(questions: Sequence[Question], found: Sequence[Prediction]) -> ThresholdChoice:
    """The margin threshold that maximises F1 (ties: the higher threshold), with the summary at it."""
    by_id = {q.id: q for q in questions}
    gain = []  # F1 gained by answering instead of abstaining, for each question that has a span
    base = 0.0
    for p in found:
        q = by_id[p.id]
        null_f1 = question_scores(q, "")[1]
        base += null_f1
        if math.isfinite(p.margin):
            gain.append((p.margin, question_scores(q, p.text)[1] - null_f1))
    gain.sort(key=lambda g: -g[0])
    threshold = (gain[0][0] + 1.0) if gain else 0.0  # above every margin: answer nothing
    best, total = base, base
    for i, (margin, delta) in enumerate(gain):
        total += delta
        if i + 1 < len(gain) and gain[i + 1][0] == margin:
            continue  # equal margins are answered together
        if total > best + 1e-9:
            best = total
            threshold = (margin + gain[i + 1][0]) / 2 if i + 1 < len(gain) else margin - 1.0
    return ThresholdChoice(round(threshold, 4), summary(questions, answers_at(found, round(threshold, 4))))


def rounded(figures: dict) -> dict:
    """Summary figures with three decimals (counts unchanged)."""
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}
