"""Training examples for the reader: (question, paragraph) windows with the answer's token positions.

Windows come from :func:`rag.answer.reader.encode_windows`, the function the service runs, with the bundled
tokenizer (uncased WordPiece, loaded through ``transformers.AutoTokenizer``): the question is kept whole
(up to a limit), the paragraph is cut into windows of ``max_length`` word pieces that overlap by ``stride``.
A window's target is the answer's first and last token, or position 0 ([CLS], "no answer") when the question
is unanswerable or its answer is not wholly inside the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eval.reader.qnli import QnliPair
from eval.reader.squad import Question
from rag.answer.reader import ReaderSettings, Window, configure, encode_windows, window_tokenizers


@dataclass(frozen=True)
class Feature:
    """One training window: model inputs and the target token positions (0, 0 for "no answer")."""

    ids: np.ndarray
    type_ids: np.ndarray
    start: int
    end: int
    source: str  # "squad" or "qnli"


def load_tokenizers(folder: str | Path, settings: ReaderSettings):
    """The windowing and the plain tokenizer of a model folder (see :func:`rag.answer.reader.window_tokenizers`)."""
    from transformers import AutoTokenizer

    windows, raw = window_tokenizers(AutoTokenizer.from_pretrained(str(folder)).backend_tokenizer)
    configure(windows, settings)
    return windows, raw


def token_span(offsets: np.ndarray, start_char: int, end_char: int) -> tuple[int, int]:
    """The first and last token of the characters [start_char, end_char) in a window; (0, 0) when the span is
    not wholly inside the window's part of the paragraph."""
    inside = np.nonzero(offsets[:, 0] >= 0)[0]
    if not len(inside) or offsets[inside[0], 0] > start_char or offsets[inside[-1], 1] < end_char:
        return 0, 0
    starts = inside[offsets[inside, 1] > start_char]
    ends = inside[offsets[inside, 0] < end_char]
    if not len(starts) or not len(ends) or starts[0] > ends[-1]:
        return 0, 0
    return int(starts[0]), int(ends[-1])


def _feature(window: Window, start: int, end: int, source: str) -> Feature:
    return Feature(window.ids, window.type_ids, start, end, source)


def squad_features(questions: Sequence[Question], tokenizers, settings: ReaderSettings) -> list[Feature]:
    """Every window of every question, each with its target (the first gold answer)."""
    tokenizer, raw = tokenizers
    features = []
    for q in questions:
        answer = q.answers[0] if q.answers else None
        for window in encode_windows(tokenizer, raw, q.question, [q.context], settings):
            s, e = token_span(window.offsets, answer.start, answer.start + len(answer.text)) if answer else (0, 0)
            features.append(_feature(window, s, e, "squad"))
    return features


def qnli_features(pairs: Sequence[QnliPair], tokenizers, settings: ReaderSettings) -> list[Feature]:
    """QNLI's "not entailment" pairs as windows whose target is "no answer".

    QNLI marks whether a sentence holds the answer but not where, so an "entailment" pair gives no span to
    train the span head on; those pairs are left out rather than given an invented target.
    """
    tokenizer, raw = tokenizers
    return [
        _feature(window, 0, 0, "qnli")
        for pair in pairs
        if not pair.entailment
        for window in encode_windows(tokenizer, raw, pair.question, [pair.sentence], settings)
    ]
