"""What a model folder made by ``rag tune`` tells the service: the hybrid fusion weight its validation preferred.

Below the tuning itself (``eval.tune``), which writes the file this reads.
"""

from __future__ import annotations

import json
from pathlib import Path

#: Written into the model folder beside the model card: what was trained on, how, and the validation figures.
TUNE_META = "rag-tune.json"


def recommended_alpha(model_dir: str | Path) -> float | None:
    """The hybrid fusion weight that ``rag tune`` chose on its validation part for the model in ``model_dir``, if any."""
    try:
        meta = json.loads((Path(model_dir) / TUNE_META).read_text(encoding="utf-8"))
        alpha = float(meta["validation"]["alpha"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return alpha if 0.0 <= alpha <= 1.0 else None
