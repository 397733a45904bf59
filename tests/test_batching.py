"""Micro-batching of concurrent encoder calls: merged runs, results to the right callers, errors shared."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import wait_until
from embeddings.batching import MicroBatcher


def _vectors(texts: list[str]) -> np.ndarray:
    return np.array([[float(len(t)), float(sum(map(ord, t)))] for t in texts], dtype=np.float32)


def test_a_lone_call_runs_at_once_and_returns_its_own_vectors():
    batches = []
    batcher = MicroBatcher(lambda texts: batches.append(list(texts)) or _vectors(texts))
    out = batcher(["a", "bb"])
    assert batches == [["a", "bb"]]
    assert np.array_equal(out, _vectors(["a", "bb"]))


def test_calls_arriving_while_a_run_is_busy_are_merged_into_the_next_run():
    gate = threading.Event()
    batches: list[list[str]] = []

    def run(texts):
        batches.append(list(texts))
        if len(batches) == 1:
            gate.wait(30)  # hold the first run until the others have queued
        return _vectors(texts)

    batcher = MicroBatcher(run, max_texts=32)
    texts = [f"question {i}" * (i + 1) for i in range(9)]
    with ThreadPoolExecutor(9) as pool:
        first = pool.submit(batcher, [texts[0]])
        wait_until(lambda: batches, 30, "the first run to start", interval=0.001)
        rest = [pool.submit(batcher, [t]) for t in texts[1:]]
        wait_until(lambda: len(batcher._queue) >= 8, 30, "eight calls queued behind the busy run", interval=0.001)
        gate.set()
        results = [first.result(5)] + [f.result(5) for f in rest]
    assert len(batches) == 2 and sorted(batches[1]) == sorted(texts[1:])
    for text, vec in zip(texts, results):
        assert np.array_equal(vec, _vectors([text]))  # every caller gets its own rows
    assert batcher.calls == 9 and batcher.runs == 2


def test_a_merged_run_never_exceeds_max_texts_and_large_calls_run_alone():
    gate = threading.Event()
    sizes: list[int] = []

    def run(texts):
        sizes.append(len(texts))
        if len(sizes) == 1:
            gate.wait(30)
        return _vectors(texts)

    batcher = MicroBatcher(run, max_texts=4)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(batcher, ["x"])
        wait_until(lambda: sizes, 30, "the first run to start", interval=0.001)
        calls = [pool.submit(batcher, [f"q{i}"] * 2) for i in range(3)] + [pool.submit(batcher, ["big"] * 10)]
        wait_until(lambda: len(batcher._queue) >= 4, 30, "four calls queued", interval=0.001)
        gate.set()
        outs = [f.result(5) for f in calls]
        first.result(5)
    assert max(sizes[1:]) <= 10 and all(s <= 4 for s in sizes[1:] if s != 10)
    assert 10 in sizes  # the large call ran unsplit, by itself
    assert [o.shape[0] for o in outs] == [2, 2, 2, 10]


def test_an_error_in_a_merged_run_reaches_every_caller_in_it_and_the_batcher_keeps_working():
    gate = threading.Event()
    calls = {"n": 0}

    def run(texts):
        calls["n"] += 1
        if calls["n"] == 1:
            gate.wait(30)
            return _vectors(texts)
        if calls["n"] == 2:
            raise RuntimeError("encoder failed")
        return _vectors(texts)

    batcher = MicroBatcher(run)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(batcher, ["one"])
        wait_until(lambda: calls["n"], 30, "the first run to start", interval=0.001)
        failing = [pool.submit(batcher, [t]) for t in ("two", "three")]
        wait_until(lambda: len(batcher._queue) >= 2, 30, "two calls queued", interval=0.001)
        gate.set()
        assert first.result(5).shape == (1, 2)
        for f in failing:
            with pytest.raises(RuntimeError, match="encoder failed"):
                f.result(5)
    assert np.array_equal(batcher(["four"]), _vectors(["four"]))  # not left busy
