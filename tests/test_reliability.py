"""A public service under hostile or careless clients, re-indexing, reloads and shutdown.

In-process tests use the fake encoder on a small corpus (the mechanisms under test do not
depend on the model); the process-level tests run a real ``rag serve``.
"""

from __future__ import annotations

import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.security import KeyRing
from conftest import EXTRA_ARTICLE, SMALL_CORPUS, build_fake_index, rag_env, wait_until, write_files
from core.errors import ConfigError
from rag.settings import load_settings
from eval.live_server import LiveServer

CLIENT_KEY = "client-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"

def make_settings(tmp: Path, **overrides):
    return load_settings(encoder="hashing", index_dir=tmp / "index", cache_dir=tmp / "cache", **overrides)


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    write_files(root, SMALL_CORPUS)
    build_fake_index(tmp_path, root)
    return root


def client_for(tmp: Path, **overrides) -> TestClient:
    return TestClient(create_app(make_settings(tmp, **overrides)))


# ------------------------------------------------------------------------------ API keys


def test_keys_are_required_when_configured(tmp_path, corpus_dir):
    with client_for(tmp_path, api_keys=[CLIENT_KEY], admin_keys=[ADMIN_KEY]) as client:
        missing = client.post("/ask", json={"question": "What do aardvarks eat?"})
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        assert "API key" in missing.json()["detail"]
        wrong = client.get("/search", params={"q": "aardvark"}, headers={"X-API-Key": "not-the-right-key-at-all"})
        assert wrong.status_code == 401 and wrong.json()["detail"] == "the API key is not valid"
        bearer = client.get("/search", params={"q": "aardvark"}, headers={"Authorization": f"Bearer {CLIENT_KEY}"})
        assert bearer.status_code == 200 and bearer.json()["results"]
        header = client.get("/search", params={"q": "aardvark"}, headers={"X-API-Key": CLIENT_KEY})
        assert header.status_code == 200
        passage_id = header.json()["results"][0]["passage_id"]
        assert client.get(f"/passages/{passage_id}").status_code == 401
        assert client.get(f"/passages/{passage_id}", headers={"X-API-Key": CLIENT_KEY}).status_code == 200
        assert client.get("/metrics").status_code == 401
        # an admin key is a client key too
        assert client.get("/metrics", headers={"X-API-Key": ADMIN_KEY}).status_code == 200
        # liveness and readiness stay open
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200


def test_admin_endpoints_need_an_admin_key(tmp_path, corpus_dir):
    with client_for(tmp_path, api_keys=[CLIENT_KEY], admin_keys=[ADMIN_KEY]) as client:
        assert client.post("/admin/reload").status_code == 401
        as_client = client.post("/admin/reload", headers={"X-API-Key": CLIENT_KEY})
        assert as_client.status_code == 403 and as_client.json()["detail"] == "this key is not an admin key"
        ok = client.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert ok.status_code == 200 and ok.json()["status"] == "unchanged"


def test_admin_endpoints_are_disabled_without_admin_keys(tmp_path, corpus_dir):
    with client_for(tmp_path) as client:
        # no keys at all: the question endpoints are open, the admin ones closed
        assert client.post("/ask", json={"question": "What do aardvarks eat?"}).status_code == 200
        refused = client.post("/admin/reload", headers={"X-API-Key": CLIENT_KEY})
        assert refused.status_code == 403 and "RAG_ADMIN_KEYS" in refused.json()["detail"]


def test_keys_file(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# operators\nadmin {ADMIN_KEY}\n{CLIENT_KEY}\nclient other-client-key-0123456\n")
    ring = KeyRing.from_settings(make_settings(tmp_path, api_keys_file=keys))
    assert ring.role_of(ADMIN_KEY) == "admin"
    assert ring.role_of(CLIENT_KEY) == "client"
    assert ring.role_of("other-client-key-0123456") == "client"
    assert ring.role_of("nope") is None
    keys.write_text("owner too many words here\n")
    with pytest.raises(ConfigError, match=r"keys.txt:1"):
        KeyRing.from_settings(make_settings(tmp_path, api_keys_file=keys))
    with pytest.raises(ConfigError, match="at least 16"):
        KeyRing.from_settings(make_settings(tmp_path, api_keys=["short"]))


# ---------------------------------------------------------------------------- rate limits


def test_rate_limit_per_key_with_retry_after(tmp_path, corpus_dir):
    other = "second-client-key-0123456789"
    with client_for(tmp_path, api_keys=[CLIENT_KEY, other], rate_limit="3/minute") as client:
        statuses = [client.get("/search", params={"q": "aardvark"}, headers={"X-API-Key": CLIENT_KEY}).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = client.get("/search", params={"q": "aardvark"}, headers={"X-API-Key": CLIENT_KEY})
        assert limited.status_code == 429
        retry = int(limited.headers["retry-after"])
        assert 1 <= retry <= 60
        assert limited.json()["detail"] == f"too many requests; retry in {retry} s"
        # another key has its own budget; health is never limited
        assert client.get("/search", params={"q": "aardvark"}, headers={"X-API-Key": other}).status_code == 200
        assert client.get("/health").status_code == 200


def test_rate_limit_per_address_without_keys(tmp_path, corpus_dir):
    with client_for(tmp_path, rate_limit="2/minute") as client:
        codes = [client.post("/ask", json={"question": "What do aardvarks eat?"}).status_code for _ in range(3)]
        assert codes == [200, 200, 429]


# ------------------------------------------------------------------- what a client may send


def test_oversized_bodies_and_query_strings_are_refused(tmp_path, corpus_dir):
    with client_for(tmp_path, max_body_bytes=2048, max_query_bytes=512) as client:
        big = client.post("/ask", content=b'{"question": "' + b"a" * 5000 + b'"}', headers={"content-type": "application/json"})
        assert big.status_code == 413 and big.json()["detail"] == "the request body is larger than 2048 bytes"

        def chunks():  # no Content-Length: counted while it arrives
            yield b'{"question": "'
            for _ in range(10):
                yield b"b" * 400
            yield b'"}'

        streamed = client.post("/ask", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413 and "2048 bytes" in streamed.json()["detail"]
        long_query = client.get("/search", params={"q": "x" * 600})
        assert long_query.status_code == 414 and "512 bytes" in long_query.json()["detail"]
        bad_length = client.post("/ask", content=b"{}", headers={"content-type": "application/json", "content-length": "abc"})
        assert bad_length.status_code == 400


def test_control_characters_and_unicode_are_normalised(tmp_path, corpus_dir):
    with client_for(tmp_path) as client:
        decomposed = "What do aardvarks\u0000 eat\u200b?\u0007 Cafe\u0301"
        body = client.post("/ask", json={"question": decomposed}).json()
        assert body["question"] == "What do aardvarks eat? Caf\u00e9"
        only_controls = client.post("/ask", json={"question": "\u0000\u0001\u200b"})
        assert only_controls.status_code == 422 and only_controls.json()["detail"].startswith("question:")


@pytest.mark.parametrize("passage_id", ["..%2F..%2Fetc%2Fpasswd", "a%20b", "x'%20OR%201=1", "%00"])
def test_hostile_passage_ids_are_refused(tmp_path, corpus_dir, passage_id):
    with client_for(tmp_path) as client:
        response = client.get(f"/passages/{passage_id}")
        assert response.status_code in (404, 422)
        assert "detail" in response.json()


def test_security_headers_and_no_internals_in_errors(tmp_path, corpus_dir, monkeypatch):
    app = create_app(make_settings(tmp_path))
    with TestClient(app, raise_server_exceptions=False) as client:
        ok = client.get("/health")
        assert ok.headers["x-content-type-options"] == "nosniff"
        assert ok.headers["referrer-policy"] == "no-referrer"
        assert ok.headers["x-request-id"]

        def explode(*args, **kwargs):
            raise RuntimeError(f"boom in {tmp_path}/secret/module.py line 12")

        monkeypatch.setattr(app.state.ctx.service, "ask", explode)
        failed = client.post("/ask", json={"question": "What do aardvarks eat?"})
        assert failed.status_code == 500
        text = failed.text
        assert "Traceback" not in text and str(tmp_path) not in text and "boom" not in text
        assert failed.json()["request_id"]


def test_compute_timeout(tmp_path, corpus_dir, monkeypatch):
    with client_for(tmp_path, request_timeout_s=0.5) as client:
        monkeypatch.setenv("RAG_FAULT_PAUSE", "compose:3")  # after start-up: only the user's question pauses
        slow = client.post("/ask", json={"question": "What do aardvarks eat?"})
        assert slow.status_code == 503
        assert "longer than 0.5 s" in slow.json()["detail"]


# -------------------------------------------------------------------------------- reloads


def test_reload_swaps_in_a_new_build_and_refuses_a_broken_one(tmp_path, corpus_dir):
    with client_for(tmp_path, admin_keys=[ADMIN_KEY]) as client:
        auth = {"X-API-Key": ADMIN_KEY}
        before = client.get("/ready").json()["build_id"]
        assert not client.get("/search", params={"q": "zeppelins", "mode": "bm25"}).json()["results"]

        (corpus_dir / "dirigibles.md").write_text(EXTRA_ARTICLE)
        build_fake_index(tmp_path, corpus_dir)
        reloaded = client.post("/admin/reload", headers=auth)
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json()["status"] == "reloaded" and reloaded.json()["previous_build_id"] == before
        after = client.get("/ready").json()["build_id"]
        assert after != before
        found = client.get("/search", params={"q": "zeppelins", "mode": "bm25"}).json()["results"]
        assert found and found[0]["article"] == "dirigibles"

        # a new build whose chunk file was damaged after the swap is refused; the old one keeps serving
        (corpus_dir / "dirigibles.md").unlink()
        build_fake_index(tmp_path, corpus_dir)
        chunks = (tmp_path / "index").resolve() / "chunks.jsonl"
        chunks.write_bytes(chunks.read_bytes()[:-10])
        refused = client.post("/admin/reload", headers=auth)
        assert refused.status_code == 409
        detail = refused.json()["detail"]
        assert detail.startswith(f"reload refused, still serving build {after}") and "chunks.jsonl" in detail
        assert str(tmp_path) not in detail
        assert client.get("/ready").json()["build_id"] == after
        still = client.get("/search", params={"q": "zeppelins", "mode": "bm25"}).json()["results"]
        assert still and still[0]["article"] == "dirigibles"


def _server(tmp_path: Path, corpus: Path, **env) -> LiveServer:
    environment = rag_env(tmp_path, RAG_CORPUS_DIR=corpus, RAG_RATE_LIMIT="", **env)
    return LiveServer(environment).start(tmp_path / "server.log")


# SIGHUP and reloads under load run against a real-model server in test_model_server.py.


def test_sigterm_finishes_requests_in_flight(tmp_path, corpus_dir):
    # Composition waits at a gate the test opens, so a question is surely in flight when SIGTERM arrives.
    gate = tmp_path / "compose.gate"
    gate.touch()  # open while the server starts (start-up asks a warm-up question)
    env = rag_env(tmp_path, RAG_CORPUS_DIR=corpus_dir, RAG_FAULT_GATE=f"compose:{gate}")
    server = LiveServer(env).start(tmp_path / "server.log")
    gate.unlink()
    result: dict = {}

    def slow_question() -> None:
        with httpx.Client(timeout=60) as http:
            response = http.post(f"{server.url}/ask", json={"question": "What do aardvarks eat?"})
            result["status"] = response.status_code
            result["answer"] = response.json().get("answer")

    def refused() -> bool:
        try:
            httpx.get(f"{server.url}/health", timeout=2)
        except httpx.HTTPError:
            return True
        return False

    thread = threading.Thread(target=slow_question)
    try:
        thread.start()
        wait_until(lambda: "rag: waiting at compose" in server.log(), 30, "the question to reach composition")
        server.signal(signal.SIGTERM)
        wait_until(refused, 30, "the server to refuse new connections while shutting down")
        assert "status" not in result  # still in flight
    finally:
        gate.touch()
    thread.join(timeout=60)
    assert result.get("status") == 200 and result.get("answer")
    server.proc.wait(timeout=30)
    assert server.stopped_cleanly()


def test_slow_body_is_cut_off(tmp_path, corpus_dir):
    server = _server(tmp_path, corpus_dir, RAG_RECEIVE_TIMEOUT_S="1")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                b"POST /ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"question\""
            )
            started = time.monotonic()
            reply = b""
            while b"did not arrive" not in reply:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
            reply = reply.decode()
            waited = time.monotonic() - started
        assert reply.startswith("HTTP/1.1 408"), reply
        assert "did not arrive within 1 s" in reply
        assert waited < 8
    finally:
        server.stop()


def test_serve_refuses_a_damaged_index(tmp_path, corpus_dir, rag_cli):
    shutil.copytree(tmp_path / "index", tmp_path / "copy", symlinks=False)
    vectors = tmp_path / "copy" / "vectors.faiss"
    data = bytearray(vectors.read_bytes())
    data[len(data) // 2] ^= 0xFF
    vectors.write_bytes(bytes(data))
    run = rag_cli(["serve", "--port", "1", "--index-dir", str(tmp_path / "copy")])
    assert run.returncode != 0
    assert run.stderr.strip().splitlines() == [
        "error: vectors.faiss: checksum does not match the manifest (corrupted); rebuild the index with 'rag index'"
    ]
