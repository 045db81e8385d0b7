"""Deterministic models for tests and demos: no network, no weights, every call recorded.

`ScriptedModel` plays a fixed script, one step per call, and fails loudly on a call the script did not
expect. `FunctionModel` answers every call with a function, for concurrent agents whose call order is not
fixed. Both ship in the package so that users' own tests can drive openheavy the same way ours do.

Both check every reply to a call that sent a JSON schema against that schema, as a constrained decoder
would enforce it: a script that the real model could never produce fails its test instead of testing
something that cannot happen. `Unconstrained(reply)` marks a reply that ignores the schema on purpose,
as a backend without constrained output may send, to test how the engine copes with malformed output.
`check_schema=False` turns the check off where the test model's own cost must not count (benchmarks).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from openheavy.errors import OpenHeavyError
from openheavy.types import Completion, JsonSchema, Message, Usage

__all__ = [
    "FunctionModel",
    "ModelCall",
    "Reply",
    "ReplyFunction",
    "ScriptExhaustedError",
    "ScriptStep",
    "ScriptedModel",
    "ScriptedReplyError",
    "Unconstrained",
    "rough_usage",
]


@dataclass(frozen=True)
class Unconstrained:
    """A reply sent whatever the request's JSON schema says, as by a backend without constrained output."""

    reply: str | Completion


Reply: TypeAlias = str | Completion | Unconstrained
ReplyFunction: TypeAlias = Callable[[Sequence[Message], JsonSchema | None], Reply | Awaitable[Reply]]
ScriptStep: TypeAlias = Reply | BaseException | type[BaseException] | ReplyFunction


class ScriptExhaustedError(OpenHeavyError, AssertionError):
    """A `ScriptedModel` got more calls than its script has steps.

    An `AssertionError` as well, so that pytest reports it as a failed expectation rather than a crash.
    """


class ScriptedReplyError(BaseException):
    """A scripted reply that the JSON schema of its request does not allow (or a schema that is itself
    invalid). A constrained decoder could never produce it, so the test is wrong, not the engine.

    A `BaseException`, like pytest's own failures, because the engine keeps one failing agent, sample or
    judge call from stopping a run (`except Exception`): a test whose script breaks the schema must fail,
    not pass with that part quietly marked as failed.
    """


@dataclass(frozen=True)
class ModelCall:
    """One recorded call: what the caller sent, and when it started and finished (`time.monotonic`)."""

    messages: tuple[Message, ...]
    json_schema: JsonSchema | None
    max_tokens: int | None
    temperature: float | None
    seed: int | None
    started: float
    finished: float
    output: str | None  # None when the step raised

    @property
    def last_user_message(self) -> str:
        return next((m.content for m in reversed(self.messages) if m.role == "user"), "")


def rough_usage(messages: Sequence[Message], text: str) -> Usage:
    """Token counts at about four characters a token: enough to exercise budgets deterministically."""
    prompt = sum(len(m.content) for m in messages) // 4
    return Usage(prompt_tokens=prompt, completion_tokens=len(text) // 4)


class _RecordingModel:
    """What both test models share: latency, call records, and turning a reply into a `Completion`."""

    def __init__(self, name: str, latency: float, check_schema: bool) -> None:
        self.name = name
        self.latency = latency
        self.check_schema = check_schema
        self.calls: list[ModelCall] = []
        self.closed = False

    async def _answer(
        self,
        step: ScriptStep,
        messages: Sequence[Message],
        json_schema: JsonSchema | None,
        max_tokens: int | None,
        temperature: float | None,
        seed: int | None,
    ) -> Completion:
        started = time.monotonic()
        output: str | None = None
        try:
            if self.latency > 0:
                await asyncio.sleep(self.latency)
            if isinstance(step, BaseException):
                raise step
            if isinstance(step, type):  # an exception class, raised as is
                raise step()
            reply = step(messages, json_schema) if callable(step) else step
            if inspect.isawaitable(reply):
                reply = await reply
            constrained = not isinstance(reply, Unconstrained)
            if isinstance(reply, Unconstrained):
                reply = reply.reply
            completion = self._completion(reply, messages, time.monotonic() - started)
            output = completion.text
            # A reply cut off at max_tokens is what a constrained decoder gives then too: unfinished JSON.
            checked = self.check_schema and constrained and completion.finish_reason != "length"
            if checked and json_schema is not None:
                self._check_reply(completion.text, json_schema, len(self.calls) + 1)
            return completion
        finally:
            self.calls.append(
                ModelCall(
                    messages=tuple(messages),
                    json_schema=json_schema,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    seed=seed,
                    started=started,
                    finished=time.monotonic(),
                    output=output,
                )
            )

    def _check_reply(self, text: str, schema: JsonSchema, call: int) -> None:
        problem = _schema_problem(text, schema)
        if problem is not None:
            raise ScriptedReplyError(
                f"{self.name}: the reply to call #{call}, {text[:200]!r}, breaks the JSON schema of its "
                f"request: {problem}. A constrained decoder could never produce it. Fix the script, or wrap "
                "the reply in Unconstrained(...) to test output that ignores the schema."
            )

    def _completion(self, reply: str | Completion, messages: Sequence[Message], seconds: float) -> Completion:
        if isinstance(reply, Completion):
            return reply
        if not isinstance(reply, str):
            raise TypeError(f"{self.name}: a step must produce a str or a Completion, not {type(reply)!r}")
        return Completion(
            text=reply,
            usage=rough_usage(messages, reply),
            model=self.name,
            finish_reason="stop",
            seconds=seconds,
        )

    async def aclose(self) -> None:
        """Nothing to release; remembered so tests can check that callers close their models."""
        self.closed = True


class ScriptedModel(_RecordingModel):
    """Answers call N with step N of the script.

    A step is the output text, a `Completion` (to control usage or finish_reason), an exception to raise,
    or a function `(messages, json_schema) -> str | Completion` (sync or async). A call beyond the script
    raises `ScriptExhaustedError` naming the call and its last user message.
    """

    def __init__(
        self,
        steps: Sequence[ScriptStep],
        name: str = "scripted",
        latency: float = 0.0,
        *,
        check_schema: bool = True,
    ) -> None:
        super().__init__(name, latency, check_schema)
        self.steps = list(steps)
        self._next = 0

    @property
    def remaining(self) -> int:
        """Steps not yet played."""
        return len(self.steps) - self._next

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        json_schema: JsonSchema | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> Completion:
        """Play the next step of the script."""
        index = self._next
        self._next += 1  # claimed before any await, so concurrent callers get distinct steps
        if index >= len(self.steps):
            last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
            raise ScriptExhaustedError(
                f"ScriptedModel {self.name!r} got an unexpected call #{index + 1} (the script has "
                f"{len(self.steps)} steps): last user message {last_user[:200]!r}"
            )
        return await self._answer(self.steps[index], messages, json_schema, max_tokens, temperature, seed)


class FunctionModel(_RecordingModel):
    """Answers every call with `fn(messages, json_schema)`, which may be async and may raise."""

    def __init__(
        self, fn: ReplyFunction, name: str = "function", latency: float = 0.0, *, check_schema: bool = True
    ) -> None:
        super().__init__(name, latency, check_schema)
        self.fn = fn

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        json_schema: JsonSchema | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> Completion:
        """Answer with the function's reply."""
        return await self._answer(self.fn, messages, json_schema, max_tokens, temperature, seed)


def _schema_problem(text: str, schema: JsonSchema) -> str | None:
    """What keeps `text` from being a JSON value that `schema` allows, or None if nothing does."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"it is not JSON ({exc.msg} at char {exc.pos})"
    error = _best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "the top level"
    return f"{error.message} (at {where})"


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    """A validator for the schema written as `schema_json`, checked once: agents send the same few
    schemas again and again, and checking a schema costs far more than validating a reply."""
    jsonschema = _jsonschema()
    schema = json.loads(schema_json)
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ScriptedReplyError(f"the engine sent an invalid JSON schema: {exc.message}") from exc
    return validator_class(schema)


def _best_match(errors: Any) -> Any:
    return _jsonschema().exceptions.best_match(errors)


def _jsonschema() -> Any:
    try:
        import jsonschema
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "the scripted models check replies against the request's JSON schema with jsonschema: "
            "pip install 'openheavy[dev]' (or jsonschema)"
        ) from exc
    return jsonschema
