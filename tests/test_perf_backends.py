"""Encoder backends: choosing one, the once-only ONNX export, and int8 vectors close to the PyTorch model."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import embeddings.onnx as onnx_export
from embeddings import get_encoder
from embeddings.onnx import (
    EXPORT_META,
    FP32_FILE,
    QuantRecipe,
    check_backend,
    ensure_export,
    export_dir,
    quant_recipe,
    read_export,
)
from core.errors import ConfigError
from rag.settings import load_settings

# ------------------------------------------------------------------------------- choosing a backend


def test_unknown_backend_is_a_config_error_naming_the_choices():
    with pytest.raises(ConfigError, match=r"unknown encoder backend 'tensorrt'; choose one of: torch, onnx, onnx-int8"):
        get_encoder("minilm", backend="tensorrt")
    with pytest.raises(ConfigError, match="onnx-int8"):
        check_backend("int8")


def test_backend_setting_is_validated(monkeypatch):
    monkeypatch.setenv("RAG_ENCODER_BACKEND", "cuda")
    with pytest.raises(ConfigError, match=r"encoder_backend \(RAG_ENCODER_BACKEND\)"):
        load_settings()
    monkeypatch.setenv("RAG_ENCODER_BACKEND", "onnx-int8")
    assert load_settings().encoder_backend == "onnx-int8"


def test_backends_keep_separate_embedding_caches(tmp_path):
    # Constructing is cheap: nothing is exported or loaded until the first embedding.
    encoders = [get_encoder("minilm", backend=b, cache_dir=tmp_path) for b in ("torch", "onnx", "onnx-int8")]
    assert {e.name for e in encoders} == {"sentence-transformers/all-MiniLM-L6-v2"}
    assert len({e.cache_key for e in encoders}) == 3
    assert not (tmp_path / "models").exists()


def test_cli_rejects_an_unknown_backend_in_one_line(rag_cli, small_corpus):
    run = rag_cli(["index", "--corpus", str(small_corpus), "--backend", "gpu"])
    assert run.returncode == 2
    assert run.stderr.startswith("error: invalid setting encoder_backend (RAG_ENCODER_BACKEND)")
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("flags", "isa", "reduce_range"),
    [
        ({"avx2", "fma"}, "avx2", True),  # u8 x s8 on plain AVX2 can saturate: 7-bit weights
        ({"avx2", "avx512f", "avx512_vnni"}, "vnni", False),
        ({"avx2", "avx_vnni"}, "vnni", False),
    ],
)
def test_quantisation_follows_the_instruction_set(flags, isa, reduce_range):
    recipe = quant_recipe(frozenset(flags))
    assert (recipe.isa, recipe.reduce_range) == (isa, reduce_range)
    assert recipe.file_name == f"onnx/model_O2_qint8_{isa}.onnx"


# ------------------------------------------------------------------- export caching (fake exporter)


class FakeExporter:
    """Stands in for the minute-long real export: writes the files an export has, counts calls."""

    def __init__(self, delay: float = 0.0):
        self.calls = 0
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self, tmp: Path, recipe: QuantRecipe, source: Path) -> None:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        for name in (FP32_FILE, recipe.file_name, "config.json"):
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(name.encode() * 100)


RECIPE = QuantRecipe("avx2", reduce_range=True)


@pytest.fixture
def fake_exporter(monkeypatch) -> FakeExporter:
    fake = FakeExporter()
    monkeypatch.setattr(onnx_export, "_export_into", fake)
    return fake


def test_export_happens_once_and_is_reused(tmp_path, fake_exporter):
    folder = ensure_export(tmp_path, recipe=RECIPE, log_fn=lambda m: None)
    assert folder == export_dir(tmp_path)
    meta = read_export(folder, RECIPE)
    assert meta is not None and meta["int8_file"] == RECIPE.file_name
    assert ensure_export(tmp_path, recipe=RECIPE, log_fn=lambda m: None) == folder
    assert fake_exporter.calls == 1
    assert not list(folder.parent.glob("onnx.tmp-*"))


def test_a_damaged_export_is_redone(tmp_path, fake_exporter):
    folder = ensure_export(tmp_path, recipe=RECIPE, log_fn=lambda m: None)
    model = folder / RECIPE.file_name
    model.write_bytes(model.read_bytes()[:-10])  # truncated
    assert read_export(folder, RECIPE) is None
    ensure_export(tmp_path, recipe=RECIPE, log_fn=lambda m: None)
    assert fake_exporter.calls == 2
    assert read_export(folder, RECIPE) is not None


def test_a_partial_export_is_never_used(tmp_path, fake_exporter):
    # A killed export: files present but no export.json, plus a temp folder left behind.
    folder = export_dir(tmp_path)
    (folder / "onnx").mkdir(parents=True)
    (folder / FP32_FILE).write_bytes(b"half")
    stale = folder.parent / "onnx.tmp-1-abcdef"
    stale.mkdir()
    assert read_export(folder, RECIPE) is None
    ensure_export(tmp_path, recipe=RECIPE, log_fn=lambda m: None)
    assert fake_exporter.calls == 1
    assert read_export(folder, RECIPE) is not None and not stale.exists()


def test_an_export_for_another_cpu_is_redone(tmp_path, fake_exporter):
    ensure_export(tmp_path, recipe=RECIPE, log_fn=lambda m: None)
    vnni = QuantRecipe("vnni", reduce_range=False)
    assert read_export(export_dir(tmp_path), vnni) is None
    ensure_export(tmp_path, recipe=vnni, log_fn=lambda m: None)
    assert fake_exporter.calls == 2


def test_concurrent_callers_export_once(tmp_path, monkeypatch):
    fake = FakeExporter(delay=0.3)
    monkeypatch.setattr(onnx_export, "_export_into", fake)
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_export(tmp_path, recipe=RECIPE, log_fn=lambda m: None)))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake.calls == 1 and len(results) == 3 and len(set(results)) == 1


def test_a_failed_export_says_what_to_do(tmp_path, monkeypatch):
    def broken(tmp, recipe, source):
        raise RuntimeError("tracer exploded")

    monkeypatch.setattr(onnx_export, "_export_into", broken)
    with pytest.raises(onnx_export.ExportError, match="RAG_ENCODER_BACKEND=torch"):
        ensure_export(tmp_path, recipe=RECIPE, log_fn=lambda m: None)
    assert not list(export_dir(tmp_path).parent.glob("onnx.tmp-*"))
    assert not export_dir(tmp_path).exists()


# ------------------------------------------------------------------------------ the real export


# (the session's real export is the ``onnx_cache`` fixture of conftest.py)


@pytest.mark.model
@pytest.mark.slow
def test_real_export_is_complete_and_recorded(onnx_cache):
    recipe = quant_recipe()
    meta = json.loads((export_dir(onnx_cache) / EXPORT_META).read_text())
    assert meta["quantization"]["isa"] == recipe.isa
    assert meta["quantization"]["reduce_range"] == recipe.reduce_range
    assert set(meta["files"]) >= {FP32_FILE, recipe.file_name, "tokenizer.json", "modules.json"}
    assert meta["quantization"]["fp32_after_gelu"] is recipe.keep_after_gelu
    int8 = meta["files"][recipe.file_name]["bytes"]
    assert int8 < 0.8 * meta["files"][FP32_FILE]["bytes"]  # int8 weights are a quarter of fp32 ones
    assert not (export_dir(onnx_cache) / "onnx" / "model.onnx").exists()


@pytest.mark.model
@pytest.mark.slow
def test_onnx_vectors_match_torch(onnx_cache, real_encoder, bundled_article):
    texts = [t for t in (bundled_article.text[s.start : s.end].strip()[:1000] for s in bundled_article.sections) if t][:12]
    texts += ["What is space diplomacy?", "Who signed the Outer Space Treaty?"]
    reference = real_encoder.embed_batch(texts)
    fp32 = get_encoder("minilm", threads=2, backend="onnx", cache_dir=onnx_cache).embed_batch(texts)
    int8 = get_encoder("minilm", threads=2, backend="onnx-int8", cache_dir=onnx_cache).embed_batch(texts)
    for vectors in (fp32, int8):
        assert vectors.shape == reference.shape and vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    # fp32 ONNX is the same arithmetic; int8 weights move vectors slightly, not rankings
    assert float((fp32 * reference).sum(axis=1).min()) > 0.9999
    cos = (int8 * reference).sum(axis=1)
    assert float(cos.mean()) > 0.99 and float(cos.min()) > 0.98
    order = lambda m: np.argsort(-(m[-2:] @ m[:-2].T), axis=1)[:, :3]  # noqa: E731
    assert (order(int8)[:, 0] == order(reference)[:, 0]).all()


@pytest.mark.model
@pytest.mark.slow
def test_int8_vectors_do_not_depend_on_the_batch(onnx_cache, bundled_article):
    # Dynamic quantisation scales activations per run; each text runs alone, so its vector is its own.
    texts = [t for t in (bundled_article.text[s.start : s.end].strip()[:600] for s in bundled_article.sections) if t][:6]
    encoder = get_encoder("minilm", threads=2, backend="onnx-int8", cache_dir=onnx_cache)
    together = encoder.embed_batch(texts)
    alone = np.vstack([encoder.embed_batch([t]) for t in texts])
    assert np.array_equal(together, alone)
    assert encoder.cache_key.startswith("sentence-transformers/all-MiniLM-L6-v2|onnx-int8-")
