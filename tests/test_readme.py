"""A newcomer following README.md and the docs: ``make run`` (index built, then served), the port
answering "starting" while the model loads, every curl example of the README and of docs/*.md against
that live server, the README's ``rag ask`` example with the output it shows, and the HTTP page's
sample answer compared with what the service returns for the same request."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import shell_lines, stop_process_group
from eval.live_server import free_port

pytestmark = [pytest.mark.model, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
DOCS = [README, *(p.read_text(encoding="utf-8") for p in sorted((REPO / "docs").glob("*.md")))]
HTTP_PAGE = (REPO / "docs" / "http-api.md").read_text(encoding="utf-8")
DOCUMENTED_URL = "http://127.0.0.1:8000"


def curl_examples(text: str) -> list[str]:
    """Every curl command of a page's shell blocks."""
    # uploads name the reader's own files and an admin key: tests/test_document_upload.py runs them
    return [line for line in shell_lines(text) if line.startswith("curl ") and "-F files=@" not in line]


def sample_response() -> tuple[dict, dict]:
    """The HTTP page's POST /ask example: the request its curl command sends, and the response it shows."""
    section = HTTP_PAGE[HTTP_PAGE.index("## `POST /ask`") :]
    request = json.loads(re.search(r"-d '(\{.*?\})'", section).group(1))
    body = re.search(r"```json\n(.*?)```", section, flags=re.S).group(1)
    return request, json.loads(body)


@pytest.fixture(scope="module")
def make_run(tmp_path_factory, bundled_index):
    """``make run`` as the quickstart says, on a free port, with the index and cache in a temporary folder.

    The cache is primed with the bundled article's vectors so the build it runs takes seconds, not the
    first embedding of the article; the build, the start and the model load are the real ones.
    """
    tmp = tmp_path_factory.mktemp("make-run")
    (tmp / "cache").mkdir()
    shutil.copy(bundled_index.cache_path, tmp / "cache" / "embeddings.sqlite")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(RAG_INDEX_DIR=str(tmp / "index"), RAG_CACHE_DIR=str(tmp / "cache"), RAG_RATE_LIMIT="")
    venv = Path(sys.executable).parent.parent  # the environment running the tests is the one make run uses
    log_path = tmp / "make-run.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["make", "-C", str(REPO), "run", f"PORT={port}", f"VENV={venv}"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    seen: list[tuple[int, str, str]] = []  # (status, detail, Retry-After) of each /ready answer until 200
    ready: set[int] = set()  # workers (pids) that answered /ready with 200
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text(errors="replace")
            try:
                response = httpx.get(f"{url}/ready", timeout=5)
            except httpx.HTTPError:  # building the index: the server has not started yet
                time.sleep(0.05)
                continue
            detail = response.json().get("detail", "") if response.status_code != 200 else ""
            if not ready:
                seen.append((response.status_code, detail, response.headers.get("retry-after", "")))
            if response.status_code == 200:
                ready.add(response.json()["pid"])
                # `make run` starts one worker per core: the examples below may reach any of them
                found = re.search(r"\(workers: (\d+)", log_path.read_text(errors="replace"))
                if found and len(ready) >= int(found.group(1)):
                    break
            time.sleep(0.05)
        assert seen and seen[-1][0] == 200, log_path.read_text(errors="replace")
        yield url, seen, log_path, env
    finally:
        stop_process_group(proc)


def test_make_run_answers_starting_while_the_model_loads_then_ready(make_run):
    url, seen, log_path, _ = make_run
    starting = [s for s in seen if s[0] == 503]
    assert starting, f"the port only opened once loaded: {seen}"
    status, detail, retry_after = starting[0]
    assert detail.startswith("the service is starting: the model and the index are not loaded yet"), detail
    assert retry_after.isdigit()
    assert [s[0] for s in seen] == [503] * len(starting) + [200]
    log = log_path.read_text(errors="replace")
    assert "building the index of" in log and "serving on http://127.0.0.1:" in log  # the quickstart's promise


def test_every_curl_example_of_the_readme_and_the_docs_works_against_the_live_server(make_run):
    url, _, _, _ = make_run
    commands = [command for text in DOCS for command in curl_examples(text)]
    assert len(commands) >= 8, commands
    for command in commands:
        live = command.replace(DOCUMENTED_URL, url)
        assert live != command, f"an example not on {DOCUMENTED_URL}: {command}"
        run = subprocess.run(
            shlex.split(live) + ["--max-time", "60", "--write-out", "\nHTTP %{http_code}"],
            capture_output=True, text=True, timeout=90,
        )
        assert run.returncode == 0, (command, run.stderr)
        body, _, status = run.stdout.rpartition("\n")
        assert status == "HTTP 200", (command, run.stdout[-500:])
        if "event-stream" in command:
            assert "event: done" in body, command
        elif "/metrics" in command:
            assert "rag_" in body or "http_" in body, command
        else:
            assert "detail" not in json.loads(body), (command, body[:300])


def _matches(shown, real, path: str = "$") -> list[str]:
    """Where the README's sample differs from a real response: keys, types, values (numbers to the
    precision shown; ``...`` stands for the rest of a string; timings vary, so only their names count)."""
    if isinstance(shown, dict):
        if not isinstance(real, dict) or set(shown) != set(real):
            return [f"{path}: keys {sorted(shown)} != {sorted(real) if isinstance(real, dict) else real!r}"]
        if path.endswith("timings_ms"):
            return []
        return [d for key in shown for d in _matches(shown[key], real[key], f"{path}.{key}")]
    if isinstance(shown, list):
        if not isinstance(real, list) or (len(shown) != len(real) and not path.endswith("passages")):
            return [f"{path}: {len(shown)} items shown, {len(real) if isinstance(real, list) else real!r} returned"]
        differences = []
        for i, (a, b) in enumerate(zip(shown, real)):
            differences += _matches(a, b, f"{path}[{i}]")
        return differences
    if isinstance(shown, bool) or isinstance(shown, str) or shown is None:
        if isinstance(shown, str) and shown.endswith(" ...") and isinstance(real, str):
            return [] if real.startswith(shown[:-4]) else [f"{path}: {shown!r} is not how {real!r} starts"]
        return [] if shown == real else [f"{path}: {shown!r} != {real!r}"]
    if isinstance(shown, (int, float)) and isinstance(real, (int, float)) and not isinstance(real, bool):
        decimals = len(repr(float(shown)).split(".")[1]) if isinstance(shown, float) else 0
        return [] if abs(shown - real) <= 10 ** -decimals else [f"{path}: {shown} != {real}"]
    return [f"{path}: {shown!r} != {real!r}"]


def test_the_readme_sample_answer_is_what_the_service_returns(make_run):
    url, _, _, _ = make_run
    request, shown = sample_response()
    real = httpx.post(f"{url}/ask", json=request, timeout=60).json()
    differences = _matches(shown, real)
    assert not differences, (
        "docs/http-api.md's sample response differs from the service's:\n" + "\n".join(differences)
        + "\nThe service returns:\n" + json.dumps(real, ensure_ascii=False, indent=1)[:6000]
    )


def test_the_readme_rag_ask_example_prints_what_the_readme_shows(make_run):
    """The README's command, run where `make run` built its index, prints the answer and citation shown."""
    _, _, _, env = make_run
    command = next(line for line in shell_lines(README) if line.startswith("rag ask "))
    shown = re.search(r"```text\n(.*?)```", README[README.index(command) :], flags=re.S).group(1)
    venv = Path(sys.executable).parent
    run = subprocess.run([str(venv / "rag"), *shlex.split(command)[1:]], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert " ".join(run.stdout.split()) == " ".join(shown.split()), run.stdout
