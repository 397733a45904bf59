"""What the encoder's design choices are worth, each against its alternative on the same texts.

    python -m eval.encoder_variants [--docs 200] [--rounds 2]

Passages (SciFact abstracts when ``../shared/datasets/scifact`` is there, else synthetic ones; up
to 256 word pieces) and the product's questions are encoded by:

* onnx-int8 as shipped (each text its own unpadded run, two runs at once, one thread each),
  against one run at a time with two intra-op threads, and against padded batches of 32;
* the shipped int8 recipe against one that keeps the feed-forward output projections fp32;
* torch questions on one thread against two, and one pass per question against merged passes
  (embeddings/batching.py) of 8 and 16 questions.

Prints a table and writes JSON. Figures, never pass/fail; docs/benchmarks.md records a run.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from eval.bench.workloads import load_workload, questions
from eval.metrics import percentile
from eval.report import machine_info, table


def _best_rate(fn, n_items: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return n_items / best


def _padded(session, tokenizer, batch: int):
    """An encoder that pads length-sorted batches into one run each (the alternative to unpadded runs)."""
    names = {i.name for i in session.get_inputs()}

    def encode(texts):
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            enc = tokenizer.encode_batch([texts[i] for i in idx])
            width = max(len(e.ids) for e in enc)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for row, e in enumerate(enc):
                ids[row, : len(e.ids)] = e.ids
                mask[row, : len(e.ids)] = 1
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            (hidden,) = session.run(["last_hidden_state"], {k: v for k, v in feed.items() if k in names})
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
            out[idx] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return out

    return encode


def _onnx_variants(passages: list[str], cache_dir: Path, rounds: int, log) -> list[dict]:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from embeddings.onnx import FP32_FILE, OnnxModel, ensure_export, quant_recipe, quantize, session_options

    recipe = quant_recipe()
    folder = ensure_export(cache_dir, recipe=recipe)
    shipped = folder / recipe.file_name
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=256)
    tokenizer.no_padding()

    def model(path: Path, threads_per_run: int, parallel: int) -> OnnxModel:
        session = ort.InferenceSession(str(path), session_options(threads_per_run), providers=["CPUExecutionProvider"])
        return OnnxModel(session, tokenizer, parallel)

    rows = []
    shipped_model = model(shipped, 1, 2)
    reference = model(folder / FP32_FILE, 1, 2).encode(passages)
    variants = {
        "int8, one unpadded run per text, 2 at once x 1 thread (shipped)": shipped_model.encode,
        "int8, one unpadded run per text, 1 at a time x 2 threads": model(shipped, 2, 1).encode,
        "int8, padded batches of 32 by length, 2 threads": _padded(
            ort.InferenceSession(str(shipped), session_options(2), providers=["CPUExecutionProvider"]), tokenizer, 32
        ),
    }
    with tempfile.TemporaryDirectory(prefix="rag-variants-") as tmp:
        alt = Path(tmp) / "ffn-out-fp32.onnx"
        quantize(folder / FP32_FILE, alt, dataclasses.replace(recipe, keep_after_gelu=True))
        variants["int8 keeping the 6 feed-forward output projections fp32, shipped runs"] = model(alt, 1, 2).encode
        variants["fp32 ONNX, shipped runs"] = model(folder / FP32_FILE, 1, 2).encode
        for name, encode in variants.items():
            encode(passages[:4])
            rate = _best_rate(lambda: encode(passages), len(passages), rounds)
            cos = (np.asarray(encode(passages)) * reference).sum(axis=1)
            rows.append({"variant": name, "passages_per_s": round(rate, 1), "cos_fp32_mean": round(float(cos.mean()), 5), "cos_fp32_min": round(float(cos.min()), 5)})
            log(f"  {name}: {rate:.1f} passages/s")
    return rows


def _question_variants(qs: list[str], cache_dir: Path, rounds: int, log) -> list[dict]:
    import torch

    from embeddings import get_encoder

    encoder = get_encoder("minilm", threads=2, backend="torch", cache_dir=cache_dir)
    encoder.warm_up()
    rows = []

    def latency(threads: int) -> float:
        torch.set_num_threads(threads)
        try:
            times = []
            for q in qs:
                started = time.perf_counter()
                encoder.model.encode([q], normalize_embeddings=True, show_progress_bar=False)
                times.append(time.perf_counter() - started)
            return percentile(times, 50) * 1000
        finally:
            torch.set_num_threads(encoder.threads)

    for threads in (1, 2):
        latency(threads)
        p50 = latency(threads)
        rows.append({"variant": f"torch, one question, {threads} thread(s)", "p50_ms": round(p50, 2)})
        log(f"  torch one question on {threads} thread(s): p50 {p50:.2f} ms")
    run = encoder._torch_encode  # one forward pass, no merging
    with ThreadPoolExecutor(2) as pool:
        single = _best_rate(lambda: list(pool.map(lambda q: run([q]), qs)), len(qs), rounds)
    rows.append({"variant": "torch, one pass per question (2 callers)", "questions_per_s": round(single, 1)})
    for size in (8, 16):
        rate = _best_rate(lambda: [run(qs[i : i + size]) for i in range(0, len(qs), size)], len(qs), rounds)
        rows.append({"variant": f"torch, merged passes of {size} questions", "questions_per_s": round(rate, 1)})
    int8 = get_encoder("minilm", threads=2, backend="onnx-int8", cache_dir=cache_dir)
    int8.embed_batch(qs[:4])
    with ThreadPoolExecutor(2) as pool:
        single = _best_rate(lambda: list(pool.map(lambda q: int8.embed_batch([q]), qs)), len(qs), rounds)
    rows.append({"variant": "onnx-int8, one call per question (2 callers)", "questions_per_s": round(single, 1)})
    rate = _best_rate(lambda: [int8.embed_batch(qs[i : i + 8]) for i in range(0, len(qs), 8)], len(qs), rounds)
    rows.append({"variant": "onnx-int8, calls of 8 questions", "questions_per_s": round(rate, 1)})
    for row in rows[2:]:
        log(f"  {row['variant']}: {row['questions_per_s']} questions/s")
    return rows


def main(
    docs: Annotated[int, typer.Option("--docs", min=8, max=20_000, help="Passages in the workload.")] = 200,
    rounds: Annotated[int, typer.Option("--rounds", min=1, max=10, help="Timed rounds; the best counts.")] = 2,
    data: Annotated[Optional[Path], typer.Option("--data", help="BEIR folder [default ../shared/datasets/scifact].")] = None,
    cache_dir: Annotated[Path, typer.Option("--cache-dir", help="Where the ONNX export lives.")] = Path(".rag-cache"),
    out: Annotated[Optional[Path], typer.Option("--out", help="JSON results [default artifacts/bench/variants-<time>.json].")] = None,
) -> None:
    log = lambda message: typer.echo(message, err=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="rag-variants-") as tmp:
        workload = load_workload(data, docs, Path(tmp))
    log(f"passages: {workload.name}")
    results = {
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "workload": workload.name,
        "passages": _onnx_variants(workload.passages, cache_dir, rounds, log),
        "questions": _question_variants(questions(), cache_dir, rounds, log),
    }
    out = out or Path("artifacts/bench") / f"variants-{_dt.datetime.now().strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    passages = [[r["variant"], r["passages_per_s"], r["cos_fp32_mean"], r["cos_fp32_min"]] for r in results["passages"]]
    typer.echo(table(passages, ["variant", "passages/s", "cos fp32 mean", "cos fp32 min"]))
    typer.echo("")
    asked = [[r["variant"], r.get("p50_ms", ""), r.get("questions_per_s", "")] for r in results["questions"]]
    typer.echo(table(asked, ["variant", "p50 ms", "questions/s"]))
    typer.echo(f"\nresults: {out}")


if __name__ == "__main__":
    typer.run(main)
