"""The knobs of one reader training run, the state a checkpoint carries, and what the run reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.errors import ConfigError, RagError
from rag.answer.reader import ReaderSettings

#: Files and folders inside ``rag train-reader --output``.
CHECKPOINT = "checkpoint.pt"
CURVE = "curve.json"
FLOAT_DIR = "float"  # the best PyTorch model so far (by validation F1)
MODEL_DIR = "model"  # the exported reader: what the service loads (rag.answer.reader.Reader)


class TrainingInterrupted(RagError):
    """SIGINT or SIGTERM stopped training after a checkpoint was written; the same command resumes."""

    exit_code = 130


#: The settings a checkpoint must share with the run that resumes it.
_TRAJECTORY = ("epochs", "batch_size", "learning_rate", "warmup_ratio", "weight_decay", "max_grad_norm", "seed",
               "max_length", "stride", "max_answer_tokens", "bucket_batches", "limit")  # fmt: skip


@dataclass(frozen=True)
class ReaderTrainConfig:
    """The knobs of ``rag train-reader``. Those in :meth:`run_key` decide the training trajectory: a checkpoint
    is resumed only by a run with the same ones; the others (when to stop, log, save; threads) may change."""

    epochs: int = 3  # validation F1 still rose from the second epoch to the third (eval/RESULTS.md)
    batch_size: int = 16
    learning_rate: float = 2e-4  # 5e-5 taught only the null answer in one epoch (eval/RESULTS.md)
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 0
    max_length: int = 256
    stride: int = 128
    max_answer_tokens: int = 30
    bucket_batches: int = 50  # batches per length bucket: sorted inside a bucket, buckets' batches shuffled
    limit: int = 0  # first questions of each part (and QNLI pairs) to use, for smoke tests; 0: all
    max_steps: int = -1  # stop (and validate, and export) after this many steps in all; -1: every epoch
    checkpoint_every: int = 200
    log_every: int = 20
    threads: int = 2
    agreement_sample: int = 200  # validation questions on which the int8 export must agree with the float model
    quantize: str = "all"  # the int8 recipe (eval.reader.export.QUANTIZE_RECIPES); "keep-ffn-output" is closer, larger

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not 0 < self.learning_rate < 1 or not 0 <= self.warmup_ratio < 1:
            raise ConfigError("reader training needs epochs >= 1, batch size >= 1, 0 < learning rate < 1 and 0 <= warm-up < 1")
        if self.checkpoint_every < 1 or self.log_every < 1 or self.threads < 1 or self.limit < 0:
            raise ConfigError("checkpoint and log intervals and threads must be >= 1, and --limit >= 0")
        if self.quantize not in ("all", "keep-ffn-output", "keep-last-ffn-output"):
            raise ConfigError(f"unknown --quantize {self.quantize!r}; choose all, keep-last-ffn-output or keep-ffn-output")
        self.settings()  # the window settings are checked there

    def settings(self, threshold: float = 0.0) -> ReaderSettings:
        return ReaderSettings(threshold=threshold, max_length=self.max_length, stride=self.stride, max_answer_tokens=self.max_answer_tokens)

    def run_key(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k in _TRAJECTORY}


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint (with the model, optimiser, scheduler and RNG states)."""

    step: int = 0
    epoch: int = 0
    position: int = 0  # batches of ``order`` done in this epoch
    order: list[list[int]] = field(default_factory=list)  # this epoch's batches (indices of training features)
    losses: list[dict] = field(default_factory=list)  # {"step", "epoch", "loss", "lr"} every log_every steps
    evaluations: list[dict] = field(default_factory=list)  # {"step", "epoch", "threshold", official summary}
    best_step: int = -1  # the step of the model kept in FLOAT_DIR
    seconds: float = 0.0  # training wall time over every invocation
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0  # the largest resident set of any invocation
    done: bool = False  # every epoch ran


@dataclass
class ReaderReport:
    output: Path
    data: dict  # file names, SHA-256s, question and feature counts, the validation articles
    state: TrainState
    float_figures: dict = field(default_factory=dict)
    int8_figures: dict = field(default_factory=dict)
    export: dict = field(default_factory=dict)  # threshold, agreement, max logit difference, sizes
    command: str = ""
