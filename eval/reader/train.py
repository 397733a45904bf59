"""Fine-tune the bundled MiniLM with a span head into a reader, validate it on held-out articles after every
epoch, keep the best, export it (ONNX, int8) and write its model card.

Training is plain PyTorch on the CPU: AdamW, linear warm-up then decay, batches of similar length padded to
their longest member, the model's own loss (cross-entropy of the start and of the end position). The run
lives in ``--output``: a checkpoint every few hundred steps (and on SIGINT/SIGTERM) lets the same command
resume where it stopped; ``curve.json`` is the learning curve; ``float/`` the best model so far; ``model/``
the exported reader, built beside its place and renamed into it.
"""

from __future__ import annotations

import os
import resource
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError
from core.files import sha256_file
from eval.reader import checkpoint
from eval.reader.batches import length_batches, tensors
from eval.reader.config import FLOAT_DIR, MODEL_DIR, ReaderReport, ReaderTrainConfig, TrainingInterrupted, TrainState
from eval.reader.features import Feature, load_tokenizers, qnli_features, squad_features
from eval.reader.predict import choose_threshold, predictions, rounded, torch_reader
from eval.reader.qnli import load_qnli, training_pairs
from eval.reader.squad import Question, load_squad, split_by_article

Log = Callable[[str], None]


@dataclass
class Prepared:
    """The training windows, the validation questions and a description of both for the model card."""

    features: list[Feature]
    validation: tuple[Question, ...]
    tokenizers: tuple
    data: dict


def prepare(squad: Path, qnli: Path | None, config: ReaderTrainConfig, base: Path, log: Log) -> Prepared:
    """Split the SQuAD file by article (and QNLI with it) and turn the training part into windows."""
    questions = load_squad(squad)
    split = split_by_article(questions)
    train, validation = list(split.train), list(split.validation)
    if config.limit:
        train, validation = train[: config.limit], validation[: config.limit]
    if not train or not validation:
        raise ConfigError(f"{squad}: the article split left no training or no validation questions")
    settings = config.settings()
    tokenizers = load_tokenizers(base, settings)
    features = squad_features(train, tokenizers, settings)
    data = {
        "squad": {"file": Path(squad).name, "sha256": sha256_file(Path(squad)), "articles": len({q.title for q in questions})},
        "train_questions": len(train),
        "train_answerable": sum(1 for q in train if q.answers),
        "validation_questions": len(validation),
        "validation_answerable": sum(1 for q in validation if q.answers),
        "validation_articles": list(split.validation_titles),
        "squad_windows": len(features),
    }
    if qnli is not None:
        pairs = training_pairs(load_qnli(qnli), questions, split.validation_titles)
        pairs = pairs[: config.limit] if config.limit else pairs
        extra = qnli_features(pairs, tokenizers, settings)
        features += extra
        data["qnli"] = {"file": Path(qnli).name, "sha256": sha256_file(Path(qnli)), "pairs": len(pairs), "windows": len(extra)}
    log(
        f"{len(train)} training questions from {len({q.title for q in train})} articles"
        f"{' and ' + str(data['qnli']['pairs']) + ' QNLI pairs' if qnli else ''} -> {len(features)} windows; "
        f"validation: {len(validation)} questions from {', '.join(sorted({q.title for q in validation}))}"
    )
    return Prepared(features, tuple(validation), tokenizers, data)


def build(base: Path, config: ReaderTrainConfig, total_steps: int):
    """The model (the bundled encoder with a new span head), AdamW (no decay on biases and layer norms) and
    the linear warm-up/decay schedule."""
    import torch
    from transformers import AutoModelForQuestionAnswering, get_linear_schedule_with_warmup
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "some weights were newly initialised": the span head, as intended
    model = AutoModelForQuestionAnswering.from_pretrained(str(base))
    plain = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    decayed = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decayed, "weight_decay": config.weight_decay}, {"params": plain, "weight_decay": 0.0}], lr=config.learning_rate
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, round(config.warmup_ratio * total_steps), total_steps)
    return model, optimizer, scheduler


def train_step(model, optimizer, scheduler, batch: dict, max_grad_norm: float = 1.0) -> float:
    """One optimisation step on one batch; its loss."""
    import torch

    model.train()
    loss = model(**batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


class Clock:
    """Wall and CPU time of this invocation, added to the state's totals at each checkpoint."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), _cpu_seconds()

    def elapsed(self, state: TrainState) -> tuple[float, float]:
        """Training wall and CPU seconds so far, over every invocation (for the learning curve)."""
        wall, cpu = time.perf_counter() - self.wall, _cpu_seconds() - self.cpu
        return round(state.seconds + wall, 1), round(state.cpu_seconds + cpu, 1)

    def charge(self, state: TrainState) -> None:
        wall, cpu = time.perf_counter(), _cpu_seconds()
        state.seconds = round(state.seconds + wall - self.wall, 1)
        state.cpu_seconds = round(state.cpu_seconds + cpu - self.cpu, 1)
        self.wall, self.cpu = wall, cpu
        state.peak_rss_mb = max(state.peak_rss_mb, round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def evaluate(model, prepared: Prepared, config: ReaderTrainConfig, state: TrainState, output: Path, log: Log) -> None:
    """Validation figures of the model as it is (at the threshold best for it), recorded in the state; the
    model is kept in ``float/`` when its F1 is the best so far."""
    read = torch_reader(model, prepared.tokenizers, config.settings())
    choice = choose_threshold(prepared.validation, predictions(prepared.validation, read))
    figures = rounded(choice.figures)
    record = {"step": state.step, "epoch": state.epoch, "threshold": choice.threshold, **figures}
    best = max((e["f1"] for e in state.evaluations), default=-1.0)
    state.evaluations.append(record)
    log(
        f"step {state.step}: validation F1 {figures['f1']:.2f}, exact {figures['exact']:.2f}, "
        f"no-answer accuracy {figures.get('NoAns_exact', 0):.2f} at threshold {choice.threshold}"
    )
    if figures["f1"] > best or not (output / FLOAT_DIR).is_dir():
        _save_float(model, output)
        state.best_step = state.step


def _save_float(model, output: Path) -> None:
    tmp = output / f".{FLOAT_DIR}.tmp-{secrets.token_hex(3)}"
    model.save_pretrained(str(tmp))
    old = output / f".{FLOAT_DIR}.old-{secrets.token_hex(3)}"
    if (output / FLOAT_DIR).exists():
        os.rename(output / FLOAT_DIR, old)
    os.rename(tmp, output / FLOAT_DIR)
    shutil.rmtree(old, ignore_errors=True)


def _progress(total: int, state: TrainState, show: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=state.step, desc="training reader", unit="step", file=sys.stderr, disable=not show, dynamic_ncols=True
    )


def run_training(
    model,
    optimizer,
    scheduler,
    prepared: Prepared,
    config: ReaderTrainConfig,
    state: TrainState,
    output: Path,
    key: dict,
    log: Log,
    show: bool = True,
) -> TrainState:
    """Train from ``state`` until every epoch ran or ``max_steps`` steps did, checkpointing as it goes; a signal
    saves a checkpoint and raises :class:`TrainingInterrupted`."""
    lengths = [len(f.ids) for f in prepared.features]
    stop_at = config.epochs * _per_epoch(lengths, config)
    stop_at = min(stop_at, config.max_steps) if config.max_steps > 0 else stop_at
    clock, running = Clock(), []

    def save() -> None:
        clock.charge(state)
        checkpoint.save(output, key, state, model, optimizer, scheduler)

    with checkpoint.stop_on_signals() as stop, _progress(stop_at, state, show) as bar:
        while state.step < stop_at:
            if not state.order:
                state.order = length_batches(lengths, config.batch_size, config.seed, state.epoch, config.bucket_batches)
                state.position = 0
            batch = tensors(prepared.features, state.order[state.position])
            running.append(train_step(model, optimizer, scheduler, batch, config.max_grad_norm))
            state.step, state.position = state.step + 1, state.position + 1
            bar.update(1)
            if state.step % config.log_every == 0 or state.step == stop_at:
                _log_loss(state, running, scheduler.get_last_lr()[0], clock.elapsed(state), bar)
                running = []
            epoch_end = state.position == len(state.order)
            if epoch_end:
                state.epoch, state.order, state.position = state.epoch + 1, [], 0
                evaluate(model, prepared, config, state, output, bar.write)
                state.done = state.epoch == config.epochs
            if epoch_end or stop or state.step % config.checkpoint_every == 0:
                save()  # at every epoch's end too, so a validated epoch is never trained again
            if stop:
                raise TrainingInterrupted(
                    f"interrupted at step {state.step} of {stop_at}; checkpoint saved in {output}; "
                    "run the same command again to resume"
                )
    if state.step not in {e["step"] for e in state.evaluations}:
        evaluate(model, prepared, config, state, output, log)
    save()
    return state


def _per_epoch(lengths: list[int], config: ReaderTrainConfig) -> int:
    """Batches in an epoch (the same in every epoch: only their order changes)."""
    return len(length_batches(lengths, config.batch_size, config.seed, 0, config.bucket_batches))


def _log_loss(state: TrainState, running: list[float], lr: float, elapsed: tuple[float, float], bar) -> None:
    loss = round(sum(running) / len(running), 4)
    seconds, cpu_seconds = elapsed
    record = {"step": state.step, "epoch": state.epoch, "loss": loss, "lr": lr}
    state.losses.append({**record, "seconds": seconds, "cpu_seconds": cpu_seconds})
    bar.set_postfix(loss=f"{loss:.3f}", epoch=state.epoch)


def train_reader(
    squad: str | Path,
    output: str | Path,
    config: ReaderTrainConfig = ReaderTrainConfig(),
    *,
    qnli: str | Path | None = None,
    log: Log = print,
    progress: bool = True,
    command: str = "",
    export: bool = True,
) -> ReaderReport:
    """Train (or resume), then export the best model to ``<output>/model`` with its model card (unless not ``export``)."""
    import torch

    from embeddings.model_folder import model_path, offline
    from eval.reader.card import write_card
    from eval.reader.export import export_reader

    offline()
    torch.set_num_threads(config.threads)
    output, base = Path(output), model_path()
    output.mkdir(parents=True, exist_ok=True)
    prepared = prepare(Path(squad), Path(qnli) if qnli else None, config, base, log)
    # A checkpoint is resumed only with the same settings and the same data files.
    key = {**config.run_key(), "data": [prepared.data["squad"]["sha256"], prepared.data.get("qnli", {}).get("sha256")]}
    checkpoint.seed_everything(config.seed)
    per_epoch = _per_epoch([len(f.ids) for f in prepared.features], config)
    model, optimizer, scheduler = build(base, config, config.epochs * per_epoch)
    payload = checkpoint.load(output, key)
    state = checkpoint.restore(payload, model, optimizer, scheduler) if payload else TrainState()
    if payload:
        log(f"resuming from the checkpoint in {output} at step {state.step} (epoch {state.epoch + 1}, batch {state.position})")
    state = run_training(model, optimizer, scheduler, prepared, config, state, output, key, log, progress)
    report = ReaderReport(output, prepared.data, state, command=command)
    report.float_figures = next(e for e in state.evaluations if e["step"] == state.best_step)
    if not export:
        return report
    work = output / f".{MODEL_DIR}.tmp-{secrets.token_hex(3)}"
    try:
        export_reader(output / FLOAT_DIR, base, work, prepared, config, report, log)
        write_card(work, report, config)
        _publish(work, output / MODEL_DIR)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _publish(work: Path, target: Path) -> None:
    from core.files import fsync_tree

    fsync_tree(work)
    old = target.parent / f".{target.name}.old-{secrets.token_hex(3)}"
    if target.exists():
        os.rename(target, old)
    os.rename(work, target)
    shutil.rmtree(old, ignore_errors=True)
