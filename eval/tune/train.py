"""Fine-tune the bundled encoder on labelled questions, validate on a part it does not train on, write a model folder.

Training uses sentence-transformers' own trainer with MultipleNegativesRankingLoss (in-batch
negatives plus one BM25 hard negative per pair) and a batch sampler that never puts the same
text twice in a batch. Validation ranks a pool of passages (relevant ones plus BM25's best) for
the validation questions after every epoch; the best epoch is kept, and training stops early
when an epoch does not improve on the one before. The model folder is built beside its
destination and renamed into place, so an interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import os
import resource
import secrets
import shutil
import signal
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from sentence_transformers.base.evaluation.evaluator import BaseEvaluator

from core.errors import ConfigError
from eval.metrics import ir_scores
from eval.tune.card import write_card
from eval.tune.config import ALPHAS, METRIC, TuneConfig, TuneReport, check_output
from eval.tune.data import LabelledSet, Pair, bm25_index, build_pairs, split_queries, validation_pool
from rag.faults import checkpoint

class PoolEvaluator(BaseEvaluator):
    """nDCG@10 of dense and hybrid ranking of a passage pool for the validation questions (documents scored by their
    best passage). Called by the trainer after every epoch; its ``primary_metric`` picks the epoch."""

    def __init__(self, data: LabelledSet, query_ids: list[str], pool: list[int], bm25: dict[str, np.ndarray], alpha: float):
        super().__init__()
        self.data, self.query_ids, self.pool, self.bm25, self.alpha = data, query_ids, pool, bm25, alpha
        self.name = "dev"
        self.primary_metric = f"dev_hybrid_{METRIC}"
        self.history: list[dict[str, float]] = []
        self.sweeps: list[dict[float, float]] = []  # hybrid nDCG@10 by fusion weight, one per history entry

    def figures(self, model, alphas: tuple[float, ...] = ()) -> dict[str, float]:
        """Dense and hybrid nDCG@10 (at ``alpha``), and hybrid at each of ``alphas`` as ``hybrid_ndcg@10@<alpha>``."""
        from rag.search.fusion import convex_combination

        texts = [self.data.passages[r] for r in self.pool]
        passages = model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        queries = model.encode([self.data.queries[q] for q in self.query_ids], batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        weights = (self.alpha, *alphas)
        dense_run: dict = {}
        hybrid_runs: dict[float, dict] = {a: {} for a in weights}
        for qid, qvec in zip(self.query_ids, queries):
            cos = {i: float(c) for i, c in enumerate(passages @ qvec)}
            lex = {i: float(self.bm25[qid][i]) for i in range(len(self.pool)) if self.bm25[qid][i] > 0}
            dense_run[qid] = self._documents(cos)
            for a in weights:
                hybrid_runs[a][qid] = self._documents(convex_combination(cos, lex, alpha=a))
        qrels = {q: self.data.qrels[q] for q in self.query_ids}
        score = lambda run: round(ir_scores(qrels, run).aggregate["nDCG@10"], 4)  # noqa: E731
        out = {f"dense_{METRIC}": score(dense_run), f"hybrid_{METRIC}": score(hybrid_runs[self.alpha])}
        out.update({f"hybrid_{METRIC}@{a}": score(hybrid_runs[a]) for a in alphas})
        return out

    def _documents(self, scores: dict[int, float]) -> list[tuple[str, float]]:
        best: dict[str, float] = {}
        for i, s in sorted(scores.items(), key=lambda item: -item[1]):
            best.setdefault(self.data.passage_doc[self.pool[i]], s)
        return list(best.items())

    def __call__(self, model, output_path=None, epoch: float = -1, steps: int = -1) -> dict[str, float]:
        # The fusion-weight sweep rides on the same embeddings, so the kept epoch needs no further encoding pass.
        figures = self.figures(model, ALPHAS)
        sweep = {a: figures.pop(f"hybrid_{METRIC}@{a}") for a in ALPHAS}
        self.history.append({"epoch": round(float(epoch), 2), "step": steps, **figures})
        self.sweeps.append(sweep)
        return {f"dev_{k}": v for k, v in figures.items()}


def _progress_callback(show: bool):
    """A progress bar over the training steps with the running loss (the trainer's own bar is turned off)."""
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.bar = tqdm(total=state.max_steps, desc="tuning", unit="step", disable=not show, dynamic_ncols=True)

        def on_step_end(self, args, state, control, **kwargs):
            self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{logs['loss']:.4f}", epoch=f"{state.epoch:.2f}")
            elif logs and "eval_dev_hybrid_ndcg@10" in logs:
                self.bar.write(
                    f"epoch {state.epoch:.2f}: dev nDCG@10 hybrid {logs['eval_dev_hybrid_ndcg@10']:.4f}, "
                    f"dense {logs['eval_dev_dense_ndcg@10']:.4f}"
                )

        def on_train_end(self, args, state, control, **kwargs):
            self.bar.close()

    return Progress()


@contextmanager
def _sigterm_interrupts():
    """SIGTERM ends a run like Ctrl-C does, so the clean-up below runs for both."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _dataset(pairs: list[Pair], negatives: bool):
    from datasets import Dataset

    columns = {"anchor": [p.query for p in pairs], "positive": [p.positive for p in pairs]}
    if negatives:
        columns["negative"] = [p.negative for p in pairs]
    return Dataset.from_dict(columns)


def _train(model, pairs: list[Pair], evaluator: PoolEvaluator | None, config: TuneConfig, work: Path, progress: bool):
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from transformers import EarlyStoppingCallback

    negatives = config.hard_negatives and all(p.negative is not None for p in pairs)
    validate = evaluator is not None
    choose = validate and config.epochs > 1
    args = SentenceTransformerTrainingArguments(
        output_dir=str(work / "checkpoints"),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_ratio=config.warmup_ratio,
        batch_sampler=BatchSamplers.NO_DUPLICATES,  # a duplicate text in a batch would be its own negative
        eval_strategy="epoch" if validate else "no",
        # Checkpoints only when there is an epoch to choose: with one epoch the model in memory is the one kept.
        save_strategy="epoch" if choose else "no",
        save_only_model=True,
        save_total_limit=1,
        load_best_model_at_end=choose,
        metric_for_best_model=f"eval_{evaluator.primary_metric}" if validate else None,
        greater_is_better=True,
        logging_steps=1,
        disable_tqdm=True,
        report_to=[],
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=True,
        dataloader_num_workers=0,
    )
    model.model_card_data.generate_widget_examples = False  # it embeds examples for a card we do not write
    callbacks = [_progress_callback(progress)]
    if choose:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=1))
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=_dataset(pairs, negatives),
        loss=_loss(model, config),
        evaluator=evaluator,
        callbacks=callbacks,
    )
    # Our bar replaces the trainer's printed log lines.
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return trainer.model


def _loss(model, config: TuneConfig):
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    return MultipleNegativesRankingLoss(
        model,
        directions=("query_to_doc", "doc_to_query") if config.symmetric else ("query_to_doc",),
        hardness_mode="in_batch_negatives" if config.hardness else None,
        hardness_strength=config.hardness,
    )


def _evaluator(data: LabelledSet, dev_ids: list[str], lexical, config: TuneConfig) -> PoolEvaluator | None:
    """Validation over a pool of passages for the held-out questions (None without any)."""
    if not dev_ids:
        return None
    pool = validation_pool(data, dev_ids, lexical, config.pool_depth)
    bm25 = {q: lexical.scores(data.queries[q])[pool] for q in dev_ids}
    return PoolEvaluator(data, dev_ids, pool, bm25, config.alpha)


def tune(
    data: LabelledSet,
    output: str | Path,
    config: TuneConfig = TuneConfig(),
    *,
    overwrite: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> TuneReport:
    """Tune the bundled model on ``data`` and write it, with its model card, to ``output`` (atomically)."""
    import torch
    from sentence_transformers import SentenceTransformer

    from embeddings.model_folder import model_path, offline
    from core.files import fsync_tree

    output = check_output(output, overwrite)
    started, cpu_started, load = time.perf_counter(), _cpu_seconds(), os.getloadavg()
    train_ids, dev_ids = split_queries(data.queries, config.dev_fraction, config.seed)
    if not train_ids:
        raise ConfigError(f"{data.name}: too few judged questions to tune on ({len(data.queries)})")
    lexical = bm25_index(data)
    if config.max_pairs:
        train_ids = first_questions(data, train_ids, config.max_pairs, config.seed)
    pairs = build_pairs(data, train_ids, lexical, negatives=config.hard_negatives, seed=config.seed)
    evaluator = _evaluator(data, dev_ids, lexical, config)
    pool = evaluator.pool if evaluator else []
    log(
        f"{data.name}: {len(train_ids)} questions ({len(pairs)} pairs{', BM25 hard negatives' if config.hard_negatives else ''}) "
        f"to train on, {len(dev_ids)} held out for validation over a pool of {len(pool)} passages"
    )
    offline()
    torch.set_num_threads(config.threads or os.cpu_count() or 1)
    torch.manual_seed(config.seed)
    model = SentenceTransformer(str(model_path()), device="cpu")
    model.max_seq_length = config.max_seq_length
    report = TuneReport(output, data.name, len(train_ids), len(dev_ids), len(pairs), len(pool), base={})
    if evaluator is not None:
        report.base = evaluator.figures(model)
        log(f"base model on the validation questions: nDCG@10 hybrid {report.base['hybrid_ndcg@10']:.4f}, dense {report.base['dense_ndcg@10']:.4f}")
    output.parent.mkdir(parents=True, exist_ok=True)
    work = output.parent / f".{output.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}"
    work.mkdir()
    try:
        with _sigterm_interrupts():
            model = _train(model, pairs, evaluator, config, work, progress is not False)
            checkpoint("tune-trained")
            shutil.rmtree(work / "checkpoints", ignore_errors=True)
            model.save(str(work), create_model_card=False)
            if evaluator is not None and evaluator.history:
                _choose_alpha(report, evaluator, config, log)
            report.seconds = round(time.perf_counter() - started, 1)
            report.cpu_seconds = round(_cpu_seconds() - cpu_started, 1)
            report.load_average = tuple(round(x, 1) for x in load)
            write_card(work, report, config)
            checkpoint("tune-written")
            fsync_tree(work)
            _publish(work, output)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _choose_alpha(report: TuneReport, evaluator, config: TuneConfig, log: Callable[[str], None]) -> None:
    """Record the epochs' validation figures and the hybrid fusion weight the validation questions prefer."""
    report.epochs = evaluator.history
    best = max(range(len(evaluator.history)), key=lambda i: evaluator.history[i][f"hybrid_{METRIC}"])
    report.best_epoch = round(evaluator.history[best]["epoch"])
    report.alphas = evaluator.sweeps[best]  # measured on the kept model (the trainer reloads the best epoch)
    report.alpha = max(ALPHAS, key=lambda a: (report.alphas[a], -abs(a - config.alpha)))
    log(f"hybrid fusion weight chosen on the validation questions: alpha {report.alpha} (nDCG@10 {report.alphas[report.alpha]:.4f})")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def first_questions(data: LabelledSet, query_ids: list[str], max_pairs: int, seed: int) -> list[str]:
    """The first questions, in a seeded order, whose relevant documents make at most ``max_pairs`` pairs (a smaller
    training set for learning curves; the validation part stays the same)."""
    ordered = sorted(query_ids, key=lambda q: hashlib.sha256(f"{seed}:{q}".encode()).hexdigest())
    chosen, total = [], 0
    for qid in ordered:
        n = len(data.relevant(qid))
        if total + n > max_pairs:
            break
        chosen.append(qid)
        total += n
    return sorted(chosen)


def _publish(work: Path, output: Path) -> None:
    """Rename the finished folder into place; a folder it replaces is moved aside first and then removed."""
    old = None
    if output.exists():
        old = output.parent / f".{output.name}.old-{secrets.token_hex(3)}"
        os.rename(output, old)
    os.rename(work, output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
