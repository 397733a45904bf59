"""``rag mcp`` driven by the official ``mcp`` client over stdio, as an agent would: list the tools,
ask a question and get cited structured content, search, read a passage resource, and get tool
errors (not crashes) for bad input. One test does the same over streamable HTTP."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from conftest import RAG_BIN, build_fake_index, rag_env
from corpus import DEFAULT_CORPUS_DIR
from eval.live_server import free_port

QUESTION = "Which agreement says the Moon cannot be claimed by any nation?"


def run_session(env: dict[str, str], steps):
    """Start ``rag mcp`` over stdio with ``env``, initialise a client session and run ``steps(session)``."""

    async def main():
        params = StdioServerParameters(command=str(RAG_BIN), args=["mcp"], env=env)
        with open(os.devnull, "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    return await steps(session)

    return anyio.run(main)


@pytest.fixture(scope="module")
def real_env(bundled_index_dir, onnx_cache) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(RAG_INDEX_DIR=str(bundled_index_dir), RAG_CACHE_DIR=str(onnx_cache), HF_HUB_OFFLINE="1")
    return env


async def agent_steps(session: ClientSession):
    """What an agent does: list the tools, ask, read the cited passage, search."""
    tools = {t.name: t for t in (await session.list_tools()).tools}
    answer = await session.call_tool("ask", {"question": QUESTION, "top_k": 3})
    passage_id = answer.structured_content["citations"][0]["passage_id"]
    passage = await session.read_resource(f"passage://{passage_id}")
    found = await session.call_tool("search", {"query": "Outer Space Treaty", "k": 2})
    templates = (await session.list_resource_templates()).resource_templates
    return tools, answer, passage, found, templates


async def bad_input_steps(session: ClientSession):
    """Bad input, then an off-topic question, then a missing passage: errors, not a dead server."""
    empty = await session.call_tool("ask", {"question": "   "})
    too_many = await session.call_tool("search", {"query": "Moon", "k": 500})
    off_topic = await session.call_tool("ask", {"question": "Who won the 2018 World Cup?"})
    try:
        await session.read_resource("passage://no-such-passage")
        missing = None
    except Exception as exc:  # the SDK raises the server's protocol error
        missing = str(exc)
    return empty, too_many, off_topic, missing


@pytest.fixture(scope="module")
def real_session(real_env):
    """One ``rag mcp`` over stdio with the real model for both scenarios (one model load, not two):
    the bad input comes first, so the agent's scenario also shows the server kept serving after it."""

    async def steps(session: ClientSession):
        bad = await bad_input_steps(session)
        return bad, await agent_steps(session)

    return run_session(real_env, steps)


@pytest.mark.model
@pytest.mark.slow
def test_an_agent_lists_the_tools_asks_and_reads_the_cited_passage(real_session):
    tools, answer, passage, found, templates = real_session[1]
    assert set(tools) == {"ask", "search"}
    assert tools["ask"].input_schema["required"] == ["question"]
    assert tools["ask"].input_schema["properties"]["top_k"]["maximum"] == 50
    assert tools["ask"].output_schema is not None and "citations" in tools["ask"].output_schema["properties"]
    assert [t.uri_template for t in templates] == ["passage://{passage_id}"]

    body = answer.structured_content
    assert not answer.is_error and not body["abstained"]
    assert "1979 Moon Agreement" in body["answer"] and len(body["passages"]) == 3
    citation = body["citations"][0]
    assert body["answer"] in answer.content[0].text and citation["quote"] in answer.content[0].text

    detail = json.loads(passage.contents[0].text)
    assert passage.contents[0].mime_type == "application/json"
    assert detail["passage_id"] == citation["passage_id"]
    assert detail["text"][citation["start"] : citation["end"]] == citation["quote"]  # the quote checks out

    assert not found.is_error and [r["rank"] for r in found.structured_content["results"]] == [1, 2]


@pytest.mark.model
@pytest.mark.slow
def test_bad_input_is_a_tool_error_and_the_server_keeps_serving(real_session):
    empty, too_many, off_topic, missing = real_session[0]
    assert empty.is_error and "empty" in empty.content[0].text
    assert too_many.is_error and "50" in too_many.content[0].text
    assert not off_topic.is_error and off_topic.structured_content["abstained"] and not off_topic.structured_content["citations"]
    assert missing and "no passage" in missing
    # ... and it kept serving: the agent's scenario ran after this in the same session
    assert not real_session[1][1].is_error


def test_mcp_refuses_to_start_without_an_index_in_one_line(tmp_path):
    run = subprocess.run([str(RAG_BIN), "mcp"], env=rag_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.startswith("error: no index at") and run.stderr.count("\n") == 1


@pytest.mark.slow
def test_streamable_http_serves_the_same_tools(tmp_path):
    from mcp.client.streamable_http import streamable_http_client

    build_fake_index(tmp_path, DEFAULT_CORPUS_DIR)
    port = free_port()
    log = (tmp_path / "mcp.log").open("w")
    proc = subprocess.Popen([str(RAG_BIN), "mcp", "--http", "--port", str(port)], env=rag_env(tmp_path), stdout=log, stderr=subprocess.STDOUT)

    async def main():
        with anyio.fail_after(60):
            while True:  # bounded: wait for the port to accept connections
                try:
                    await (await anyio.connect_tcp("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    await anyio.sleep(0.1)
            async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write, *_):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    tools = [t.name for t in (await session.list_tools()).tools]
                    found = await session.call_tool("search", {"query": "Sputnik", "k": 1, "mode": "bm25"})
                    return tools, found

    try:
        tools, found = anyio.run(main)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    assert sorted(tools) == ["ask", "search"]
    assert not found.is_error and len(found.structured_content["results"]) == 1, Path(tmp_path / "mcp.log").read_text()
