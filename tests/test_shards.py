"""The sharded index format: a sharded build ranks exactly as one index of the same corpus.

Fast: the hashing encoder, several documents (the space-law summaries, the bundled article and three
small articles), many questions drawn from the corpus's own words, all three modes, with filters.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil

import numpy as np
import pytest

from corpus import DEFAULT_CORPUS_DIR, load_corpus
from embeddings import HashingEncoder
from rag.index import build_index, lexical_text, load_index, read_manifest, verify_files
from rag.text.lexical import analyze
from rag.search.retrieve import Filters, Retriever
from rag.index.shard_build import Steps, build_sharded
from rag.shards.service import LocalShards, ShardedRetriever, ShardedView
from rag.index.shards import CorpusStats, is_sharded, lexical_with_stats, load_sharded, partition, shard_of
from core.errors import IndexFormatError

from conftest import RAG_BIN, SMALL_CORPUS, write_files

SPACELAW = DEFAULT_CORPUS_DIR.parent.parent / "eval" / "data" / "spacelaw"


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("shard-corpus")
    for path in sorted(SPACELAW.glob("*.md")):
        shutil.copy(path, root / path.name)
    write_files(root, SMALL_CORPUS)
    return root


@pytest.fixture(scope="module")
def articles(corpus_dir):
    return load_corpus(corpus_dir)


@pytest.fixture(scope="module")
def single(tmp_path_factory, articles):
    where = tmp_path_factory.mktemp("single") / "index"
    build_index(articles, where, HashingEncoder())
    return load_index(where)


@pytest.fixture(scope="module")
def sharded_dir(tmp_path_factory, articles):
    where = tmp_path_factory.mktemp("sharded") / "index"
    build_sharded(articles, where, HashingEncoder(), shards=3)
    return where


def questions(index, n: int = 60, seed: int = 7) -> list[str]:
    """Questions made of the corpus's words (common and rare), plus a few fixed ones."""
    rng = random.Random(seed)
    words = sorted({w for c in index.chunks for w in c.text.split() if w.isalpha() and len(w) > 3})
    made = [" ".join(rng.sample(words, rng.randint(1, 6))) for _ in range(n)]
    return made + ["What is the Outer Space Treaty?", "aardvark termites", "liability for damage caused by space objects", "zzzz unknown"]


def sharded_retriever(sharded_dir, encoder, **settings) -> ShardedRetriever:
    """The ingress's retriever over the build's shards, served in this process."""
    build = sharded_dir.resolve()
    shards = LocalShards.of(len(json.loads((build / "manifest.json").read_text())["shards"]))
    return ShardedRetriever(ShardedView(build, shards, encoder), encoder, **settings)


def test_stable_hash_partition():
    ids = [f"article-{i:04d}" for i in range(400)]
    parts = partition(ids, 4)
    assert sorted(np.concatenate(parts).tolist()) == list(range(400))
    assert all(60 < len(p) < 140 for p in parts)  # a hash spreads them
    # The shard of an id is a fixed function of the id (SHA-256), not of Python's per-process hash seed.
    for cid in ("a", "space-diplomacy-abc123", "ü"):
        expected = int.from_bytes(hashlib.sha256(cid.encode()).digest()[:8], "big") % 7
        assert shard_of(cid, 7) == expected


def test_corpus_wide_bm25_scores_as_one_index(single):
    """A BM25 index of part of the corpus, given the corpus-wide statistics, scores its rows as the whole index does."""
    terms = [analyze(lexical_text(c)) for c in single.chunks]
    stats = CorpusStats.merge([CorpusStats.of(terms[:10]), CorpusStats.of(terms[10:])])
    part = lexical_with_stats(terms[2:], single.lexical.params, stats)
    for query in ("outer space treaty", "liability damage", "aardvark", "moon agreement registration"):
        whole = single.lexical.scores(query)[2:]
        # The same terms and statistics; float32 sums may differ in the last bit.
        np.testing.assert_allclose(part.scores(query), whole, rtol=1e-6)
        assert whole.max() > 0


def test_sharded_build_is_verified_and_complete(single, sharded_dir):
    assert is_sharded(sharded_dir)
    manifest = json.loads((sharded_dir / "manifest.json").read_text())
    assert manifest["format_version"] == 3 and len(manifest["shards"]) == 3
    verify_files(sharded_dir.resolve(), manifest)
    loaded = load_sharded(sharded_dir)
    assert len(loaded) == len(single)
    assert sorted(c.id for s in loaded.shards for c in s.chunks) == sorted(c.id for c in single.chunks)
    rows = np.concatenate(loaded.rows)
    assert sorted(rows.tolist()) == list(range(len(single)))
    for shard, shard_rows in zip(loaded.shards, loaded.rows):
        assert all(single.chunks[r].id == c.id for r, c in zip(shard_rows.tolist(), shard.chunks))
        assert all(shard_of(c.id, 3) == int(shard.manifest["shard"]["number"]) for c in shard.chunks)
        np.testing.assert_array_equal(shard.vectors.vectors(np.arange(len(shard))), single.vectors.vectors(shard_rows))
    # The single-index readers refuse it with a message that says what it is.
    with pytest.raises(IndexFormatError, match="sharded index of 3 shards"):
        read_manifest(sharded_dir.resolve())


def _tie_ordered(results):
    """Results with equal scores in one order (ties are the one freedom a merged ranking has)."""
    return sorted(results, key=lambda r: (-round(r.score, 6), r.chunk.id))


def assert_same_ranking(got, want, what: str = "") -> None:
    """The same scores in the same order, and the same passages except where a tie at the cut-off swaps them."""
    got, want = _tie_ordered(got), _tie_ordered(want)
    assert [r.score for r in got] == pytest.approx([r.score for r in want], abs=1e-6), what
    last = want[-1].score if want else 0.0
    assert [r.chunk.id for r in got if r.score > last + 1e-6] == [r.chunk.id for r in want if r.score > last + 1e-6], what


def _dense_rank_is_possible(result, cosines) -> bool:
    """A dense rank is right when it lies within the ranks that the passage's cosine ties with."""
    if result.dense_rank is None:
        return True
    lo = int((cosines > result.dense_score + 1e-6).sum()) + 1
    hi = int((cosines >= result.dense_score - 1e-6).sum())
    return lo <= result.dense_rank <= hi


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_sharded_search_equals_single_index(single, sharded_dir, mode):
    encoder = HashingEncoder()
    local = Retriever(single, encoder)
    sharded = sharded_retriever(sharded_dir, encoder)
    every = single.vectors.vectors(np.arange(len(single)))
    compared = 0
    for question in questions(single):
        cosines = every @ encoder.embed_batch([question])[0]
        for k in (1, 10):
            want = _tie_ordered(local.search(question, k=k, mode=mode))
            got = _tie_ordered(sharded.search(question, k=k, mode=mode))
            assert_same_ranking(got, want, question)
            for a, b in zip(got, want):
                if a.chunk.id != b.chunk.id:
                    continue
                assert a.score == pytest.approx(b.score, abs=1e-6)
                assert a.bm25_score == pytest.approx(b.bm25_score, abs=1e-6)
                assert a.bm25_rank == b.bm25_rank
                assert (a.dense_score is None) == (b.dense_score is None)
                assert _dense_rank_is_possible(a, cosines) and _dense_rank_is_possible(b, cosines)
            compared += len(want)
    assert compared > 200


def _dense_has_ties(cosines: np.ndarray, rows: np.ndarray, pool: int) -> bool:
    """Whether the dense candidates hold equal cosines (whose order FAISS leaves open, and RRF turns into scores)."""
    best = np.sort(cosines[rows])[::-1][: pool + 1]
    return bool(len(best) > 1 and (np.diff(best) > -1e-7).any())


def test_sharded_search_with_filters_and_rrf(single, sharded_dir):
    encoder = HashingEncoder()
    every = single.vectors.vectors(np.arange(len(single)))
    filters = [None, Filters.from_mapping({"article": ["outer-space-treaty", "aardvarks"]}), Filters.from_mapping({"category": "transport"})]
    compared = {"convex": 0, "rrf": 0}
    for fusion in compared:
        local = Retriever(single, encoder, fusion=fusion, candidates=7)
        sharded = sharded_retriever(sharded_dir, encoder, fusion=fusion, candidates=7)
        for question in questions(single, n=30, seed=3):
            cosines = every @ encoder.embed_batch([question])[0]
            for f in filters:
                rows = single.rows_matching(f.articles, f.categories, f.tags, f.languages) if f else np.arange(len(single))
                if fusion == "rrf" and _dense_has_ties(cosines, rows, 7):
                    continue
                assert_same_ranking(sharded.search(question, k=5, filters=f), local.search(question, k=5, filters=f), question)
                compared[fusion] += 1
    assert min(compared.values()) >= 20, compared


def test_one_shard_writes_todays_format(tmp_path, articles, single):
    """S = 1 is today's single index: the same manifest version, chunks, vectors and BM25 scores."""
    build_sharded(articles, tmp_path / "index", HashingEncoder(), shards=1)
    assert not is_sharded(tmp_path / "index")
    one = load_index(tmp_path / "index")
    assert one.manifest["format_version"] == single.manifest["format_version"] == 2
    assert [c.id for c in one.chunks] == [c.id for c in single.chunks]
    np.testing.assert_allclose(one.vectors.vectors(np.arange(len(one))), single.vectors.vectors(np.arange(len(single))), atol=1e-6)
    np.testing.assert_array_equal(one.unit_spans, single.unit_spans)
    assert set(one.manifest["files"]) == set(single.manifest["files"])
    for query in ("outer space treaty", "termites"):
        np.testing.assert_allclose(one.lexical.scores(query), single.lexical.scores(query), rtol=1e-6)


class StepFailed(Exception):
    """Raised by a build step part-way through a build."""


def test_sharded_rebuild_reuses_chunks_and_keeps_the_previous_build_on_failure(tmp_path, articles):
    where = tmp_path / "index"
    first = build_sharded(articles, where, HashingEncoder(), shards=2)

    def fail() -> None:
        raise StepFailed("after embedding, before the shards are written")

    # Chunked and embedded under the build lock, then failed: the previous build is still the one served.
    with pytest.raises(StepFailed):
        build_sharded(articles, where, HashingEncoder(), shards=2, steps=Steps(before_shards=fail))
    assert load_sharded(where).build_id == first.build_id
    second = build_sharded(articles, where, HashingEncoder(), shards=2)
    assert second.reused_chunking == len(articles) and second.chunks == first.chunks
    assert load_sharded(where).build_id == second.build_id


def test_cli_sharded_index_search_and_ask_without_ray(tmp_path, small_corpus):
    """`rag index --shards 2`, then `rag search` and `rag ask` on the sharded build, run locally and never import Ray."""
    import subprocess
    import sys

    from conftest import rag_env, run_rag

    script = (
        "import sys\n"
        "from rag.cli import app\n"
        "for argv in (['index', '--shards', '2'], ['search', 'termites', '--json'], ['ask', 'What do aardvarks eat?', '--json']):\n"
        "    app(argv, standalone_mode=False)\n"
        "    print('\\n#####')\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    env = rag_env(tmp_path, RAG_CORPUS_DIR=small_corpus)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert is_sharded(tmp_path / "index")
    _, searched, asked, _ = proc.stdout.split("#####")
    assert json.loads(searched[searched.index("{") :])["results"][0]["article"] == "aardvarks"
    answer = json.loads(asked[asked.index("{") :])
    # The answer one index of the same corpus gives (the hashing encoder: the same words, not meanings).
    one = rag_env(tmp_path, RAG_CORPUS_DIR=small_corpus, RAG_INDEX_DIR=tmp_path / "single")
    assert run_rag(["index"], one).returncode == 0
    single = json.loads(run_rag(["ask", "What do aardvarks eat?", "--json"], one).stdout)
    for body in (answer, single):
        body.pop("timings_ms")
        for p in body["passages"]:  # float32 sums in another order differ in the last bits
            p.update({k: round(p[k], 4) for k in ("score", "dense_score", "bm25_score") if p[k] is not None})
    assert answer == single and answer["passages"][0]["article"] == "aardvarks"
    # A command that needs one index says so in one line, not with a traceback.
    fit_set = DEFAULT_CORPUS_DIR.parent.parent / "eval" / "data" / "fit.jsonl"
    fit = subprocess.run([str(RAG_BIN), "eval", "fit-answerability", "--fit", str(fit_set), "--index-dir", str(tmp_path / "index")], env=env, capture_output=True, text=True, timeout=300)
    assert fit.returncode != 0 and "Traceback" not in fit.stderr, fit.stderr
    assert "a sharded index of 2 shards" in fit.stderr and "this needs an index built with --shards 1" in fit.stderr, fit.stderr


def test_rag_add_keeps_a_sharded_build_sharded(tmp_path, small_corpus):
    """Adding a document rebuilds with as many shards as the build has; `rag index` follows --shards."""
    from conftest import EXTRA_ARTICLE, rag_env, run_rag

    env = rag_env(tmp_path, RAG_CORPUS_DIR=small_corpus)
    assert run_rag(["index", "--shards", "3"], env).returncode == 0
    extra = write_files(tmp_path / "new", {"dirigibles.md": EXTRA_ARTICLE}) / "dirigibles.md"
    added = run_rag(["add", str(extra)], env)
    assert added.returncode == 0, added.stderr
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert len(manifest["shards"]) == 3 and manifest["counts"]["articles"] == len(load_corpus(small_corpus))
    found = json.loads(run_rag(["search", "dirigible airship", "--json"], env).stdout)
    assert found["results"][0]["title"] == "Dirigibles"
    assert run_rag(["index"], env).returncode == 0 and not is_sharded(tmp_path / "index")
