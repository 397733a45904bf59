"""The reader: an extractive question-answering model (ONNX, int8) that points at the span of a passage that
answers a question, or says that the passage does not answer it.

The runtime half only: ONNX Runtime and ``tokenizers``, no torch, so the service stays light. The windowing
(question + passage pieces with a stride) and the post-processing (best span against the null score) are pure
functions here, and the training and measuring half (``eval.reader``) imports them rather than keeping its own
copy, so what was measured is what runs. A reader folder holds ``model.onnx``, the tokenizer files and
``reader.json`` (settings, the validation-tuned threshold, the model's SHA-256), written by ``rag train-reader``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import ConfigError, RagError
from core.files import sha256_file

FORMAT_VERSION = 1
READER_META = "reader.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
#: The reader that ships with the package (model card: its README.md), used unless ``RAG_READER_PATH`` names another.
BUNDLED_READER_DIR = Path(__file__).resolve().parent / "models" / "reader"
DEFAULT_READER_DIR = BUNDLED_READER_DIR
#: Longer questions are cut to this many word pieces (never longer than the window allows; see ``question_tokens``).
MAX_QUESTION_TOKENS = 64

#: Logits of a padded batch: ``run({"input_ids", "attention_mask", "token_type_ids"}) -> (start, end)``, each (batch, length).
LogitsFn = Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray]]


class ReaderError(RagError):
    """A reader folder that is missing, incomplete or damaged."""


@dataclass(frozen=True)
class ReaderSettings:
    """How questions and passages are cut into windows and how an answer is chosen."""

    threshold: float = 0.0  # answer when best span score - null score > threshold (tuned on validation)
    max_length: int = 256  # word pieces per window: [CLS] question [SEP] passage piece [SEP]
    stride: int = 128  # word pieces shared by consecutive windows of one passage
    max_answer_tokens: int = 30
    top_n: int = 20  # start and end candidates per window

    def __post_init__(self) -> None:
        if not 32 <= self.max_length <= 512 or self.stride < 1 or self.max_length - self.stride - 4 < 16:
            raise ConfigError(
                f"reader windows need 32 <= max length <= 512 and a stride that leaves 16 question word pieces "
                f"(max length {self.max_length}, stride {self.stride}); choose a smaller stride"
            )
        if self.max_answer_tokens < 1 or self.top_n < 1:
            raise ConfigError("reader needs max answer tokens >= 1 and top n >= 1")

    @property
    def question_tokens(self) -> int:
        """Word pieces a question may keep: the passage part of a window must stay longer than the stride."""
        return min(MAX_QUESTION_TOKENS, self.max_length - self.stride - 4)


@dataclass(frozen=True)
class Window:
    """One model input: the question and a piece of one passage. ``offsets`` holds each token's character span
    in the passage, (-1, -1) for the question and special tokens."""

    passage: int
    ids: np.ndarray
    type_ids: np.ndarray
    offsets: np.ndarray  # (tokens, 2)


@dataclass(frozen=True)
class Span:
    """The best answer a passage gives: ``passage_text[start:end] == text``."""

    passage: int
    start: int
    end: int
    text: str
    score: float  # start logit + end logit of the span
    null_score: float  # the lowest "no answer" score over the passage's windows

    @property
    def margin(self) -> float:
        return self.score - self.null_score


# ----------------------------------------------------------------------------------- windows


def window_tokenizers(tokenizer):
    """Two copies of a ``tokenizers.Tokenizer``: one that cuts (question, passage) pairs into windows (set up by
    :func:`configure`), and one that never truncates or pads (for measuring questions)."""
    from tokenizers import Tokenizer

    raw = Tokenizer.from_str(tokenizer.to_str())
    raw.no_truncation()
    raw.no_padding()
    return Tokenizer.from_str(tokenizer.to_str()), raw


def configure(windows_tokenizer, settings: ReaderSettings) -> None:
    """Truncate only the passage, keep the overflow as further windows, pad nothing (batches pad themselves)."""
    windows_tokenizer.enable_truncation(settings.max_length, stride=settings.stride, strategy="only_second")
    windows_tokenizer.no_padding()


def clip_question(raw, question: str, limit: int) -> str:
    """``question`` cut to at most ``limit`` word pieces (a longer one would leave no room for the passage)."""
    question, keep = question.strip(), limit
    while keep > 0:
        offsets = raw.encode(question, add_special_tokens=False).offsets
        if len(offsets) <= limit:
            return question
        question = question[: offsets[keep - 1][1]]
        keep -= 1  # a word cut in its middle can come back longer; cut one more piece on the next round
    return ""


def encode_windows(tokenizer, raw, question: str, passages: Sequence[str], settings: ReaderSettings) -> list[Window]:
    """Every window of every passage for ``question`` (``tokenizer`` set up by :func:`configure`)."""
    question = clip_question(raw, question, settings.question_tokens)
    windows = []
    for p, encoding in enumerate(tokenizer.encode_batch([(question, passage) for passage in passages])):
        for piece in (encoding, *encoding.overflowing):
            inside = np.array([s == 1 for s in piece.sequence_ids], dtype=bool)
            offsets = np.asarray(piece.offsets, dtype=np.int64).reshape(-1, 2)
            offsets[~inside] = -1
            windows.append(
                Window(p, np.asarray(piece.ids, dtype=np.int64), np.asarray(piece.type_ids, dtype=np.int64), offsets)
            )
    return windows


def pad_batch(windows: Sequence[Window]) -> dict[str, np.ndarray]:
    """The model inputs of ``windows``, padded to the longest of them."""
    width = max(len(w.ids) for w in windows)
    batch = {name: np.zeros((len(windows), width), dtype=np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")}
    for i, w in enumerate(windows):
        batch["input_ids"][i, : len(w.ids)] = w.ids
        batch["attention_mask"][i, : len(w.ids)] = 1
        batch["token_type_ids"][i, : len(w.ids)] = w.type_ids
    return batch


def run_windows(windows: Sequence[Window], run: LogitsFn, batch_size: int = 32) -> list[tuple[np.ndarray, np.ndarray]]:
    """Start and end logits of each window (in order), computed in batches of similar length."""
    order = sorted(range(len(windows)), key=lambda i: len(windows[i].ids))
    out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(windows)
    for at in range(0, len(order), batch_size):
        chosen = order[at : at + batch_size]
        start, end = run(pad_batch([windows[i] for i in chosen]))
        for row, i in enumerate(chosen):
            n = len(windows[i].ids)
            out[i] = (np.asarray(start[row, :n], dtype=np.float32), np.asarray(end[row, :n], dtype=np.float32))
    return out  # type: ignore[return-value]


# ----------------------------------------------------------------------------------- post-processing


def best_span(
    start_logits: np.ndarray, end_logits: np.ndarray, offsets: np.ndarray, max_answer_tokens: int = 30, top_n: int = 20
) -> tuple[float, int, int] | None:
    """The highest-scoring span of one window as (start + end logit, start char, end char): both ends in the
    passage, start <= end, at most ``max_answer_tokens`` long, among the ``top_n`` best starts and ends."""
    n = len(offsets)
    inside = offsets[:, 0] >= 0
    if not inside.any():
        return None
    start = np.where(inside, start_logits[:n], -np.inf)
    end = np.where(inside, end_logits[:n], -np.inf)
    starts = np.argsort(-start, kind="stable")[:top_n]
    ends = np.argsort(-end, kind="stable")[:top_n]
    starts, ends = starts[inside[starts]], ends[inside[ends]]
    length = ends[None, :] - starts[:, None]
    scores = np.where((length >= 0) & (length < max_answer_tokens), start[starts][:, None] + end[ends][None, :], -np.inf)
    if not np.isfinite(scores).any():
        return None
    i, j = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return float(scores[i, j]), int(offsets[starts[i], 0]), int(offsets[ends[j], 1])


def passage_spans(
    passages: Sequence[str], windows: Sequence[Window], logits: Sequence[tuple[np.ndarray, np.ndarray]], settings: ReaderSettings
) -> list[Span | None]:
    """For each passage, its best span over all its windows and its null score (the lowest [CLS] start + end
    score over those windows); None for a passage with no valid span."""
    best: dict[int, tuple[float, int, int]] = {}
    null: dict[int, float] = {}
    for window, (start, end) in zip(windows, logits):
        p = window.passage
        null[p] = min(null.get(p, np.inf), float(start[0] + end[0]))
        span = best_span(start, end, window.offsets, settings.max_answer_tokens, settings.top_n)
        if span is not None and (p not in best or span[0] > best[p][0]):
            best[p] = span
    return [
        Span(p, best[p][1], best[p][2], passages[p][best[p][1] : best[p][2]], best[p][0], null[p]) if p in best else None
        for p in range(len(passages))
    ]


def within(
    window: Window, logits: tuple[np.ndarray, np.ndarray], lo: int, hi: int, settings: ReaderSettings
) -> tuple[float, int, int] | None:
    """:func:`best_span` of one window among the tokens that lie wholly inside the characters ``lo:hi`` of its passage."""
    offsets = window.offsets.copy()
    outside = (offsets[:, 0] < lo) | (offsets[:, 1] > hi)
    offsets[outside] = -1
    return best_span(logits[0], logits[1], offsets, settings.max_answer_tokens, settings.top_n)


@dataclass(frozen=True)
class Reading:
    """One question read over its passages: each passage's best span, and the logits kept so that the best span
    inside a given quote can be found without running the model again."""

    passages: Sequence[str]
    windows: Sequence[Window]
    logits: Sequence[tuple[np.ndarray, np.ndarray]]
    settings: ReaderSettings

    @functools.cached_property
    def spans(self) -> list[Span | None]:
        return passage_spans(self.passages, self.windows, self.logits, self.settings)

    def threshold(self, override: float | None = None) -> float:
        """The threshold in use: ``override``, or the reader's own when None."""
        return self.settings.threshold if override is None else override

    def answer(self, threshold: float | None = None) -> Span | None:
        """The answer (:func:`decide`) at ``threshold``, the reader's own when None."""
        return decide(self.spans, self.threshold(threshold))

    def best_within(self, ranges: Sequence[tuple[int, int, int]]) -> Span | None:
        """The span with the largest margin that lies wholly inside one of ``ranges`` ((passage, start, end)
        character ranges, e.g. quotes), whatever its margin; None when none holds a valid span."""
        best: Span | None = None
        spans = self.spans
        for p, lo, hi in ranges:
            if not 0 <= p < len(self.passages) or spans[p] is None:
                continue
            for window, logits in zip(self.windows, self.logits):
                found = within(window, logits, lo, hi, self.settings) if window.passage == p else None
                if found is None or not self.passages[p][found[1] : found[2]].strip():
                    continue
                span = Span(p, found[1], found[2], self.passages[p][found[1] : found[2]], found[0], spans[p].null_score)
                if best is None or span.margin > best.margin:
                    best = span
        return best


def look_items(
    items: Sequence[tuple[str, Sequence[str]]], tokenizers, settings: ReaderSettings, run: LogitsFn, batch_size: int = 32
) -> list[Reading]:
    """Each (question, passages) item read; the windows of all items share model runs. ``tokenizers`` is the
    pair from :func:`window_tokenizers` (the first set up by :func:`configure`)."""
    tokenizer, raw = tokenizers
    per_item = [encode_windows(tokenizer, raw, q, passages, settings) for q, passages in items]
    flat = [w for windows in per_item for w in windows]
    logits = run_windows(flat, run, batch_size) if flat else []
    out, at = [], 0
    for (_, passages), windows in zip(items, per_item):
        out.append(Reading(list(passages), windows, logits[at : at + len(windows)], settings))
        at += len(windows)
    return out


def read_items(
    items: Sequence[tuple[str, Sequence[str]]], tokenizers, settings: ReaderSettings, run: LogitsFn, batch_size: int = 32
) -> list[list[Span | None]]:
    """For each (question, passages) item, each passage's best span (see :func:`look_items`)."""
    return [reading.spans for reading in look_items(items, tokenizers, settings, run, batch_size)]


def decide(spans: Sequence[Span | None], threshold: float) -> Span | None:
    """The answer over several passages: the span with the largest margin over its own passage's null score,
    if that margin exceeds ``threshold``; None (no answer) otherwise. With one passage this is SQuAD 2.0's rule."""
    found = [s for s in spans if s is not None and s.text.strip()]
    if not found:
        return None
    top = max(found, key=lambda s: s.margin)
    return top if top.margin > threshold else None


# ----------------------------------------------------------------------------------- the model


def read_settings(folder: Path) -> tuple[ReaderSettings, dict]:
    """The settings and the whole metadata of a reader folder; ReaderError when it is missing or unreadable."""
    try:
        meta = json.loads((folder / READER_META).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReaderError(
            f"no reader at {folder} ({READER_META} is missing); point RAG_READER_PATH (or --reader) at a folder "
            "made by 'rag train-reader', or set RAG_READER=off"
        ) from None
    except (OSError, ValueError) as exc:
        raise ReaderError(f"{folder / READER_META} cannot be read ({exc}); export the reader again") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise ReaderError(f"{folder / READER_META} is not a version-{FORMAT_VERSION} reader; export the reader again")
    try:
        settings = ReaderSettings(**{k: meta[k] for k in ("threshold", "max_length", "stride", "max_answer_tokens", "top_n")})
    except (KeyError, TypeError, ConfigError) as exc:
        raise ReaderError(f"{folder / READER_META} has missing or bad settings ({exc}); export the reader again") from None
    return settings, meta


class Reader:
    """An exported reader folder. The constructor only checks its arguments; :meth:`load` reads and checks the
    folder (safe to call twice); ``read`` loads on first use."""

    def __init__(self, folder: str | Path = DEFAULT_READER_DIR, *, threads: int = 1, batch_size: int = 32):
        if threads < 1 or batch_size < 1:
            raise ConfigError("the reader needs threads >= 1 and batch size >= 1")
        self.folder, self.threads, self.batch_size = Path(folder), threads, batch_size
        self.settings: ReaderSettings | None = None
        self.meta: dict = {}
        self._session = None
        self._tokenizers = None

    def load(self) -> Reader:
        if self._session is not None:
            return self
        settings, meta = read_settings(self.folder)
        model = self.folder / MODEL_FILE
        missing = [name for name in (MODEL_FILE, *TOKENIZER_FILES) if not (self.folder / name).is_file()]
        if missing:
            raise ReaderError(f"reader at {self.folder} is incomplete (missing {', '.join(missing)}); export the reader again")
        if sha256_file(model) != meta.get("fingerprint"):
            raise ReaderError(f"{model} does not match the fingerprint in {READER_META} (damaged or replaced); export the reader again")
        self._tokenizers = self._load_tokenizers(settings)
        self._session = self._load_session(model)
        self.settings, self.meta = settings, meta
        return self

    @functools.cached_property
    def label(self) -> str:
        """The reader's name (its folder's, unless ``reader.json`` names it) and its model's fingerprint prefix
        (worked out once: every answer names it)."""
        meta = self.load().meta
        return f"{meta.get('name') or self.folder.resolve().name} {str(meta.get('fingerprint', ''))[:12]}"

    def _load_tokenizers(self, settings: ReaderSettings):
        from tokenizers import Tokenizer

        try:
            windows, raw = window_tokenizers(Tokenizer.from_file(str(self.folder / "tokenizer.json")))
        except Exception as exc:  # tokenizers raises plain Exceptions for a bad file
            raise ReaderError(f"{self.folder / 'tokenizer.json'} cannot be loaded ({exc}); export the reader again") from None
        configure(windows, settings)
        return windows, raw

    def _load_session(self, model: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = self.threads, 1
        try:
            return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types
            raise ReaderError(f"{model} cannot be loaded by ONNX Runtime ({str(exc).splitlines()[0]}); export the reader again") from None

    def run(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Start and end logits of a padded batch (see :func:`pad_batch`)."""
        start, end = self.load()._session.run(["start_logits", "end_logits"], batch)
        return start, end

    def read_batch(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[list[Span | None]]:
        """:meth:`read` for several questions, with all their windows in shared model runs."""
        self.load()
        return read_items(items, self._tokenizers, self.settings, self.run, self.batch_size)

    def look(self, question: str, passages: Sequence[str]) -> Reading:
        """One model run over ``passages`` for ``question``, kept for :meth:`Reading.answer` and
        :meth:`Reading.best_within`."""
        self.load()
        return look_items([(question, passages)], self._tokenizers, self.settings, self.run, self.batch_size)[0]

    def read(self, question: str, passages: Sequence[str]) -> list[Span | None]:
        """For each passage, the best span that answers ``question`` (None when the passage has no valid span)."""
        return self.read_batch([(question, passages)])[0]

    def answer(self, question: str, passages: Sequence[str]) -> Span | None:
        """The answer over ``passages`` (see :func:`decide`), or None when the reader finds none."""
        return self.decide(self.read(question, passages))

    def decide(self, spans: Sequence[Span | None]) -> Span | None:
        return decide(spans, self.load().settings.threshold)
