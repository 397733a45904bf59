"""The knobs of one tuning run and what it reports (shared by the training and the model card)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ConfigError

METRIC = "ndcg@10"
#: Dense weights of the hybrid fusion tried on the validation part once training is done. Not 1.0:
#: the pool holds BM25's best passages, which flatters pure dense ranking; on SciFact's whole corpus
#: 0.9 beat 1.0 on the validation part (eval/RESULTS.md).
ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class TuneConfig:
    """The knobs of one tuning run (defaults: the settings measured in eval/RESULTS.md)."""

    epochs: int = 2  # the better of 1 and 2 on the validation part (eval/RESULTS.md); the best epoch is kept
    batch_size: int = 32
    learning_rate: float = 8e-5  # chosen on the validation part over 3e-5 (eval/RESULTS.md)
    warmup_ratio: float = 0.1
    hard_negatives: bool = True
    dev_fraction: float = 0.1
    seed: int = 0
    max_seq_length: int = 256
    pool_depth: int = 10
    alpha: float = 0.5  # dense weight of the hybrid validation figure (the product's default fusion)
    max_steps: int = -1  # stop after this many steps (tests); -1: run every epoch
    max_pairs: int = 0  # train on the first questions (in seeded order) that give this many pairs; 0: all
    threads: int = 0
    # Loss variants, tried and not better on the validation part (eval/RESULTS.md); kept so the comparison can be repeated.
    symmetric: bool = False  # also rank a batch's questions for each passage (MultipleNegativesRankingLoss doc_to_query)
    hardness: float = 0.0  # weight harder in-batch negatives more (MultipleNegativesRankingLoss hardness_strength); 0: off

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or not 0 < self.learning_rate < 1:
            raise ConfigError("tuning needs epochs >= 1, batch size >= 2 and a learning rate between 0 and 1")


@dataclass
class TuneReport:
    output: Path
    data: str
    train_queries: int
    dev_queries: int
    pairs: int
    pool: int
    base: dict[str, float]
    epochs: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    alpha: float | None = None  # the hybrid fusion weight the validation part preferred
    alphas: dict[float, float] = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # user + system time of this process: what the run costs whatever else the machine runs
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)  # at the start: how busy the machine was


def check_output(output: str | Path, overwrite: bool) -> Path:
    """``output`` if a model may be written there (checked before minutes of work, not after)."""
    output = Path(output)
    if output.exists() and not overwrite:
        raise ConfigError(f"{output} already exists; choose another --output or pass --overwrite to replace it")
    return output
