"""The cheap query path: stored term ids give the same answers as analysing text per question;
large indexes get HNSW with its parameters recorded; servers map the index instead of reading it."""

from __future__ import annotations

import dataclasses
import json
import unicodedata

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from corpus import DEFAULT_CORPUS_DIR, load_corpus
from rag.answer.service import AnswerService
from rag.index import build_index, load_index
from rag.text.lexical import analyze, fold
from rag.search.retrieve import Retriever

from conftest import SMALL_CORPUS, build_fake_index, write_files

QUESTIONS = [
    "What do aardvarks eat?",
    "Where do aardvarks live and what do they dig?",
    "When did pneumatic tyres arrive?",
    "How long is the Tour de France?",
    "What makes a cathedral Gothic?",
    "Which treaty governs outer space?",
    "What is space diplomacy?",
    "Who took part in the Apollo-Soyuz mission?",
    "How do I bake sourdough bread?",
    "termites tongue night",
]


@pytest.fixture(scope="module")
def fake_index_dir(tmp_path_factory):
    from embeddings import HashingEncoder

    root = tmp_path_factory.mktemp("perf-query")
    corpus = write_files(root / "corpus", SMALL_CORPUS)
    articles = load_corpus(corpus) + load_corpus(DEFAULT_CORPUS_DIR)
    build_index(articles, root / "index", HashingEncoder())
    return root / "index"


def test_stored_terms_match_analysis_of_the_text(fake_index_dir, fake_encoder):
    index = load_index(fake_index_dir, fake_encoder)
    assert index.unit_terms is not None and index.chunk_terms is not None
    words = {i: t for t, i in index.lexical.vocabulary().items()}
    for unit, (row, start, end) in enumerate(index.unit_spans):
        stored = {words[int(i)] for i in index.unit_terms.row(unit)}
        assert stored == set(analyze(index.chunks[row].text[start:end]))
    for row, chunk in enumerate(index.chunks):
        stored = {words[int(i)] for i in index.chunk_terms.row(row)}
        assert stored == set(analyze(chunk.text + " " + " ".join(chunk.section)))


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_answers_from_stored_terms_equal_answers_from_analysis(fake_index_dir, fake_encoder, mode):
    index = load_index(fake_index_dir, fake_encoder)
    # The same index without its term tables takes the path that analyses text per question.
    legacy = dataclasses.replace(index, unit_terms=None, chunk_terms=None)
    fast, slow = AnswerService(Retriever(index, fake_encoder)), AnswerService(Retriever(legacy, fake_encoder))
    answered = 0
    for question in QUESTIONS:
        a, b = fast.ask(question, mode=mode), slow.ask(question, mode=mode)
        assert (a.answer, a.abstained, a.support) == (b.answer, b.abstained, b.support)
        assert a.citations == b.citations
        answered += not a.abstained
    assert answered >= 3  # the comparison covered real answers, not only abstentions


def test_an_index_without_sentence_data_gives_the_same_answers(tmp_path, small_articles, fake_encoder):
    build_index(small_articles, tmp_path / "bare", fake_encoder, with_units=False)
    build_index(small_articles, tmp_path / "full", fake_encoder)
    bare, full = (load_index(tmp_path / name, fake_encoder) for name in ("bare", "full"))
    assert bare.unit_terms is None and bare.unit_spans is None and full.unit_terms is not None
    answered = 0
    for question in QUESTIONS:
        a = AnswerService(Retriever(bare, fake_encoder)).ask(question)
        b = AnswerService(Retriever(full, fake_encoder)).ask(question)
        assert (a.answer, a.support, a.citations) == (b.answer, b.support, b.citations)
        answered += not a.abstained
    assert answered >= 1


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x2FFFF), max_size=40))
def test_fold_equals_the_plain_definition(text):
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    assert fold(text) == "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def test_accents_still_fold():
    assert fold("Türkiye ÉCOLE naïve") == "turkiye ecole naive"


# ------------------------------------------------------------------------------------------ scale


def test_hnsw_above_the_threshold_with_parameters_in_the_manifest(tmp_path, small_articles, fake_encoder):
    from embeddings.vectorstore import VectorStoreParams

    params = VectorStoreParams(hnsw_m=16, ef_construction=64, ef_search=48)
    small = build_index(small_articles, tmp_path / "a", fake_encoder, hnsw_threshold=10_000, vector_params=params)
    large = build_index(small_articles, tmp_path / "b", fake_encoder, hnsw_threshold=3, vector_params=params)
    assert (small.vector_index, large.vector_index) == ("flat", "hnsw")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["vectors"] == {"kind": "hnsw", "hnsw_m": 16, "ef_construction": 64, "ef_search": 48}
    loaded = load_index(tmp_path / "b", fake_encoder, mmap=True)
    assert loaded.vectors.index.hnsw.efSearch == 48
    exact = Retriever(load_index(tmp_path / "a", fake_encoder), fake_encoder)
    approx = Retriever(loaded, fake_encoder)
    for query in ("termites", "gothic cathedral windows", "bicycle race"):
        assert [r.chunk.id for r in approx.search(query, k=3, mode="dense")] == [
            r.chunk.id for r in exact.search(query, k=3, mode="dense")
        ]


def test_the_server_maps_the_index_files(tmp_path, small_corpus):
    from api.app import create_app
    from rag.settings import load_settings

    build_fake_index(tmp_path, small_corpus)
    settings = load_settings(encoder="hashing", index_dir=tmp_path / "index", cache_dir=tmp_path / "cache", rate_limit="")
    app = create_app(settings)
    with TestClient(app) as client:
        index = app.state.ctx.service.index
        assert isinstance(index.unit_vectors, np.memmap) and isinstance(index.unit_terms.ids, np.memmap)
        body = client.post("/ask", json={"question": "How many termites can an aardvark eat in a night?"}).json()
        assert not body["abstained"] and "termites" in body["answer"]


# ------------------------------------------------------------------------------------ re-indexing


def test_a_rebuild_reuses_units_of_unchanged_chunks_and_equals_a_fresh_build(tmp_path, fake_encoder):
    from embeddings import HashingEncoder
    from embeddings.cache import EmbeddingCache

    files = dict(SMALL_CORPUS)
    corpus = write_files(tmp_path / "corpus", files)
    build_index(load_corpus(corpus) + load_corpus(DEFAULT_CORPUS_DIR), tmp_path / "index", fake_encoder)
    edited = files["bicycles.md"].replace("Pneumatic tyres arrived in 1888.", "Pneumatic tyres arrived in 1888. Gears came later.")
    write_files(corpus, {"bicycles.md": edited})
    articles = load_corpus(corpus) + load_corpus(DEFAULT_CORPUS_DIR)

    counting = HashingEncoder()
    report = build_index(articles, tmp_path / "index", counting, cache=EmbeddingCache(tmp_path / "cache.sqlite"))
    fresh_encoder = HashingEncoder()
    fresh = build_index(articles, tmp_path / "fresh", fresh_encoder)
    # Only the edited article's chunks and units were embedded again; the rest came from the previous build.
    assert report.reused_chunking == len(articles) - 1
    assert 0 < report.sentences_embedded < fresh.sentences_embedded / 4
    # no cache: chunks embedded again; units and words not, except the edit's new ones ("gears", "came", "later")
    assert 0 < report.words_embedded <= 3
    assert counting.calls == report.embedded + report.sentences_embedded + report.words_embedded
    a, b = load_index(tmp_path / "index", fake_encoder), load_index(tmp_path / "fresh", fake_encoder)
    assert report.sentences == fresh.sentences
    assert np.array_equal(a.unit_spans, b.unit_spans)
    assert np.allclose(a.unit_vectors, b.unit_vectors, atol=1e-6)
    words_a = {i: t for t, i in a.lexical.vocabulary().items()}
    words_b = {i: t for t, i in b.lexical.vocabulary().items()}
    for unit in range(len(a.unit_spans)):
        assert {words_a[int(i)] for i in a.unit_terms.row(unit)} == {words_b[int(i)] for i in b.unit_terms.row(unit)}
    for question in QUESTIONS:
        assert AnswerService(Retriever(a, fake_encoder)).ask(question).answer == AnswerService(Retriever(b, fake_encoder)).ask(question).answer
