"""The suite's own helpers, where a mistake would make other tests flaky rather than wrong."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import wait_for_pause

# One write carries an earlier line and the pause line; then the process stays silent, as a paused rag does.
_PAUSED_IN_ONE_WRITE = (
    "import os, time; os.write(2, b'ds/train: 5 questions\\nrag: paused at tune-written\\n'); time.sleep(60)"
)


def test_a_pause_line_that_arrives_with_an_earlier_line_is_seen():
    proc = subprocess.Popen([sys.executable, "-c", _PAUSED_IN_ONE_WRITE], stderr=subprocess.PIPE, text=True)
    try:
        wait_for_pause(proc, "tune-written", timeout=20)
    finally:
        proc.kill()
        proc.wait()


def test_a_process_that_never_pauses_fails_the_wait_and_is_reaped():
    proc = subprocess.Popen([sys.executable, "-c", "import os; os.write(2, b'working\\n')"], stderr=subprocess.PIPE, text=True)
    with pytest.raises(pytest.fail.Exception, match="never paused at tune-written.*working"):
        wait_for_pause(proc, "tune-written", timeout=20)
    assert proc.returncode == 0
