"""A real ``rag serve`` (uvicorn, its own model load) on a free port: concurrent clients, streaming
over the wire, request ids in the server log, and refusal to start on a missing or damaged index."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import httpx
import pytest

from answer_checks import check_answer_dict, parse_sse
from conftest import RAG_BIN, run_rag, server_env, wait_until
from eval.live_server import free_port

pytestmark = [pytest.mark.model, pytest.mark.slow]

COLD_WAR = "The Cold War Era and the Emergence of Space Diplomacy"
POST_COLD_WAR = "Post-Cold War Evolution of Space Diplomacy"
LAW = "Space Diplomacy and International Law"
ECONOMY = "Geopolitical and Economic Dimensions of Space Diplomacy"
TURKIYE = "Türkiye's Space Diplomacy Strategies"
DEFINITION = "The Definition and Significance of Space Diplomacy"
FUTURE = "Future Prospects of Space Diplomacy"

#: Eight different questions, each with the section and words its answer must cite.
KNOWN_ANSWERS = [
    ("In which year was NASA set up?", COLD_WAR, "1958"),
    ("Which Soviet cosmonaut made the first human spaceflight?", COLD_WAR, "Yuri Gagarin"),
    ("Which agreement says the Moon cannot be claimed by any nation?", LAW, "1979 Moon Agreement"),
    ("How much is the space economy worth today?", ECONOMY, "$450 billion"),
    ("What does the Turkish Space Agency aim to establish?", TURKIYE, "National Space Program"),
    ("What are the four key pillars of space diplomacy?", DEFINITION, "Security Policies"),
    ("Which negotiations are expected to gain importance in the coming years?", FUTURE, "space tourism"),
    ("Which partners are involved in the International Space Station?", POST_COLD_WAR, "Canada"),
]


@pytest.fixture(scope="module")
def server(model_server):
    return model_server  # the session's real-model server (conftest)


def test_eight_concurrent_clients_get_their_own_correct_answers(server):
    barrier = threading.Barrier(len(KNOWN_ANSWERS))
    results: dict[int, httpx.Response | BaseException] = {}

    def client(i: int, question: str) -> None:
        try:
            with httpx.Client(base_url=server.url, timeout=120) as http:
                barrier.wait(timeout=60)  # all eight requests go out together
                results[i] = http.post("/ask", json={"question": question}, headers={"X-Request-ID": f"concurrent-{i}"})
        except BaseException as exc:  # reported below, with the question
            results[i] = exc

    threads = [threading.Thread(target=client, args=(i, q)) for i, (q, _, _) in enumerate(KNOWN_ANSWERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)

    for i, (question, section, phrase) in enumerate(KNOWN_ANSWERS):
        response = results.get(i)
        assert isinstance(response, httpx.Response), (question, response)
        assert response.status_code == 200, (question, response.text)
        assert response.headers["x-request-id"] == f"concurrent-{i}"
        body = response.json()
        check_answer_dict(body)
        assert body["question"] == question and not body["abstained"], body
        assert any(c["section"][-1] == section and phrase in c["quote"] for c in body["citations"]), (question, body["citations"])

    def logged(i: int) -> bool:
        return any(f"[concurrent-{i}]" in line and "POST /ask 200" in line for line in server.log().splitlines())

    # The access log line of each request carries its id. It is written once the response has been
    # sent, so the client can hold its answer a moment before the line reaches the log.
    for i in range(len(KNOWN_ANSWERS)):
        wait_until(lambda: logged(i), timeout=30, what=f"the access log line of request concurrent-{i}")
    assert "Traceback" not in server.log()


def test_streaming_over_the_wire_equals_the_json_answer(server):
    request = {"question": "And who took part in it?", "history": ["When was the International Space Station initiated?"]}
    with httpx.Client(base_url=server.url, timeout=120) as http:
        expected = http.post("/ask", json=request).json()
        with http.stream("POST", "/ask", json=request, headers={"Accept": "text/event-stream"}) as response:
            assert response.status_code == 200
            events = parse_sse(response.iter_lines())
    assert [e.event for e in events][0] == "passages" and events[-1].event == "done"
    sentences = [e.json() for e in events if e.event == "sentence"]
    assert " ".join(s["text"] for s in sentences) == expected["answer"]
    streamed = {c["n"]: c for s in sentences for c in s["citations"]}
    assert [streamed[n] for n in sorted(streamed)] == expected["citations"]
    done = events[-1].json()
    check_answer_dict(done)
    assert {k: v for k, v in done.items() if k != "timings_ms"} == {k: v for k, v in expected.items() if k != "timings_ms"}


def test_the_server_reports_ready_and_metrics(server, bundled_index_dir):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        ready = http.get("/ready").json()
        metrics = http.get("/metrics").text
    manifest = json.loads((bundled_index_dir / "manifest.json").read_text())
    assert ready["build_id"] == manifest["build_id"] and ready["chunks"] == manifest["counts"]["chunks"]
    assert f"rag_index_chunks {float(manifest['counts']['chunks'])}" in metrics
    assert 'rag_http_requests_total{method="GET",route="/ready",status="200"}' in metrics


# ------------------------------------------------------------------------------------ refusing to start


def assert_one_line_error(run, *needles: str) -> None:
    assert run.returncode != 0, run
    assert "Traceback" not in run.stderr + run.stdout
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def serve(tmp: Path, index_dir: Path):
    return run_rag(["serve", "--port", str(free_port()), "--index-dir", str(index_dir)], server_env(tmp, index_dir), cwd=tmp, timeout=120)


def test_serve_refuses_a_missing_index(tmp_path):
    assert RAG_BIN.exists()
    assert_one_line_error(serve(tmp_path, tmp_path / "no-index-here"), "no index at", "rag index")


@pytest.mark.parametrize("damage", ["manifest-not-json", "chunks-truncated", "file-missing"])
def test_serve_refuses_a_damaged_index(tmp_path, bundled_index_dir, damage):
    broken = tmp_path / "broken"
    shutil.copytree(bundled_index_dir.resolve(), broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    chunks = next(name for name in manifest["files"] if name.startswith("chunks"))
    if damage == "manifest-not-json":
        (broken / "manifest.json").write_text('{"format": "rag-index", ', encoding="utf-8")
        needles = ["manifest.json", "rebuild"]
    elif damage == "chunks-truncated":
        data = (broken / chunks).read_bytes()
        (broken / chunks).write_bytes(data[: len(data) // 2])
        needles = [chunks, "rebuild"]
    else:
        (broken / chunks).unlink()
        needles = [chunks, "missing"]
    assert_one_line_error(serve(tmp_path, broken), *needles)
