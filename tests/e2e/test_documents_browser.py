"""Citations that say where, in the real widget: "p. N" for a PDF, links resolved with RAG_SOURCE_BASE_URL.

A real ``rag serve`` (real model) over the bundled article plus a PDF, opened in headless Chromium.
"""

from __future__ import annotations

import shutil

import httpx
import pytest

from corpus import DEFAULT_CORPUS_DIR, load_corpus
from eval.live_server import LiveServer
from test_documents import FIXTURES
from test_widget_browser import WAIT_MS, ask, browser, open_tab, reply, server_env, shot  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.model, pytest.mark.slow]

BASE = "https://library.example.org/space/"
PDF_QUESTION = "How long after the damage may a claim for compensation be presented?"


@pytest.fixture(scope="module")
def documents_server(tmp_path_factory, bundled_index):
    from embeddings.cache import EmbeddingCache
    from rag.index import build_index

    root = tmp_path_factory.mktemp("documents-server")
    corpus = root / "corpus"
    shutil.copytree(DEFAULT_CORPUS_DIR, corpus)
    shutil.copy(FIXTURES / "liability-notes.pdf", corpus / "liability-notes.pdf")
    cache = EmbeddingCache(bundled_index.cache_path)
    try:
        build_index(load_corpus(corpus), root / "index", bundled_index.encoder, cache=cache)
    finally:
        cache.close()
    env = server_env(bundled_index, RAG_INDEX_DIR=str(root / "index"), RAG_CORPUS_DIR=str(corpus), RAG_SOURCE_BASE_URL=BASE)
    server = LiveServer(env).start(root / "server.log", timeout=300)
    yield server
    server.stop()


def test_a_pdf_citation_shows_its_page_and_links_to_it(open_tab, documents_server):
    from playwright.sync_api import expect

    expected = httpx.post(f"{documents_server.url}/ask", json={"question": PDF_QUESTION}, timeout=120).json()
    cited = [c for c in expected["citations"] if c["section"][-1] == "Time Limits"]
    assert cited and cited[0]["page"] == 2 and cited[0]["url"] == "liability-notes.pdf", expected["citations"]
    assert httpx.get(f"{documents_server.url}/widget-config.json").json()["source_base_url"] == BASE

    tab = open_tab(documents_server.url + "/")
    ask(tab, PDF_QUESTION)
    answer = reply(tab, 0)
    expect(answer).to_have_attribute("data-kind", "answer")
    source = answer.locator(".sources .source", has_text="Time Limits")
    expect(source.locator(".source-section")).to_have_text("Time Limits · p. 2")
    badge = answer.locator(f'.badge[data-n="{cited[0]["n"]}"]').first
    assert "p. 2" in badge.get_attribute("title")

    source.click()
    viewer = tab.page.locator("dialog.viewer")
    expect(viewer).to_be_visible()
    expect(viewer.locator(".viewer-kicker")).to_contain_text("p. 2")
    link = viewer.locator("a.source-url")
    expect(link).to_have_text("Read the source at p. 2")
    assert link.get_attribute("href") == BASE + "liability-notes.pdf#page=2"
    shot(tab, "desktop-pdf-citation")
    assert not tab.errors()


def test_the_bundled_articles_relative_url_resolves_against_the_base(open_tab, documents_server):
    from playwright.sync_api import expect

    tab = open_tab(documents_server.url + "/")
    ask(tab, "When did the Soviet Union launch Sputnik?")
    answer = reply(tab, 0)
    expect(answer).to_have_attribute("data-kind", "answer")
    answer.locator(".badge").first.click()
    link = tab.page.locator("dialog.viewer a.source-url")
    expect(link).to_have_text("Read the article")
    assert link.get_attribute("href") == "https://library.example.org/detay/space-diplomacy"
    assert not tab.errors()
