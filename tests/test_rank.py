"""Ranked generation: parallel samples with distinct seeds, failures kept apart, scores as events."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from fakes import ListSink
from openheavy.errors import ConfigError, ModelError
from openheavy.models.scripted import FunctionModel, ScriptedModel
from openheavy.prompts import load_prompt
from openheavy.rank import RankResult, rank, sample_messages
from openheavy.types import Completion, EventStream, JsonSchema, Message, ModelCalled, Note, Usage
from openheavy.verify import POINTWISE_SCHEMA, JudgeVerifier, Sample, VoteVerifier, make_verifier


def sampled(answer: str) -> str:
    return f"Some brief reasoning.\nANSWER: {answer}"


async def run_rank(
    model: ScriptedModel | FunctionModel, n: int, **kwargs: object
) -> tuple[RankResult, ListSink]:
    sink = ListSink()
    kwargs.setdefault("verifier", VoteVerifier())
    result = await rank("What is 6*7?", model, n=n, stream=EventStream([sink]), run_id="run-1", **kwargs)  # type: ignore[arg-type]
    return result, sink


async def test_samples_run_concurrently_with_distinct_seeds() -> None:
    model = ScriptedModel([sampled(a) for a in ("42", "41", "42", "42")], latency=0.05)
    result, _ = await run_rank(model, 4, seed=10, temperature=0.9, max_tokens=99)
    calls = model.calls
    assert len(calls) == 4
    # Every call started before any finished: the four requests were in flight together.
    assert max(c.started for c in calls) < min(c.finished for c in calls)
    assert sorted(c.seed for c in calls if c.seed is not None) == [10, 11, 12, 13]
    # sample 0 is greedy (what one call answers), the others sample at the temperature asked for
    assert sorted((c.seed, c.temperature, c.max_tokens) for c in calls) == [
        (10, 0.0, 99),
        (11, 0.9, 99),
        (12, 0.9, 99),
        (13, 0.9, 99),
    ]
    assert [s.seed for s in (r.sample for r in result.ranking)] == [10, 12, 13, 11]


async def test_result_ranks_by_the_verifier() -> None:
    model = ScriptedModel([sampled(a) for a in ("41", "42", "42.0", "Forty")])
    result, _ = await run_rank(model, 4)
    assert result.best.index == 1
    assert result.answer == "42"
    assert [(r.sample.index, r.rank) for r in result.ranking] == [(1, 1), (2, 2), (0, 3), (3, 4)]
    assert result.ranking[0].score == pytest.approx(0.5)
    assert result.ranking[0].reason == "2/4 samples agree on '42'"
    assert result.verifier == "vote"
    assert result.failed == []
    assert result.usage == sum((c.usage for c in result_samples(result)), Usage())
    assert result.usage.total > 0


def result_samples(result: RankResult) -> list[Sample]:
    return [r.sample for r in result.ranking] + result.failed


async def test_events_a_model_call_per_sample_and_a_note_per_score() -> None:
    model = ScriptedModel([sampled(a) for a in ("1", "2", "1")])
    result, sink = await run_rank(model, 3)
    calls: list[ModelCalled] = sink.of("ModelCalled")
    assert sorted(c.agent for c in calls) == ["sample-0", "sample-1", "sample-2"]
    assert {(c.purpose, c.run_id, c.step, c.json_schema is None) for c in calls} == {
        ("sample", "run-1", 0, True)
    }
    first = next(c for c in calls if c.agent == "sample-0")
    assert first.messages == [
        {"role": "system", "content": load_prompt("rank_system").strip()},
        {"role": "user", "content": sample_messages("What is 6*7?")[1].content},
    ]
    assert first.output == sampled("1")
    assert first.prompt_tokens > 0
    notes: list[Note] = sink.of("Note")
    assert [n.topic for n in notes] == ["verifier"] * 3
    assert [n.data["index"] for n in notes] == [r.sample.index for r in result.ranking]
    assert notes[0].data == {
        "verifier": "vote",
        "index": 0,
        "rank": 1,
        "score": pytest.approx(2 / 3),
        "reason": "2/3 samples agree on '1'",
        "answer": "1",
        "temperature": 0.0,
        "kind": "prose",
    }


def test_sample_prompt_puts_the_question_first_and_the_answer_line_last() -> None:
    # Small models copy the most recent instruction: asking for the ANSWER line before the question made
    # the 0.5B model write it first and skip its reasoning (GSM8K rank:1 0.07 against direct 0.23).
    messages = sample_messages("Why {braces}?")
    assert messages[0].role == "system" and "ANSWER" not in messages[0].content
    user = messages[1].content
    assert user.startswith("Why {braces}?\n")
    assert user.index("reasoning first") < user.index("ANSWER: <final answer>")


async def test_a_failing_sample_is_excluded_and_reported() -> None:
    model = ScriptedModel([sampled("7"), ModelError("server hiccup"), sampled("7")])
    result, sink = await run_rank(model, 3)
    assert [r.sample.index for r in result.ranking] == [0, 2]
    assert [(s.index, s.error) for s in result.failed] == [(1, "ModelError: server hiccup")]
    assert result.ranking[0].reason == "2/2 samples agree on '7'"
    failures = [n for n in sink.of("Note") if n.topic == "sample_failed"]
    assert [(n.agent, n.data["error"]) for n in failures] == [("sample-1", "ModelError: server hiccup")]


async def test_every_sample_failing_is_an_error() -> None:
    model = ScriptedModel([ModelError("down")] * 3)
    with pytest.raises(ModelError, match=r"all 3 samples failed; first error: ModelError: down"):
        await run_rank(model, 3)


async def test_n_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        await run_rank(ScriptedModel([]), 0)


async def test_vote_tie_goes_to_the_higher_logprob() -> None:
    model = ScriptedModel(
        [
            Completion(sampled("A"), Usage(10, 5), mean_logprob=-1.2),
            Completion(sampled("B"), Usage(10, 5), mean_logprob=-0.3),
        ]
    )
    result, _ = await run_rank(model, 2, greedy_first=False)
    assert result.best.index == 1
    assert result.best.mean_logprob == -0.3
    assert "broken by mean log-prob" in result.ranking[0].reason


async def test_with_no_majority_the_greedy_sample_is_the_answer() -> None:
    # Four different numbers: the vote cannot do better than what one greedy call answers.
    answers = iter(["17", "21", "30", "12"])  # in call order: sample 0 first
    model = FunctionModel(lambda messages, schema: sampled(next(answers)))
    result, _ = await run_rank(model, 4, verifier=make_verifier("check:numeric", None))
    greedy = next(c for c in model.calls if c.temperature == 0.0)
    assert greedy.seed == 0 and result.best.index == 0 and result.best.greedy
    assert "broken by the greedy sample (#0)" in result.ranking[0].reason


async def test_a_majority_overrules_the_greedy_sample() -> None:
    model = ScriptedModel([sampled(a) for a in ("17", "21", "21", "30")])
    result, _ = await run_rank(model, 4, verifier=make_verifier("check:numeric", None))
    assert result.answer == "21" and result.ranking[0].reason == "2/4 samples agree on '21'"


async def test_judge_verifier_usage_and_events_are_counted() -> None:
    def reply(messages: Sequence[Message], schema: JsonSchema | None) -> Completion:
        if schema is None:
            return Completion(sampled("42"), Usage(100, 20))
        assert schema == POINTWISE_SCHEMA
        return Completion(json.dumps({"reason": "fine", "score": 7}), Usage(50, 10))

    model = FunctionModel(reply)
    result, sink = await run_rank(model, 2, verifier=JudgeVerifier(model))
    assert result.usage == Usage(2 * 100 + 2 * 50, 2 * 20 + 2 * 10)
    purposes = sorted(e.purpose for e in sink.of("ModelCalled"))
    assert purposes == ["judge", "judge", "sample", "sample"]
    assert result.verifier == "judge"
    assert result.ranking[0].reason == "judge 7/10: fine"


async def test_a_sampler_replaces_plain_sampling() -> None:
    """Heavy mode ranks whole trajectories: its sampler builds the samples, evidence included."""

    async def trajectory(i: int) -> Sample:
        if i == 2:
            raise RuntimeError("agent crashed")
        return Sample(
            index=99,  # rank renumbers: the index is its bookkeeping
            text=f"searched, read, concluded {i}",
            answer="subprocess.run" if i != 1 else "os.system",
            evidence=[{"ref": 1, "url": f"file:doc{i}"}],
            usage=Usage(7, 3),
        )

    model = ScriptedModel([])  # the sampler does all the work: no model call expected
    result, sink = await run_rank(model, 4, sampler=trajectory)
    assert result.best.index == 0
    assert result.best.evidence == [{"ref": 1, "url": "file:doc0"}]
    assert [r.sample.index for r in result.ranking] == [0, 3, 1]
    assert [s.index for s in result.failed] == [2]
    assert result.usage == Usage(21, 9)
    assert sink.of("ModelCalled") == []


async def test_rank_with_a_spec_built_verifier() -> None:
    model = ScriptedModel([sampled("0.5"), sampled("\\frac{1}{2}"), sampled("0.6")])
    verifier = make_verifier("check:math", None, reference="1/2")
    result, _ = await run_rank(model, 3, verifier=verifier)
    assert [(r.sample.index, r.score) for r in result.ranking] == [(0, 1.0), (1, 1.0), (2, 0.0)]
    assert result.verifier == "check:math"
