"""Checkpoints of a reader training run, written atomically so that re-running the same command resumes, and
the signal handling that writes one before SIGINT or SIGTERM ends the run.

A checkpoint holds everything the next step depends on: the model, the optimiser and the scheduler, the
Python, NumPy and PyTorch random states, and :class:`TrainState` (step, epoch, this epoch's batch order and
the position in it, the learning curve so far). It is written to a temporary file, flushed and renamed over
the previous one, so a kill at any moment leaves the last complete checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np

from core.errors import ConfigError
from eval.reader.config import CHECKPOINT, CURVE, TrainState

FORMAT = 1


def rng_states() -> dict:
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_states(states: dict) -> None:
    import torch

    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _replace(tmp: Path, path: Path) -> None:
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def save(folder: Path, key: dict, state: TrainState, model, optimizer, scheduler) -> None:
    """Write the checkpoint (atomically) and the learning curve beside it."""
    import torch

    payload = {
        "format": FORMAT,
        "run_key": key,
        "state": asdict(state),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_states(),
    }
    tmp = folder / f".{CHECKPOINT}.tmp-{os.getpid()}"
    torch.save(payload, tmp)
    _replace(tmp, folder / CHECKPOINT)
    write_curve(folder, key, state)


def write_curve(folder: Path, key: dict, state: TrainState) -> None:
    """The learning curve (loss every few steps, validation figures at each evaluation) as JSON."""
    curve = {"settings": key, "step": state.step, "epoch": state.epoch, "loss": state.losses, "validation": state.evaluations}
    tmp = folder / f".{CURVE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(curve, indent=1), encoding="utf-8")
    _replace(tmp, folder / CURVE)


def load(folder: Path, key: dict) -> dict | None:
    """The checkpoint in ``folder`` (None when there is none); ConfigError when it was made with other settings."""
    import torch

    path = folder / CHECKPOINT
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises several types for a truncated or foreign file
        raise ConfigError(f"{path} cannot be read ({exc.__class__.__name__}); delete it to start over") from None
    if payload.get("format") != FORMAT or payload.get("run_key") != key:
        theirs = payload.get("run_key") or {}
        changed = sorted(k for k in set(key) | set(theirs) if key.get(k) != theirs.get(k))
        raise ConfigError(
            f"{path} was made with other settings ({', '.join(changed) or 'format'}); "
            "re-run with the same options to resume, or choose another --output"
        )
    return payload


def restore(payload: dict, model, optimizer, scheduler) -> TrainState:
    """Put a loaded checkpoint back into the model, optimiser, scheduler and random generators."""
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    set_rng_states(payload["rng"])
    return TrainState(**payload["state"])


class StopFlag:
    """Set by SIGINT or SIGTERM; the training loop checks it after each step."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None


@contextmanager
def stop_on_signals():
    """A :class:`StopFlag` that SIGINT and SIGTERM set instead of ending the process (restored on exit)."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():  # only the main thread may take signals
        yield flag
        return

    def handler(signum, frame):
        flag.signal = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
