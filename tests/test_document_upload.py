"""Adding documents while serving (POST /admin/documents, rag add) and listing them (GET /documents, rag documents).

The fake encoder on a small corpus: what is under test is the all-or-nothing handling of files,
the corpus folder and the index, not the model.
"""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import threading
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from conftest import SMALL_CORPUS, build_fake_index, rag_env, write_files
from eval.live_server import LiveServer
from rag.settings import load_settings
from test_documents import BILINGUAL_MD, FIXTURES

ADMIN_KEY = "admin-key-0123456789abcdef"
CLIENT_KEY = "client-key-0123456789abcdef"
AUTH = {"X-API-Key": ADMIN_KEY}
PDF = FIXTURES / "liability-notes.pdf"


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    write_files(root, SMALL_CORPUS)
    build_fake_index(tmp_path, root)
    return root


def client_for(tmp: Path, corpus: Path, **overrides) -> TestClient:
    settings = load_settings(
        encoder="hashing", index_dir=tmp / "index", cache_dir=tmp / "cache", corpus_dir=corpus, rate_limit="", **overrides
    )
    return TestClient(create_app(settings))


def upload(client: TestClient, *files: tuple[str, bytes], headers=AUTH):
    return client.post("/admin/documents", files=[("files", (name, data)) for name, data in files], headers=headers)


def test_upload_indexes_the_file_and_serves_it_with_pages(tmp_path, corpus_dir):
    with client_for(tmp_path, corpus_dir, admin_keys=[ADMIN_KEY]) as client:
        before = client.get("/documents").json()
        assert "Liability for Damage Caused by Space Objects" not in [d["title"] for d in before["documents"]]
        response = upload(client, ("liability-notes.pdf", PDF.read_bytes()))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["added"] == [
            {"file": "liability-notes.pdf", "slug": "liability-notes", "title": "Liability for Damage Caused by Space Objects",
             "format": "pdf", "replaced": False}
        ]
        assert body["build_id"] != before["build_id"]
        assert client.get("/ready").json()["build_id"] == body["build_id"]
        assert (corpus_dir / "liability-notes.pdf").read_bytes() == PDF.read_bytes()

        listed = {d["slug"]: d for d in client.get("/documents").json()["documents"]}
        pdf = listed["liability-notes"]
        assert pdf["format"] == "pdf" and pdf["pages"] == 2 and pdf["sections"] == 5 and pdf["chunks"] >= 5
        assert pdf["languages"] == ["en"] and pdf["indexed_at"] and pdf["source"] == "liability-notes.pdf"

        hits = client.get("/search", params={"q": "Cosmos 954 Canada debris", "mode": "bm25", "k": 1}).json()["results"]
        assert hits[0]["article"] == "liability-notes" and hits[0]["page"] == 1
        detail = client.get(f"/passages/{hits[0]['passage_id']}").json()
        assert detail["page"] == 1 and detail["article"]["format"] == "pdf" and detail["article"]["page_count"] == 2

        # the same name again replaces the file; unchanged documents keep when they were indexed
        again = upload(client, ("liability-notes.pdf", PDF.read_bytes()))
        assert again.status_code == 200 and again.json()["added"][0]["replaced"] is True
        relisted = {d["slug"]: d for d in client.get("/documents").json()["documents"]}
        assert relisted["liability-notes"]["indexed_at"] == pdf["indexed_at"]


def _unchanged(client: TestClient, corpus_dir: Path, build_id: str, files: set[str]) -> None:
    assert client.get("/ready").json()["build_id"] == build_id
    assert {p.name for p in corpus_dir.rglob("*") if p.is_file()} == files


@pytest.mark.parametrize(
    "name, data, status, detail",
    [
        ("broken.pdf", PDF.read_bytes()[:500], 422, "broken.pdf: not a readable PDF"),
        ("fake.pdf", b"<html><body>hello</body></html>", 415, "fake.pdf: the content is not a .pdf file"),
        ("setup.exe", b"MZ\x90\x00binary", 415, "setup.exe: unsupported file type; use one of .md"),
        (".hidden.md", b"# Hidden\n\nText.\n", 422, ".hidden.md: unusable file name"),
        ("empty.md", b"   \n", 422, "empty.md: file is empty"),
        ("latin1.txt", "Caf\u00e9 cr\u00e8me".encode("latin-1"), 422, "latin1.txt: not valid UTF-8"),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_and_changes_nothing(tmp_path, corpus_dir, name, data, status, detail):
    with client_for(tmp_path, corpus_dir, admin_keys=[ADMIN_KEY]) as client:
        build_id = client.get("/ready").json()["build_id"]
        files = {p.name for p in corpus_dir.rglob("*") if p.is_file()}
        response = upload(client, ("good.md", b"# Good\n\nA good file.\n"), (name, data))
        assert response.status_code == status, response.text
        assert detail in response.json()["detail"]
        assert str(tmp_path) not in response.json()["detail"]
        _unchanged(client, corpus_dir, build_id, files)  # the good file of the same upload is not added either


def test_oversized_upload_is_refused_before_it_is_read(tmp_path, corpus_dir):
    with client_for(tmp_path, corpus_dir, admin_keys=[ADMIN_KEY], max_upload_bytes=4096) as client:
        build_id = client.get("/ready").json()["build_id"]
        files = {p.name for p in corpus_dir.rglob("*") if p.is_file()}
        response = upload(client, ("liability-notes.pdf", PDF.read_bytes()))
        assert response.status_code == 413
        assert response.json()["detail"] == "the request body is larger than 4096 bytes"
        _unchanged(client, corpus_dir, build_id, files)
        # other routes keep their own (smaller) limit
        assert client.post("/ask", content=b"x" * 70_000, headers={"content-type": "application/json"}).status_code == 413


def test_upload_needs_an_admin_key(tmp_path, corpus_dir):
    with client_for(tmp_path, corpus_dir, admin_keys=[ADMIN_KEY], api_keys=[CLIENT_KEY]) as client:
        assert upload(client, ("a.md", b"# A\n\nText.\n"), headers={}).status_code == 401
        as_client = upload(client, ("a.md", b"# A\n\nText.\n"), headers={"X-API-Key": CLIENT_KEY})
        assert as_client.status_code == 403 and as_client.json()["detail"] == "this key is not an admin key"
        assert not (corpus_dir / "a.md").exists()
        # listing documents is a client endpoint
        assert client.get("/documents").status_code == 401
        assert client.get("/documents", headers={"X-API-Key": CLIENT_KEY}).status_code == 200
    with client_for(tmp_path, corpus_dir) as client:  # no admin keys configured: disabled
        assert upload(client, ("a.md", b"# A\n\nText.\n")).status_code == 403


def test_a_failed_build_restores_the_corpus_folder(tmp_path, corpus_dir):
    """A file that parses but clashes with an existing document's slug fails the build; nothing is left behind."""
    with client_for(tmp_path, corpus_dir, admin_keys=[ADMIN_KEY]) as client:
        build_id = client.get("/ready").json()["build_id"]
        files = {p.name for p in corpus_dir.rglob("*") if p.is_file()}
        existing = next(p for p in corpus_dir.rglob("*.md"))
        slug_clash = f"---\ntitle: Other\nslug: {existing.stem}\n---\n\nOther text.\n".encode()
        response = upload(client, ("other-name.md", slug_clash))
        assert response.status_code == 422, response.text
        assert "already used by" in response.json()["detail"]
        _unchanged(client, corpus_dir, build_id, files)


def test_language_filter_keeps_one_language(tmp_path):
    root = tmp_path / "corpus"
    write_files(root, {"moon.md": BILINGUAL_MD})
    build_fake_index(tmp_path, root)
    with client_for(tmp_path, root) as client:
        both = client.get("/search", params={"q": "Moon Lune", "mode": "bm25", "k": 10}).json()["results"]
        assert {r["language"] for r in both} == {"en", "fr"}
        french = client.get("/search", params={"q": "Moon Lune", "mode": "bm25", "k": 10, "language": "fr"}).json()["results"]
        assert french and {r["language"] for r in french} == {"fr"}
        by_name = client.post("/ask", json={"question": "common heritage of mankind", "filters": {"language": "English"}})
        assert by_name.status_code == 200
        assert {p["language"] for p in by_name.json()["passages"]} == {"en"}


def test_upload_while_serving_fails_no_request_and_reaches_every_worker(tmp_path, corpus_dir):
    """Two workers: the upload's response comes once both serve the new build, so every question after it is
    answered from the new document, whichever worker takes it."""
    env = rag_env(tmp_path, RAG_CORPUS_DIR=corpus_dir, RAG_ADMIN_KEYS=ADMIN_KEY, RAG_RATE_LIMIT="")
    server = LiveServer(env, args=["--workers", "2"]).start(tmp_path / "server.log")
    stop = threading.Event()
    failures: list[str] = []
    ok = {"n": 0}

    def hammer(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while not stop.is_set():
                if worker % 2:
                    response = http.post("/ask", json={"question": "What do aardvarks eat?", "top_k": 3})
                else:
                    response = http.get("/search", params={"q": "liability damage", "k": 5})
                if response.status_code == 200:
                    ok["n"] += 1
                else:
                    failures.append(f"{response.status_code} {response.text[:200]}")

    try:
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(hammer, i) for i in range(6)]
            files = {"files": ("liability-notes.pdf", PDF.read_bytes(), "application/pdf")}
            response = httpx.post(f"{server.url}/admin/documents", files=files, headers=AUTH, timeout=120)
            assert response.status_code == 200, response.text
            refused = httpx.post(
                f"{server.url}/admin/documents", files={"files": ("broken.pdf", b"%PDF-1.7 garbage")}, headers=AUTH, timeout=60
            )
            assert refused.status_code == 422
            stop.set()
            for future in futures:
                future.result()
        new_build = response.json()["build_id"]
        assert response.json()["pending"] == [] and [w["build_id"] for w in response.json()["workers"]] == [new_build] * 2
        # Right after the response, on fresh connections (either worker): every answer comes from the new document.
        with httpx.Client(base_url=server.url, limits=httpx.Limits(max_keepalive_connections=0), timeout=60) as fresh:
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(lambda _: fresh.post("/ask", json={"question": "Who paid for the Cosmos 954 debris in Canada?"}), range(50)))
        not_from_it = [
            f"{a.status_code} {a.headers.get('x-build-id')} {a.text[:160]}"
            for a in answers
            if a.status_code != 200 or a.headers.get("x-build-id") != new_build or a.json()["abstained"]
            or {c["title"] for c in a.json()["citations"]} != {"Liability for Damage Caused by Space Objects"}
        ]
        assert not_from_it == []
        listed = httpx.get(f"{server.url}/documents").json()
        assert new_build == listed["build_id"]
        assert "liability-notes" in {d["slug"] for d in listed["documents"]}
    finally:
        stop.set()
        server.stop()
    assert failures == []
    assert ok["n"] > 10


# ------------------------------------------------------------------------------------ the CLI


def test_rag_add_and_rag_documents(tmp_path, corpus_dir, rag_cli):
    shutil.copy(FIXTURES / "rescue-agreement.docx", tmp_path / "rescue-agreement.docx")
    added = rag_cli(["add", str(tmp_path / "rescue-agreement.docx"), "--corpus", str(corpus_dir)])
    assert added.returncode == 0, added.stderr
    assert "added rescue-agreement.docx: Rescue Agreement Briefing (docx)" in added.stdout
    assert (corpus_dir / "rescue-agreement.docx").exists()
    listed = rag_cli(["documents", "--json"])
    assert listed.returncode == 0, listed.stderr
    docs = {d["slug"]: d for d in json.loads(listed.stdout)}
    assert docs["rescue-agreement"]["format"] == "docx" and docs["rescue-agreement"]["sections"] == 4
    text = rag_cli(["documents"])
    assert "Rescue Agreement Briefing  [docx, 4 sections" in text.stdout

    # a corrupt file: one line naming it, non-zero exit, corpus and index as they were
    build = (tmp_path / "index").resolve()
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4\n" + b"\x00" * 50)
    refused = rag_cli(["add", str(tmp_path / "bad.pdf"), "--corpus", str(corpus_dir)])
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: bad.pdf: not a readable PDF") and refused.stderr.count("\n") == 1
    assert not (corpus_dir / "bad.pdf").exists() and (tmp_path / "index").resolve() == build
