"""The ``rag serve --engine ray`` command itself, joined to the session's Ray cluster: SIGHUP reloads
every replica, SIGTERM removes the application and ends the process cleanly."""

from __future__ import annotations

import signal

import httpx
import pytest

from conftest import EXTRA_ARTICLE, SMALL_CORPUS, rag_env, run_rag, wait_until, write_files
from eval.live_server import LiveServer

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_serve_on_ray_reloads_on_sighup_and_stops_on_sigterm(ray_cluster, tmp_path):
    import ray

    corpus = write_files(tmp_path / "corpus", SMALL_CORPUS)
    env = rag_env(tmp_path, RAG_CORPUS_DIR=corpus, RAG_RATE_LIMIT="")
    assert run_rag(["index"], env).returncode == 0
    server = LiveServer(env, args=["--engine", "ray", "--ray-address", ray_cluster, "--replicas", "2"])
    server.start(tmp_path / "serve.log", timeout=180)
    try:
        assert "(Ray Serve, replicas: 2)" in server.log()
        write_files(corpus, {"dirigibles.md": EXTRA_ARTICLE})
        assert run_rag(["index"], env).returncode == 0
        new = (tmp_path / "index").resolve().name
        server.signal(signal.SIGHUP)
        wait_until(lambda: "SIGHUP reload: reloaded" in server.log(), 120, "the SIGHUP reload")
        served: dict[int, str] = {}

        def both_new() -> bool:
            ready = httpx.get(server.url + "/ready", timeout=10).json()
            served[ready["pid"]] = ready["build_id"]
            return len(served) == 2

        wait_until(both_new, 60, "/ready from both replicas", interval=0)
        assert set(served.values()) == {new}, served
    finally:
        code = server.stop(timeout=120)
    assert code == 0, server.log()
    names = lambda: [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith("SERVE_REPLICA::rag#")]
    wait_until(lambda: not names(), 60, "the replicas to be removed")
