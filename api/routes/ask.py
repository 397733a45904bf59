"""Cited answers, as one JSON body or as a stream of server-sent events."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request
from sse_starlette.sse import EventSourceResponse

from api.deps import ClientDep, ServiceDep, StateDep
from api.schemas import CLIENT_ERRORS, EDGE_ERRORS, AbstentionModel, AskRequest, AskResponse, CitationModel, PassageModel, SentenceEvent, ShortAnswerModel
from core.errors import QueryError
from rag.search.retrieve import unmatched_filters

router = APIRouter(tags=["answers"], responses={**EDGE_ERRORS, **CLIENT_ERRORS})
log = logging.getLogger("rag.api")

STREAM_DOC = """
With `Accept: text/event-stream` the answer streams as server-sent events, in this order:

* `passages`: `{"question", "search_query", "passages": [...]}` once retrieval is done;
* `short_answer`: `{"text", "citation", "start", "end"}` when the answer has one (as the JSON body's
  `short_answer`), before the sentences;
* `sentence`: `{"index", "text", "citations": [...]}` for each answer sentence, with the citations its markers name;
* `abstained`: `{"message", "reason", "missing", "mentioned"}` instead of sentences when the corpus does not
  cover the question (`reason` as in the JSON body's `abstention`);
* `partial`: `{"message", "reason", "missing", "mentioned"}` after the sentences when they answer only part of it;
* `done`: the complete answer, exactly the JSON body `POST /ask` returns without streaming.

A failure after the stream has started arrives as `error`: `{"detail"}`.
"""


@router.post(
    "/ask",
    response_model=AskResponse,
    summary="Answer a question with cited quotes, or abstain",
    description="Returns JSON, or server-sent events when the request accepts `text/event-stream`.\n" + STREAM_DOC,
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}},
        400: {"description": "Malformed JSON, or filters that no document matches (`detail` lists the values that exist)."},
        422: {"description": "A field is missing, empty, too long or out of range."},
    },
)
async def ask(body: AskRequest, request: Request, _: ClientDep, service: ServiceDep, state: StateDep):
    filters = body.filters
    problem = await state.run(unmatched_filters, service.index, filters) if filters else None
    if problem:
        raise QueryError(problem)
    kwargs = {"top_k": body.top_k, "mode": body.mode, "history": body.history, "filters": filters}
    if "text/event-stream" in request.headers.get("accept", ""):
        return EventSourceResponse(_stream(body, kwargs, service, state), ping=15)
    answer = await state.run(service.ask, body.question, **kwargs)
    state.metrics.answers.labels(outcome="abstained" if answer.abstained else "answered").inc()
    return AskResponse.of(answer)


async def _stream(body: AskRequest, kwargs: dict, service, state):
    try:
        retrieval = await state.run(service.retrieve, body.question, **kwargs)
        yield {
            "event": "passages",
            "data": _json(
                {
                    "question": body.question,
                    "search_query": retrieval.query,
                    "passages": [PassageModel.of(r).model_dump() for r in retrieval.results],
                }
            ),
        }
        answer = await state.run(service.finish, retrieval)
        state.metrics.answers.labels(outcome="abstained" if answer.abstained else "answered").inc()
        why = AbstentionModel.of(answer.abstention)
        if answer.abstained:
            yield {"event": "abstained", "data": why.model_dump_json() if why else _json({"message": answer.answer})}
        short = None if answer.abstained else ShortAnswerModel.of(answer.short_answer)
        if short is not None:
            yield {"event": "short_answer", "data": short.model_dump_json()}
        by_n = {c.n: c for c in answer.citations}
        for i, sentence in enumerate(answer.sentences):
            event = SentenceEvent(index=i, text=sentence.text, citations=[CitationModel.of(by_n[n]) for n in sentence.citations])
            yield {"event": "sentence", "data": event.model_dump_json()}
        if why is not None and not answer.abstained:
            yield {"event": "partial", "data": why.model_dump_json()}
        yield {"event": "done", "data": AskResponse.of(answer).model_dump_json()}
    except QueryError as exc:
        yield {"event": "error", "data": _json({"detail": str(exc)})}
    except HTTPException as exc:  # e.g. the request timeout
        yield {"event": "error", "data": _json({"detail": str(exc.detail)})}
    except Exception:
        log.exception("streaming answer failed")
        yield {"event": "error", "data": _json({"detail": "internal error while answering; try again"})}


def _json(value) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)
