"""The OpenAI chat-completions dialect of ``/ask``: request and response shapes, and pure conversions.

A chat request becomes an :class:`~api.schemas.AskRequest` (the last user message is the question,
earlier user messages the history), so it is validated exactly as ``/ask`` is. The answer comes back
as an assistant message whose content is the cited answer (led by the short answer and its marker,
then a blank line, when there is one); each ``[n]`` marker in it carries an OpenAI ``url_citation``
annotation, and the whole ``/ask`` body travels in the extension field ``rag`` (built by
:meth:`AskResponse.of`, so whatever ``/ask`` returns, ``rag`` returns too).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.schemas import MAX_HISTORY_ITEMS, AskRequest, Filters, Mode
from rag.payloads import short_answer_line

#: The one model this service offers; chat clients list it from ``GET /v1/models``.
MODEL_ID = "space-diplomacy-rag"
OWNER = "space-diplomacy-rag"
#: Longest conversation accepted, in messages (only the recent user messages are used).
MAX_MESSAGES = 200

_MARKER_RE = re.compile(r"\[(\d+)\]")
_MARKER_RUN_RE = re.compile(r"(?:\s*\[\d+\])+")


class ContentPart(BaseModel):
    """One part of a message's content; only text parts carry a question."""

    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat-completions request. Sampling fields (temperature, max_tokens, ...) are accepted
    and ignored: answers are quotes, not generated text. ``top_k``, ``mode`` and ``filters`` are
    ``/ask``'s own fields (the OpenAI SDK sends them with ``extra_body``)."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {"model": MODEL_ID, "messages": [{"role": "user", "content": "What is the Outer Space Treaty?"}]},
                {
                    "model": MODEL_ID,
                    "stream": True,
                    "messages": [
                        {"role": "user", "content": "When was the International Space Station initiated?"},
                        {"role": "assistant", "content": "..."},
                        {"role": "user", "content": "And who took part in it?"},
                    ],
                },
            ]
        },
    )

    model: str = Field(min_length=1, max_length=200, description=f"The model id: `{MODEL_ID}` (see `GET /v1/models`).")
    messages: list[ChatMessage] = Field(
        min_length=1, max_length=MAX_MESSAGES, description="The conversation; the last user message is the question."
    )
    stream: bool = Field(False, description="Stream the answer as `chat.completion.chunk` server-sent events.")
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="Choices to return; the answer is deterministic, so only 1.")
    top_k: int = Field(5, ge=1, le=50, description="As in `/ask`: passages to retrieve.")
    mode: Mode = Field("hybrid", description="As in `/ask`: hybrid, dense or bm25.")
    filters: Filters = Field(default_factory=Filters, description="As in `/ask`.")


class ChatRequestError(ValueError):
    """A chat request that cannot become a question; ``param`` names the offending field."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


def message_text(message: ChatMessage, position: int) -> str:
    """The text of a message: a string, or its text parts joined by newlines."""
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    texts = []
    for part in message.content:
        if part.type != "text" or part.text is None:
            raise ChatRequestError(
                f"messages.{position}.content: only text parts are supported, not {part.type!r}", f"messages.{position}.content"
            )
        texts.append(part.text)
    return "\n".join(texts)


_FIELD_NAMES = {"question": "messages (the last user message)", "history": "messages (earlier user messages)"}


def to_ask_request(chat: ChatCompletionRequest) -> AskRequest:
    """The ``/ask`` request a chat request stands for, validated by the same rules."""
    users = [(i, message_text(m, i)) for i, m in enumerate(chat.messages) if m.role == "user"]
    if not users:
        raise ChatRequestError("messages: no user message; the last user message is the question", "messages")
    *earlier, (_, question) = users
    # Chat clients resend the whole conversation; only the recent questions matter for a follow-up.
    history = [text for _, text in earlier][-MAX_HISTORY_ITEMS:]
    try:
        return AskRequest(question=question, history=history, top_k=chat.top_k, mode=chat.mode, filters=chat.filters)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", ())]
        where = _FIELD_NAMES.get(loc[0], ".".join(loc)) if loc else "messages"
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        if first.get("type") in ("string_pattern_mismatch", "string_too_short"):
            message = "is empty; send some words to search for"
        raise ChatRequestError(f"{where}: {message}", "messages" if loc and loc[0] in _FIELD_NAMES else ".".join(loc)) from None


def message_content(rag: dict) -> str:
    """The assistant message's content for the ``/ask`` body ``rag``: the short answer with its marker, a
    blank line, then the cited answer ("1969 [2]\n\nApollo 11 landed ... [1] ... [2]"); the answer alone
    when there is no short answer (and for an abstention)."""
    lead = short_answer_line(rag)
    return f"{lead}\n\n{rag['answer']}" if lead else rag["answer"]


def url_citations(content: str, citations: list[dict]) -> list[dict]:
    """One ``url_citation`` annotation per ``[n]`` marker of ``content``: ``content[start_index:end_index]``
    is the marker, and url and title are those of citation ``n``."""
    by_n = {c["n"]: c for c in citations}
    out = []
    for match in _MARKER_RE.finditer(content):
        citation = by_n.get(int(match.group(1)))
        if citation is None:
            continue
        out.append(
            {
                "type": "url_citation",
                "url_citation": {
                    "url": citation["url"],
                    "title": citation["title"],
                    "start_index": match.start(),
                    "end_index": match.end(),
                },
            }
        )
    return out


def stream_pieces(content: str) -> list[tuple[int, str]]:
    """``content`` cut after each run of markers (one piece per cited sentence), with each piece's offset.

    The pieces concatenate to ``content`` exactly, so a streamed answer equals the non-streamed one.
    """
    pieces, start = [], 0
    for match in _MARKER_RUN_RE.finditer(content):
        if match.end() > start:
            pieces.append((start, content[start : match.end()]))
            start = match.end()
    if start < len(content) or not pieces:
        pieces.append((start, content[start:]))
    return pieces


def usage(prompt: str, completion: str) -> dict:
    """Token counts (cl100k) of the question with its history and of the answer."""
    from rag.text.tokens import count_tokens

    p, c = count_tokens(prompt), count_tokens(completion)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def completion(rag: dict, *, completion_id: str, created: int, model: str, usage_counts: dict) -> dict:
    """A ``chat.completion`` object for the ``/ask`` body ``rag``."""
    content = message_content(rag)
    message = {"role": "assistant", "content": content, "refusal": None, "annotations": url_citations(content, rag["citations"])}
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
        "usage": usage_counts,
        "rag": rag,
    }


def chunk(*, completion_id: str, created: int, model: str, delta: dict | None = None, finish: str | None = None, **extra) -> dict:
    """A ``chat.completion.chunk``; ``delta=None`` with ``usage`` in ``extra`` is the usage chunk (no choices)."""
    body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
    body["choices"] = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
    body.update(extra)
    return body


def answer_chunks(rag: dict, **ids) -> list[dict]:
    """The content chunks of an answer (each with the annotations of its markers), then the final chunk
    that carries ``finish_reason`` and the ``rag`` extension field."""
    content = message_content(rag)
    annotations = url_citations(content, rag["citations"])
    out = []
    for offset, piece in stream_pieces(content):
        delta: dict = {"content": piece}
        mine = [a for a in annotations if offset <= a["url_citation"]["start_index"] < offset + len(piece)]
        if mine:
            delta["annotations"] = mine
        out.append(chunk(delta=delta, **ids))
    out.append(chunk(delta={}, finish="stop", rag=rag, **ids))
    return out


ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    408: ("invalid_request_error", "timeout"),
    413: ("invalid_request_error", "request_too_large"),
    414: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    """OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``."""
    kind, default_code = ERROR_TYPES.get(status, ("server_error", "service_unavailable") if status >= 500 else ("invalid_request_error", None))
    return {"error": {"message": message, "type": kind, "param": param, "code": code or default_code}}


class OpenAIError(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, authentication_error, rate_limit_error, server_error, ...")
    param: str | None = Field(None, description="The request field at fault, when there is one.")
    code: str | None = None


class OpenAIErrorBody(BaseModel):
    """OpenAI's error shape, plus the service's own ``detail`` and ``request_id``."""

    error: OpenAIError
    detail: str
    request_id: str | None = None


_ERROR_DOCS = {
    400: "Malformed JSON, or a field is missing, empty, too long or out of range; `error.param` names it.",
    401: "An API key is required (when the service is configured with keys) or the key is not valid.",
    404: "Unknown model.",
    408: "The request body did not arrive in time.",
    413: "The request body is too large.",
    414: "The query string is too long.",
    429: "Too many requests from this client; see the Retry-After header.",
    503: "The index is not loaded yet, or the request took too long.",
}
#: The error responses of every /v1 operation, for the OpenAPI schema.
ERROR_RESPONSES = {code: {"model": OpenAIErrorBody, "description": text} for code, text in _ERROR_DOCS.items()}


def model_card(created: int) -> dict:
    return {"id": MODEL_ID, "object": "model", "created": created, "owned_by": OWNER}
