"""Vector store vs brute force, BM25 vs a reference implementation, and reciprocal rank fusion."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from embeddings import normalise
from embeddings.vectorstore import VectorStore, VectorStoreParams, choose_kind
from core.errors import ConfigError, IndexFormatError
from rag.search.fusion import reciprocal_rank_fusion, top
from rag.text.lexical import BM25Params, LexicalIndex, analyze


def random_unit(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return normalise(rng.standard_normal((n, dim)).astype(np.float32))


def brute_force(vectors: np.ndarray, query: np.ndarray, k: int, allowed: np.ndarray | None = None):
    scores = vectors @ query
    rows = np.arange(len(vectors)) if allowed is None else np.asarray(allowed)
    order = rows[np.argsort(-scores[rows], kind="stable")][:k]
    return scores[order], order


# ------------------------------------------------------------------------ FAISS


def test_flat_top_k_equals_brute_force_cosine():
    vectors = random_unit(300, 24, seed=1)
    queries = random_unit(20, 24, seed=2)
    store = VectorStore.build(vectors)
    assert len(store) == 300 and store.dim == 24
    scores, ids = store.search(queries, k=10)
    assert scores.shape == ids.shape == (20, 10)
    for q, query in enumerate(queries):
        expected_scores, expected_ids = brute_force(vectors, query, 10)
        assert list(ids[q]) == list(expected_ids)
        np.testing.assert_allclose(scores[q], expected_scores, rtol=1e-5, atol=1e-5)


def test_hnsw_recall_at_10():
    vectors = random_unit(2000, 32, seed=3)
    queries = random_unit(50, 32, seed=4)
    store = VectorStore.build(vectors, VectorStoreParams(kind="hnsw"))
    _, ids = store.search(queries, k=10)
    hits = 0
    for q, query in enumerate(queries):
        _, expected = brute_force(vectors, query, 10)
        hits += len(set(ids[q]) & set(expected))
    recall = hits / (10 * len(queries))
    assert recall >= 0.95, recall


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_filtered_search_equals_restricted_brute_force(kind):
    vectors = random_unit(400, 16, seed=5)
    queries = random_unit(10, 16, seed=6)
    allowed = np.sort(np.random.default_rng(7).choice(400, size=37, replace=False))
    store = VectorStore.build(vectors, VectorStoreParams(kind=kind))
    scores, ids = store.search(queries, k=10, allowed=allowed)
    for q, query in enumerate(queries):
        assert set(ids[q]) <= set(allowed.tolist())
        expected_scores, expected_ids = brute_force(vectors, query, 10, allowed)
        if kind == "flat":
            assert list(ids[q]) == list(expected_ids)
        else:
            assert len(set(ids[q]) & set(expected_ids)) >= 9
        np.testing.assert_allclose(np.sort(scores[q])[::-1][:5], expected_scores[:5], atol=1e-4)


def test_filter_with_fewer_rows_than_k_returns_all_of_them_then_minus_one():
    vectors = random_unit(50, 8, seed=8)
    store = VectorStore.build(vectors)
    allowed = np.array([3, 17, 42])
    _, ids = store.search(vectors[0], k=10, allowed=allowed)
    assert sorted(i for i in ids[0] if i >= 0) == [3, 17, 42]
    assert list(ids[0]).count(-1) == 7


def test_k_larger_than_store_and_empty_store():
    vectors = random_unit(5, 8, seed=9)
    scores, ids = VectorStore.build(vectors).search(vectors[:1], k=50)
    assert sorted(ids[0]) == [0, 1, 2, 3, 4]
    empty = VectorStore.build(np.zeros((0, 8), np.float32))
    scores, ids = empty.search(vectors[:1], k=3)
    assert scores.shape == (1, 0) and ids.shape == (1, 0)


def test_exact_scores_and_vectors():
    vectors = random_unit(30, 12, seed=10)
    store = VectorStore.build(vectors)
    rows = np.array([4, 0, 29])
    np.testing.assert_allclose(store.vectors(rows), vectors[rows], atol=1e-7)
    np.testing.assert_allclose(store.scores(vectors[7], rows), vectors[rows] @ vectors[7], atol=1e-6)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_vector_store_save_load_round_trip(tmp_path: Path, kind):
    vectors = random_unit(300, 16, seed=11)
    queries = random_unit(5, 16, seed=12)
    params = VectorStoreParams(kind=kind)
    store = VectorStore.build(vectors, params)
    store.save(tmp_path / "v.faiss")
    for mmap in (False, True):
        loaded = VectorStore.load(tmp_path / "v.faiss", params, mmap=mmap)
        assert len(loaded) == 300 and loaded.dim == 16
        a_scores, a_ids = store.search(queries, 10)
        b_scores, b_ids = loaded.search(queries, 10)
        assert (a_ids == b_ids).all()
        np.testing.assert_array_equal(a_scores, b_scores)


def test_vector_store_load_of_garbage_is_index_format_error(tmp_path: Path):
    path = tmp_path / "vectors.faiss"
    path.write_bytes(b"not a faiss index at all")
    with pytest.raises(IndexFormatError, match="vectors.faiss"):
        VectorStore.load(path, VectorStoreParams())


def test_vector_params_and_kind_choice():
    with pytest.raises(ConfigError):
        VectorStoreParams(kind="ivf")
    assert choose_kind("auto", 10, 100) == "flat"
    assert choose_kind("auto", 100, 100) == "hnsw"
    assert choose_kind("flat", 10**6, 100) == "flat"
    with pytest.raises(ConfigError):
        choose_kind("annoy", 10, 100)


# ------------------------------------------------------------------------ BM25

DOCS = [
    "The Outer Space Treaty of 1967 forbids claims of sovereignty over the Moon.",
    "Sputnik-1 was launched by the Soviet Union in 1957.",
    "Türkiye founded the Turkish Space Agency to build satellites.",
    "Bicycles have two wheels and pedals.",
    "The International Space Station is a joint project of many agencies.",
]


def reference_bm25(docs: list[list[str]], query: list[str], k1: float, b: float) -> np.ndarray:
    """Lucene BM25, written out: idf = ln(1 + (N - df + 0.5) / (df + 0.5))."""
    n = len(docs)
    avgdl = sum(len(d) for d in docs) / n
    df = Counter(term for d in docs for term in set(d))
    out = np.zeros(n)
    for i, doc in enumerate(docs):
        tf = Counter(doc)
        for term in query:
            if term not in df:
                continue
            idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
            out[i] += idf * tf[term] / (tf[term] + k1 * (1 - b + b * len(doc) / avgdl))
    return out


@pytest.fixture(scope="module")
def lexical() -> LexicalIndex:
    return LexicalIndex.build(DOCS)


def test_bm25_ranks_the_obvious_document_first(lexical):
    for query, expected in [
        ("When was Sputnik launched?", 1),
        ("treaty sovereignty moon", 0),
        ("bicycle wheels", 3),
        ("space station agencies", 4),
    ]:
        scores = lexical.scores(query)
        assert scores.shape == (len(DOCS),)
        assert int(np.argmax(scores)) == expected, (query, scores)


@pytest.mark.parametrize(
    "query", ["What about zebras?", "the of and", "", "!!!", "x"]
)
def test_bm25_unknown_or_stopword_query_scores_zero(lexical, query):
    scores = lexical.scores(query)
    assert scores.shape == (len(DOCS),)
    assert not scores.any()


def test_bm25_accent_folding(lexical):
    for query in ("Turkiye", "TÜRKİYE", "türkiye"):
        scores = lexical.scores(query)
        assert int(np.argmax(scores)) == 2 and scores[2] > 0, query
        assert np.count_nonzero(scores) == 1
    assert analyze("Türkiye's naïve café") == analyze("Turkiye's naive cafe")


def test_bm25_matches_reference_implementation(lexical):
    docs = [analyze(d) for d in DOCS]
    for query in ["space treaty", "Soviet Union launched satellites", "space space agency", "wheels"]:
        expected = reference_bm25(docs, analyze(query), k1=1.2, b=0.75)
        np.testing.assert_allclose(lexical.scores(query), expected, rtol=1e-5, atol=1e-6)


def test_bm25_analyzer_stems_and_drops_stop_words():
    assert analyze("The launches of satellites") == ["launch", "satellit"]
    assert analyze("The launches", BM25Params(stemmer="", stopwords="")) == ["the", "launches"]


def test_bm25_save_load_round_trip(tmp_path: Path, lexical):
    lexical.save(tmp_path / "bm25")
    for mmap in (False, True):
        loaded = LexicalIndex.load(tmp_path / "bm25", mmap=mmap)
        assert loaded.n_docs == len(DOCS)
        assert loaded.params == lexical.params
        for query in ["space treaty", "Turkiye satellites", "zebra", "wheels pedals"]:
            np.testing.assert_array_equal(loaded.scores(query), lexical.scores(query))


def test_bm25_load_of_missing_dir_is_index_format_error(tmp_path: Path):
    with pytest.raises(IndexFormatError, match="bm25"):
        LexicalIndex.load(tmp_path / "nope")


def test_bm25_params_validation():
    with pytest.raises(ConfigError):
        BM25Params(k1=-1)
    with pytest.raises(ConfigError):
        BM25Params(b=1.5)


# ------------------------------------------------------------------------ fusion


def test_rrf_hand_computed_values():
    fused = reciprocal_rank_fusion([[10, 20, 30], [30, 10, 40]], k=60)
    assert fused[10] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[20] == pytest.approx(1 / 62)
    assert fused[30] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[40] == pytest.approx(1 / 63)
    assert set(fused) == {10, 20, 30, 40}
    assert top(fused, 4) == [10, 30, 20, 40]
    assert top(fused, 2) == [10, 30]


def test_rrf_weights_and_k():
    fused = reciprocal_rank_fusion([[1, 2], [2, 1]], k=0, weights=[2.0, 1.0])
    assert fused == {1: pytest.approx(2 / 1 + 1 / 2), 2: pytest.approx(2 / 2 + 1 / 1)}
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([[1]], k=-1)
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([[1], [2]], weights=[1.0])


def test_rrf_ties_break_by_smaller_id_deterministically():
    # 7 and 3 swap places between the lists: equal fused scores
    fused = reciprocal_rank_fusion([[7, 3], [3, 7]], k=60)
    assert fused[7] == fused[3]
    assert top(fused, 2) == [3, 7]
    assert top(dict(reversed(list(fused.items()))), 2) == [3, 7]
    # documents only in one list each, same rank: smaller id first
    fused = reciprocal_rank_fusion([[9], [4]], k=60)
    assert top(fused, 2) == [4, 9]


def test_rrf_empty_lists():
    assert reciprocal_rank_fusion([[], []]) == {}
    assert top({}, 5) == []


def test_the_vector_store_parameters_come_from_the_settings_in_one_place():
    from embeddings.vectorstore import VectorStoreParams
    from rag.settings import load_settings, vector_store_params

    settings = load_settings(hnsw_m=16, hnsw_ef_construction=100, hnsw_ef_search=64)
    assert vector_store_params(settings) == VectorStoreParams(kind="flat", hnsw_m=16, ef_construction=100, ef_search=64)
