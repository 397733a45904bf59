"""The workers of ``rag serve --workers N`` tell each other whether they are loaded and which build they serve.

A folder that ``rag serve`` makes before it starts the workers (its path in ``RAG_WORKER_STATE_DIR``):
the supervisor writes ``workers.json`` (how many workers there should be, and its own pid) and
removes the entry of a worker that died; each worker writes ``worker-PID.json`` (loaded or not, the
build it serves) whenever that changes, atomically (a temporary file renamed over the old one). Any
worker answers ``/ready`` for all of them by reading the folder: a few files of a hundred bytes.

Why files rather than shared memory or questions to the supervisor: each file has one writer, so
no lock is needed and a worker that dies mid-write leaves the previous version, not a torn record;
nothing has a fixed size, so a restarted worker (a new pid) just adds a file; an operator can read
the state with ``cat``; and it is the scheme prometheus_client's multiprocess mode already uses for
this service's metrics. uvicorn's supervisor talks to a worker only through a ping pipe of its own,
and answering every ``/ready`` through it would put a thread and a protocol into the supervisor.

With one worker there is no folder, and no board: the process answers for itself (``AppState.readiness``).
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

#: The folder of the board; set by ``rag serve`` for its workers, never by hand.
BOARD_ENV = "RAG_WORKER_STATE_DIR"
_SUPERVISOR_FILE = "workers.json"


@dataclass(frozen=True)
class WorkerStatus:
    """One worker as it last said: loaded or still loading, and the build it serves."""

    pid: int
    loaded: bool
    build_id: str | None


@dataclass(frozen=True)
class Readiness:
    """All workers at once: how many are loaded of how many there should be."""

    loaded: int
    total: int
    workers: list[WorkerStatus]

    @property
    def ready(self) -> bool:
        return self.loaded >= self.total and all(w.loaded for w in self.workers)


def _write_atomically(path: Path, value: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(value, handle)
    os.replace(tmp, path)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # gone in between (a worker stopped), or not a board file


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkerBoard:
    """This worker's entry on the board, and what it reads of the others."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.pid = os.getpid()

    @classmethod
    def from_env(cls) -> WorkerBoard:
        folder = os.environ.get(BOARD_ENV)
        return cls(Path(folder) if folder and Path(folder).is_dir() else None)

    @property
    def shared(self) -> bool:
        """Whether there are other workers (a supervisor made a board folder)."""
        return self.folder is not None

    def publish(self, loaded: bool, build_id: str | None) -> None:
        if self.folder is not None:
            _write_atomically(self.folder / f"worker-{self.pid}.json", asdict(WorkerStatus(self.pid, loaded, build_id)))

    def withdraw(self) -> None:
        """Take this worker off the board (it is stopping)."""
        if self.folder is not None:
            (self.folder / f"worker-{self.pid}.json").unlink(missing_ok=True)

    def _supervisor(self) -> dict:
        return (_read(self.folder / _SUPERVISOR_FILE) or {}) if self.folder is not None else {}

    def workers(self) -> list[WorkerStatus]:
        """Every live worker's last word, by pid (a dead worker's entry is skipped until the supervisor removes it)."""
        if self.folder is None:
            return []
        found = []
        for path in self.folder.glob("worker-*.json"):
            entry = _read(path)
            if entry and isinstance(entry.get("pid"), int) and _alive(entry["pid"]):
                found.append(WorkerStatus(entry["pid"], bool(entry.get("loaded")), entry.get("build_id")))
        return sorted(found, key=lambda w: w.pid)

    def readiness(self) -> Readiness:
        workers = self.workers()
        total = int(self._supervisor().get("total", 1))
        return Readiness(sum(w.loaded for w in workers), max(total, len(workers)), workers)

    def ask_every_worker_to_reload(self) -> bool:
        """SIGHUP to the supervisor, which passes it on to every worker (api/serving.py); False without one."""
        supervisor = self._supervisor().get("pid")
        if not self.shared or supervisor != os.getppid():  # only ever our own parent, never a stranger
            return False
        os.kill(supervisor, signal.SIGHUP)
        return True


# ------------------------------------------------------------------------------------ the supervisor's side


def make_board(total: int) -> Path:
    """A fresh board folder for ``total`` workers, named in the environment the workers inherit."""
    folder = Path(tempfile.mkdtemp(prefix="rag-workers-"))
    os.environ[BOARD_ENV] = str(folder)
    set_total(folder, total)
    return folder


def set_total(folder: Path, total: int) -> None:
    _write_atomically(folder / _SUPERVISOR_FILE, {"total": total, "pid": os.getpid()})


def forget(folder: Path, pid: int) -> None:
    """Remove the entry of a worker that has died (the supervisor reaped it)."""
    (folder / f"worker-{pid}.json").unlink(missing_ok=True)
