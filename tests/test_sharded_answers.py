"""Answers from a sharded build are the answers of one index of the same corpus.

The real model, the bundled article and the space-law summaries, indexed once as one index and once
in three shards; every question of a held-out set (answerable, near-domain, off-topic) asked of both
answer services in this process. The shards are reached the way an ingress reaches them, through
ShardServer objects (Ray Serve wraps the same objects, tests/test_ray_serve_shards.py).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest

from corpus import DEFAULT_CORPUS_DIR, load_corpus
from embeddings.cache import EmbeddingCache
from rag.answer.service import AnswerService
from rag.documents import list_documents
from rag.index import build_index, load_index
from rag.index.shard_build import build_sharded
from rag.payloads import AskResponse
from rag.search.retrieve import Filters, Retriever, unmatched_filters
from rag.service import answer_config, open_service
from rag.settings import Settings
from rag.shards.service import LocalShards, ShardedAnswerService, ShardedView
from core.errors import IndexFormatError

pytestmark = pytest.mark.model

REPO = DEFAULT_CORPUS_DIR.parent.parent
SPACELAW = REPO / "eval" / "data" / "spacelaw"


def _questions() -> list[dict]:
    lines = (REPO / "eval" / "data" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def builds(tmp_path_factory, real_encoder):
    root = tmp_path_factory.mktemp("sharded-answers")
    corpus = root / "corpus"
    shutil.copytree(SPACELAW, corpus)
    articles = load_corpus(corpus)
    cache = EmbeddingCache(root / "embeddings.sqlite")  # the second build embeds nothing again
    try:
        build_index(articles, root / "single", real_encoder, cache=cache)
        build_sharded(articles, root / "sharded", real_encoder, shards=3, cache=cache)
    finally:
        cache.close()
    return root


@pytest.fixture(scope="module")
def services(builds, real_encoder):
    config = answer_config(Settings())
    single = AnswerService(Retriever(load_index(builds / "single", real_encoder, mmap=True), real_encoder), config)
    view = ShardedView(builds / "sharded", LocalShards.of(3), real_encoder)
    from rag.shards.service import ShardedRetriever

    sharded = ShardedAnswerService(ShardedRetriever(view, real_encoder), config)
    return single, sharded


def _public(answer) -> dict:
    body = AskResponse.of(answer).model_dump(mode="json")
    body.pop("timings_ms", None)
    for p in body.get("passages", []):  # float32 scores summed in another order differ in the last bits
        for key in ("score", "dense_score", "bm25_score"):
            if p.get(key) is not None:
                p[key] = round(p[key], 3)
    body["support"] = round(body.get("support") or 0.0, 3)
    return body


def test_sharded_answers_equal_single_index_answers(services):
    single, sharded = services
    asked = _questions()
    kinds = {"answered": 0, "abstained": 0}
    for q in asked:
        want = _public(single.ask(q["question"]))
        got = _public(sharded.ask(q["question"]))
        assert got == want, q["question"]
        kinds["abstained" if want["abstained"] else "answered"] += 1
    # A follow-up in the context of the question before, and a filtered question, too.
    history = [asked[0]["question"]]
    assert _public(sharded.ask("And who takes part in it?", history=history)) == _public(single.ask("And who takes part in it?", history=history))
    only = Filters.from_mapping({"article": ["outer-space-treaty"]})
    assert _public(sharded.ask("What does Article IV ban?", filters=only)) == _public(single.ask("What does Article IV ban?", filters=only))
    assert kinds["answered"] >= 30 and kinds["abstained"] >= 20, kinds


def test_sharded_view_reads_as_the_index(services):
    single, sharded = services
    index, view = single.index, sharded.index
    assert len(view) == len(index) and view.build_id != index.build_id

    def undated(records):  # the two builds were made seconds apart
        return [{k: v for k, v in r.items() if k != "indexed_at"} for r in records]

    assert undated(view.articles.values()) == undated(index.articles.values()) and len(view.articles) == 7
    assert undated(asdict(d) for d in list_documents(view)) == undated(asdict(d) for d in list_documents(index))
    assert view.languages() == index.languages()
    for chunk in index.chunks[::7]:
        assert view.chunk(chunk.id) == chunk
        assert view.neighbours(chunk.id) == index.neighbours(chunk.id)
    assert view.chunk("no-such-passage") is None and view.neighbours("no-such-passage") == (None, None)
    slugs = (
        "'artemis-accords', 'liability-convention', 'moon-agreement', 'outer-space-treaty', "
        "'registration-convention', 'rescue-agreement', 'space-diplomacy'"
    )
    no_xx = "no document matches the filter language 'xx'; the values that exist are: 'en'"
    for filters, want in (
        ({"article": ["nope"]}, f"no document matches the filter article 'nope'; the values that exist are: {slugs}"),
        ({"language": ["xx"]}, no_xx),
        ({"article": ["outer-space-treaty"], "language": ["xx"]}, no_xx),  # the real article matches: only the language is named
        ({"article": ["outer-space-treaty"]}, None),
        ({"article": ["outer-space-treaty"], "language": ["en"]}, None),
    ):
        parsed = Filters.from_mapping(filters)
        assert unmatched_filters(view, parsed) == unmatched_filters(index, parsed) == want, filters


def test_open_service_serves_a_sharded_build_and_refuses_a_broken_one(builds, real_encoder, tmp_path):
    service = open_service(Settings(index_dir=builds / "sharded"), real_encoder)
    assert isinstance(service, ShardedAnswerService)
    assert not service.ask("What does the Outer Space Treaty ban in orbit?").abstained
    broken = tmp_path / "broken"
    shutil.copytree(Path(builds / "sharded").resolve(), broken)
    (broken / "shard-001" / "chunks.jsonl").write_text("{}\n")
    with pytest.raises(IndexFormatError, match="shard-001|chunks.jsonl"):
        open_service(Settings(index_dir=broken), real_encoder)
    with pytest.raises(IndexFormatError, match="3 shards but 2 shard servers"):
        ShardedView(builds / "sharded", LocalShards.of(2), real_encoder)
