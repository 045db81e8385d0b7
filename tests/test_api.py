"""The library API end to end with a scripted model: result, trace, run store, cancellation, streaming."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from fakes import PASSAGES, MemorySearch, action, plan_reply
from openheavy.agent import StopReason
from openheavy.api import Heavy
from openheavy.config import Settings
from openheavy.errors import ConfigError
from openheavy.models.scripted import FunctionModel, ScriptedModel
from openheavy.modes import RunOptions
from openheavy.trace import RunStore, read_trace, run_store_path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


SINGLE = [
    action("search", query="subprocess timeout"),
    action("open", ref=1),
    action("answer", answer="subprocess.run(..., timeout=5, capture_output=True) [1]", cite=[1]),
]


async def test_single_run_returns_a_cited_answer_with_figures_and_a_trace(settings: Settings) -> None:
    heavy = Heavy(ScriptedModel(SINGLE), MemorySearch(dict(PASSAGES)), settings=settings)
    result = await heavy.arun("How do I run a subprocess with a timeout?", "single")
    assert result.citations[0]["id"] == "subprocess#1" and result.citations[0]["number"] == 1
    # the opening search (the question's words, step 0, no agent's) and the agent's own
    assert result.figures.searches == 2 and result.figures.documents_read == 1
    opening = next(r for r in read_trace(result.trace_path) if r.kind == "SearchDone")
    assert (opening.payload["query"], opening.payload["step"], opening.agent) == (
        "How do I run a subprocess with a timeout?",
        0,
        "",
    )
    assert result.figures.sources_cited == 1 and result.figures.model_calls == 3
    kinds = [r.kind for r in read_trace(result.trace_path)]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished"
    assert {"ModelCalled", "SearchDone", "DocumentOpened", "AgentFinished"} <= set(kinds)
    row = RunStore(run_store_path(settings.runs_dir)).get(result.run_id)
    assert row.status == "ok" and row.answer == result.answer
    data = result.to_dict()
    assert data["run_id"] == result.run_id and data["trace_path"] == str(result.trace_path)


async def test_a_spent_budget_is_a_typed_stop_reason_and_a_note(settings: Settings) -> None:
    model = ScriptedModel([action("answer", answer="what I know", cite=[])])
    heavy = Heavy(model, MemorySearch(dict(PASSAGES)), settings=settings)
    result = await heavy.arun("q", "single", RunOptions(max_steps=1))
    assert result.stop_reason == StopReason("budget", "steps")
    assert result.to_dict()["stop_reason"] == "budget:steps"
    assert result.notes == ["agent-1: the steps budget ran out; it answered with what it had read so far"]


async def test_direct_mode_uses_no_corpus(settings: Settings) -> None:
    heavy = Heavy(ScriptedModel(["Use subprocess.run."]), "no-such-corpus", settings=settings)
    result = await heavy.arun("How?", "direct")
    assert result.answer == "Use subprocess.run." and result.citations == []
    assert result.figures.searches == 0


async def test_bad_mode_and_empty_question_are_config_errors(settings: Settings) -> None:
    heavy = Heavy(ScriptedModel([]), MemorySearch({}), settings=settings)
    with pytest.raises(ConfigError, match="unknown mode"):
        await heavy.arun("q", "turbo")
    with pytest.raises(ConfigError, match="empty"):
        await heavy.arun("   ", "single")


async def test_cancelling_a_run_keeps_its_trace_and_marks_it_cancelled(settings: Settings) -> None:
    started = asyncio.Event()

    async def hang(messages: object, schema: object) -> str:
        started.set()
        await asyncio.sleep(3600)
        return ""

    heavy = Heavy(FunctionModel(hang), MemorySearch(dict(PASSAGES)), settings=settings)
    task = asyncio.create_task(heavy.arun("q", "single"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    store = RunStore(run_store_path(settings.runs_dir))
    (row,) = store.list()
    assert row.status == "cancelled"
    records = read_trace(Path(row.trace_path or ""))
    assert records[-1].kind == "RunFinished"
    assert [r.kind for r in records].count("ModelCalled") == 0  # the hung call never returned


async def test_a_failing_model_marks_the_run_failed(settings: Settings) -> None:
    heavy = Heavy(ScriptedModel([RuntimeError("boom")]), MemorySearch(dict(PASSAGES)), settings=settings)
    with pytest.raises(Exception, match="boom"):
        await heavy.arun("q", "single")
    (row,) = RunStore(run_store_path(settings.runs_dir)).list()
    assert row.status == "failed" and "boom" in (row.error or "")


async def test_stream_yields_events_as_they_happen(settings: Settings) -> None:
    heavy = Heavy(ScriptedModel(SINGLE), MemorySearch(dict(PASSAGES)), settings=settings)
    kinds = [event.kind async for event in heavy.stream("q", "single")]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished"
    assert kinds.index("SearchDone") < kinds.index("DocumentOpened") < kinds.index("AgentFinished")


@pytest.mark.parametrize("leave", ["close", "cancel"])
async def test_a_stream_left_early_has_recorded_its_run_cancelled_when_it_returns(
    settings: Settings, leave: str
) -> None:
    """A server frees a run's slot as soon as its stream ends: by then the run must be over and recorded,
    whether the consumer closed the stream or was itself cancelled (a client that went away)."""
    started, hung_call_cancelled = asyncio.Event(), asyncio.Event()

    async def hang(messages: object, schema: object) -> str:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # cleaning up takes a moment, as closing an HTTP response does
            hung_call_cancelled.set()
            raise
        return ""

    heavy = Heavy(FunctionModel(hang), MemorySearch(dict(PASSAGES)), settings=settings)
    events: Any = heavy.stream("q", "single")
    assert (await anext(events)).kind == "RunStarted"
    if leave == "close":
        await started.wait()
        await events.aclose()
    else:

        async def consume() -> None:
            async for _ in events:
                pass

        consumer = asyncio.create_task(consume())
        await started.wait()
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
    # no await since: the run ended and was recorded before the stream returned
    assert hung_call_cancelled.is_set()
    (row,) = RunStore(run_store_path(settings.runs_dir)).list()
    assert row.status == "cancelled" and row.error == "cancelled by the user"
    assert read_trace(Path(row.trace_path or ""))[-1].kind == "RunFinished"


def test_sync_run(settings: Settings) -> None:
    heavy = Heavy(ScriptedModel(SINGLE), MemorySearch(dict(PASSAGES)), settings=settings)
    result = heavy.run("q", "single")
    assert result.answer.endswith("[1]")


async def test_trace_file_gives_back_every_prompt_whole(settings: Settings) -> None:
    from fakes import ListSink

    sink = ListSink()
    heavy = Heavy(ScriptedModel(SINGLE), MemorySearch(dict(PASSAGES)), settings=settings)
    result = await heavy.arun("q", "single", sinks=[sink])
    emitted = [e.messages for e in sink.of("ModelCalled")]
    stored = [r.payload["messages"] for r in read_trace(result.trace_path) if r.kind == "ModelCalled"]
    assert stored == emitted and len(emitted[-1]) == 6
    # on disk, later calls store only what they add to the agent's previous prompt
    lines = result.trace_path.read_text().splitlines()
    assert sum('"messages_prefix"' in line for line in lines) == 2


async def test_rank_mode_votes_over_parallel_samples(settings: Settings) -> None:
    outputs = iter(["x = 4\nANSWER: 4", "ANSWER: 5", "so ANSWER: 4"])
    model = FunctionModel(lambda messages, schema: next(outputs))
    heavy = Heavy(model, "unused-corpus", settings=settings)
    result = await heavy.arun("What is 2+2?", "rank", RunOptions(n=3, verifier="check:numeric"))
    assert result.answer == "4"
    assert next(r["answer"] for r in result.ranking or []) == "4"
    assert len(result.ranking or []) == 3
    assert {c.seed for c in model.calls} == {0, 1, 2}
    assert result.figures.searches == 0


async def test_rank_with_tools_ranks_whole_research_trajectories(settings: Settings) -> None:
    def respond(messages: list[object], schema: dict[str, object] | None) -> str:
        turns = sum(getattr(m, "role", "") == "assistant" for m in messages)
        if turns == 0:
            return action("search", query="subprocess timeout")
        if turns == 1:
            return action("open", ref=1)
        return action("answer", answer="subprocess.run with timeout [1]", cite=[1])

    heavy = Heavy(FunctionModel(respond), MemorySearch(dict(PASSAGES)), settings=settings)
    result = await heavy.arun("q", "rank-tools", RunOptions(n=2, verifier="vote"))
    assert result.answer == "subprocess.run with timeout [1]"
    assert result.citations[0]["id"] == "subprocess#1"
    assert len(result.agents) == 2 and len(result.ranking or []) == 2
    # the opening search, then the first agent's own; the second agent's identical one hit the cache
    assert (result.figures.searches, result.figures.search_cache_hits) == (2, 1)


def test_bad_run_option_values_are_config_errors_naming_each_problem() -> None:
    with pytest.raises(
        ConfigError, match=r"n must be at least 1, got 0; max_seconds must be more than 0 and finite"
    ):
        RunOptions(n=0, max_seconds=0)
    with pytest.raises(ConfigError, match="agents must be at least 1"):
        RunOptions(agents=0)
    for endless in (float("nan"), float("inf")):  # nan compares false to everything: it would disable it
        with pytest.raises(ConfigError, match="max_seconds must be more than 0 and finite"):
            RunOptions(max_seconds=endless)


async def test_heavy_rank_returns_the_plan_and_the_ranking(settings: Settings) -> None:
    import json

    def respond(messages: list[Any], schema: dict[str, Any] | None) -> str:
        if "planner" in messages[0].content:
            return json.dumps(plan_reply(["find run", "find shlex"]))
        turns = sum(m.role == "assistant" for m in messages)
        if turns == 0:
            return action("search", query="shlex" if "shlex" in messages[1].content else "run")
        if turns == 1:
            return action("open", ref=1)
        return action("answer", answer="answer [1]", cite=[1])

    heavy = Heavy(FunctionModel(respond), MemorySearch(dict(PASSAGES)), settings=settings)
    result = await heavy.arun("q", "heavy-rank", RunOptions(verifier="vote"))
    assert result.plan is not None
    assert (result.plan["answer_shape"], result.plan["tasks"], result.plan["origin"]) == (
        "long",
        ["find run", "find shlex"],
        "model",
    )
    assert result.plan["queries"] == [["run"], ["shlex"]]
    assert len(result.ranking or []) == 2 and len(result.agents) == 2
    assert result.figures.by_purpose.keys() >= {"plan", "action"}
    assert "synthesis" not in result.figures.by_purpose


async def test_heavy_mode_plans_researches_and_synthesizes(settings: Settings) -> None:
    import json

    def respond(messages: list[Any], schema: dict[str, Any] | None) -> str:
        if "planner" in messages[0].content:
            return json.dumps(plan_reply(["find run", "find shlex"]))
        if "lead researcher" in messages[0].content:
            return json.dumps(
                {
                    "agreements": "",
                    "conflicts": "",
                    "short": "",
                    "answer": "split [2] and run [1]",
                    "cite": [],
                }
            )
        turns = sum(m.role == "assistant" for m in messages)
        if turns == 0:
            return action("search", query="shlex" if "shlex" in messages[1].content else "subprocess run")
        if turns == 1:
            return action("open", ref=1)
        return action("answer", answer="found [1]", cite=[1])

    heavy = Heavy(FunctionModel(respond), MemorySearch(dict(PASSAGES)), settings=settings)
    result = await heavy.arun("q", "heavy", RunOptions(max_agents=2))
    assert result.mode == "heavy" and result.plan is not None and result.plan["origin"] == "model"
    # run-wide numbers: agent-1 read subprocess#1 ([1]), agent-2 shlex#1 ([2]); renumbered 1..k in the answer
    assert result.answer == "split [1] and run [2]"
    assert [(c["number"], c["id"], c["read_by"]) for c in result.citations] == [
        (1, "shlex#1", ["agent-2"]),
        (2, "subprocess#1", ["agent-1"]),
    ]
    assert [a["task"] for a in result.agents] == ["find run", "find shlex"]
    assert result.ranking is None and "synthesis" in result.figures.by_purpose
