"""``rag ask`` as a user runs it, with the real model on the bundled article: the answer with
numbered citations, ``--json`` in the API's shape, the abstention message, one-line errors."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from answer_checks import MARKER_RE, check_answer_dict, markers_in_order
from api.schemas import AskResponse
from conftest import RAG_BIN, RagRun, run_rag
from rag.answer.service import ABSTAIN_MESSAGE

pytestmark = pytest.mark.model

COLD_WAR_BREADCRUMB = "Space Diplomacy > Historical Development of Space Diplomacy > The Cold War Era and the Emergence of Space Diplomacy"
ISS = "When was the International Space Station initiated?"

#: The runs that load the model, started together so their loads overlap.
MODEL_RUNS = {
    "text": ["ask", "In which year was NASA set up?"],
    "json": ["ask", "And who took part in it?", "--history", ISS, "--json", "-k", "3"],
    "off-topic": ["ask", "How do I sort a dictionary by value in Python?"],
}


def cli_env(cache: Path, index_dir: Path) -> dict[str, str]:
    """``cache`` holds the ONNX export the command encodes questions with (``rag index`` makes it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(RAG_INDEX_DIR=str(index_dir), RAG_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory, bundled_index_dir, onnx_cache) -> dict[str, RagRun]:
    tmp = tmp_path_factory.mktemp("cli-ask")
    env = cli_env(onnx_cache, bundled_index_dir)
    procs = {
        name: subprocess.Popen([str(RAG_BIN), *args], env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, args in MODEL_RUNS.items()
    }
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        out[name] = RagRun(proc.returncode, stdout, stderr)
    return out


def test_ask_prints_the_answer_and_numbered_citations_with_breadcrumbs(runs):
    run = runs["text"]
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr and "error" not in run.stderr
    answer, _, sources = run.stdout.partition("\n\n")
    assert "1958" in answer and answer.rstrip().endswith("]")
    numbers = markers_in_order(answer)
    assert numbers == list(range(1, len(numbers) + 1)) and numbers
    headers = [line for line in sources.splitlines() if MARKER_RE.match(line)]
    assert [int(MARKER_RE.match(h).group(1)) for h in headers] == numbers  # one entry per marker, in order
    assert headers[0] == f"[1] {COLD_WAR_BREADCRUMB}  (/detay/space-diplomacy)"
    quote = " ".join(line.strip() for line in sources.splitlines()[1:] if line.startswith("    ") and not MARKER_RE.match(line))
    assert "establishment of NASA in 1958" in quote and quote.startswith('"')


def test_ask_json_has_the_shape_of_the_api_answer(runs):
    run = runs["json"]
    assert run.returncode == 0, run.stderr
    body = run.json()
    AskResponse.model_validate(body)
    check_answer_dict(body)
    assert body["question"] == "And who took part in it?"
    assert body["search_query"] == f"{ISS} And who took part in it?"
    assert len(body["passages"]) == 3 and not body["abstained"]
    assert any(c["section"][-1] == "Post-Cold War Evolution of Space Diplomacy" and "Canada" in c["quote"] for c in body["citations"])


def test_ask_off_topic_prints_the_abstention_message(runs):
    run = runs["off-topic"]
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == ABSTAIN_MESSAGE
    assert "Related reading (does not answer the question):" in lines
    assert not any(MARKER_RE.match(line) for line in lines), "an abstention cites nothing"


def assert_one_line_error(run: RagRun, *needles: str) -> None:
    assert run.returncode != 0
    assert "Traceback" not in run.stderr and run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert "internal error" not in lines[0], lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize(
    "args, needles",
    [
        (["ask", "When was NASA established?", "--mode", "telepathy"], ["telepathy", "hybrid, dense, bm25"]),
        (["ask", "When was NASA established?", "-k", "0"], ["-k"]),
        (["ask", "   "], ["empty"]),
        (["ask", "x" * 2001], ["2001", "2000"]),
    ],
    ids=["bad-mode", "k-zero", "blank-question", "long-question"],
)
def test_ask_refuses_bad_input_with_one_line(tmp_path, bundled_index_dir, args, needles):
    assert_one_line_error(run_rag(args, cli_env(tmp_path, bundled_index_dir), cwd=tmp_path), *needles)


def test_ask_without_an_index_says_how_to_build_one(tmp_path, bundled_index_dir):
    run = run_rag(["ask", "When was NASA established?", "--index-dir", str(tmp_path / "none")], cli_env(tmp_path, bundled_index_dir), cwd=tmp_path)
    assert_one_line_error(run, "no index at", "rag index")
