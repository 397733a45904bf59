"""The API docs in a real headless Chromium with every request that leaves the machine blocked:
``/docs`` (Swagger UI) and ``/redoc`` render every operation of the schema from assets the service
serves itself."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from conftest import build_fake_index, rag_env
from corpus import DEFAULT_CORPUS_DIR
from e2e.test_widget_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS
from eval.live_server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]
WAIT_MS = 60_000
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real ``rag serve`` (the fake encoder: the docs need no model)."""
    tmp = tmp_path_factory.mktemp("docs")
    build_fake_index(tmp, DEFAULT_CORPUS_DIR)
    live = LiveServer(rag_env(tmp)).start(tmp / "server.log", timeout=120)
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def offline_page():
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}; run `make browser`", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        blocked: list[str] = []

        def only_local(route, request) -> None:
            host = urlsplit(request.url).hostname or ""
            if request.url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
                route.continue_()
            else:
                blocked.append(request.url)
                route.abort("internetdisconnected")

        context.route("**/*", only_local)
        page = context.new_page()
        page.blocked = blocked
        yield page
        context.close()
        browser.close()


def operations(server) -> list[tuple[str, str]]:
    schema = httpx.get(server.url + "/openapi.json").json()
    methods = {"get", "post", "put", "patch", "delete"}
    return [(method, path) for path, ops in schema["paths"].items() for method in ops if method in methods]


def test_swagger_ui_renders_every_operation_offline(server, offline_page):
    page = offline_page
    page.goto(server.url + "/docs")
    page.wait_for_selector(".opblock", timeout=WAIT_MS)
    expected = operations(server)
    assert ("post", "/v1/chat/completions") in expected and ("post", "/ask") in expected
    rendered = page.eval_on_selector_all(
        ".opblock",
        "els => els.map(e => [e.querySelector('.opblock-summary-method').textContent.toLowerCase(),"
        " e.querySelector('.opblock-summary-path').getAttribute('data-path')])",
    )
    assert sorted(map(tuple, rendered)) == sorted(expected)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "docs-offline.png"))
    assert page.blocked == []


def test_redoc_renders_every_operation_offline(server, offline_page):
    page = offline_page
    page.goto(server.url + "/redoc")
    page.wait_for_selector("[data-section-id^='operation/']", timeout=WAIT_MS)
    rendered = page.eval_on_selector_all("[data-section-id^='operation/']", "els => els.length")
    assert rendered == len(operations(server))
    assert page.get_by_text("A cited answer as an OpenAI chat completion").count() >= 1
    page.screenshot(path=str(SCREENSHOTS / "redoc-offline.png"))
    assert page.blocked == []
