"""``rag serve --build-if-missing`` (what ``make run`` runs) without a corpus named: it serves the folder
the existing index was built from, and builds the bundled article only when there is no index yet."""

from __future__ import annotations

import httpx

from conftest import SMALL_CORPUS, rag_env, run_rag, write_files
from eval.live_server import LiveServer


def _served_titles(env: dict, tmp) -> tuple[set[str], str]:
    server = LiveServer(env, args=["--build-if-missing"]).start(tmp / "server.log", timeout=120)
    try:
        titles = {d["title"] for d in httpx.get(f"{server.url}/documents", timeout=10).json()["documents"]}
        return titles, server.log()
    finally:
        server.stop()


def test_make_run_keeps_serving_the_folder_the_index_was_built_from(tmp_path):
    corpus = write_files(tmp_path / "my-folder", SMALL_CORPUS)
    env = rag_env(tmp_path)
    built = run_rag(["index", "--corpus", str(corpus)], env, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    titles, log = _served_titles(env, tmp_path)
    assert "Space Diplomacy" not in titles and len(titles) == len(SMALL_CORPUS), titles  # not rebuilt from the bundled article
    assert f"the index was built from {corpus}" in log and "building the index" not in log


def test_with_no_index_the_bundled_article_is_built_and_served(tmp_path):
    titles, log = _served_titles(rag_env(tmp_path), tmp_path)
    assert titles == {"Space Diplomacy"} and "building the index of" in log
