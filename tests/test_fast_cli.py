"""The quick path of ``rag search`` and ``rag ask``: questions encoded by the ONNX graph (no PyTorch)
with the same vectors and answers as the PyTorch model, and a running server asked instead of
loading anything when ``--url`` / ``RAG_URL`` is given."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import embeddings.onnx as onnx_export
from conftest import build_fake_index, rag_env, run_rag
from corpus import DEFAULT_CORPUS_DIR
from embeddings import get_encoder, query_backend
from eval.live_server import LiveServer, free_port

QA_SET = Path(__file__).resolve().parents[1] / "eval" / "data" / "qa.jsonl"
KEY = "client-key-0123456789abcdef"


def poisoned_path(tmp: Path) -> Path:
    """A folder whose ``torch`` and ``sentence_transformers`` fail on import: put first on
    PYTHONPATH, any import of them by the command ends it with that error."""
    for name in ("torch", "sentence_transformers"):
        (tmp / "poison" / name).mkdir(parents=True, exist_ok=True)
        (tmp / "poison" / name / "__init__.py").write_text(f"raise ImportError('{name} was imported')\n")
    return tmp / "poison"


def questions(limit: int = 40) -> list[str]:
    rows = [json.loads(line) for line in QA_SET.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row["question"] for row in rows][:limit]


def test_questions_use_onnx_instead_of_torch():
    assert query_backend("torch") == "onnx"
    assert query_backend("onnx") == "onnx" and query_backend("onnx-int8") == "onnx-int8"


def test_a_verified_export_is_not_hashed_again_until_a_file_changes(tmp_path, monkeypatch):
    folder = onnx_export.export_dir(tmp_path)
    (folder / "onnx").mkdir(parents=True)
    recipe = onnx_export.quant_recipe()
    for name in (onnx_export.FP32_FILE, recipe.file_name):
        (folder / name).write_bytes(os.urandom(4096))
    from core.files import file_table

    meta = {
        "export_version": onnx_export.EXPORT_VERSION,
        "int8_file": recipe.file_name,
        "quantization": {"reduce_range": recipe.reduce_range, "fp32_after_gelu": recipe.keep_after_gelu},
        "files": file_table(folder),
    }
    (folder / onnx_export.EXPORT_META).write_text(json.dumps(meta))
    hashed = []
    real_sha = onnx_export.sha256_file
    monkeypatch.setattr(onnx_export, "sha256_file", lambda path: hashed.append(path) or real_sha(path))
    assert onnx_export.read_export(folder, recipe) is not None and len(hashed) == 2
    assert onnx_export.read_export(folder, recipe) is not None and len(hashed) == 2  # stat unchanged: no hashing
    model = folder / recipe.file_name
    model.write_bytes(os.urandom(4096))  # same size, other bytes
    assert onnx_export.read_export(folder, recipe) is None


@pytest.mark.model
@pytest.mark.slow
def test_onnx_question_vectors_and_rankings_equal_torch(onnx_cache, real_encoder, bundled_retriever):
    from rag.search.retrieve import Retriever

    texts = questions()
    onnx = get_encoder("minilm", threads=2, backend="onnx", cache_dir=onnx_cache)
    a, b = real_encoder.embed_batch(texts), onnx.embed_batch(texts)
    cosines = np.sum(a * b, axis=1)
    assert cosines.min() > 0.9999, cosines.min()
    fast = Retriever(bundled_retriever.index, onnx)
    for question in texts:
        expected = [(r.chunk.id, round(r.score, 3)) for r in bundled_retriever.search(question, k=5)]
        assert [(r.chunk.id, round(r.score, 3)) for r in fast.search(question, k=5)] == expected, question


@pytest.mark.model
@pytest.mark.slow
def test_search_and_ask_answer_without_importing_torch(tmp_path, onnx_cache, bundled_index):
    from api.schemas import AskResponse
    from rag.answer.service import AnswerService

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        RAG_INDEX_DIR=str(bundled_index.index_dir),
        RAG_CACHE_DIR=str(onnx_cache),
        PYTHONPATH=str(poisoned_path(tmp_path)),
        HF_HUB_OFFLINE="1",
    )
    search = run_rag(["search", "Outer Space Treaty", "--json", "-k", "3"], env)
    assert search.returncode == 0, search.stderr
    assert len(search.json()["results"]) == 3
    # The poison works: a command that needs PyTorch fails with it.
    assert "torch was imported" in run_rag(["index", "--index-dir", str(tmp_path / "other")], env).stderr
    # The answers are those of the PyTorch model, citation for citation.
    reference = AnswerService(_retriever(bundled_index))
    for question in ("In which year was NASA set up?", "What does the Moon Agreement say?", "Who won the 2018 World Cup?"):
        run = run_rag(["ask", question, "--json"], env)
        assert run.returncode == 0, run.stderr
        expected = AskResponse.of(reference.ask(question)).model_dump(mode="json")
        got = run.json()
        for body in (got, expected):
            body.pop("timings_ms")
            for passage in body["passages"]:
                for field in ("score", "dense_score"):
                    passage[field] = round(passage[field], 3)
            body["support"] = round(body["support"], 3)
        assert got == expected, question


def _retriever(bundled_index):
    from rag.index import load_index
    from rag.search.retrieve import Retriever

    return Retriever(load_index(bundled_index.index_dir, bundled_index.encoder), bundled_index.encoder)


@pytest.mark.slow
def test_with_a_url_the_commands_ask_the_running_server(tmp_path):
    build_fake_index(tmp_path, DEFAULT_CORPUS_DIR)
    env = rag_env(tmp_path)
    live = LiveServer({**env, "RAG_RATE_LIMIT": ""}).start(tmp_path / "server.log", timeout=120)
    try:
        question = "When did the Soviet Union launch Sputnik?"
        local = run_rag(["search", question, "--json", "-k", "3"], env)
        remote = run_rag(["search", question, "--json", "-k", "3", "--url", live.url], env)
        assert remote.returncode == 0, remote.stderr
        assert remote.json() == local.json()
        # RAG_URL does the same; an index that is not there is not needed at all.
        away = {**env, "RAG_URL": live.url, "RAG_INDEX_DIR": str(tmp_path / "nowhere")}
        ask_remote = run_rag(["ask", question, "--json"], away)
        ask_local = run_rag(["ask", question, "--json"], env)
        assert ask_remote.returncode == 0, ask_remote.stderr
        strip = lambda body: {k: v for k, v in body.items() if k != "timings_ms"}  # noqa: E731
        assert strip(ask_remote.json()) == strip(ask_local.json())
        text = run_rag(["ask", question], away)
        assert text.returncode == 0 and text.stdout.splitlines()[0] == ask_local.json()["answer"]
        # The server's refusals arrive as one line.
        refused = run_rag(["search", "x", "-k", "500"], away)
        assert refused.returncode != 0 and refused.stderr.count("\n") == 1 and "k" in refused.stderr
    finally:
        live.stop()
    dead = run_rag(["search", "Sputnik", "--url", f"http://127.0.0.1:{free_port()}"], env)
    assert dead.returncode == 1 and dead.stderr.startswith("error: cannot reach the server") and dead.stderr.count("\n") == 1


@pytest.mark.slow
def test_a_server_with_keys_takes_the_key_from_rag_api_key(tmp_path):
    build_fake_index(tmp_path, DEFAULT_CORPUS_DIR)
    env = rag_env(tmp_path)
    live = LiveServer({**env, "RAG_API_KEYS": KEY}).start(tmp_path / "server.log", timeout=120)
    try:
        without = run_rag(["search", "Sputnik", "--url", live.url], env)
        assert without.returncode == 1 and "RAG_API_KEY" in without.stderr and without.stderr.count("\n") == 1
        with_key = run_rag(["search", "Sputnik", "--url", live.url, "--json"], {**env, "RAG_API_KEY": KEY})
        assert with_key.returncode == 0 and with_key.json()["results"]
    finally:
        live.stop()
