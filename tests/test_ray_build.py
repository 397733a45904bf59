"""``rag index --engine ray`` on a real local Ray cluster: the same index as a local build, and no lost index when killed.

Few and quick (a 2-core machine): one real-model comparison, one killed actor, one killed driver.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading

import numpy as np
import pytest

from conftest import RAG_BIN, SMALL_CORPUS, rag_env, wait_until, write_files
from embeddings import HashingEncoder
from rag.index import load_index
from rag.search.retrieve import Retriever
from rag.settings import load_settings
from rag.shards.service import LocalShards, ShardedRetriever, ShardedView
from rag.index.shards import load_sharded

pytestmark = [pytest.mark.ray, pytest.mark.slow]

QUESTIONS = ["What do aardvarks eat?", "When did pneumatic tyres arrive?", "gothic cathedral windows", "Tour de France distance", "burrows"]


def fresh_cache(onnx_cache, where):
    """A cache folder with the ONNX export but no embeddings, so a build embeds everything itself."""
    where.mkdir(parents=True)
    for item in onnx_cache.iterdir():
        if not item.name.startswith("embeddings"):
            os.symlink(item, where / item.name)
    return where


@pytest.mark.model
def test_ray_build_equals_local_build(ray_cluster, tmp_path, onnx_cache):
    from rag.shards.ray_build import index_with_ray
    from rag.service import index_corpus, make_encoder

    corpus = write_files(tmp_path / "corpus", SMALL_CORPUS)
    common = dict(corpus_dir=corpus, encoder_backend="onnx")
    local = load_settings(**common, index_dir=tmp_path / "local", cache_dir=fresh_cache(onnx_cache, tmp_path / "c1"))
    remote = load_settings(**common, index_dir=tmp_path / "ray", cache_dir=fresh_cache(onnx_cache, tmp_path / "c2"), engine="ray", shards=2, ray_address=ray_cluster)
    index_corpus(local)
    report = index_with_ray(remote, actors=2)
    assert report.embedded == report.chunks > 0  # the actors embedded everything
    encoder = make_encoder(local)
    one = load_index(local.index_dir, encoder)
    sharded = load_sharded(remote.index_dir, encoder)  # verifies every checksum
    assert sorted(c.id for s in sharded.shards for c in s.chunks) == sorted(c.id for c in one.chunks)
    for shard, rows in zip(sharded.shards, sharded.rows):
        assert [c.id for c in shard.chunks] == [one.chunks[r].id for r in rows.tolist()]
        np.testing.assert_allclose(shard.vectors.vectors(np.arange(len(shard))), one.vectors.vectors(rows), atol=1e-5)
        np.testing.assert_allclose(shard.unit_vectors, one.unit_vectors[np.isin(one.unit_spans[:, 0], rows)], atol=1e-5)
        for q in QUESTIONS:
            np.testing.assert_allclose(shard.lexical.scores(q), one.lexical.scores(q)[rows], rtol=1e-6)
    view = ShardedView(remote.index_dir, LocalShards.of(len(sharded.shards)), encoder)
    want, got = Retriever(one, encoder), ShardedRetriever(view, encoder)
    for q in QUESTIONS:
        for mode in ("hybrid", "dense", "bm25"):
            assert [r.chunk.id for r in got.search(q, k=5, mode=mode)] == [r.chunk.id for r in want.search(q, k=5, mode=mode)]


def test_killed_actor_is_restarted_and_the_build_completes(ray_cluster, tmp_path, monkeypatch):
    """An embedding actor killed during the build is restarted by Ray; the build is the same as a local one."""
    import ray

    from rag.shards.ray_build import ACTOR_NAME, NAMESPACE, index_with_ray
    from rag.index import build_index
    from corpus import load_corpus

    corpus = write_files(tmp_path / "corpus", SMALL_CORPUS)
    gate = tmp_path / "go"
    monkeypatch.setenv("RAG_FAULT_GATE", f"ray-embedding:{gate}")
    settings = load_settings(corpus_dir=corpus, index_dir=tmp_path / "ray", cache_dir=tmp_path / "cache", encoder="hashing", engine="ray", shards=1)
    result = {}
    builder = threading.Thread(target=lambda: result.update(report=index_with_ray(settings, actors=2)))
    builder.start()
    victim = wait_until(lambda: _actor(ray, ACTOR_NAME.format(1), NAMESPACE) or not builder.is_alive(), 120, "the embedding actors")
    assert builder.is_alive(), "the build ended before its actors started"
    ray.kill(victim, no_restart=False)
    gate.touch()
    builder.join(timeout=300)
    assert not builder.is_alive() and "report" in result
    build_index(load_corpus(corpus), tmp_path / "local", HashingEncoder())
    one, two = load_index(tmp_path / "local"), load_index(tmp_path / "ray")
    assert two.manifest["format_version"] == 2 and [c.id for c in two.chunks] == [c.id for c in one.chunks]
    np.testing.assert_allclose(two.vectors.vectors(np.arange(len(two))), one.vectors.vectors(np.arange(len(one))), atol=1e-6)


def _actor(ray, name, namespace):
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None


def test_killed_driver_leaves_the_previous_index(ray_cluster, tmp_path):
    """SIGKILL to `rag index --engine ray` after its shards are written: the previous build still loads, the next build cleans up."""
    corpus = write_files(tmp_path / "corpus", SMALL_CORPUS)
    env = rag_env(tmp_path, RAG_CORPUS_DIR=corpus, RAG_ENGINE="ray", RAG_RAY_ADDRESS=ray_cluster, RAG_SHARDS="2", RAG_RAY_ACTORS="1")
    first = subprocess.run([str(RAG_BIN), "index"], env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    before = load_sharded(tmp_path / "index")
    write_files(corpus, {"dirigibles.md": "# Dirigibles\n\nA dirigible is a lighter-than-air craft that can be steered.\n"})
    gate = tmp_path / "never"
    proc = subprocess.Popen(
        [str(RAG_BIN), "index"], env={**env, "RAG_FAULT_GATE": f"files-written:{gate}"}, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(lambda: any(p.name.endswith(".tmp") and (p / "manifest.json").exists() for p in (tmp_path / "index.builds").iterdir()), 300, "the new build's files")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    after = load_sharded(tmp_path / "index")
    assert after.build_id == before.build_id and len(after) == len(before)
    again = subprocess.run([str(RAG_BIN), "index"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    # Incremental: the killed build's vectors were cached, so only the new article (if anything) is embedded.
    embedded = int(re.search(r"embedded (\d+), cached (\d+)", again.stdout).group(1))
    assert embedded <= 1, again.stdout
    assert not [p for p in (tmp_path / "index.builds").iterdir() if p.name.endswith(".tmp")]
    assert len(load_sharded(tmp_path / "index")) > len(before)


def test_unreachable_cluster_is_one_line(tmp_path):
    """A wrong --ray-address fails in seconds with one line (Ray alone retries for minutes)."""
    pytest.importorskip("ray")
    corpus = write_files(tmp_path / "corpus", SMALL_CORPUS)
    env = rag_env(tmp_path, RAG_CORPUS_DIR=corpus)
    proc = subprocess.run([str(RAG_BIN), "index", "--engine", "ray", "--ray-address", "127.0.0.1:1"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith("error: no Ray cluster answers at 127.0.0.1:1")
    assert "Traceback" not in proc.stderr and not (tmp_path / "index").exists()
