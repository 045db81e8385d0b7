"""The OpenAI-compatible adapter against `httpx2.MockTransport`: request shape, usage, retries, errors."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from openheavy.errors import ModelError, ModelUnreachableError
from openheavy.models.base import ChatModel
from openheavy.models.openai_compat import OpenAICompatModel
from openheavy.types import Message

URL = "http://model.test/v1"
MESSAGES = [Message("system", "You are terse."), Message("user", "Say hi.")]
ACTION_SCHEMA = {
    "type": "object",
    "properties": {"action": {"type": "string", "enum": ["search", "answer"]}},
    "required": ["action"],
}

Handler = Callable[[httpx2.Request], httpx2.Response]


def chat_body(text: str = "hi", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "m1",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }
    body.update(extra)
    return body


class Recorder:
    """A MockTransport handler that replays `responses` in order and keeps every request."""

    def __init__(self, *responses: httpx2.Response | Exception | Handler) -> None:
        self.responses = list(responses)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if request.url.path.endswith("/models"):
            return httpx2.Response(200, json={"object": "list", "data": [{"id": "m1", "object": "model"}]})
        item = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(item, Exception):
            raise item
        if isinstance(item, httpx2.Response):
            return item
        return item(request)

    def chat_requests(self) -> list[httpx2.Request]:
        return [r for r in self.requests if r.url.path.endswith("/chat/completions")]

    def body(self, index: int = 0) -> dict[str, Any]:
        return json.loads(self.chat_requests()[index].content)  # type: ignore[no-any-return]


def make_model(handler: Recorder, **kwargs: Any) -> OpenAICompatModel:
    kwargs.setdefault("model", "m1")
    kwargs.setdefault("backoff_base", 0.001)
    return OpenAICompatModel(
        URL, http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)), **kwargs
    )


async def test_is_a_chat_model() -> None:
    model = make_model(Recorder(httpx2.Response(200, json=chat_body())))
    assert isinstance(model, ChatModel)
    await model.aclose()


async def test_success_returns_text_usage_and_cached_tokens() -> None:
    body = chat_body(
        "hello",
        usage={
            "prompt_tokens": 100,
            "completion_tokens": 5,
            "total_tokens": 105,
            "prompt_tokens_details": {"cached_tokens": 64},
        },
    )
    rec = Recorder(httpx2.Response(200, json=body))
    model = make_model(rec)
    out = await model.complete(MESSAGES, max_tokens=20, temperature=0.0, seed=7)
    await model.aclose()
    assert out.text == "hello"
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.cached_tokens) == (100, 5, 64)
    assert out.finish_reason == "stop"
    assert out.model == "m1"
    assert out.seconds > 0
    sent = rec.body()
    assert sent["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hi."},
    ]
    assert (sent["model"], sent["max_tokens"], sent["temperature"], sent["seed"]) == ("m1", 20, 0.0, 7)
    assert "response_format" not in sent
    assert "logprobs" not in sent


async def test_cached_tokens_from_llama_server_timings() -> None:
    body = chat_body(timings={"cache_n": 40, "prompt_n": 8, "predicted_n": 3})
    model = make_model(Recorder(httpx2.Response(200, json=body)))
    out = await model.complete(MESSAGES)
    await model.aclose()
    assert out.usage.cached_tokens == 40


async def test_missing_usage_is_zero_not_an_error() -> None:
    body = chat_body()
    del body["usage"]
    model = make_model(Recorder(httpx2.Response(200, json=body)))
    out = await model.complete(MESSAGES)
    await model.aclose()
    assert out.usage.total == 0


async def test_mean_logprob_when_requested() -> None:
    body = chat_body()
    body["choices"][0]["logprobs"] = {
        "content": [
            {"token": "h", "logprob": -1.0, "bytes": None, "top_logprobs": []},
            {"token": "i", "logprob": -3.0, "bytes": None, "top_logprobs": []},
        ]
    }
    rec = Recorder(httpx2.Response(200, json=body))
    model = make_model(rec, request_logprobs=True)
    out = await model.complete(MESSAGES)
    await model.aclose()
    assert out.mean_logprob == pytest.approx(-2.0)
    assert rec.body()["logprobs"] is True


@pytest.mark.parametrize(
    ("structured", "expected"),
    [
        (
            "json_schema",
            {
                "type": "json_schema",
                "json_schema": {"name": "action", "schema": ACTION_SCHEMA, "strict": True},
            },
        ),
        ("json_object", {"type": "json_object"}),
        ("none", None),
    ],
)
async def test_json_schema_request_shape(structured: Any, expected: dict[str, Any] | None) -> None:
    rec = Recorder(httpx2.Response(200, json=chat_body('{"action": "search"}')))
    model = make_model(rec, structured=structured)
    await model.complete(MESSAGES, json_schema=ACTION_SCHEMA)
    await model.aclose()
    assert rec.body().get("response_format") == expected


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_transient_status_is_retried(status: int) -> None:
    rec = Recorder(
        httpx2.Response(status, json={"error": {"message": "busy"}}),
        httpx2.Response(200, json=chat_body("ok")),
    )
    model = make_model(rec)
    out = await model.complete(MESSAGES)
    await model.aclose()
    assert out.text == "ok"
    assert len(rec.chat_requests()) == 2
    assert model.retries == 1


async def test_retry_after_is_honoured_but_capped() -> None:
    rec = Recorder(
        httpx2.Response(429, headers={"retry-after": "100"}, json={"error": {"message": "slow down"}}),
        httpx2.Response(200, json=chat_body("ok")),
    )
    model = make_model(rec, backoff_max=0.05)
    started = asyncio.get_running_loop().time()
    out = await model.complete(MESSAGES)
    elapsed = asyncio.get_running_loop().time() - started
    await model.aclose()
    assert out.text == "ok"
    assert 0.04 <= elapsed < 5


async def test_persistent_5xx_gives_up_after_max_retries() -> None:
    rec = Recorder(httpx2.Response(502, json={"error": {"message": "bad gateway"}}))
    model = make_model(rec, max_retries=2)
    with pytest.raises(ModelError, match=r"HTTP 502 after 3 attempts: bad gateway"):
        await model.complete(MESSAGES)
    await model.aclose()
    assert len(rec.chat_requests()) == 3


async def test_timeout_is_retried_then_named() -> None:
    rec = Recorder(httpx2.ReadTimeout("read timed out"))
    model = make_model(rec, max_retries=2, timeout=1.5)
    with pytest.raises(ModelError, match=r"timed out after 1.5 s \(3 attempts\)") as info:
        await model.complete(MESSAGES)
    await model.aclose()
    assert not isinstance(info.value, ModelUnreachableError)
    assert len(rec.chat_requests()) == 3


async def test_timeout_then_success() -> None:
    rec = Recorder(httpx2.ReadTimeout("read timed out"), httpx2.Response(200, json=chat_body("late")))
    model = make_model(rec)
    assert (await model.complete(MESSAGES)).text == "late"
    await model.aclose()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused_names_the_url_and_what_to_do() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    model = OpenAICompatModel(url, "m", max_retries=1, backoff_base=0.001)
    with pytest.raises(ModelUnreachableError) as info:
        await model.complete(MESSAGES)
    await model.aclose()
    assert str(info.value) == f"no model server at {url} — start one or pass --model local"


async def test_connect_error_is_retried() -> None:
    rec = Recorder(httpx2.ConnectError("refused"), httpx2.Response(200, json=chat_body("up")))
    model = make_model(rec)
    assert (await model.complete(MESSAGES)).text == "up"
    await model.aclose()


async def test_malformed_json_body_is_a_clear_model_error() -> None:
    rec = Recorder(
        httpx2.Response(200, content=b'{"choices": [', headers={"content-type": "application/json"})
    )
    model = make_model(rec)
    with pytest.raises(ModelError, match="malformed JSON"):
        await model.complete(MESSAGES)
    await model.aclose()
    assert len(rec.chat_requests()) == 1  # a broken body is not transient


async def test_html_page_is_a_clear_model_error() -> None:
    rec = Recorder(httpx2.Response(200, text="<html>login</html>", headers={"content-type": "text/html"}))
    model = make_model(rec)
    with pytest.raises(ModelError, match=r"did not answer with JSON .*<html>login"):
        await model.complete(MESSAGES)
    await model.aclose()


async def test_completion_without_choices_is_a_model_error() -> None:
    rec = Recorder(httpx2.Response(200, json=chat_body(choices=[])))
    model = make_model(rec)
    with pytest.raises(ModelError, match="no choices"):
        await model.complete(MESSAGES)
    await model.aclose()


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_failure_hints_at_the_key(status: int) -> None:
    rec = Recorder(httpx2.Response(status, json={"error": {"message": "Incorrect API key"}}))
    model = make_model(rec)
    with pytest.raises(ModelError, match=r"API key .*--api-key.*OPENHEAVY_API_KEY"):
        await model.complete(MESSAGES)
    await model.aclose()
    assert len(rec.chat_requests()) == 1  # never retried


async def test_unknown_model_lists_what_the_server_offers() -> None:
    rec = Recorder(httpx2.Response(404, json={"error": {"message": "model 'nope' not found"}}))
    model = make_model(rec, model="nope")
    with pytest.raises(ModelError, match=r"model 'nope' not found .*offers: m1"):
        await model.complete(MESSAGES)
    await model.aclose()


async def test_bad_request_about_the_schema_suggests_another_structured_mode() -> None:
    rec = Recorder(httpx2.Response(400, json={"error": {"message": "response_format not supported"}}))
    model = make_model(rec)
    with pytest.raises(ModelError, match=r"HTTP 400.*structured = 'json_object'"):
        await model.complete(MESSAGES, json_schema=ACTION_SCHEMA)
    await model.aclose()


async def test_empty_model_name_asks_the_server_once() -> None:
    rec = Recorder(httpx2.Response(200, json=chat_body()))
    model = make_model(rec, model="")
    await asyncio.gather(*(model.complete(MESSAGES) for _ in range(5)))
    await model.aclose()
    assert sum(r.url.path.endswith("/models") for r in rec.requests) == 1
    assert {rec.body(i)["model"] for i in range(5)} == {"m1"}
    assert model.name == "m1"


async def test_api_key_is_sent_as_bearer() -> None:
    rec = Recorder(httpx2.Response(200, json=chat_body()))
    model = make_model(rec, api_key="sk-test")
    await model.complete(MESSAGES)
    await model.aclose()
    assert rec.chat_requests()[0].headers["authorization"] == "Bearer sk-test"


async def test_sampling_parameters_beyond_the_openai_schema_are_sent_only_when_configured() -> None:
    rec = Recorder(httpx2.Response(200, json=chat_body()))
    plain = make_model(rec)
    await plain.complete(MESSAGES)
    tuned = make_model(rec, sampling={"dry_multiplier": 0.8, "repeat_penalty": 1.1})
    await tuned.complete(MESSAGES, temperature=0.0)
    assert not {"dry_multiplier", "repeat_penalty"} & rec.body(0).keys()
    assert (rec.body(1)["dry_multiplier"], rec.body(1)["repeat_penalty"]) == (0.8, 1.1)
    assert rec.body(1)["temperature"] == 0.0
    await plain.aclose()
    await tuned.aclose()
