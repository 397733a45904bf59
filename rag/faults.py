"""Named pause points in long operations, so fault tests can kill a process at a known moment.

``RAG_FAULT_PAUSE="stage:seconds"`` makes :func:`checkpoint` sleep when it reaches ``stage``
(and announce it on stderr). ``RAG_FAULT_GATE="stage:path"`` makes it wait at ``stage`` until the
file ``path`` exists (at most a minute), so a test decides exactly when the operation goes on.
Each call that starts waiting there first appends a line ``stage pid`` to the marker file
``path + ".waiting"`` (never removed by the gate), so a test can wait until a call has reached
the gate instead of guessing how long that takes. ``{pid}`` in the path becomes the waiting process's
id, so each process of a group (the workers of ``rag serve --workers N``) has a gate of its own and a
test can let them through one at a time. Unset, a checkpoint costs two dictionary lookups.
"""

from __future__ import annotations

import os
import sys
import time

GATE_LIMIT_S = 60.0  # a forgotten gate delays the operation, it never hangs it
WAITING_SUFFIX = ".waiting"  # the gate's marker file: path + WAITING_SUFFIX, a line per call that waits


def checkpoint(stage: str) -> None:
    spec = os.environ.get("RAG_FAULT_PAUSE")
    if spec:
        name, _, seconds = spec.partition(":")
        if name == stage:
            print(f"rag: paused at {stage}", file=sys.stderr, flush=True)
            time.sleep(float(seconds or 5))
    gate = os.environ.get("RAG_FAULT_GATE")
    if gate:
        name, _, path = gate.partition(":")
        path = path.replace("{pid}", str(os.getpid()))
        if name == stage and path and not os.path.exists(path):
            with open(path + WAITING_SUFFIX, "a", encoding="utf-8") as marker:
                marker.write(f"{stage} {os.getpid()}\n")
            print(f"rag: waiting at {stage}", file=sys.stderr, flush=True)
            deadline = time.monotonic() + GATE_LIMIT_S
            while not os.path.exists(path) and time.monotonic() < deadline:
                time.sleep(0.02)
