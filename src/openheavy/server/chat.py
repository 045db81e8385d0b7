"""The OpenAI-compatible API: `POST /v1/chat/completions`, `GET /v1/models`, `GET /v1/runs/{id}`.

The `model` field picks the mode (a name in `openheavy.modes.MODES`) and optionally a backend
(`heavy:PROFILE`); openheavy's run options ride in the body next to the standard fields (the `openai`
SDK's `extra_body`). The last user message is the question; earlier turns go with it as context.
The answer's `[n]` markers become markdown footnotes; an `openheavy` field carries the run id, figures
and citations. Streaming sends the agents' progress as `reasoning_content` (and `reasoning`: clients read
one or the other), then the answer as `content`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from openheavy.display import describe_event
from openheavy.errors import ConfigError
from openheavy.prompts import render_prompt
from openheavy.server.citations import answer_markdown
from openheavy.server.config import ServerConfig
from openheavy.server.options import OPTION_NAMES, ResearchOptions, ResearchRequest, parse_model_field
from openheavy.server.runs import LiveRun
from openheavy.server.security import error_body
from openheavy.server.sse import PING, SSE_HEADERS, sse_message, with_pings
from openheavy.server.state import state_of
from openheavy.types import RunFinished, RunStarted

__all__ = ["ChatCompletionRequest", "RequestRejectedError", "question_from_messages", "router"]

router = APIRouter()


class RequestRejectedError(ConfigError):
    """A request openheavy cannot honour as asked; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text; parts other than text cannot be read by openheavy and are refused."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        texts = []
        for part in self.content:
            if part.get("type") not in ("text", "input_text") or not isinstance(part.get("text"), str):
                raise RequestRejectedError(
                    f"openheavy reads text only; a {self.role} message has a {part.get('type')!r} part — "
                    "send the question as text",
                    code="unsupported_content",
                )
            texts.append(part["text"])
        return "\n".join(texts)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(ResearchOptions):
    """A chat completion request: the standard fields, plus openheavy's run options (`ResearchOptions`:
    `agents`, `n`, `verifier`, `corpus`, budgets, ...). Unknown fields are refused, so a misspelt option
    is an error rather than silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    # Cannot be honoured: openheavy's agents use their own tools and answer in text. Refused with 400.
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    response_format: dict[str, Any] | None = None
    # Accepted and ignored: they shape one model call, and a run makes many (budgets are the run's
    # own options). Listed so that everything else can be refused.
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    stop: str | list[str] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, Any] | None = None
    user: str | None = None
    store: bool | None = None
    metadata: dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None

    def options(self) -> ResearchOptions:
        return ResearchOptions.model_validate(self.model_dump(include=set(OPTION_NAMES), exclude_none=True))

    def refuse_what_cannot_be_honoured(self) -> None:
        if self.tools or self.tool_choice not in (None, "none") or self.functions or self.function_call:
            raise RequestRejectedError(
                "openheavy cannot honour `tools`/`tool_choice`: its agents search with their own tools and "
                "answer in text with citations — send the request without them",
                code="tools_unsupported",
            )
        if self.response_format is not None and self.response_format.get("type") != "text":
            raise RequestRejectedError(
                f"openheavy cannot honour response_format {self.response_format.get('type')!r}: it answers "
                "in text with citations — send the request without it",
                code="response_format_unsupported",
            )


def question_from_messages(messages: list[ChatMessage], max_chars: int) -> str:
    """The last user message, followed by the earlier turns as context."""
    last_user = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), None)
    if last_user is None:
        raise RequestRejectedError("no user message: the last user message is the question", 422)
    for message in messages:
        if message.role in ("tool", "function"):
            raise RequestRejectedError(
                f"a {message.role!r} message cannot be honoured: openheavy does not call client tools",
                code="tools_unsupported",
            )
    question = messages[last_user].text().strip()
    if not question:
        raise RequestRejectedError("the question (the last user message) is empty", 422)
    context = [
        f"{m.role}: {m.text().strip()}" for i, m in enumerate(messages) if i != last_user and m.text().strip()
    ]
    if context:
        question = render_prompt("server_conversation", question=question, turns="\n".join(context)).strip()
    if len(question) > max_chars:
        raise RequestRejectedError(
            f"the question with its conversation is {len(question):,} characters; the limit is "
            f"{max_chars:,} — send fewer or shorter earlier messages",
            422,
            "question_too_long",
        )
    return question


def research_request(
    body: ChatCompletionRequest, backends: list[str], config: ServerConfig
) -> ResearchRequest:
    """What to run for a chat request; raises `RequestRejectedError`/`ConfigError` for what cannot be."""
    body.refuse_what_cannot_be_honoured()
    try:
        mode, backend = parse_model_field(body.model, backends)
    except ConfigError as exc:
        raise RequestRejectedError(str(exc), 404, "model_not_found") from None
    question = question_from_messages(body.messages, config.max_question_chars)
    return ResearchRequest(question, mode, backend, body.options())


# ---------------------------------------------------------------- responses


def _usage(finished: RunFinished) -> dict[str, int]:
    prompt = int(finished.figures.get("prompt_tokens", 0))
    completion = int(finished.figures.get("completion_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _extension(live: LiveRun, finished: RunFinished | None) -> dict[str, Any]:
    """The `openheavy` field: what a client needs to find the run again and check its sources."""
    data: dict[str, Any] = {
        "run_id": live.run_id,
        "mode": live.request.mode,
        "backend": live.request.backend or None,
        "run_url": f"/v1/runs/{live.run_id}",
        "web_url": f"/runs/{live.run_id}",
    }
    if finished is not None:
        data.update(status=finished.status, citations=finished.citations, figures=finished.figures)
    return data


def _failure(live: LiveRun) -> tuple[str, str]:
    """(message, type) for a run that did not end with an answer."""
    finished = live.finished
    if live.cancelled or (finished is not None and finished.status == "cancelled"):
        return f"run {live.run_id} was cancelled", "run_cancelled"
    detail = (finished.error if finished is not None else None) or str(live.error or "unknown error")
    return f"run {live.run_id} failed: {detail} — its trace: GET /v1/runs/{live.run_id}", "run_failed"


async def _until_disconnected(request: Request) -> None:
    # The body has been read, so the next message the server sends the app is the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _complete(live: LiveRun, body: ChatCompletionRequest, request: Request) -> JSONResponse:
    left = asyncio.create_task(_until_disconnected(request))
    ended = asyncio.create_task(live.wait())
    try:
        await asyncio.wait({left, ended}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not ended.done():  # the client left (or the server is stopping): nobody will read the answer
            live.cancel()
        left.cancel()
        ended.cancel()
    finished = live.finished
    if finished is None or finished.status != "ok":
        message, kind = _failure(live)
        # x-should-retry: the openai SDK would otherwise retry a 5xx, running the question again.
        return JSONResponse(
            error_body(message, kind, kind) | {"openheavy": _extension(live, finished)},
            status_code=500,
            headers={"x-should-retry": "false"},
        )
    return JSONResponse(
        {
            "id": f"chatcmpl-{live.run_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": answer_markdown(finished.answer, finished.citations),
                    },
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(finished),
            "openheavy": _extension(live, finished),
        }
    )


async def _stream(live: LiveRun, body: ChatCompletionRequest, ping_seconds: float) -> AsyncIterator[str]:
    created = int(time.time())
    include_usage = body.stream_options is not None and body.stream_options.include_usage

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        data: dict[str, Any] = {
            "id": f"chatcmpl-{live.run_id}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": body.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        if include_usage:
            data.setdefault("usage", None)
        return sse_message(data)

    subscription = live.subscribe()
    try:
        yield chunk({"role": "assistant", "content": ""}, openheavy=_extension(live, None))
        async for event in with_pings(subscription, ping_seconds):
            if event is None:
                yield PING
                continue
            if isinstance(event, RunFinished | RunStarted):
                continue
            line = describe_event(event)
            if line:
                yield chunk({"reasoning_content": line + "\n", "reasoning": line + "\n"})
        await live.wait()
        finished = live.finished
        if finished is None or finished.status != "ok":
            message, kind = _failure(live)
            yield sse_message(error_body(message, kind, kind))
        else:
            yield chunk({"content": answer_markdown(finished.answer, finished.citations)})
            yield chunk({}, "stop", openheavy=_extension(live, finished))
            if include_usage:
                yield sse_message(
                    {
                        "id": f"chatcmpl-{live.run_id}",
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": body.model,
                        "choices": [],
                        "usage": _usage(finished),
                    }
                )
        yield sse_message("[DONE]")
    finally:
        # Ends here early only when the client went away (the response is cancelled): stop the run.
        live.unsubscribe(subscription)
        live.cancel()


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> JSONResponse | StreamingResponse:
    """Answer the conversation's last user message with a run in the mode the `model` field names."""
    state = state_of(request)
    research = research_request(body, state.pool.backends, state.config)
    live = await state.hub.start(research)
    if body.stream:
        return StreamingResponse(
            _stream(live, body, state.config.ping_seconds),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )
    return await _complete(live, body, request)


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    """Every mode on every configured backend."""
    served = state_of(request).pool.served_models()
    return {
        "object": "list",
        "data": [
            {
                "id": m.id,
                "object": "model",
                "created": 0,
                "owned_by": "openheavy",
                "mode": m.mode,
                "backend": m.backend,
            }
            for m in served
        ],
    }


@router.get("/v1/runs/{run_id}")
async def get_run(run_id: str, request: Request) -> dict[str, Any]:
    """A run's record in the run store and its whole trace (every prompt, search and page)."""
    return state_of(request).run_record(run_id)
