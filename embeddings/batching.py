"""Micro-batching of concurrent encoder calls.

A server encodes one short question per request. When several requests arrive together, one
forward pass over all their questions costs far less than one pass per question (the model's
weights are read once, and the pass can use every core), so calls that find the encoder busy
queue up, and whoever runs next takes the whole queue as one batch. A call that finds the
encoder idle runs at once: nothing waits on a timer, so a lone question pays no extra latency.
"""

from __future__ import annotations

import threading
from typing import Callable, Sequence

import numpy as np


class _Job:
    __slots__ = ("texts", "result", "error", "done")

    def __init__(self, texts: list[str]):
        self.texts = texts
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None
        self.done = False


class MicroBatcher:
    """Runs ``run(texts) -> vectors`` one call at a time, merging the calls that queue meanwhile.

    Thread-safe. Results are split back to their callers in order; an exception in a merged run
    reaches every caller whose texts were in it. ``max_texts`` bounds a merged batch (a single
    call larger than that runs alone, unsplit).
    """

    def __init__(self, run: Callable[[list[str]], np.ndarray], max_texts: int = 32):
        self._run = run
        self.max_texts = max(1, max_texts)
        self._cond = threading.Condition()
        self._queue: list[_Job] = []
        self._busy = False
        self.runs = 0  # forward passes made
        self.calls = 0  # calls served

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        job = _Job(list(texts))
        with self._cond:
            self._queue.append(job)
            while self._busy and not job.done:
                self._cond.wait()
            if job.done:
                return self._result(job)
            self._busy = True
        try:
            while not job.done:  # our job is queued: run batches from the front until it is done
                with self._cond:
                    batch = self._take()
                self._run_batch(batch)
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
        return self._result(job)

    def _take(self) -> list[_Job]:
        batch = [self._queue.pop(0)]
        size = len(batch[0].texts)
        while self._queue and size + len(self._queue[0].texts) <= self.max_texts:
            size += len(self._queue[0].texts)
            batch.append(self._queue.pop(0))
        return batch

    def _run_batch(self, batch: list[_Job]) -> None:
        texts = [t for job in batch for t in job.texts]
        try:
            vectors = np.asarray(self._run(texts)) if texts else None
        except BaseException as exc:  # noqa: BLE001 - handed to the callers, who re-raise it
            for job in batch:
                job.error = exc
        else:
            start = 0
            for job in batch:
                n = len(job.texts)
                job.result = vectors[start : start + n] if vectors is not None else np.zeros((0, 0), dtype=np.float32)
                start += n
        with self._cond:
            self.runs += 1
            self.calls += len(batch)
            for job in batch:
                job.done = True
            self._cond.notify_all()

    @staticmethod
    def _result(job: _Job) -> np.ndarray:
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result
