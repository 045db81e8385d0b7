"""Deterministic models for tests and demos: no network, no weights, every call recorded.

`ScriptedModel` plays a fixed script, one step per call, and fails loudly on a call the script did not
expect. `FunctionModel` answers every call with a function, for concurrent agents whose call order is not
fixed. Both ship in the package so that users' own tests can drive openheavy the same way ours do.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

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
    "rough_usage",
]

Reply: TypeAlias = str | Completion
ReplyFunction: TypeAlias = Callable[[Sequence[Message], JsonSchema | None], Reply | Awaitable[Reply]]
ScriptStep: TypeAlias = Reply | BaseException | type[BaseException] | ReplyFunction


class ScriptExhaustedError(OpenHeavyError, AssertionError):
    """A `ScriptedModel` got more calls than its script has steps.

    An `AssertionError` as well, so that pytest reports it as a failed expectation rather than a crash.
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

    def __init__(self, name: str, latency: float) -> None:
        self.name = name
        self.latency = latency
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
            completion = self._completion(reply, messages, time.monotonic() - started)
            output = completion.text
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

    def _completion(self, reply: Reply, messages: Sequence[Message], seconds: float) -> Completion:
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

    def __init__(self, steps: Sequence[ScriptStep], name: str = "scripted", latency: float = 0.0) -> None:
        super().__init__(name, latency)
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

    def __init__(self, fn: ReplyFunction, name: str = "function", latency: float = 0.0) -> None:
        super().__init__(name, latency)
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
