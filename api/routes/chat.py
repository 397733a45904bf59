"""OpenAI-compatible endpoints: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Point an OpenAI SDK or chat front end at ``http://HOST:PORT/v1`` and it gets the same cited answers
as ``/ask``, with the same keys, limits and validation; errors come in OpenAI's error shape.
"""

from __future__ import annotations

import json
import logging
import time

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse

from api import chat
from api.deps import ClientDep, ServiceDep, StateDep
from api.schemas import AskResponse
from core.errors import QueryError

router = APIRouter(prefix="/v1", tags=["openai-compatible"], responses=chat.ERROR_RESPONSES)
log = logging.getLogger("rag.api")

STARTED = int(time.time())

DESCRIPTION = """
The OpenAI chat-completions API over `/ask`: the last user message is the question, earlier user
messages are the history (system and assistant messages are ignored). The assistant message's
`content` is the cited answer with its `[n]` markers, led by the short answer with its marker and a
blank line when there is one (`1969 [2]`: the `/ask` body's `short_answer`); `annotations` holds one
`url_citation` per marker (`content[start_index:end_index]` is the marker, with the citation's `url`
and `title`), and the extension field `rag` holds the complete `/ask` body (citations with quotes and
offsets, `abstained`, passages, support). An abstention is an ordinary assistant message with
`rag.abstained: true`.

With `"stream": true` the answer arrives as `chat.completion.chunk` events: the role, the short answer
when there is one, one chunk per cited sentence (with the annotations of its markers), a last chunk
with `finish_reason` and `rag`, then `data: [DONE]`. Errors use OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`.
"""


#: One server-sent event of a streamed completion: a ``chat.completion.chunk`` as JSON, or ``[DONE]``.
STREAM_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"type": "string", "description": "A chat.completion.chunk as JSON, or [DONE] at the end."}},
}


@router.get("/models", summary="The model this service offers (OpenAI format)")
async def list_models(_: ClientDep) -> dict:
    return {"object": "list", "data": [chat.model_card(STARTED)]}


@router.get("/models/{model}", summary="One model (OpenAI format)")
async def get_model(model: str, _: ClientDep) -> dict:
    _check_model(model)
    return chat.model_card(STARTED)


def _check_model(model: str) -> None:
    if model != chat.MODEL_ID:
        raise HTTPException(status_code=404, detail=f"the model {model!r} does not exist; use {chat.MODEL_ID!r} (GET /v1/models)")


@router.post(
    "/chat/completions",
    summary="A cited answer as an OpenAI chat completion",
    description=DESCRIPTION,
    responses={200: {"content": {"text/event-stream": {"itemSchema": STREAM_EVENT}}}},
)
async def chat_completions(body: chat.ChatCompletionRequest, request: Request, _: ClientDep, service: ServiceDep, state: StateDep):
    _check_model(body.model)
    try:
        ask = chat.to_ask_request(body)
    except chat.ChatRequestError as exc:
        return JSONResponse(_error_with_id(400, str(exc), request, param=exc.param), status_code=400)
    ids = {"completion_id": "chatcmpl-" + request.state.request_id, "created": int(time.time()), "model": body.model}
    kwargs = {"top_k": ask.top_k, "mode": ask.mode, "history": ask.history, "filters": ask.filters}
    prompt = "\n".join([*ask.history, ask.question])
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return EventSourceResponse(_stream(ask.question, kwargs, prompt, include_usage, ids, service, state), ping=15)
    rag = await _answer(ask.question, kwargs, service, state)
    # Rendered directly: the body is plain JSON data already, and FastAPI's generic encoder
    # walking it would cost more than the answer itself.
    return JSONResponse(chat.completion(rag, usage_counts=chat.usage(prompt, chat.message_content(rag)), **ids))


async def _answer(question: str, kwargs: dict, service, state) -> dict:
    answer = await state.run(service.ask, question, **kwargs)
    state.metrics.answers.labels(outcome="abstained" if answer.abstained else "answered").inc()
    return AskResponse.of(answer).model_dump(mode="json")


async def _stream(question: str, kwargs: dict, prompt: str, include_usage: bool, ids: dict, service, state):
    yield _data(chat.chunk(delta={"role": "assistant", "content": ""}, **ids))
    try:
        rag = await _answer(question, kwargs, service, state)
    except QueryError as exc:
        yield _data(chat.error_body(400, str(exc)))
        return
    except HTTPException as exc:  # e.g. the request timeout
        yield _data(chat.error_body(exc.status_code, str(exc.detail)))
        return
    except Exception:
        log.exception("streaming chat completion failed")
        yield _data(chat.error_body(500, "internal error while answering; try again"))
        return
    for piece in chat.answer_chunks(rag, **ids):
        yield _data(piece)
    if include_usage:
        yield _data(chat.chunk(usage=chat.usage(prompt, chat.message_content(rag)), **ids))
    yield {"data": "[DONE]"}


def _data(body: dict) -> dict:
    return {"data": json.dumps(body, ensure_ascii=False)}


def _error_with_id(status: int, message: str, request: Request, param: str | None = None) -> dict:
    return {**chat.error_body(status, message, param), "detail": message, "request_id": request.state.request_id}
