"""The deterministic test models that ship in the package."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pytest

from fakes import PASSAGES, MemorySearch
from openheavy.agent import ResearchAgent
from openheavy.errors import ModelError, OpenHeavyError
from openheavy.models.base import ChatModel
from openheavy.models.scripted import (
    FunctionModel,
    ScriptedModel,
    ScriptedReplyError,
    ScriptExhaustedError,
    Unconstrained,
)
from openheavy.search.cache import CachedSearch
from openheavy.types import Completion, EventStream, JsonSchema, Message, Usage

ASK = [Message("system", "sys"), Message("user", "What is BM25?")]


async def test_plays_steps_in_order_and_records_calls() -> None:
    model = ScriptedModel(['{"first": 1}', "second answer"])
    assert isinstance(model, ChatModel)
    one = await model.complete(ASK, json_schema={"type": "object"}, max_tokens=10, seed=3)
    two = await model.complete(ASK, temperature=0.5)
    assert (one.text, two.text) == ('{"first": 1}', "second answer")
    assert model.remaining == 0
    first = model.calls[0]
    assert first.json_schema == {"type": "object"}
    assert (first.max_tokens, first.seed, first.temperature) == (10, 3, None)
    assert first.last_user_message == "What is BM25?"
    assert first.output == '{"first": 1}'
    assert first.started <= first.finished <= model.calls[1].started
    assert model.calls[1].temperature == 0.5


async def test_usage_is_four_characters_a_token() -> None:
    model = ScriptedModel(["x" * 40])
    out = await model.complete([Message("user", "y" * 80)])
    assert out.usage == Usage(prompt_tokens=20, completion_tokens=10)
    assert out.finish_reason == "stop"


async def test_unexpected_call_fails_loudly() -> None:
    model = ScriptedModel(["only"])
    await model.complete(ASK)
    with pytest.raises(ScriptExhaustedError, match=r"unexpected call #2 .*'What is BM25\?'") as info:
        await model.complete(ASK)
    assert isinstance(info.value, AssertionError)
    assert isinstance(info.value, OpenHeavyError)


async def test_exception_steps_are_raised_and_recorded() -> None:
    model = ScriptedModel([ModelError("server down"), TimeoutError, "recovered"])
    with pytest.raises(ModelError, match="server down"):
        await model.complete(ASK)
    with pytest.raises(TimeoutError):
        await model.complete(ASK)
    assert (await model.complete(ASK)).text == "recovered"
    assert [c.output for c in model.calls] == [None, None, "recovered"]


async def test_callable_and_async_callable_steps_see_the_request() -> None:
    def echo(messages: Sequence[Message], schema: JsonSchema | None) -> str:
        return json.dumps(f"{messages[-1].content} / {sorted(schema or {})}")

    async def later(messages: Sequence[Message], schema: JsonSchema | None) -> Completion:
        await asyncio.sleep(0)
        return Completion("done", usage=Usage(1, 2, 3), finish_reason="length")

    model = ScriptedModel([echo, later])
    echoed = await model.complete(ASK, json_schema={"type": "string"})
    assert json.loads(echoed.text) == "What is BM25? / ['type']"
    out = await model.complete(ASK)
    assert (out.text, out.usage.cached_tokens, out.finish_reason) == ("done", 3, "length")


async def test_latency_makes_concurrent_calls_overlap() -> None:
    model = ScriptedModel(["a", "b", "c"], latency=0.05)
    outs = await asyncio.gather(*(model.complete(ASK) for _ in range(3)))
    assert sorted(o.text for o in outs) == ["a", "b", "c"]
    # All three were in flight at once: each started before any finished.
    assert max(c.started for c in model.calls) < min(c.finished for c in model.calls)


async def test_function_model_answers_every_call() -> None:
    async def by_role(messages: Sequence[Message], schema: JsonSchema | None) -> str:
        return "plan" if "plan" in messages[-1].content else "answer"

    model = FunctionModel(by_role, name="fn")
    outs = await asyncio.gather(
        model.complete([Message("user", "plan this")]), model.complete([Message("user", "go")])
    )
    assert [o.text for o in outs] == ["plan", "answer"]
    assert len(model.calls) == 2
    assert outs[0].model == "fn"
    await model.aclose()
    assert model.closed


async def test_a_step_of_the_wrong_type_is_a_clear_error() -> None:
    model = FunctionModel(lambda m, s: 42)  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match="must produce a str or a Completion"):
        await model.complete(ASK)


# ---------------------------------------------------------------- replies against the request's schema

ACTION: JsonSchema = {
    "type": "object",
    "properties": {"action": {"type": "string", "enum": ["search"]}, "query": {"type": "string"}},
    "required": ["action", "query"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ("Sure! I will search.", r"it is not JSON \(Expecting value at char 0\)"),
        ('```json\n{"action": "search", "query": "x"}\n```', "it is not JSON"),
        ('{"action": "answer", "query": "x"}', r"'answer' is not one of \['search'\] \(at action\)"),
        ('{"action": "search"}', "'query' is a required property"),
        ('{"action": "search", "query": "x", "extra": 1}', "Additional properties are not allowed"),
    ],
)
async def test_a_reply_the_schema_forbids_fails_the_test(reply: str, problem: str) -> None:
    model = ScriptedModel([reply])
    with pytest.raises(
        ScriptedReplyError, match=rf"reply to call #1, .* breaks the JSON schema.*: {problem}"
    ):
        await model.complete(ASK, json_schema=ACTION)
    assert model.calls[0].output == reply  # recorded as sent, for the failure report


async def test_a_schema_violation_is_not_swallowed_by_the_engines_error_isolation() -> None:
    # The engine keeps one failing agent from stopping a run (`except Exception`); a broken script must
    # still fail the test.
    assert not issubclass(ScriptedReplyError, Exception)
    model = FunctionModel(lambda messages, schema: '{"action": "answer", "answer": "early", "cite": []}')
    agent = ResearchAgent(model, CachedSearch(MemorySearch(dict(PASSAGES))), stream=EventStream(), run_id="r")
    with pytest.raises(ScriptedReplyError, match="function: the reply to call #1"):
        await agent.run("q")


async def test_unconstrained_cut_off_and_schemaless_replies_are_not_checked() -> None:
    model = ScriptedModel(
        [
            Unconstrained("Sure! I will search."),
            Completion('{"action": "search", "query": "cut of', finish_reason="length"),
            "free text",
        ]
    )
    assert (await model.complete(ASK, json_schema=ACTION)).text == "Sure! I will search."
    assert (await model.complete(ASK, json_schema=ACTION)).finish_reason == "length"
    assert (await model.complete(ASK)).text == "free text"
    unchecked = FunctionModel(lambda messages, schema: "anything", check_schema=False)  # for benchmarks
    assert (await unchecked.complete(ASK, json_schema=ACTION)).text == "anything"


async def test_an_invalid_schema_is_the_engines_bug() -> None:
    with pytest.raises(ScriptedReplyError, match="invalid JSON schema"):
        await ScriptedModel(["{}"]).complete(ASK, json_schema={"type": "objekt"})
