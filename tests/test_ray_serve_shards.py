"""``rag serve --engine ray`` over a sharded build: a deployment per shard (R replicas each) behind the app.

On the session's real local Ray cluster, the bundled article and two more in two shards, two replicas
of the app and of each shard (real model, ONNX). Compared with ``rag serve`` of one index of the same
corpus in this process, route for route; then a reload under load, a refused reload, and a killed
shard replica.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import BUNDLED_ARTICLE_PATH, wait_until, write_files
from rag.settings import load_settings
from test_ray_serve import ADMIN_KEY, QUESTIONS, Load, _comparable, _free_port, _get, reload_with_a_new_article, reload_with_damage

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TREATY = """# Outer Space Treaty

The Outer Space Treaty of 1967 is the basis of international space law.

## Provisions

States parties undertake not to place nuclear weapons in orbit around the Earth. The Moon and other
celestial bodies shall be used exclusively for peaceful purposes.

## Liability

A launching state is internationally liable for damage caused by its space objects.
"""


@pytest.fixture(scope="module")
def sharded_app(ray_cluster, tmp_path_factory, onnx_cache):
    """Ray Serve over a 2-shard build with 2 replicas of everything; yields (settings, single-index settings, url)."""
    from ray import serve

    from api.ray_serving import start, stop_serving
    from rag.service import index_corpus

    root = tmp_path_factory.mktemp("ray-shards")
    corpus = write_files(
        root / "corpus", {"space-diplomacy.md": BUNDLED_ARTICLE_PATH.read_text(encoding="utf-8"), "outer-space-treaty.md": TREATY}
    )
    common = dict(corpus_dir=corpus, cache_dir=onnx_cache, encoder_backend="onnx", threads=1, admin_keys=[ADMIN_KEY])
    settings = load_settings(index_dir=root / "index", port=_free_port(), replicas=2, shards=2, **common)
    single = load_settings(index_dir=root / "single", **common)
    index_corpus(settings)
    index_corpus(single)
    # Shard replicas get the fault gate (rag/faults.py): evidence calls wait while the gate file is missing.
    gate = write_files(root, {"gate": "open"}) / "gate"
    os.environ["RAG_FAULT_GATE"] = f"shard_evidence:{gate}"
    try:
        coordinator = start(settings)  # noqa: F841 (kept alive while the application serves)
        url = f"http://127.0.0.1:{settings.port}"
        wait_until(lambda: _get(url + "/ready") == 200, 180, "the sharded Ray Serve app to answer /ready")
        yield settings, single, url, gate
    finally:
        os.environ.pop("RAG_FAULT_GATE", None)
        stop_serving()
        serve.shutdown()


def _shard_replicas(ray) -> list[str]:
    from api.ray_serving import APP_NAME

    prefix = f"SERVE_REPLICA::{APP_NAME}#Shard"
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix))


def test_sharded_ray_serving_answers_as_local_serving_of_one_index(sharded_app):
    """/ask, /search, /passages and /documents through the shards equal one index served in-process."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    settings, single, url, _ = sharded_app
    with TestClient(create_app(single)) as local, httpx.Client(base_url=url, timeout=60) as remote:
        for question in [*QUESTIONS, "Who is liable for damage caused by space objects?", "Which court settles disputes under the treaty?"]:
            want, got = local.post("/ask", json={"question": question}), remote.post("/ask", json={"question": question})
            assert got.status_code == want.status_code == 200, got.text
            want, got = _comparable(want.json()), _comparable(got.json())
            for body in (want, got):  # float32 sums in another order differ in the last bits
                for p in body["passages"]:
                    p.update({k: round(p[k], 3) for k in ("score", "dense_score", "bm25_score") if p[k] is not None})
                body["support"] = round(body["support"], 3)
            assert got == want, question
            params = {"q": question, "k": 5, "mode": "bm25"}
            want, got = local.get("/search", params=params).json(), remote.get("/search", params=params).json()
            assert [h["passage_id"] for h in got["results"]] == [h["passage_id"] for h in want["results"]], question
        passage = local.get("/search", params={"q": "liable damage", "k": 1}).json()["results"][0]["passage_id"]
        want, got = local.get(f"/passages/{passage}"), remote.get(f"/passages/{passage}")
        assert got.status_code == want.status_code == 200 and got.json() == want.json()
        assert remote.get("/passages/no-such-passage").status_code == 404
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        documents = [remote.get("/documents", headers=headers).json()["documents"], local.get("/documents", headers=headers).json()["documents"]]
        for listing in documents:  # the two builds were made a second apart
            for d in listing:
                d.pop("indexed_at")
        assert documents[0] == documents[1] and len(documents[0]) == 2
        stream = remote.post("/ask", json={"question": QUESTIONS[0]}, headers={"Accept": "text/event-stream"})
        assert stream.status_code == 200 and "event: passages" in stream.text and "event: done" in stream.text


def test_sharded_reload_under_load_and_a_broken_shard_refused(sharded_app):
    """A new sharded build reaches the app's and every shard's replicas with 0 failed requests; a damaged
    shard file is refused by its shard and every replica keeps the previous build."""
    from rag.service import index_corpus

    settings, _, url, _ = sharded_app
    body, failures = reload_with_a_new_article(url, settings)
    assert body["status"] == "reloaded" and body["replicas"] == 2 and body["shard_replicas"] == 4, body
    assert not failures, failures
    new = body["build_id"]
    answer = httpx.post(url + "/ask", json={"question": "What is a dirigible?"}, timeout=60).json()
    assert any(p["title"] == "Dirigibles" for p in answer["passages"])

    write_files(settings.corpus_dir, {"zeppelins.md": "# Zeppelins\n\nZeppelins were rigid airships built in Germany.\n"})
    index_corpus(settings)
    reply, failures = reload_with_damage(url, settings.index_dir.resolve() / "shard-001" / "chunks.jsonl")
    assert reply.status_code == 409 and f"still serving build {new}" in reply.json()["detail"], reply.text
    assert "shard 1" in reply.json()["detail"] and not failures, (reply.text, failures)
    assert httpx.get(url + "/ready", timeout=10).json()["build_id"] == new


def test_a_killed_shard_replica_fails_no_request(sharded_app):
    """Two replicas per shard, ray.kill on one while clients ask: every request succeeds (a call that
    reached the dying replica is sent again) while Serve replaces it."""
    import ray

    _, _, url, _ = sharded_app
    replicas = wait_until(lambda: len(r := _shard_replicas(ray)) == 4 and r, 60, "four shard replicas")
    with Load(url) as load:
        wait_until(lambda: load.answered > 5, 120, "requests before the kill")
        ray.kill(ray.get_actor(replicas[0], namespace="serve"), no_restart=True)
        wait_until(lambda: len(now := _shard_replicas(ray)) == 4 and replicas[0] not in now, 180, "Serve to replace the shard replica")
        seen = load.answered
        wait_until(lambda: load.answered > seen + 5, 120, "requests after the replacement")
    assert not load.failures, load.failures


def test_a_call_in_flight_on_a_dying_shard_replica_is_sent_again(sharded_app):
    """A question whose evidence call is running on shard 0 when its replicas die is still answered:
    the call is sent again and reaches the replica Serve starts instead."""
    import ray

    _, _, url, gate = sharded_app
    question = {"question": "Who is liable for damage caused by space objects?"}
    want = _comparable(httpx.post(url + "/ask", json=question, timeout=60).json())
    doomed = wait_until(lambda: len(r := [n for n in _shard_replicas(ray) if "Shard000" in n]) == 2 and r, 60, "two replicas of shard 0")
    waiting = gate.with_name(gate.name + ".waiting")  # a line per call waiting at the gate (rag/faults.py)
    waiting.unlink(missing_ok=True)
    gate.unlink()  # evidence calls now wait in the shard replicas
    try:
        with ThreadPoolExecutor(1) as pool:
            asked = pool.submit(httpx.post, url + "/ask", json=question, timeout=180)
            # The question asks every shard for evidence: both calls, one on a replica of shard 0, wait at the gate.
            wait_until(lambda: waiting.exists() and len(waiting.read_text().splitlines()) >= 2, 120, "both evidence calls at the gate")
            assert not asked.done()
            for name in doomed:
                ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
            gate.write_text("open")
            reply = asked.result()
    finally:
        gate.write_text("open")
    assert reply.status_code == 200, reply.text
    got = _comparable(reply.json())
    assert got["answer"] == want["answer"] and got["citations"] == want["citations"]


def test_more_replicas_than_the_cluster_holds_are_refused_in_one_line(ray_cluster):
    """Serve would wait forever for CPUs the cluster lacks; the start is refused instead, saying why."""
    from api.ray_serving import check_capacity
    from core.errors import ConfigError

    check_capacity(2, 4)  # 2 x 0.5 + 8 x 0.1 CPUs: fits the session's 2-CPU cluster
    with pytest.raises(ConfigError, match=r"has 2 CPUs but 4 app replicas and 16 shard replicas reserve 3\.6; serve with fewer --replicas"):
        check_capacity(4, 4)
