"""The model card of a tuned model: ``README.md`` for people and ``rag-tune.json`` for programs."""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import asdict
from pathlib import Path

from eval.tune.config import METRIC, TuneConfig, TuneReport
from embeddings.model_folder import MODEL_NAME, TUNE_META, model_fingerprint, model_path


def write_card(folder: Path, report: TuneReport, config: TuneConfig) -> None:
    """The model card (README.md) and its machine-readable twin (rag-tune.json)."""

    tuned = {k: v for k, v in (report.epochs[-1].items() if report.epochs else ()) if k.endswith(METRIC)}
    if report.epochs and report.best_epoch is not None:
        best = max(report.epochs, key=lambda h: h[f"hybrid_{METRIC}"])
        tuned = {k: v for k, v in best.items() if k.endswith(METRIC)}
    meta = {
        "base_model": MODEL_NAME,
        "base_fingerprint": model_fingerprint(model_path()),
        "fingerprint": model_fingerprint(folder),
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "data": report.data,
        "sizes": {"train_questions": report.train_queries, "pairs": report.pairs, "validation_questions": report.dev_queries, "validation_pool": report.pool},
        "settings": asdict(config),
        "loss": "MultipleNegativesRankingLoss (in-batch negatives" + (" + one BM25 hard negative per pair)" if config.hard_negatives else ")"),
        "validation": {
            "base": report.base,
            "tuned": tuned,
            "epochs": report.epochs,
            "best_epoch": report.best_epoch,
            "alpha": report.alpha,
            "alpha_sweep": {str(a): v for a, v in report.alphas.items()},
        },
        "seconds": report.seconds,
        "cpu_seconds": report.cpu_seconds,
        # Wall time depends on what else the machine runs; the load averages (1, 5, 15 min, at the start) say how busy it was.
        "machine": {"cpus": os.cpu_count(), "threads": config.threads or os.cpu_count(), "load_average": list(report.load_average)},
    }
    (folder / TUNE_META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    (folder / "README.md").write_text(card_markdown(meta), encoding="utf-8")


def _alpha_lines(validation: dict) -> list[str]:
    if validation.get("alpha") is None:
        return []
    sweep = ", ".join(f"{a} {x}" for a, x in validation["alpha_sweep"].items())
    return [
        f"Hybrid fusion weight chosen on the validation questions: alpha {validation['alpha']} (nDCG@10 by alpha: {sweep}).",
        "The service uses it with this model unless `RAG_ALPHA` is set.",
        "",
    ]


def card_markdown(meta: dict) -> str:
    v, s, cfg = meta["validation"], meta["sizes"], meta["settings"]
    rows = [f"| {name} | {v['base'].get(key, '-')} | {v['tuned'].get(key, '-')} |" for name, key in (("hybrid", "hybrid_ndcg@10"), ("dense", "dense_ndcg@10"))]
    return "\n".join(
        [
            f"# all-MiniLM-L6-v2 tuned on {meta['data']}",
            "",
            f"Base model: `{meta['base_model']}` (fingerprint `{meta['base_fingerprint'][:16]}`), fine-tuned with `rag tune`.",
            f"This model's fingerprint: `{meta['fingerprint'][:16]}`. Use it with `RAG_MODEL_PATH=<this folder>` or `--model`,",
            "and rebuild the index with it (an index built with another model is refused).",
            "",
            "## Data",
            "",
            f"- Source: `{meta['data']}`",
            f"- Trained on {s['train_questions']} questions ({s['pairs']} question-passage pairs).",
            f"- Validated on {s['validation_questions']} other questions ({round(cfg['dev_fraction'] * 100)}% of the questions, "
            f"seed {cfg['seed']}), ranking a pool of {s['validation_pool']} passages (relevant ones plus BM25's best {cfg['pool_depth']} per question).",
            "",
            "## Settings",
            "",
            f"- Loss: {meta['loss']}",
            f"- Epochs {cfg['epochs']} (best kept: {v['best_epoch']}), batch {cfg['batch_size']}, learning rate {cfg['learning_rate']}, "
            f"warm-up {cfg['warmup_ratio']}, max sequence length {cfg['max_seq_length']}, seed {cfg['seed']}",
            f"- Took {meta['seconds']} s ({meta['cpu_seconds']} CPU-seconds) on {meta['machine']['cpus']} CPU cores "
            f"(load average {', '.join(map(str, meta['machine']['load_average']))} at the start).",
            "",
            "## Validation (nDCG@10 on the validation questions)",
            "",
            "| ranking | base | tuned |",
            "| --- | --- | --- |",
            *rows,
            "",
            *_alpha_lines(v),
            "The validation pool is smaller than a whole corpus, so these figures are higher than a full",
            "`rag eval beir` run; compare base and tuned, not these with other benchmarks.",
            "",
        ]
    )
