"""The one model-call wrapper: every call recorded with its label, schema-constrained calls bounded."""

from __future__ import annotations

import json

from fakes import ListSink
from openheavy.evals.grading import JUDGE_SCHEMA, judge_answer
from openheavy.models.base import ChatModel
from openheavy.models.recording import CallLabel, RecordingModel, output_token_bound
from openheavy.models.scripted import ScriptedModel
from openheavy.rank import rank
from openheavy.types import Completion, EventStream, Message, ModelCalled, Usage
from openheavy.verify import POINTWISE_SCHEMA, JudgeVerifier, Sample, VoteVerifier

ASK = [Message("system", "Be brief."), Message("user", "What is BM25?")]
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "maxLength": 50}},
    "required": ["answer"],
}


async def test_records_the_call_with_its_label() -> None:
    reply = Completion('{"answer": "a ranking"}', Usage(30, 7, 12), seconds=0.25)
    model = ScriptedModel([reply])
    sink = ListSink()
    recorder = RecordingModel(
        model, stream=EventStream([sink]), run_id="r1", label=CallLabel(agent="agent-2", purpose="action")
    )
    assert isinstance(recorder, ChatModel)
    assert recorder.name == model.name
    completion = await recorder.labelled(step=3).complete(ASK, json_schema=SCHEMA, temperature=0.0, seed=5)
    assert completion is reply
    [event] = sink.of("ModelCalled")
    assert event == ModelCalled(
        run_id="r1",
        agent="agent-2",
        step=3,
        purpose="action",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is BM25?"}],
        json_schema=SCHEMA,
        output='{"answer": "a ranking"}',
        prompt_tokens=30,
        completion_tokens=7,
        cached_tokens=12,
        seconds=0.25,
        at=event.at,
    )
    assert (model.calls[0].temperature, model.calls[0].seed) == (0.0, 5)
    assert recorder.label == CallLabel(agent="agent-2", purpose="action")  # `labelled` made a copy


async def test_a_schema_bounds_max_tokens_unless_the_caller_sets_it() -> None:
    model = ScriptedModel(['{"answer": "x"}', '{"answer": "y"}', "free text"])
    recorder = RecordingModel(model, stream=None, run_id="")
    await recorder.complete(ASK, json_schema=SCHEMA)
    await recorder.complete(ASK, json_schema=SCHEMA, max_tokens=7)
    await recorder.complete(ASK)
    assert [c.max_tokens for c in model.calls] == [output_token_bound(SCHEMA), 7, None]


def test_the_bound_covers_the_longest_value_the_schema_allows() -> None:
    longest = json.dumps({"answer": "x" * 50, "cite": [10**9] * 8})
    schema = {
        "type": "object",
        "properties": {
            "answer": {"type": "string", "maxLength": 50},
            "cite": {"type": "array", "items": {"type": "integer"}, "maxItems": 8},
        },
    }
    assert len(longest) <= output_token_bound(schema) < 4 * len(longest)


async def test_wrapping_a_recorder_records_once() -> None:
    sink = ListSink()
    inner = RecordingModel(ScriptedModel(["hi"]), stream=EventStream([sink]), run_id="r1")
    outer = RecordingModel(inner, stream=EventStream([sink]), run_id="r1", label=CallLabel(agent="outer"))
    await outer.complete(ASK)
    assert [e.agent for e in sink.of("ModelCalled")] == ["outer"]


async def test_rank_samples_are_recorded_through_the_wrapper() -> None:
    model = ScriptedModel(["ANSWER: 4", "ANSWER: 5"])
    sink = ListSink()
    await rank("2+2?", model, n=2, verifier=VoteVerifier(), stream=EventStream([sink]), run_id="r1")
    events = sink.of("ModelCalled")
    assert sorted((e.agent, e.step, e.purpose) for e in events) == [
        ("sample-0", 0, "sample"),
        ("sample-1", 0, "sample"),
    ]


async def test_the_judges_no_longer_cut_their_verdicts_short() -> None:
    """Both judges used a fixed max_tokens below their schema's bound (256 and 200), which could stop a
    verdict inside its reason; through the wrapper they get the bound."""
    model = ScriptedModel([json.dumps({"reason": "fine", "score": 7})])
    await JudgeVerifier(model).score("q", [Sample(0, "work", "42")])
    assert model.calls[0].max_tokens == output_token_bound(POINTWISE_SCHEMA) > 256

    model = ScriptedModel([json.dumps({"correct": True, "reason": "same"})])
    await judge_answer(model, "q", ["a"], "a")
    assert model.calls[0].max_tokens == output_token_bound(JUDGE_SCHEMA) > 200
