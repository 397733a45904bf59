"""The chat widget in a real headless Chromium against a real ``rag serve`` over the bundled index.

A reader's path through the product: type a question, watch the answer stream in, open a citation
and find the quote highlighted in its passage; an off-topic question; a reload; a server that dies
mid-session; the embed snippet on another site, allowed and refused. Screenshots of the page at
desktop and phone widths are written to artifacts/screenshots/ for a person to look at.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from api.schemas import MAX_QUESTION_CHARS
from conftest import build_fake_index, rag_env, wait_until
from corpus import DEFAULT_CORPUS_DIR
from eval.live_server import LiveServer, free_port

pytestmark = [pytest.mark.browser, pytest.mark.model, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
#: The shot the README shows (the bundled article's answer, its citation open and highlighted);
#: RAG_UPDATE_DOCS_IMAGES=1 make test writes it again.
DOCS_SHOT, DOCS_IMAGE = "desktop-passage", Path(__file__).resolve().parents[2] / "docs" / "images" / "widget.png"
DESKTOP = {"width": 1280, "height": 800}
NARROW = {"width": 360, "height": 740}
# Generous waits: these bound a hang, they do not measure speed (the first answer warms the model up).
WAIT_MS = 90_000

QUESTION = "When did the Soviet Union launch Sputnik?"
FOLLOW_UP = "What was the Apollo-Soyuz Test Project?"
OFF_TOPIC = "Who won the 2018 World Cup?"

# Records every reply element the widget inserts, in order, so a test can tell a streamed answer
# (pending -> streaming -> done) from one that appeared all at once.
RECORD_REPLIES = """() => {
  const root = document.querySelector('[data-rag-chat]').shadowRoot;
  window.__replies = [];
  new MutationObserver((records) => {
    for (const record of records) for (const node of record.addedNodes) {
      if (node.nodeType !== 1) continue;
      const bot = node.matches('.msg-bot') ? node : node.querySelector('.msg-bot');
      if (bot) window.__replies.push({state: bot.dataset.state, text: bot.textContent.trim()});
    }
  }).observe(root, {subtree: true, childList: true});
}"""

# Text colour and the colour actually behind it (walking up through the shadow host), per element.
MEASURE_COLOURS = """(selectors) => {
  const parse = (c) => { const m = c.match(/[\\d.]+/g).map(Number); return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1]; };
  const over = (top, bottom) => { const a = top[3]; return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a)).concat([1]); };
  const backdrop = (el) => {
    const layers = [];
    for (let node = el; node; node = node.parentElement || (node.getRootNode().host || null)) {
      const bg = parse(getComputedStyle(node).backgroundColor);
      if (bg[3] > 0) layers.push(bg);
      if (bg[3] >= 1) break;
    }
    return layers.reverse().reduce((acc, layer) => over(layer, acc), [255, 255, 255, 1]);
  };
  const find = (sel) => {
    const hosts = [document, ...[...document.querySelectorAll('[data-rag-chat]')].map((h) => h.shadowRoot)];
    for (const root of hosts) { const el = root.querySelector(sel); if (el) return el; }
    return null;
  };
  return selectors.map((sel) => {
    const el = find(sel);
    if (!el) return {sel, missing: true};
    const style = getComputedStyle(el);
    return {sel, fg: over(parse(style.color), backdrop(el)), bg: backdrop(el),
            size: parseFloat(style.fontSize), weight: parseInt(style.fontWeight, 10)};
  });
}"""


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}; run `make browser` (tests/ensure_chromium.sh) to install "
            "Debian's chromium, which the browser tests drive",
            pytrace=False,
        )
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        # launch() gives every run a fresh temporary profile; `playwright install` is not needed.
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class StaticSite:
    """Another website (another origin: another port) serving host pages that embed the widget."""

    def __init__(self, root: Path):
        class Quiet(SimpleHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output readable
                pass

        self.root = root
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


HOST_STYLES = """
body { font-family: Georgia, serif; color: #222; background: #fdfbf7; margin: 0 auto; max-width: 760px; padding: 24px; }
h1 { font-size: 40px; color: rgb(139, 0, 0); }
button { background: rgb(255, 0, 0); color: yellow; border: 5px dotted green; font-size: 30px; }
div { border: 1px solid orange; }
* { letter-spacing: 1px; }
"""


def host_page(snippet: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Encyclopedia: Space Diplomacy</title><style>{HOST_STYLES}</style>{snippet}</head>
<body><h1 id="title">Space Diplomacy</h1>
<p>Space diplomacy is defined as the diplomatic processes conducted by states and international actors.</p>
<button id="host-button" type="button">A button of the host page</button></body></html>
"""


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """Two other sites: the first will be allowed by RAG_CORS_ORIGINS, the second not."""
    allowed = StaticSite(tmp_path_factory.mktemp("site-allowed"))
    refused = StaticSite(tmp_path_factory.mktemp("site-refused"))
    yield allowed, refused
    allowed.close()
    refused.close()


def server_env(bundled_index, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        RAG_INDEX_DIR=str(bundled_index.index_dir),
        RAG_CACHE_DIR=str(bundled_index.cache_path.parent),
        RAG_RATE_LIMIT="",  # the tests ask quickly; rate limits have their own tests
        RAG_LOG_LEVEL="warning",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def api_server(bundled_index, sites, tmp_path_factory):
    """``rag serve`` on a free port, allowing the first site's origin only."""
    allowed, refused = sites
    server = LiveServer(server_env(bundled_index, RAG_CORS_ORIGINS=allowed.url))
    server.start(tmp_path_factory.mktemp("api-server") / "server.log", timeout=300)
    snippet = f'<script src="{server.url}/widget.js" data-api="{server.url}" defer></script>'
    for site in (allowed, refused):
        (site.root / "embed.html").write_text(host_page(snippet), encoding="utf-8")
        (site.root / "plain.html").write_text(host_page(""), encoding="utf-8")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api_answers(api_server):
    """``ask(question)``: the JSON answer of the same server, to check what the browser shows against."""
    cache: dict[str, dict] = {}

    def ask(question: str) -> dict:
        if question not in cache:
            response = httpx.post(f"{api_server.url}/ask", json={"question": question}, timeout=120)
            response.raise_for_status()
            cache[question] = response.json()
        return cache[question]

    return ask


class Tab:
    """A page plus what the browser reported while it was open."""

    def __init__(self, page):
        self.page = page
        self.console: list[str] = []
        self.asks: list[dict] = []
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))
        page.on("request", self._request)
        page.set_default_timeout(WAIT_MS)

    def _request(self, request) -> None:
        if request.method == "POST" and request.url.endswith("/ask"):
            self.asks.append(json.loads(request.post_data or "{}"))

    def csp_violations(self) -> list[str]:
        return [line for line in self.console if "Content Security Policy" in line]

    def errors(self) -> list[str]:
        return [line for line in self.console if line.startswith("pageerror")]


@pytest.fixture
def open_tab(browser):
    contexts = []

    def _open(url: str, viewport: dict = DESKTOP, widget: bool = True) -> Tab:
        context = browser.new_context(viewport=viewport)
        contexts.append(context)
        tab = Tab(context.new_page())
        tab.page.goto(url)
        if widget:
            tab.page.wait_for_selector("[data-rag-chat] >> .panel", state="attached")
        return tab

    yield _open
    for context in contexts:
        context.close()


# ------------------------------------------------------------------------------ helpers


def ask(tab: Tab, question: str) -> None:
    box = tab.page.locator("textarea")
    box.fill(question)
    box.press("Enter")


def reply(tab: Tab, index: int):
    """The reply of the index-th question (0-based), once it is finished (answer, abstention or error)."""
    locator = tab.page.locator(".turn").nth(index).locator(".msg-bot")
    tab.page.wait_for_function(
        """(i) => {
          const root = document.querySelector('[data-rag-chat]').shadowRoot;
          const turn = root.querySelectorAll('.turn')[i];
          const bot = turn && turn.querySelector('.msg-bot');
          return bot && (bot.dataset.state === 'done' || bot.dataset.state === 'error');
        }""",
        arg=index,
        timeout=WAIT_MS,
    )
    return locator


def fulfil_with(response: dict):
    """A route handler answering every request with ``response`` (Route.fulfill keyword arguments)."""

    def handler(route, request) -> None:
        route.fulfill(**response)

    return handler


def shot(tab: Tab, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    if name == DOCS_SHOT and os.environ.get("RAG_UPDATE_DOCS_IMAGES"):  # the README's picture, refreshed on demand
        DOCS_IMAGE.write_bytes((SCREENSHOTS / f"{name}.png").read_bytes())


def wait_for_focus(tab: Tab, selector: str) -> None:
    """Wait until the widget's focused element matches ``selector`` (focus can move a task later)."""
    tab.page.wait_for_function(
        """(sel) => {
          const el = document.querySelector('[data-rag-chat]').shadowRoot.activeElement;
          return !!el && el.matches(sel);
        }""",
        arg=selector,
        timeout=WAIT_MS,
    )


def contrast(fg: list[float], bg: list[float]) -> float:
    def luminance(rgb):
        def channel(c):
            c = c / 255
            return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

        r, g, b = (channel(c) for c in rgb[:3])
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    hi, lo = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


# ------------------------------------------------------------------------------ asking and citations


@pytest.mark.parametrize("viewport", [DESKTOP, NARROW], ids=["desktop", "narrow"])
def test_answer_streams_in_with_badges_and_a_citation_shows_its_quote_highlighted(open_tab, api_server, api_answers, viewport):
    from playwright.sync_api import expect

    expected = api_answers(QUESTION)
    assert not expected["abstained"] and expected["citations"], "the bundled article answers this question"
    tab = open_tab(api_server.url + "/", viewport)
    tab.page.evaluate(RECORD_REPLIES)

    ask(tab, QUESTION)
    expect(tab.page.locator(".turn .bubble").first).to_contain_text(QUESTION)
    answer = reply(tab, 0)
    expect(answer).to_have_attribute("data-kind", "answer")

    # Streamed: a visible pending state first, then sentences before the answer was complete.
    states = [r["state"] for r in tab.page.evaluate("window.__replies")]
    assert states[0] == "pending" and "Searching the articles" in tab.page.evaluate("window.__replies")[0]["text"]
    assert "streaming" in states and states[-1] == "done"
    assert states.index("streaming") < states.index("done")

    # One badge per [n] marker of the answer, numbered as the API numbers them.
    badges = answer.locator(".answer-text .badge")  # the markers' badges (a short answer has one of its own)
    numbers = [int(n) for n in badges.evaluate_all("els => els.map(e => e.dataset.n)")]
    assert numbers and sorted(set(numbers)) == [c["n"] for c in expected["citations"]]
    assert "[" not in answer.locator(".answer-text").inner_text()  # markers became badges
    expect(answer.locator(".sources .source")).to_have_count(len({c["passage_id"] for c in expected["citations"]}))
    first_sentence = expected["answer"].split(" [1]")[0]
    expect(tab.page.locator("[aria-live=polite]")).to_contain_text(first_sentence[:60])
    shot(tab, f"{'desktop' if viewport is DESKTOP else 'narrow'}-answer")

    # The citation opens its passage with exactly the quoted span highlighted.
    citation = expected["citations"][0]
    passage = next(p for p in expected["passages"] if p["passage_id"] == citation["passage_id"])
    badges.first.click()
    viewer = tab.page.locator("dialog.viewer")
    expect(viewer).to_be_visible()
    expect(viewer.locator(".viewer-title")).to_have_text(citation["title"])
    expect(viewer.locator(".crumbs li").last).to_have_text(citation["section"][-1])
    expect(viewer.locator("mark.quote")).to_have_count(1)
    assert viewer.locator("mark.quote").text_content() == citation["quote"]
    assert viewer.locator(".passage").text_content() == passage["text"]
    assert passage["text"][citation["start"] : citation["end"]] == citation["quote"]
    expect(viewer.locator(".url-text")).to_have_text(citation["url"])
    shot(tab, f"{'desktop' if viewport is DESKTOP else 'narrow'}-passage")

    if viewport is NARROW:  # usable on a phone: nothing wider than the screen
        assert tab.page.evaluate("document.documentElement.scrollWidth") <= NARROW["width"]
        box = viewer.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= NARROW["width"]
    assert tab.csp_violations() == [] and tab.errors() == []


def test_keyboard_only_enter_sends_shift_enter_breaks_a_line_and_enter_on_a_badge_opens_it(open_tab, api_server):
    from playwright.sync_api import expect

    tab = open_tab(api_server.url + "/")
    box = tab.page.locator("textarea")
    box.focus()
    tab.page.keyboard.type("When did the Soviet Union")
    tab.page.keyboard.press("Shift+Enter")
    tab.page.keyboard.type("launch Sputnik?")
    assert box.input_value() == "When did the Soviet Union\nlaunch Sputnik?"
    assert tab.asks == []
    tab.page.keyboard.press("Enter")
    answer = reply(tab, 0)
    assert tab.asks[-1]["question"] == QUESTION  # sent with whitespace collapsed, as the API counts it
    expect(box).to_have_value("")
    wait_for_focus(tab, "textarea")  # focus stays in the box for the next question

    badge = answer.locator(".answer-text .badge").first
    badge.focus()
    tab.page.keyboard.press("Enter")
    viewer = tab.page.locator("dialog.viewer")
    expect(viewer).to_be_visible()
    expect(viewer.locator("mark.quote")).to_have_count(1)
    wait_for_focus(tab, '[aria-label="Close the passage"]')  # focus moved into the passage
    tab.page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    wait_for_focus(tab, f'.answer-text .badge[data-n="{badge.get_attribute("data-n")}"]')  # and back to the badge


def test_off_topic_question_gets_a_plain_abstention_not_an_answer(open_tab, api_server, api_answers):
    from playwright.sync_api import expect

    assert api_answers(OFF_TOPIC)["abstained"]
    tab = open_tab(api_server.url + "/")
    ask(tab, QUESTION)
    answer = reply(tab, 0)
    ask(tab, OFF_TOPIC)
    abstention = reply(tab, 1)

    expect(abstention).to_have_attribute("data-kind", "abstained")
    expect(abstention.locator(".notice-title")).to_have_text("Not covered by the articles")
    expect(abstention).to_contain_text(api_answers(OFF_TOPIC)["answer"])
    expect(abstention.locator(".badge")).to_have_count(0)
    expect(abstention.locator(".sources")).to_have_count(0)
    # Styled as its own kind of message: boxed on a tinted background, unlike an answer.
    look = lambda loc: loc.evaluate("el => [getComputedStyle(el).backgroundColor, getComputedStyle(el).borderTopWidth]")  # noqa: E731
    assert look(abstention) != look(answer)
    assert look(abstention)[0] not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)")

    related = abstention.locator(".related .source")
    assert related.count() >= 1
    expect(abstention.locator(".related")).to_contain_text("does not answer the question")
    related.first.click()
    viewer = tab.page.locator("dialog.viewer")
    expect(viewer).to_be_visible()
    expect(viewer.locator(".viewer-kicker")).to_contain_text("does not answer the question")
    expect(viewer.locator("mark")).to_have_count(0)  # related reading is not evidence: nothing is highlighted
    shot(tab, "desktop-abstention")


NEAR_DOMAIN = "How many astronauts have lived aboard the ISS?"
PARTIAL = "Which court settles disputes under the Outer Space Treaty?"


def test_a_question_the_articles_do_not_answer_says_what_is_missing(open_tab, api_server, api_answers):
    from playwright.sync_api import expect

    body = api_answers(NEAR_DOMAIN)
    assert body["abstained"] and body["abstention"]["reason"] in ("not_answered", "not_mentioned"), body["abstention"]
    tab = open_tab(api_server.url + "/")
    ask(tab, NEAR_DOMAIN)
    abstention = reply(tab, 0)
    expect(abstention).to_have_attribute("data-kind", "abstained")
    expect(abstention).to_have_attribute("data-reason", body["abstention"]["reason"])
    # the reader sees what is missing, in the service's words, and no citation badge
    expect(abstention.locator(".notice-text")).to_have_text(body["abstention"]["message"])
    assert "ISS" in body["abstention"]["message"] and "astronauts" in body["abstention"]["message"]
    expect(abstention.locator(".badge")).to_have_count(0)
    expect(abstention.locator(".related")).to_contain_text("does not answer the question")


def test_a_partly_answered_question_shows_what_the_quotes_leave_out(open_tab, api_server, api_answers):
    from playwright.sync_api import expect

    body = api_answers(PARTIAL)
    assert not body["abstained"] and body["abstention"]["reason"] == "partial", body
    tab = open_tab(api_server.url + "/")
    ask(tab, PARTIAL)
    answer = reply(tab, 0)
    expect(answer).to_have_attribute("data-state", "done")
    note = answer.locator(".partial-note")
    expect(note).to_have_text(body["abstention"]["message"])  # streamed as the `partial` event, kept when done
    assert "court" in body["abstention"]["missing"]
    expect(answer.locator(".answer-text .badge")).to_have_count(len(body["citations"]))
    shot(tab, "desktop-partial")


def test_conversation_survives_a_reload_and_new_chat_clears_it(open_tab, api_server):
    from playwright.sync_api import expect

    tab = open_tab(api_server.url + "/")
    ask(tab, QUESTION)
    reply(tab, 0)
    ask(tab, FOLLOW_UP)
    reply(tab, 1)
    assert tab.asks[1]["history"] == [QUESTION]  # a follow-up carries the conversation so far
    before = tab.page.locator(".turns").inner_text()

    tab.page.reload()
    expect(tab.page.locator(".turn")).to_have_count(2)
    assert tab.page.locator(".turns").inner_text() == before
    tab.page.locator(".turn").nth(1).locator(".badge").first.click()  # restored citations still open
    expect(tab.page.locator("dialog.viewer mark.quote")).to_have_count(1)
    tab.page.keyboard.press("Escape")

    tab.page.get_by_role("button", name="New chat").click()
    expect(tab.page.locator(".turn")).to_have_count(0)
    expect(tab.page.locator(".empty")).to_be_visible()
    wait_for_focus(tab, "textarea")
    tab.page.reload()
    expect(tab.page.locator(".empty")).to_be_visible()
    expect(tab.page.locator(".turn")).to_have_count(0)


def test_question_over_the_api_limit_is_stopped_in_the_browser(open_tab, api_server):
    from playwright.sync_api import expect

    tab = open_tab(api_server.url + "/")
    tab.page.wait_for_function("() => performance.getEntriesByType('resource').some(e => e.name.endsWith('/widget-config.json'))")
    box = tab.page.locator("textarea")
    box.fill("x" * (MAX_QUESTION_CHARS + 1))
    box.press("Enter")
    limit = tab.page.locator(".limit")
    expect(limit).to_contain_text(f"the limit is {MAX_QUESTION_CHARS:,}")
    expect(limit).to_contain_text(f"{MAX_QUESTION_CHARS + 1:,} characters")
    expect(tab.page.locator(".counter")).to_have_text(f"{MAX_QUESTION_CHARS + 1:,} / {MAX_QUESTION_CHARS:,}")
    expect(box).to_have_attribute("aria-invalid", "true")
    assert tab.asks == [] and tab.page.locator(".turn").count() == 0  # nothing was sent
    assert len(box.input_value()) == MAX_QUESTION_CHARS + 1  # and nothing the user typed was lost

    # The browser counts as the API does (whitespace collapsed): this is exactly at the limit, so it goes.
    half = MAX_QUESTION_CHARS // 2
    box.fill("x" * half + " \n  \t " + "y" * (MAX_QUESTION_CHARS - half - 1))
    expect(limit).to_be_empty()
    box.press("Enter")
    outcome = reply(tab, 0)
    assert len(tab.asks) == 1 and len(tab.asks[0]["question"]) == MAX_QUESTION_CHARS
    expect(outcome).not_to_have_attribute("data-kind", "error")


# ------------------------------------------------------------------------------ the short answer


class InProcessServer:
    """The app served by uvicorn in a thread of the test process, so a test can give it a service of its own."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> InProcessServer:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), 60, "the in-process server to start")
        assert self.server.started, "the in-process server did not start"
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


MOON = "Which agreement says the Moon cannot be claimed by any nation?"


@pytest.fixture(scope="module")
def reading_server(tmp_path_factory):
    """The real app over the bundled article (fake encoder, so it starts in seconds), with a stand-in for the
    reader that puts a known short answer on the answer: "1979 Moon Agreement", in the quote of citation 2."""
    from api.app import create_app
    from rag.settings import load_settings
    from test_short_answer import SPAN, ReadingService, service_over

    assert SPAN == "1979 Moon Agreement"
    root = tmp_path_factory.mktemp("reading-server")
    build_fake_index(root, DEFAULT_CORPUS_DIR)
    settings = load_settings(encoder="hashing", index_dir=root / "index", cache_dir=root / "cache", rate_limit="", log_level="warning")
    logger = logging.getLogger("rag")  # the app configures it at start-up; other tests should not inherit that
    saved = (list(logger.handlers), logger.level, logger.propagate)
    server = InProcessServer(create_app(settings, service=service_over(root, ReadingService))).start()
    yield server
    server.stop()
    logger.handlers[:], logger.level, logger.propagate = saved


def check_short_answer_shown(tab: Tab, answer, expected: dict) -> None:
    """The short answer first, in bold, with its citation's badge; and marked exactly inside that citation's quote."""
    from playwright.sync_api import expect

    short = expected["short_answer"]
    cited = next(c for c in expected["citations"] if c["n"] == short["citation"])
    span = cited["quote"][short["start"] - cited["start"] : short["end"] - cited["start"]]
    assert span == short["text"]

    expect(answer).to_have_attribute("data-kind", "answer")
    assert answer.evaluate("el => [...el.children].map(c => c.className)")[:2] == ["rag-short-answer", "answer-text"]
    shown = answer.locator("p.rag-short-answer")
    expect(shown.locator("strong")).to_have_text(short["text"])
    assert int(shown.locator("strong").evaluate("el => getComputedStyle(el).fontWeight")) >= 700
    expect(shown.locator(".badge")).to_have_attribute("data-n", str(short["citation"]))

    # Another citation's quote has no mark of the short answer ...
    other = next(c for c in expected["citations"] if c["n"] != short["citation"])
    answer.locator(f'.answer-text .badge[data-n="{other["n"]}"]').click()
    viewer = tab.page.locator("dialog.viewer")
    expect(viewer.locator("mark.quote")).to_have_text(other["quote"])
    expect(viewer.locator("mark.rag-short-answer-mark")).to_have_count(0)
    tab.page.keyboard.press("Escape")
    # ... and its own quote marks exactly the span, at its offsets (the text before it is the quote's up to start).
    shown.locator(".badge").click()
    quote = viewer.locator("mark.quote")
    expect(quote).to_have_count(1)
    assert quote.text_content() == cited["quote"]
    mark = quote.locator("mark.rag-short-answer-mark")
    expect(mark).to_have_count(1)
    assert mark.text_content() == span
    before = quote.evaluate(
        "q => { const r = document.createRange(); r.setStart(q, 0); r.setEndBefore(q.querySelector('.rag-short-answer-mark')); return r.toString(); }"
    )
    assert before == cited["quote"][: short["start"] - cited["start"]]
    expect(viewer.locator(".legend")).to_contain_text(["Quoted in the answer", "The short answer"])


def test_the_short_answer_shows_first_in_bold_and_is_marked_in_its_quote(open_tab, reading_server):
    from playwright.sync_api import expect

    expected = httpx.post(f"{reading_server.url}/ask", json={"question": MOON}, timeout=60).json()
    assert expected["short_answer"]["citation"] == 2 and expected["short_answer"]["text"] == "1979 Moon Agreement"
    assert expected["citations"][1]["start"] > 0  # offsets into the passage, not into the quote, are what is checked

    # Streamed (the widget's way): the short_answer event arrives before the sentences and shows at once.
    tab = open_tab(reading_server.url + "/")
    tab.page.evaluate(RECORD_REPLIES)
    ask(tab, MOON)
    answer = reply(tab, 0)
    early = [r for r in tab.page.evaluate("window.__replies") if r["state"] != "done"]
    assert any(r["text"].startswith(expected["short_answer"]["text"]) for r in early), early
    shot(tab, "desktop-short-answer")
    check_short_answer_shown(tab, answer, expected)
    shot(tab, "desktop-short-answer-passage")
    failures = [
        item["sel"] for item in tab.page.evaluate(MEASURE_COLOURS, [".rag-short-answer strong", "mark.rag-short-answer-mark"])
        if item.get("missing") or contrast(item["fg"], item["bg"]) < 4.5
    ]
    assert failures == []
    tab.page.keyboard.press("Escape")

    # One JSON body (what the widget does when something turned the stream into JSON): the same.
    def as_json(route, request) -> None:
        route.fulfill(response=route.fetch(headers={**request.headers, "accept": "application/json"}))

    tab.page.route("**/ask", as_json)
    ask(tab, MOON)
    check_short_answer_shown(tab, reply(tab, 1), expected)
    tab.page.keyboard.press("Escape")
    tab.page.unroute("**/ask")

    # An abstention shows no short answer, even from a body that (wrongly) carries one.
    abstained = httpx.post(f"{reading_server.url}/ask", json={"question": OFF_TOPIC}, timeout=60).json()
    assert abstained["abstained"] and abstained["short_answer"] is None
    body = json.dumps({**abstained, "short_answer": expected["short_answer"]})
    tab.page.route("**/ask", fulfil_with({"status": 200, "content_type": "application/json", "body": body}))
    ask(tab, OFF_TOPIC)
    refusal = reply(tab, 2)
    expect(refusal).to_have_attribute("data-kind", "abstained")
    expect(refusal.locator(".rag-short-answer")).to_have_count(0)
    tab.page.unroute("**/ask")

    tab.page.reload()  # the conversation is restored with its short answers
    expect(tab.page.locator(".turn")).to_have_count(3)
    expect(tab.page.locator(".turn").nth(0).locator(".rag-short-answer strong")).to_have_text(expected["short_answer"]["text"])
    assert tab.csp_violations() == [] and tab.errors() == []


# ------------------------------------------------------------------------------ failures


def test_cut_stream_server_error_and_refusal_are_shown_with_a_retry_that_works(open_tab, api_server):
    from playwright.sync_api import expect

    tab = open_tab(api_server.url + "/")
    sentence = {"index": 0, "text": "A sentence that never finishes. [1]", "citations": []}
    cut = "event: passages\ndata: {\"question\": \"q\", \"search_query\": \"q\", \"passages\": []}\n\n"
    cut += "event: sentence\ndata: " + json.dumps(sentence) + "\n\n"
    cases = [
        ({"status": 200, "content_type": "text/event-stream", "body": cut}, "cut off before it finished"),
        (
            {"status": 200, "content_type": "text/event-stream", "body": cut + 'event: error\ndata: {"detail": "internal error while answering; try again"}\n\n'},
            "internal error while answering",
        ),
        (
            {"status": 422, "content_type": "application/json", "body": json.dumps({"detail": "question: is odd", "request_id": "req-123"})},
            "question: is odd",
        ),
        (
            {"status": 503, "content_type": "text/html", "body": "<html>bad gateway</html>"},
            "HTTP 503",
        ),
    ]
    for i, (response, message) in enumerate(cases):
        tab.page.route("**/ask", fulfil_with(response))
        ask(tab, QUESTION)
        failed = reply(tab, i)
        expect(failed).to_have_attribute("data-kind", "error")
        expect(failed).to_have_attribute("role", "alert")
        expect(failed.locator(".notice-text")).to_contain_text(message)
        if response["status"] == 422:
            expect(failed.locator(".ref")).to_have_text("Reference: req-123")
        if i == 0:
            shot(tab, "desktop-error")
        tab.page.unroute("**/ask")
        failed.get_by_role("button", name="Retry").click()
        expect(tab.page.locator(".turn").nth(i).locator(".msg-bot")).to_have_attribute("data-kind", "answer")
        expect(tab.page.locator(".turn").nth(i).locator(".msg-bot")).to_have_attribute("data-state", "done")
        expect(tab.page.locator(".turn").nth(i).locator(".badge").first).to_be_visible()


def test_server_stopped_mid_session_shows_an_error_and_retry_works_once_it_is_back(open_tab, tmp_path):
    from playwright.sync_api import expect

    # This server is killed and started again, so it runs the fake encoder over the bundled article:
    # the widget's behaviour is the same and a start takes seconds instead of a model load.
    build_fake_index(tmp_path, DEFAULT_CORPUS_DIR)
    env = rag_env(tmp_path)
    env.update(RAG_RATE_LIMIT="", RAG_LOG_LEVEL="warning")
    server = LiveServer(env)
    server.start(tmp_path / "server.log", timeout=300)
    try:
        tab = open_tab(server.url + "/")
        ask(tab, QUESTION)
        expect(reply(tab, 0)).not_to_have_attribute("data-kind", "error")

        server.proc.kill()  # gone without a goodbye
        server.proc.wait(timeout=30)
        ask(tab, FOLLOW_UP)
        failed = reply(tab, 1)
        expect(failed).to_have_attribute("data-kind", "error")
        expect(failed).to_contain_text("Could not reach the answer service")
        retry = failed.get_by_role("button", name="Retry")
        expect(retry).to_be_visible()

        server.start(tmp_path / "server.log", timeout=300)  # same port
        retry.click()
        back = tab.page.locator(".turn").nth(1).locator(".msg-bot")
        expect(back).to_have_attribute("data-state", "done")
        expect(back).to_have_attribute("data-kind", "answer")
        expect(back.locator(".badge").first).to_be_visible()
        assert tab.asks[-1] == {"question": FOLLOW_UP, "history": [QUESTION]}
        expect(tab.page.locator(".turn")).to_have_count(2)  # the retry replaced the error in place
    finally:
        server.stop()


def test_with_keys_required_the_page_still_answers_and_renews_a_lapsed_page_token(open_tab, tmp_path):
    from playwright.sync_api import expect

    # Keys on: the page gets a signed page token from /widget-config.json (fake encoder, answering
    # every question, so a start takes seconds; what is tested is the page's access, not the answer).
    build_fake_index(tmp_path, DEFAULT_CORPUS_DIR)
    env = rag_env(tmp_path)
    env.update(RAG_API_KEYS="client-key-0123456789abcdef", RAG_ABSTAIN_THRESHOLD="-1", RAG_LOG_LEVEL="warning")
    server = LiveServer(env).start(tmp_path / "server.log", timeout=300)
    try:
        assert httpx.post(f"{server.url}/ask", json={"question": QUESTION}).status_code == 401  # no key, no answer
        tab = open_tab(server.url + "/")
        lapsed = {"left": 1}

        def lapse_once(route, request) -> None:
            # The first question finds its token lapsed, as after an hour in an open tab.
            if lapsed["left"]:
                lapsed["left"] -= 1
                route.fulfill(status=401, content_type="application/json", body=json.dumps({"detail": "the page token has expired; reload the page"}))
            else:
                route.continue_()

        tab.page.route("**/ask", lapse_once)
        ask(tab, QUESTION)
        answer = reply(tab, 0)
        expect(answer).to_have_attribute("data-kind", "answer")
        configs = tab.page.evaluate(f"performance.getEntriesByName('{server.url}/widget-config.json').length")
        assert lapsed["left"] == 0 and configs == 2  # the token was renewed once, then the question answered
        tab.page.unroute("**/ask")

        ask(tab, FOLLOW_UP)
        expect(reply(tab, 1)).to_have_attribute("data-kind", "answer")
        reply(tab, 1).locator(".badge").first.click()  # the passage viewer uses the token too
        viewer = tab.page.locator("dialog.viewer")
        expect(viewer).to_be_visible()
        expect(viewer.locator("mark.quote")).to_have_count(1)
        assert tab.csp_violations() == [] and tab.errors() == []
    finally:
        server.stop()


# ------------------------------------------------------------------------------ the embed snippet


def test_embed_snippet_works_on_an_allowed_site_without_touching_its_styles(open_tab, api_server, api_answers, sites):
    from playwright.sync_api import expect

    allowed, _ = sites
    style = "el => { const s = getComputedStyle(el); return [s.color, s.fontFamily, s.fontSize, s.letterSpacing, s.backgroundColor]; }"
    plain = open_tab(allowed.url + "/plain.html", widget=False)
    host_looks = [plain.page.locator(sel).evaluate(style) for sel in ("h1", "#host-button", "body")]

    tab = open_tab(allowed.url + "/embed.html")
    assert [tab.page.locator(sel).evaluate(style) for sel in ("h1", "#host-button", "body")] == host_looks
    launcher = tab.page.locator(".launcher")
    expect(launcher).to_be_visible()
    looks = launcher.evaluate(style)
    assert looks[4] != "rgb(255, 0, 0)" and looks[3] == "normal"  # the page's button and * rules stay outside
    expect(tab.page.locator(".panel")).to_be_hidden()
    launcher.click()
    expect(tab.page.locator(".panel")).to_be_visible()
    wait_for_focus(tab, "textarea")

    ask(tab, QUESTION)
    answer = reply(tab, 0)
    expect(answer).to_have_attribute("data-kind", "answer")
    expected = api_answers(QUESTION)["citations"][0]
    shot(tab, "embed-desktop")
    answer.locator(".answer-text .badge").first.click()
    viewer = tab.page.locator("dialog.viewer")
    assert viewer.locator("mark.quote").text_content() == expected["quote"]
    # On the encyclopedia's own pages the article's relative URL resolves against the page: a real link.
    assert viewer.locator("a.source-url").get_attribute("href") == urljoin(allowed.url + "/", expected["url"])
    tab.page.keyboard.press("Escape")
    wait_for_focus(tab, ".badge")
    tab.page.keyboard.press("Escape")  # a second Escape closes the panel and gives focus back to the launcher
    expect(tab.page.locator(".panel")).to_be_hidden()
    wait_for_focus(tab, ".launcher")
    assert tab.errors() == []

    narrow = open_tab(allowed.url + "/embed.html", NARROW)
    narrow.page.locator(".launcher").click()
    ask(narrow, QUESTION)
    reply(narrow, 0)
    box = narrow.page.locator(".panel").bounding_box()
    assert box["width"] == NARROW["width"]  # full screen on a phone
    shot(narrow, "embed-narrow")


def test_embed_snippet_on_a_site_that_is_not_allowed_says_so_instead_of_hanging(open_tab, api_server, sites):
    from playwright.sync_api import expect

    _, refused = sites
    tab = open_tab(refused.url + "/embed.html")
    tab.page.locator(".launcher").click()
    ask(tab, QUESTION)
    failed = reply(tab, 0)
    expect(failed).to_have_attribute("data-kind", "error")
    expect(failed).to_contain_text("does not accept questions from this site")
    expect(failed.get_by_role("button", name="Retry")).to_be_visible()
    assert any("CORS policy" in line for line in tab.console), tab.console  # the browser refused, not the widget


# ------------------------------------------------------------------------------ accessibility


def test_text_and_badges_meet_wcag_aa_contrast(open_tab, api_server):
    tab = open_tab(api_server.url + "/")
    ask(tab, QUESTION)
    reply(tab, 0)
    ask(tab, OFF_TOPIC)
    reply(tab, 1)
    tab.page.route("**/ask", lambda route: route.fulfill(status=503, content_type="application/json", body='{"detail": "busy"}'))
    ask(tab, FOLLOW_UP)
    reply(tab, 2)
    tab.page.unroute("**/ask")
    tab.page.locator(".turn").first.locator(".badge").first.click()
    tab.page.locator("dialog.viewer mark").wait_for()

    selectors = [
        ".lede", ".chip", ".try-title", ".site-foot p", ".brand span",  # the page
        ".head-title", ".head-sub", ".head-btn", ".hint", ".bubble", ".answer-text", ".badge", ".sources-title",
        ".source-section", ".source-article", ".num", ".abstained .notice-title", ".abstained .notice-text",
        ".sources-title .low", ".error .notice-text", ".retry", ".viewer-kicker", ".viewer-title", ".crumbs li",
        ".passage", "mark", ".url-text",
    ]
    failures = []
    for item in tab.page.evaluate(MEASURE_COLOURS, selectors):
        assert not item.get("missing"), f"{item['sel']} is not on the page"
        large = item["size"] >= 24 or (item["size"] >= 18.66 and item["weight"] >= 700)
        ratio = contrast(item["fg"], item["bg"])
        if ratio < (3.0 if large else 4.5):
            failures.append(f"{item['sel']}: {ratio:.2f}:1")
    assert failures == []
