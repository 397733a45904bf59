"""The widget's HTTP side without a browser: assets, their headers, the config it reads, CORS, origin parsing.

The browser behaviour itself is tested in tests/e2e/ with a real Chromium.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.routes.widget import STATIC_DIR
from api.schemas import MAX_QUESTION_CHARS
from conftest import build_fake_index
from core.errors import ConfigError
from rag.origins import normalise_origin, parse_origins
from rag.settings import load_settings

ALLOWED = "http://encyclopedia.example.org"


@pytest.fixture(scope="module")
def index_root(tmp_path_factory, request) -> Path:
    from conftest import SMALL_CORPUS, write_files

    root = tmp_path_factory.mktemp("widget-http")
    build_fake_index(root, write_files(root / "corpus", SMALL_CORPUS))
    return root


def client(root: Path, **overrides) -> TestClient:
    settings = load_settings(encoder="hashing", index_dir=root / "index", cache_dir=root / "cache", rate_limit="", **overrides)
    return TestClient(create_app(settings))


@pytest.fixture(scope="module")
def app_client(index_root):
    with client(index_root, cors_origins=[ALLOWED]) as c:
        yield c


# ------------------------------------------------------------------------------ origins


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://Example.org/", "https://example.org"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("https://example.org:443", "https://example.org"),
        ("http://example.org:80", "http://example.org"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        (" * ", "*"),
    ],
)
def test_origins_are_normalised_as_browsers_send_them(raw, expected):
    assert normalise_origin(raw) == expected


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ("example.org", "not an origin"),
        ("ftp://example.org", "not an origin"),
        ("https://example.org/wiki/page", "more than an origin"),
        ("https://user@example.org", "more than an origin"),
        ("https://example.org:99999", "not an origin"),
    ],
)
def test_bad_origins_say_what_to_write_instead(raw, complaint):
    with pytest.raises(ValueError, match=complaint) as info:
        normalise_origin(raw)
    assert "scheme://host[:port]" in str(info.value)


def test_origin_lists_comma_separated_or_json():
    assert parse_origins("https://a.org, http://b.org:8080,,https://A.org/") == ["https://a.org", "http://b.org:8080"]
    assert parse_origins('["https://a.org", "http://localhost:5173"]') == ["https://a.org", "http://localhost:5173"]
    assert parse_origins("") == [] and parse_origins(None) == []
    with pytest.raises(ValueError, match="alone"):
        parse_origins("*, https://a.org")
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_origins('["https://a.org"')


def test_cors_setting_from_the_environment(monkeypatch):
    monkeypatch.setenv("RAG_CORS_ORIGINS", "https://a.org,https://b.org/")
    assert load_settings().cors_origins == ["https://a.org", "https://b.org"]
    monkeypatch.setenv("RAG_CORS_ORIGINS", '["http://localhost:3000"]')
    assert load_settings().cors_origins == ["http://localhost:3000"]
    monkeypatch.delenv("RAG_CORS_ORIGINS")
    assert load_settings().cors_origins == []  # default: same origin only
    monkeypatch.setenv("RAG_CORS_ORIGINS", "https://a.org/some/page")
    with pytest.raises(ConfigError, match=r"RAG_CORS_ORIGINS.*more than an origin"):
        load_settings()


# ------------------------------------------------------------------------------ assets


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.script_text = ""

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        if self.tags and self.tags[-1][0] == "script":
            self.script_text += data.strip()


def test_page_is_served_and_fits_a_strict_content_security_policy(app_client):
    response = app_client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"
    page = _Tags()
    page.feed(response.text)
    # script-src 'self' / style-src 'self': no inline scripts, <style> blocks or style attributes.
    assert page.script_text == ""
    assert not [tag for tag, _ in page.tags if tag == "style"]
    assert not [tag for tag, attrs in page.tags if "style" in attrs]
    assert not [attrs for _, attrs in page.tags if any(name.startswith("on") for name in attrs)]
    scripts = [attrs for tag, attrs in page.tags if tag == "script"]
    assert scripts == [{"src": "/widget.js", "data-mount": "#chat", "data-title": "Ask about space diplomacy", "defer": None}]
    # Nothing from elsewhere: every linked resource is on this server.
    for tag, attrs in page.tags:
        for name in ("src", "href"):
            if name in attrs and tag != "a":
                assert attrs[name].startswith("/"), f"<{tag} {name}={attrs[name]}> is not served by the API"
    chips = [attrs["data-rag-ask"] for _, attrs in page.tags if "data-rag-ask" in attrs]
    assert len(chips) >= 3


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/widget.js", "text/javascript"),
        ("/widget.css", "text/css"),
        ("/page.css", "text/css"),
        ("/favicon.svg", "image/svg+xml"),
    ],
)
def test_assets_have_their_types_and_revalidate_by_etag(app_client, path, media_type):
    response = app_client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.headers["x-content-type-options"] == "nosniff"
    etag = response.headers["etag"]
    again = app_client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    assert app_client.get(path, headers={"If-None-Match": '"stale"'}).status_code == 200
    assert app_client.head(path).status_code == 200


def test_assets_fetch_nothing_from_elsewhere():
    for name in ("widget.css", "page.css"):
        css = (STATIC_DIR / name).read_text()
        assert "@import" not in css and "url(" not in css, name
    js = (STATIC_DIR / "widget.js").read_text()
    code = re.sub(r"/\*.*?\*/", "", js, flags=re.S)  # the header comment shows the embed snippet
    urls = set(re.findall(r"https?://[^\s\"')]+", code))
    assert urls == {"http://www.w3.org/2000/svg"}  # the SVG namespace name, never fetched
    assert "innerHTML" not in code  # text from the API is only ever set as text


def test_widget_config_carries_the_api_limit(app_client):
    response = app_client.get("/widget-config.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache"
    config = response.json()
    assert config["max_question_chars"] == MAX_QUESTION_CHARS
    assert 0 < config["max_history"] <= 20
    # The limit the widget is given is the one /ask enforces.
    over = "x" * (config["max_question_chars"] + 1)
    refused = app_client.post("/ask", json={"question": over})
    assert refused.status_code == 422 and str(MAX_QUESTION_CHARS) in refused.json()["detail"]


def test_widget_routes_stay_out_of_the_api_schema(app_client):
    paths = app_client.get("/openapi.json").json()["paths"]
    assert "/widget-config.json" in paths
    assert not {"/", "/widget.js", "/widget.css"} & set(paths)


# ------------------------------------------------------------------------------ CORS


def _preflight(c: TestClient, origin: str, headers: str = "content-type"):
    return c.options(
        "/ask", headers={"Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": headers}
    )


def test_an_allowed_origin_may_post_questions(app_client):
    pre = _preflight(app_client, ALLOWED, "content-type,x-api-key")
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert "x-api-key" in pre.headers["access-control-allow-headers"].lower()
    response = app_client.post("/ask", json={"question": "What do aardvarks eat?"}, headers={"Origin": ALLOWED})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


def test_other_origins_are_refused(app_client):
    pre = _preflight(app_client, "http://elsewhere.example")
    assert pre.status_code == 400
    assert "access-control-allow-origin" not in pre.headers
    simple = app_client.get("/widget-config.json", headers={"Origin": "http://elsewhere.example"})
    assert "access-control-allow-origin" not in simple.headers  # the browser withholds the body


def test_refusals_from_inner_layers_still_carry_cors_headers(app_client):
    # A 4xx the widget must be able to read and show (here: validation) is readable cross-origin.
    response = app_client.post("/ask", json={"question": ""}, headers={"Origin": ALLOWED})
    assert response.status_code == 422
    assert response.headers["access-control-allow-origin"] == ALLOWED


def test_same_origin_only_by_default(index_root):
    with client(index_root) as c:
        assert _preflight(c, ALLOWED).status_code == 400
        response = c.get("/widget-config.json", headers={"Origin": ALLOWED})
        assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


# ------------------------------------------------------------------------------ the page with keys required

CLIENT_KEY = "client-key-0123456789abcdef"
OWN_PAGE = {"Sec-Fetch-Site": "same-origin"}  # what a browser sends from the service's own page


def _page_token(c: TestClient) -> str:
    config = c.get("/widget-config.json", headers=OWN_PAGE)
    assert config.status_code == 200 and config.headers["cache-control"] == "no-store"
    assert config.json()["key_required"] is True
    return config.json()["page_token"]


def test_with_keys_the_own_page_gets_a_token_that_opens_the_question_endpoints(index_root):
    with client(index_root, api_keys=[CLIENT_KEY]) as c:
        question = {"question": "What do aardvarks eat?"}
        assert c.post("/ask", json=question).status_code == 401  # what the page got before: every question refused
        token = _page_token(c)
        bearer = {"Authorization": f"Bearer {token}"}
        answer = c.post("/ask", json=question, headers=bearer)
        assert answer.status_code == 200 and answer.json()["passages"], answer.text
        streamed = c.post("/ask", json=question, headers={**bearer, "Accept": "text/event-stream"})
        assert streamed.status_code == 200 and "event: done" in streamed.text
        passage = answer.json()["passages"][0]["passage_id"]
        assert c.get(f"/passages/{passage}", headers=bearer).status_code == 200
        assert c.get("/search", params={"q": "termites"}, headers=bearer).status_code == 200
        # what the page cannot do
        refused = c.get("/metrics", headers=bearer)
        assert refused.status_code == 403 and "/metrics needs a client key" in refused.json()["detail"]
        assert c.post("/admin/reload", headers=bearer).status_code in (401, 403)
        assert c.get("/metrics", headers={"X-API-Key": CLIENT_KEY}).status_code == 200


def test_page_tokens_go_to_the_own_page_only_and_cannot_be_forged_or_kept(index_root):
    with client(index_root, api_keys=[CLIENT_KEY]) as c:
        for headers in ({}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}):
            config = c.get("/widget-config.json", headers=headers).json()
            assert config["key_required"] is True and config["page_token"] is None, headers
        token = _page_token(c)
        prefix, expires, mac = token.split(".")
        forged = f"{prefix}.{int(expires) + 10**6}.{mac}"  # a later expiry with the old signature
        for bad in (forged, token[:-1] + ("0" if token[-1] != "0" else "1"), "page.123.abc"):
            response = c.post("/ask", json={"question": "aardvarks?"}, headers={"Authorization": f"Bearer {bad}"})
            assert response.status_code == 401 and response.json()["detail"] == "the API key is not valid", bad
        state = c.app.state.ctx
        lapsed = state.page_tokens.issue(now=0)  # signed properly, expired long ago
        response = c.post("/ask", json={"question": "aardvarks?"}, headers={"Authorization": f"Bearer {lapsed}"})
        assert response.status_code == 401 and "expired; reload the page" in response.json()["detail"]
    with client(index_root, api_keys=["another-key-0123456789abcdef"]) as other:  # other keys: old tokens die
        response = other.post("/ask", json={"question": "aardvarks?"}, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401


def test_page_visitors_have_their_own_rate_limit_and_page_access_can_be_turned_off(index_root):
    with client(index_root, api_keys=[CLIENT_KEY], page_rate_limit="2/minute") as c:
        bearer = {"Authorization": f"Bearer {_page_token(c)}"}
        statuses = [c.get("/search", params={"q": "termites"}, headers=bearer).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        assert c.get("/search", params={"q": "termites"}, headers={"X-API-Key": CLIENT_KEY}).status_code == 200
    with client(index_root, api_keys=[CLIENT_KEY], page_access=False) as c:
        assert c.get("/widget-config.json", headers=OWN_PAGE).json()["page_token"] is None
    with client(index_root) as c:  # without keys there is nothing to hand out
        assert c.get("/widget-config.json", headers=OWN_PAGE).json() | {"version": ""} == {
            "max_question_chars": MAX_QUESTION_CHARS, "max_history": 5, "version": "", "key_required": False, "page_token": None,
            "source_base_url": "",
        }
