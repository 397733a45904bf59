"""Running the app under uvicorn, with one change to its multi-worker supervisor: SIGHUP reloads in place.

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
import signal
import sys

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess

from rag.settings import Settings

logger = logging.getLogger("uvicorn.error")

#: The app factory ``rag serve`` runs: the port answers at once, /ready says 503 until loaded.
APP_FACTORY = "api.app:create_served_app"


class ReloadingSupervisor(Multiprocess):
    """uvicorn's worker supervisor, except that SIGHUP asks every worker to reload its index."""

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
        ReloadingSupervisor(config, sockets=[sock]).run()
        return
    server = uvicorn.Server(config)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    if not server.started:
        sys.exit(STARTUP_FAILURE)
