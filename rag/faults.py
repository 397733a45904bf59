"""Named pause points in long operations, so fault tests can kill a process at a known moment.

``RAG_FAULT_PAUSE="stage:seconds"`` makes :func:`checkpoint` sleep when it reaches ``stage``
(and announce it on stderr). Unset, a checkpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import sys
import time


def checkpoint(stage: str) -> None:
    spec = os.environ.get("RAG_FAULT_PAUSE")
    if not spec:
        return
    name, _, seconds = spec.partition(":")
    if name == stage:
        print(f"rag: paused at {stage}", file=sys.stderr, flush=True)
        time.sleep(float(seconds or 5))
