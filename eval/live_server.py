"""A real ``rag serve`` process on a free loopback port, for the benchmarks and the tests that need the whole server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

RAG_BIN = Path(sys.executable).parent / "rag"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """``rag serve`` in a subprocess; ``url`` once :meth:`start` returned (the index is loaded)."""

    def __init__(self, env: dict[str, str], port: int | None = None, args: list[str] | None = None):
        # One worker unless the caller says otherwise: what a test asserts about one process
        # (its rate limiter, its reload) should not depend on the cores of the machine.
        self.env = {"RAG_WORKERS": "1", **env, "PYTHONUNBUFFERED": "1"}
        self.port = port or free_port()
        self.args = args or []
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self, log_path: Path) -> LiveServer:
        """Start the process and return at once (the port opens while the model and index load)."""
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(RAG_BIN), "serve", "--port", str(self.port), *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def start(self, log_path: Path, timeout: float = 120) -> LiveServer:
        import httpx  # here, not at the top: `rag` imports this module on every command

        self.launch(log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200 and self.started():
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.log()}")

    def started(self) -> bool:
        """Whether start-up is complete once ``/ready`` answers (more to wait for in subclasses)."""
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def stopped_cleanly(self) -> bool:
        """Whether the process exited after a graceful shutdown (uvicorn re-raises SIGTERM on its way out)."""
        return (
            self.proc is not None
            and self.proc.returncode in (0, -signal.SIGTERM)
            and "Application shutdown complete" in self.log()
        )

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
