"""Running the app under uvicorn, with two changes to its multi-worker supervisor: SIGHUP reloads in place,
and it keeps the workers' board (api/workers.py) that /ready reads.

uvicorn's supervisor answers SIGHUP by starting a replacement for each worker and giving it
``timeout_worker_healthcheck`` seconds to finish start-up; loading the model takes longer than
that on a small machine, so the restart was abandoned and no worker reloaded. The workers of this
service can reload the index themselves without stopping (``AppState.reload``: the old build
serves until the new one is verified), so the supervisor passes the signal on instead. Workers
keep their loaded model, and no request is dropped.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
from pathlib import Path

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess

from api.workers import forget, make_board, set_total
from rag.settings import Settings

logger = logging.getLogger("uvicorn.error")

#: The app factory ``rag serve`` runs: the port answers at once, /ready says 503 until loaded.
APP_FACTORY = "api.app:create_served_app"


class ReloadingSupervisor(Multiprocess):
    """uvicorn's worker supervisor, except that SIGHUP asks every worker to reload its index, and the
    board says how many workers there are and forgets the ones that died."""

    def __init__(self, config: uvicorn.Config, sockets, board: Path):
        super().__init__(config, sockets)
        self.board = board

    def keep_subprocess_alive(self) -> None:
        before = {process.pid for process in self.processes}
        super().keep_subprocess_alive()
        for pid in before - {process.pid for process in self.processes}:
            forget(self.board, pid)  # replaced by a new worker, which adds itself as it starts

    def handle_ttin(self) -> None:
        super().handle_ttin()
        set_total(self.board, self.processes_num)

    def handle_ttou(self) -> None:
        gone = self.processes[-1].pid if self.processes_num > 1 else None
        super().handle_ttou()
        set_total(self.board, self.processes_num)
        if gone is not None:
            forget(self.board, gone)

    def handle_hup(self) -> None:
        logger.info("Received SIGHUP, asking every worker to reload the index.")
        for process in self.processes:
            # A worker that has not started yet has not installed its handler (SIGHUP would end
            # it); it has not opened the index either, so it will load the current build anyway.
            if process.pid is not None and process.process.is_alive() and process.is_ready(timeout=5):
                os.kill(process.pid, signal.SIGHUP)


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        APP_FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=False,  # the app logs each request once, with its request id
        limit_concurrency=settings.limit_concurrency,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=30,  # SIGTERM: stop accepting, finish requests in flight
    )


def run(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT, as ``uvicorn.run`` would, with the reloading supervisor for workers > 1."""
    config = uvicorn_config(settings)
    if config.workers > 1:
        sock = config.bind_socket()
        board = make_board(config.workers)  # before the workers start: they inherit its path
        try:
            ReloadingSupervisor(config, sockets=[sock], board=board).run()
        finally:
            shutil.rmtree(board, ignore_errors=True)
        return
    server = uvicorn.Server(config)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    if not server.started:
        sys.exit(STARTUP_FAILURE)
