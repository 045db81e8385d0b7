"""Budgets are enforced during calls, in every mode: the time left is every model and tool call's timeout
(retries included), each call's bound is checked against the tokens left before it starts (samples and
verifiers too), a run never spends more than one call's bound past its budget, and says which budget
stopped what. Agents and samples are capped; budget values are validated."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fakes import PASSAGES, ListSink, MemorySearch, action, allowed_actions, plan_reply, silent_server
from openheavy import cli
from openheavy.agent import Budget, ResearchAgent, StopReason
from openheavy.api import Heavy
from openheavy.config import Settings, load_settings
from openheavy.errors import BudgetExceededError, ConfigError, OpenHeavyError
from openheavy.models.budget import estimate_prompt_tokens
from openheavy.models.openai_compat import OpenAICompatModel
from openheavy.models.recording import RecordingModel
from openheavy.models.scripted import FunctionModel, ModelCall
from openheavy.modes import MODES, RunOptions
from openheavy.search.cache import CachedSearch
from openheavy.trace import RunStore, run_store_path
from openheavy.types import Completion, EventStream, JsonSchema, Message, Usage

# A liveness guard, not a timing assertion: without the budget these runs never end.
NEVER = 60.0


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


def role_of(messages: Sequence[Message]) -> str:
    system = messages[0].content
    for marker, role in (
        ("planner", "planner"),
        ("lead researcher", "synthesizer"),
        ("research agent", "agent"),
    ):
        if marker in system:
            return role
    return "judge" if "judge" in system else "sample"


def team(messages: Sequence[Message], schema: JsonSchema | None) -> str:
    """A well-behaved model for every mode: plans, researches, synthesizes, samples, judges."""
    role = role_of(messages)
    if role == "planner":
        count = schema["properties"]["tasks"]["minItems"] if schema else 2
        return json.dumps(plan_reply([f"part {i} of running" for i in range(1, count + 1)]))
    if role == "synthesizer":
        synthesis = {"agreements": "", "conflicts": "", "short": "run", "answer": "Use run [1]."}
        return json.dumps({**synthesis, "cite": [1]})
    if role == "judge":
        properties = (schema or {}).get("properties", {})
        if "winner" in properties:
            return json.dumps({"reason": "A is fine", "winner": "A"})
        return json.dumps({"reason": "fine", "score": 7})
    if role == "sample":
        return "Reasoning.\nANSWER: 42"
    options = allowed_actions(schema)
    turns = sum(m.role == "assistant" for m in messages)
    if "answer" in options and (turns >= 2 or options == ["answer"]):
        cite = schema["anyOf"][-1] if schema and "anyOf" in schema else schema
        allowed = (cite or {}).get("properties", {}).get("cite", {}).get("items", {}).get("enum", [])
        return action(
            "answer", answer="Use run [1]." if 1 in allowed else "Use run.", cite=[1] if 1 in allowed else []
        )
    if turns == 0 or "open" not in options:
        return action("search", query="subprocess run")
    return action("open", ref=1)


def call_bound(call: ModelCall) -> int:
    return estimate_prompt_tokens(call.messages) + (call.max_tokens or 0)


async def spent(heavy: Heavy, settings: Settings, question: str, mode: str, options: RunOptions) -> int:
    """Tokens the run spent as its figures record them, whether it answered or failed."""
    try:
        result = await heavy.arun(question, mode, options)
    except OpenHeavyError:
        row = RunStore(run_store_path(settings.runs_dir)).list(limit=1)[0]
        assert row.status == "failed"
        return row.run_figures.total_tokens
    return result.figures.total_tokens


# ------------------------------------------------------------------ tokens


@pytest.mark.parametrize("budget", [500, 4000])
@pytest.mark.parametrize("mode", list(MODES))
async def test_no_mode_spends_more_than_its_token_budget_plus_one_call(
    settings: Settings, mode: str, budget: int
) -> None:
    model = FunctionModel(team)
    heavy = Heavy(model, MemorySearch(dict(PASSAGES)), settings=settings)
    options = RunOptions(max_tokens=budget, agents=4, n=12, verifier="judge")
    total = await spent(heavy, settings, "How do I run a command?", mode, options)
    largest = max((call_bound(c) for c in model.calls), default=0)
    assert total <= budget + largest, (total, [c.output for c in model.calls])
    # and in fact within the budget itself: every bound was checked before its call
    assert total <= budget
    if budget == 4000:
        assert model.calls  # the budget let some work happen


async def test_rank_with_20_samples_runs_only_those_that_fit_and_says_so(settings: Settings) -> None:
    model = FunctionModel(team)
    heavy = Heavy(model, MemorySearch(dict(PASSAGES)), settings=settings)
    result = await heavy.arun("What is 6 * 7?", "rank", RunOptions(max_tokens=2000, n=20))
    assert result.answer == "42" and result.figures.total_tokens <= 2000
    refused = [note for note in result.notes if "the token budget of 2,000" in note]
    assert 0 < len(refused) < 20 and len(model.calls) == 20 - len(refused)


async def test_a_model_reporting_absurd_usage_gets_no_further_call(settings: Settings) -> None:
    def greedy(messages: Sequence[Message], schema: JsonSchema | None) -> Completion:
        return Completion(team(messages, schema), usage=Usage(prompt_tokens=75_000, completion_tokens=30))

    model = FunctionModel(greedy)
    heavy = Heavy(model, MemorySearch(dict(PASSAGES)), settings=settings)
    with pytest.raises(OpenHeavyError, match="the token budget of 60,000 has 0 tokens left"):
        await heavy.arun("How do I run a command?", "single", RunOptions(max_tokens=60_000))
    assert len(model.calls) == 1  # the one call that reported it; none after
    row = RunStore(run_store_path(settings.runs_dir)).list(limit=1)[0]
    assert row.status == "failed" and row.run_figures.total_tokens == 75_030


async def test_heavy_with_absurd_usage_stops_after_the_planner(settings: Settings) -> None:
    def greedy(messages: Sequence[Message], schema: JsonSchema | None) -> Completion:
        return Completion(team(messages, schema), usage=Usage(prompt_tokens=75_000))

    model = FunctionModel(greedy)
    heavy = Heavy(model, MemorySearch(dict(PASSAGES)), settings=settings)
    with pytest.raises(OpenHeavyError, match="stopped by the budget before they could answer"):
        await heavy.arun("How do I run a command?", "heavy", RunOptions(max_tokens=60_000, agents=4))
    assert len(model.calls) == 1


# ------------------------------------------------------------------ time


def hang(messages: Sequence[Message], schema: JsonSchema | None) -> Any:
    async def forever() -> str:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return forever()


@pytest.mark.parametrize("mode", list(MODES))
async def test_a_hung_model_ends_the_run_when_its_time_budget_runs_out(settings: Settings, mode: str) -> None:
    heavy = Heavy(FunctionModel(hang), MemorySearch(dict(PASSAGES)), settings=settings)
    options = RunOptions(max_seconds=0.3, agents=2, n=3)
    with pytest.raises(OpenHeavyError) as failed:
        await asyncio.wait_for(heavy.arun("How do I run a command?", mode, options), NEVER)
    assert "the time budget of 0.3 s" in str(failed.value)
    row = RunStore(run_store_path(settings.runs_dir)).list(limit=1)[0]
    assert row.status == "failed" and "time budget" in (row.error or "")


async def test_the_time_budget_bounds_a_hung_server_retries_included(settings: Settings) -> None:
    """A real HTTP server that never answers, a 600 s request timeout and 3 retries: the run's 0.5 s
    budget is the call's timeout."""
    with silent_server() as url:
        base_url, _, name = url.partition("#")
        model = OpenAICompatModel(base_url, name, timeout=600.0, max_retries=3)
        heavy = Heavy(model, MemorySearch(dict(PASSAGES)), settings=settings)
        try:
            with pytest.raises(BudgetExceededError, match=r"ran out during the direct call at step 1"):
                await asyncio.wait_for(heavy.arun("q?", "direct", RunOptions(max_seconds=0.5)), NEVER)
        finally:
            await model.aclose()


async def test_the_time_budget_bounds_a_tool_call_and_names_it() -> None:
    slow = MemorySearch(dict(PASSAGES), latency=3600.0)
    model = FunctionModel(team)
    agent = ResearchAgent(
        model,
        CachedSearch(slow),
        stream=EventStream([ListSink()]),
        run_id="r",
        budget=Budget(max_tokens=10**6, max_seconds=0.3),
    )
    result = await asyncio.wait_for(agent.run("How do I run a command?"), NEVER)
    assert result.stop_reason == StopReason("budget", "time") and not result.ok
    assert "the time budget of 0.3 s ran out during agent-1's search at step 1" in (result.error or "")


async def test_every_call_reserves_its_bound_and_releases_it() -> None:
    budget = Budget(max_tokens=10_000, max_seconds=math.inf)
    seen: list[int] = []

    async def reply(messages: Sequence[Message], schema: JsonSchema | None) -> str:
        seen.append(budget.reserved)
        return "ok"

    recorder = RecordingModel(FunctionModel(reply), stream=None, run_id="r", budget=budget)
    messages = [Message("user", "x" * 300)]
    await asyncio.gather(*(recorder.complete(messages, max_tokens=100) for _ in range(3)))
    bound = estimate_prompt_tokens(messages) + 100
    assert sorted(seen) == [bound, 2 * bound, 3 * bound] or max(seen) <= 3 * bound
    assert budget.reserved == 0 and budget.used.total > 0


# ------------------------------------------------------------------ caps and validation


@pytest.mark.parametrize(
    ("mode", "options", "problem"),
    [
        ("heavy", RunOptions(agents=500), "--agents 500 is more than agent_limit 16"),
        ("rank", RunOptions(n=1000), "--n 1000 is more than sample_limit 64"),
        ("rank-tools", RunOptions(n=20), "--n 20 is more than agent_limit 16"),
        ("heavy", RunOptions(max_agents=17), "--max-agents 17 is more than agent_limit 16"),
    ],
)
async def test_agents_and_samples_above_the_limits_are_refused_before_the_run(
    settings: Settings, mode: str, options: RunOptions, problem: str
) -> None:
    model = FunctionModel(team)
    heavy = Heavy(model, MemorySearch(dict(PASSAGES)), settings=settings)
    with pytest.raises(ConfigError, match=problem):
        await heavy.arun("q?", mode, options)
    assert model.calls == [] and not settings.runs_dir.exists()


async def test_the_limits_are_settings(settings: Settings) -> None:
    raised = settings.model_copy(update={"sample_limit": 1000})
    heavy = Heavy(FunctionModel(team), MemorySearch(dict(PASSAGES)), settings=raised)
    result = await heavy.arun("What is 6 * 7?", "rank", RunOptions(n=100, verifier="vote"))
    assert result.answer == "42"


@pytest.mark.parametrize(
    ("flags", "problem"), [(["--agents", "500"], "agent_limit"), (["--n", "1000"], "sample_limit")]
)
def test_the_cli_refuses_too_many_agents_or_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str], problem: str
) -> None:
    monkeypatch.setenv("OPENHEAVY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OPENHEAVY_CONFIG", str(tmp_path / "none.toml"))
    result = CliRunner().invoke(
        cli.app, ["ask", "--mode", "heavy", "--model", "http://127.0.0.1:9/v1#m", *flags, "q?"]
    )
    assert result.exit_code == 1 and problem in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("seconds", [-1.0, 0.0, math.nan, math.inf])
def test_bad_time_budgets_are_refused(seconds: float) -> None:
    with pytest.raises(ConfigError, match="max_seconds must be more than 0 and finite"):
        RunOptions(max_seconds=seconds)


@pytest.mark.parametrize("tokens", [-1, 0])
def test_bad_token_budgets_are_refused(tokens: int) -> None:
    with pytest.raises(ConfigError, match="max_tokens must be at least 1"):
        RunOptions(max_tokens=tokens)


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("OPENHEAVY_MAX_SECONDS", "nan", "max_seconds: input should be a finite number (got 'nan')"),
        ("OPENHEAVY_MAX_SECONDS", "inf", "max_seconds: input should be a finite number"),
        ("OPENHEAVY_MAX_SECONDS", "0", "max_seconds: input should be greater than 0"),
        ("OPENHEAVY_MAX_TOKENS", "-1", "max_tokens: input should be greater than or equal to 1 (got '-1')"),
        ("OPENHEAVY_MAX_STEPS", "0", "max_steps: input should be greater than or equal to 1"),
        ("OPENHEAVY_AGENT_LIMIT", "0", "agent_limit: input should be greater than or equal to 1"),
    ],
)
def test_bad_budget_settings_are_refused_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str, problem: str
) -> None:
    monkeypatch.setenv("OPENHEAVY_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert problem in str(error.value) and "fix the flag, OPENHEAVY_* variable or" in str(error.value)
