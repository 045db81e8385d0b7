"""One adapter for every OpenAI-compatible chat endpoint: vLLM, SGLang, llama.cpp's llama-server, Ollama,
OpenAI, xAI, OpenRouter, and the embedded model (which is a llama-server that openheavy starts itself).

The wire format is the OpenAI chat schema; the provider is only a base URL and a key. Transient failures
(429, 5xx, timeouts, dropped connections) are retried here with exponential backoff and jitter, so callers
see either a completion or one `ModelError` whose message says what to do.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar, cast

import httpx2
import openai
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from openai.types.chat.completion_create_params import ResponseFormat
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from openheavy.errors import ModelError, ModelUnreachableError
from openheavy.types import Completion, JsonSchema, Message, Usage

__all__ = ["OpenAICompatModel", "StructuredMode"]

log = logging.getLogger(__name__)

StructuredMode = Literal["json_schema", "json_object", "none"]
T = TypeVar("T")

# The SDK's own retry rules, minus 409 (a conflict is not worth waiting for on a chat endpoint).
_RETRY_STATUSES = frozenset({408, 429})
# A dead host should fail in seconds even when generation itself may take minutes.
_CONNECT_TIMEOUT = 10.0


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in _RETRY_STATUSES or exc.status_code >= 500
    return False


def _retry_after(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (`Retry-After`), when it said so in seconds."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    value = exc.response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date: rare from model servers, fall back to our own backoff
        return None


def _server_message(exc: openai.APIStatusError) -> str:
    """The error text the server put in its body, short enough for one line."""
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])[:300]
        if isinstance(inner, str):
            return inner[:300]
    try:
        text = exc.response.text
    except httpx2.ResponseNotRead:  # a streamed body the SDK did not read; its own message will do
        text = ""
    return (text.strip() or exc.message)[:300]


class OpenAICompatModel:
    """A `ChatModel` over any OpenAI-compatible `/chat/completions` endpoint.

    `model=""` asks the server's `/models` once and uses the first entry (what llama-server, a single-model
    vLLM and most local servers want). `structured` says how `json_schema` is requested: constrained
    decoding (`json_schema`), plain JSON mode (`json_object`) or not at all (`none`). `sampling`: extra
    request fields the server accepts beyond the OpenAI schema (llama.cpp's DRY or repeat penalties),
    sent with every request. An `http_client` passed in (tests:
    `httpx2.AsyncClient(transport=httpx2.MockTransport(...))`) is closed by `aclose`.
    """

    def __init__(
        self,
        base_url: str,
        model: str = "",
        *,
        api_key: str | None = None,
        name: str | None = None,
        structured: StructuredMode = "json_schema",
        timeout: float = 600.0,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        temperature: float | None = None,
        request_logprobs: bool = False,
        sampling: Mapping[str, Any] | None = None,
        unreachable_hint: str = "start one or pass --model local",
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = name or model or self.base_url
        self.structured: StructuredMode = structured
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.temperature = temperature
        self.request_logprobs = request_logprobs
        # Server-specific sampling parameters (llama.cpp's DRY...), sent only to servers that accept them.
        self.sampling = dict(sampling or {})
        self.unreachable_hint = unreachable_hint
        self.retries = 0  # transient failures retried over this model's life, for run metrics
        self._model_lock = asyncio.Lock()
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url,
            # Local servers need no key, but the SDK insists on one.
            api_key=api_key or "none",
            max_retries=0,  # retries happen here, with our own policy and error messages
            timeout=openai.Timeout(timeout, connect=min(_CONNECT_TIMEOUT, timeout)),
            http_client=http_client,
        )

    # ------------------------------------------------------------------ public

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        json_schema: JsonSchema | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> Completion:
        """Send one chat request and return its completion (text, usage, timing, finish reason)."""
        started = time.perf_counter()
        model = await self.resolve_model_id()
        wire_messages = cast(
            "list[ChatCompletionMessageParam]", [{"role": m.role, "content": m.content} for m in messages]
        )
        response_format = self._response_format(json_schema)
        temp = temperature if temperature is not None else self.temperature

        async def request() -> ChatCompletion:
            return await self._client.chat.completions.create(
                model=model,
                messages=wire_messages,
                max_tokens=max_tokens if max_tokens is not None else openai.omit,
                temperature=temp if temp is not None else openai.omit,
                seed=seed if seed is not None else openai.omit,
                response_format=response_format if response_format is not None else openai.omit,
                logprobs=True if self.request_logprobs else openai.omit,
                extra_body=self.sampling or None,
            )

        result = await self._call("chat completion", request, model=model, schema_sent=json_schema)
        return self._to_completion(result, model, time.perf_counter() - started)

    async def resolve_model_id(self) -> str:
        """The model name sent with each request; asks `/models` once when none was configured."""
        if self.model:
            return self.model
        async with self._model_lock:  # concurrent first calls ask the server once
            if not self.model:
                ids = await self._call("model list", self._list_model_ids)
                if not ids:
                    raise ModelError(
                        f"the server at {self.base_url} lists no models — name one with --model URL#MODEL "
                        "or in a profile's `model`"
                    )
                self.model = ids[0]
                if self.name == self.base_url:
                    self.name = self.model
        return self.model

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.close()

    # ------------------------------------------------------------------ request plumbing

    def _response_format(self, json_schema: JsonSchema | None) -> ResponseFormat | None:
        if json_schema is None or self.structured == "none":
            return None
        if self.structured == "json_object":
            return {"type": "json_object"}
        return {
            "type": "json_schema",
            "json_schema": {"name": "action", "schema": json_schema, "strict": True},
        }

    async def _list_model_ids(self) -> list[str]:
        page = await self._client.models.list()
        return [m.id for m in page.data]

    def _wait_seconds(self, state: RetryCallState) -> float:
        backoff = wait_exponential_jitter(
            multiplier=self.backoff_base, max=self.backoff_max, jitter=self.backoff_base
        )(state)
        exc = state.outcome.exception() if state.outcome is not None else None
        asked = _retry_after(exc)
        # Honour a server's Retry-After, but never wait longer than our own ceiling.
        return min(max(backoff, asked), self.backoff_max) if asked is not None else backoff

    def _log_retry(self, state: RetryCallState) -> None:
        self.retries += 1
        exc = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "%s: attempt %d failed (%s); retrying in %.2f s",
            self.base_url,
            state.attempt_number,
            _describe(exc),
            delay,
        )

    async def _call(
        self,
        what: str,
        fn: Callable[[], Awaitable[T]],
        *,
        model: str | None = None,
        schema_sent: JsonSchema | None = None,
    ) -> T:
        """Run `fn` with retries on transient errors; translate whatever still fails into a `ModelError`."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait_seconds,
            retry=retry_if_exception(_is_transient),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return await retrying(fn)
        except openai.APITimeoutError as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            raise ModelError(
                f"{what} at {self.base_url} timed out after {self.timeout:g} s ({attempts} attempts) — "
                "raise OPENHEAVY_REQUEST_TIMEOUT, ask for fewer max_tokens, or use a faster model"
            ) from exc
        except openai.APIConnectionError as exc:
            raise ModelUnreachableError(
                f"no model server at {self.base_url} — {self.unreachable_hint}"
            ) from exc
        except openai.APIStatusError as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            raise await self._status_error(exc, what, model, schema_sent, attempts) from exc
        except openai.APIResponseValidationError as exc:
            raise ModelError(
                f"{what} at {self.base_url} returned a body that is not an OpenAI response: {exc.message}"
            ) from exc
        except ValueError as exc:  # json.JSONDecodeError from the SDK parsing a broken body
            raise ModelError(
                f"{what} at {self.base_url} returned malformed JSON ({exc}) — is it an OpenAI-compatible "
                "server, and does the URL end in /v1?"
            ) from exc
        except openai.OpenAIError as exc:
            raise ModelError(f"{what} at {self.base_url} failed: {exc}") from exc

    async def _status_error(
        self,
        exc: openai.APIStatusError,
        what: str,
        model: str | None,
        schema_sent: JsonSchema | None,
        attempts: int,
    ) -> ModelError:
        status = exc.status_code
        detail = _server_message(exc)
        if status in (401, 403):
            return ModelError(
                f"{self.base_url} rejected the API key (HTTP {status}: {detail}) — check the key: pass "
                "--api-key, set OPENHEAVY_API_KEY, or set the profile's api_key / api_key_env"
            )
        if status == 404:
            return await self._not_found_error(what, model, detail)
        if status == 429:
            return ModelError(
                f"{self.base_url} is rate limiting us (HTTP 429 after {attempts} attempts: {detail}) — "
                "run fewer agents at once or wait and retry"
            )
        if status >= 500 or status == 408:
            return ModelError(
                f"{what} at {self.base_url} failed with HTTP {status} after {attempts} attempts: {detail}"
            )
        hint = ""
        if schema_sent is not None and any(w in detail.lower() for w in ("response_format", "schema")):
            hint = (
                " — this server may not support JSON-schema output: set the profile's "
                "structured = 'json_object' or 'none'"
            )
        return ModelError(f"{self.base_url} rejected the {what} (HTTP {status}: {detail}){hint}")

    async def _not_found_error(self, what: str, model: str | None, detail: str) -> ModelError:
        try:  # one quick look at what the server does offer makes the message actionable
            offered = await asyncio.wait_for(self._list_model_ids(), timeout=min(10.0, self.timeout))
        except (openai.OpenAIError, ValueError, TimeoutError):
            offered = None
        if offered is None:
            return ModelError(
                f"{what} not found at {self.base_url} (HTTP 404: {detail}) — check the URL; most servers "
                "serve the OpenAI API under /v1"
            )
        listing = ", ".join(offered[:20]) or "nothing"
        return ModelError(
            f"model {model!r} not found at {self.base_url} (HTTP 404: {detail}); the server offers: "
            f"{listing} — pick one with --model URL#MODEL or a profile's `model`"
        )

    # ------------------------------------------------------------------ response parsing

    def _to_completion(self, result: object, model: str, seconds: float) -> Completion:
        if not isinstance(result, ChatCompletion):
            # The SDK hands back the raw text when the Content-Type is not JSON (an HTML error page...).
            snippet = str(result)[:200]
            raise ModelError(
                f"{self.base_url} did not answer with JSON ({snippet!r}) — is it an OpenAI-compatible "
                "server, and does the URL end in /v1?"
            )
        choices = getattr(result, "choices", None)
        if not choices:
            raise ModelError(f"{self.base_url} returned a completion with no choices: {_preview(result)}")
        choice = choices[0]
        message = getattr(choice, "message", None)
        text = getattr(message, "content", None) or ""
        return Completion(
            text=text,
            usage=_usage(result),
            model=getattr(result, "model", None) or model,
            finish_reason=getattr(choice, "finish_reason", None),
            seconds=seconds,
            mean_logprob=_mean_logprob(choice),
        )


def _usage(result: ChatCompletion) -> Usage:
    usage = result.usage
    prompt = usage.prompt_tokens if usage is not None else 0
    completion = usage.completion_tokens if usage is not None else 0
    cached: int | None = None
    details = usage.prompt_tokens_details if usage is not None else None
    if details is not None and details.cached_tokens is not None:
        cached = details.cached_tokens
    # llama-server also reports its own `timings`; older builds send only those.
    timings = (result.model_extra or {}).get("timings")
    if cached is None and isinstance(timings, dict) and isinstance(timings.get("cache_n"), int):
        cached = timings["cache_n"]
    return Usage(prompt_tokens=prompt or 0, completion_tokens=completion or 0, cached_tokens=cached or 0)


def _mean_logprob(choice: Any) -> float | None:
    logprobs = getattr(choice, "logprobs", None)
    tokens = getattr(logprobs, "content", None) if logprobs is not None else None
    if not tokens:
        return None
    values = [t.logprob for t in tokens if isinstance(getattr(t, "logprob", None), float | int)]
    return sum(values) / len(values) if values else None


def _preview(result: ChatCompletion) -> str:
    try:
        return json.dumps(result.model_dump(exclude_none=True))[:200]
    except Exception:  # a half-built model from a strange body: the repr still helps
        return repr(result)[:200]


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}"
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return f"connection error: {exc.__cause__ or exc}"
    return repr(exc)
