"""``rag eval``: score the service on a question set or a BEIR dataset, compare two results, calibrate.

Heavy modules load inside the commands, so ``rag --help`` stays fast.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Annotated, Optional

import typer

from eval.reader.cli import squad_command

eval_app = typer.Typer(
    name="eval",
    help="Evaluate retrieval and answers: the QA set, BEIR benchmarks, comparisons, calibration.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

QuestionsArg = Annotated[
    Optional[Path], typer.Argument(help="Question set (JSONL) [default: the bundled eval/data/qa.jsonl].", show_default=False)
]
QuestionsOpt = Annotated[Optional[Path], typer.Option("--questions", help="Same as the QUESTIONS argument.")]
UrlOpt = Annotated[
    Optional[str], typer.Option("--url", help="Ask a running server (e.g. http://127.0.0.1:8000) instead of this process.")
]
WaitOpt = Annotated[
    float, typer.Option("--wait", min=0, max=3600, help="Seconds to wait for a server that is still starting.")
]
ApiKeyOpt = Annotated[
    Optional[str], typer.Option("--api-key", envvar="RAG_EVAL_API_KEY", help="API key for a server that requires one.")
]
IndexDirOpt = Annotated[Optional[Path], typer.Option("--index-dir", help="Index to ask in-process [env RAG_INDEX_DIR].")]
TopKOpt = Annotated[int, typer.Option("--k", "-k", min=1, max=50, help="Passages per question (top_k of /ask).")]
ModeOpt = Annotated[str, typer.Option("--mode", help="hybrid, dense or bm25.")]


def _echo_err(message: str) -> None:
    typer.echo(message, err=True)


def _questions_path(argument: Path | None, option: Path | None) -> Path:
    from eval.errors import EvalDataError
    from eval.qa import DEFAULT_QUESTIONS

    if argument and option and argument != option:
        raise EvalDataError("give the question set once: as the QUESTIONS argument or with --questions")
    return argument or option or DEFAULT_QUESTIONS


def _check_mode(mode: str) -> None:
    from rag.search.modes import MODES

    if mode not in MODES:
        raise typer.BadParameter(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}", param_hint="--mode")


def _asker(url: str | None, index_dir: Path | None, k: int, mode: str, api_key: str | None = None, wait: float = 60.0):
    from eval.askers import HttpAsker, InProcessAsker
    from rag.settings import load_settings

    if url:
        return HttpAsker(url, top_k=k, mode=mode, api_key=api_key, wait=wait, on_wait=_echo_err)
    return InProcessAsker(load_settings(index_dir=index_dir), top_k=k, mode=mode)


def _answer_settings(url: str | None) -> dict:
    if url:
        return {}
    from rag.settings import load_settings

    s = load_settings()
    return {"fusion": s.fusion, "rrf_k": s.rrf_k, "alpha": s.alpha, "candidates": s.candidates, "abstain_threshold": s.abstain_threshold}


@eval_app.command("qa")
def qa_command(
    questions: QuestionsArg = None,
    questions_opt: QuestionsOpt = None,
    url: UrlOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Per-question results (JSON).")] = Path("artifacts/eval/qa.json"),
    failures: Annotated[
        Optional[Path], typer.Option("--failures", help="Markdown table of the failures [default: next to --out].")
    ] = None,
    k: TopKOpt = 5,
    mode: ModeOpt = "hybrid",
    index_dir: IndexDirOpt = None,
    api_key: ApiKeyOpt = None,
    wait: WaitOpt = 60.0,
) -> None:
    """Ask every question of a set and report section hits, answer-key recall, citation validity, abstention, latency."""
    from eval import qa
    from eval.report import failures_markdown, summary_table, write_json

    _check_mode(mode)
    path = _questions_path(questions, questions_opt)
    items = qa.load_question_set(path)
    asker = _asker(url, index_dir, k, mode, api_key, wait)
    _echo_err(f"asking {len(items)} questions from {path} -> {asker.target}")
    results = qa.run_questions(items, asker)
    summary = qa.summarise(results)
    per_question = [r.to_dict() for r in results]
    payload = {
        "kind": "qa",
        "questions_file": str(path),
        "target": asker.target,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "request": {"top_k": k, "mode": mode},
        "settings": _answer_settings(url),
        "summary": summary,
        "per_question": per_question,
    }
    write_json(out, payload)
    failures = failures or out.with_name(out.stem + "-failures.md")
    failures.parent.mkdir(parents=True, exist_ok=True)
    failures.write_text(failures_markdown(per_question, summary, f"QA evaluation: {path.name}"), encoding="utf-8")
    typer.echo(summary_table(summary))
    failed = [r for r in results if not r.passed]
    typer.echo(f"\n{len(failed)} of {len(results)} questions failed a check; results: {out}; failures: {failures}")


@eval_app.command("beir")
def beir_command(
    data: Annotated[Path, typer.Option("--data", help="Dataset folder in the BEIR layout (corpus.jsonl, queries.jsonl, qrels/).")],
    split: Annotated[str, typer.Option("--split", help="Which qrels/<split>.tsv to score.")] = "test",
    mode: ModeOpt = "hybrid",
    run_out: Annotated[
        Optional[Path], typer.Option("--run-out", help="TREC run file [default: artifacts/eval/beir-<dataset>-<split>-<mode>.run].")
    ] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Results JSON (summary and per query) [default: beside the run file].")] = None,
    index_dir: Annotated[
        Optional[Path], typer.Option("--index-dir", help="Where to keep the dataset's index [default: under RAG_CACHE_DIR/beir/].")
    ] = None,
    depth: Annotated[int, typer.Option("--depth", min=100, max=100_000, help="Documents written per query.")] = 1000,
    skip_unknown_queries: Annotated[
        bool, typer.Option("--skip-unknown-queries", help="Leave out judged queries missing from queries.jsonl instead of failing.")
    ] = False,
    qrels: Annotated[
        Optional[Path], typer.Option("--qrels", help="Score the queries of this qrels file instead of qrels/<split>.tsv.")
    ] = None,
    model: Annotated[
        Optional[Path], typer.Option("--model", help="Folder of a model made by 'rag tune' [env RAG_MODEL_PATH].")
    ] = None,
) -> None:
    """Index a BEIR dataset with the product pipeline, write a TREC run and score it (nDCG@10, Recall@100, MRR@10, MAP@100)."""
    from eval.beir import run_beir
    from eval.report import summary_table, write_json
    from rag.settings import load_settings

    _check_mode(mode)
    settings = load_settings(model_path=model)
    result = run_beir(
        data,
        settings,
        split=split,
        mode=mode,
        run_out=run_out,
        index_dir=index_dir,
        depth=depth,
        skip_unknown_queries=skip_unknown_queries,
        qrels_file=qrels,
        log=_echo_err,
    )
    out = out or Path(result.run_file).with_suffix(".json")
    write_json(out, result.to_dict())
    typer.echo(f"{result.dataset} [{result.split}] {result.mode}: {result.counts['queries']} queries")
    typer.echo(summary_table(result.metrics))
    typer.echo(f"\nrun file: {result.run_file}\nresults: {out}")


@eval_app.command("compare")
def compare_command(
    a: Annotated[Path, typer.Argument(help="Results JSON of the baseline.")],
    b: Annotated[Path, typer.Argument(help="Results JSON of the change.")],
    measure: Annotated[str, typer.Option("--measure", help="Per-query measure for BEIR results.")] = "nDCG@10",
    limit: Annotated[int, typer.Option("--limit", min=1, help="Queries listed each way for BEIR results.")] = 20,
) -> None:
    """Metric deltas from A to B and the questions that changed outcome (what B won and what it lost)."""
    from eval.report import compare, load_results

    typer.echo(compare(load_results(a), load_results(b), measure=measure, limit=limit))


@eval_app.command("calibrate")
def calibrate_command(
    questions: QuestionsArg = None,
    questions_opt: QuestionsOpt = None,
    url: UrlOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the calibration as JSON too.")] = None,
    k: TopKOpt = 5,
    index_dir: IndexDirOpt = None,
    api_key: ApiKeyOpt = None,
    wait: WaitOpt = 60.0,
) -> None:
    """Propose an abstention threshold from the support of answerable vs off-topic questions."""
    from eval import qa
    from eval.calibration import calibrate, describe
    from eval.report import write_json

    path = _questions_path(questions, questions_opt)
    items = qa.load_question_set(path)
    asker = _asker(url, index_dir, k, "hybrid", api_key, wait)
    _echo_err(f"asking {len(items)} questions from {path} -> {asker.target}")
    results = qa.run_questions(items, asker)
    current = _answer_settings(url).get("abstain_threshold")
    cal = calibrate(results, current)
    typer.echo(describe(cal))
    if out:
        write_json(out, {"kind": "calibration", "questions_file": str(path), "target": asker.target, **cal.to_dict()})


# `rag eval squad` is defined with the reader's other command (eval/reader/cli.py).
eval_app.command("squad")(squad_command)


@eval_app.command("fit-answerability")
def fit_answerability_command(
    fit_sets: Annotated[list[Path], typer.Option("--fit", help="Question set(s) to fit on (repeat the option for several).")],
    validate_sets: Annotated[
        Optional[list[Path]], typer.Option("--validate", help="Question set(s) to measure the fit on, never fitted on.")
    ] = None,
    max_false_abstention: Annotated[
        float, typer.Option("--max-false-abstention", min=0, max=0.5, help="Share of answerable fitting questions allowed to abstain.")
    ] = 0.02,
    max_partial: Annotated[
        float, typer.Option("--max-partial", min=0, max=1, help="Share of answerable fitting questions allowed a 'not covered' note.")
    ] = 0.2,
    index_dir: IndexDirOpt = None,
    k: TopKOpt = 5,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the fitted model and figures as JSON too.")] = None,
) -> None:
    """Fit the answerability weights and threshold (rag/answer/answerability.py) and report them on a held-apart set."""
    from dataclasses import asdict

    from eval import answerability as fa
    from eval import qa
    from eval.report import write_json
    from rag.settings import load_settings
    from rag.service import open_answer_service

    service = open_answer_service(load_settings(index_dir=index_dir))
    _echo_err(f"index {service.index.path} (build {service.index.build_id})")
    fit_items = [item for path in fit_sets for item in qa.load_question_set(path)]
    rows = fa.collect(service, fit_items, top_k=k)
    model = fa.fit(rows, max_false_abstention=max_false_abstention)
    model, tried = fa.choose_confident(service, fit_items, model, max_partial=max_partial)
    report = {"model": asdict(model), "fit": asdict(fa.handling(service, fit_items, model)), "grid": [asdict(h) for h in tried]}
    lines = [f"fitted on {len(rows)} questions: {model}", f"  fit:      {fa.handling(service, fit_items, model)}"]
    if validate_sets:
        val_items = [item for path in validate_sets for item in qa.load_question_set(path)]
        report["validate"] = asdict(fa.handling(service, val_items, model))
        lines.append(f"  validate: {fa.handling(service, val_items, model)}")
    typer.echo("\n".join(lines))
    if out:
        write_json(out, {"kind": "answerability-fit", "fit_sets": [str(p) for p in fit_sets], **report})
