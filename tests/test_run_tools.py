"""The agents' tools as a run option (`RunOptions.tools`, `--tools`): the python tool through
`Heavy.arun` in single and heavy runs, agents with no corpus (math), the eval runner's choice of tools,
and the checks that fail before any model call. Scripted models; the code really runs in the sandbox."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fakes import PASSAGES, MemorySearch, action, action_calls, allowed_actions, plan_reply, python_turns
from openheavy.api import Heavy
from openheavy.cli import app
from openheavy.config import Settings
from openheavy.errors import ConfigError, SandboxUnavailableError
from openheavy.evals import ModeSpec, load_dataset, run_eval
from openheavy.evals.runner import HeavyRunner
from openheavy.models.scripted import FunctionModel, ScriptedModel
from openheavy.modes import RunOptions
from openheavy.sandbox import Sandbox
from openheavy.trace import RunStore, read_trace, run_store_path
from openheavy.types import Message

FIXTURE_DATA = Path(__file__).parent / "fixtures" / "eval" / "data"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


def records(path: Path, kind: str) -> list[dict[str, Any]]:
    return [{"agent": r.agent, **r.payload} for r in read_trace(path) if r.kind == kind]


def printed(observation: str) -> str:
    """The first line the code printed, from the fenced output the model is shown."""
    lines = observation.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("What the code printed on stdout"))
    return lines[header + 2]  # after the header, the opening tag


async def test_single_agent_with_search_and_python_runs_code_and_the_trace_keeps_it(
    settings: Settings, bubblewrap: None
) -> None:
    model = ScriptedModel(
        [
            *python_turns(["print(sum(n * n for n in range(1, 11)))"]),
            action("answer", answer="385", cite=[]),
        ]
    )
    heavy = Heavy(model, MemorySearch(dict(PASSAGES)), settings=settings)
    result = await heavy.arun("Sum of squares of 1..10?", "single", RunOptions(tools=("search", "python")))
    assert result.answer == "385"

    first = model.calls[0]
    assert allowed_actions(first.json_schema) == ["search", "python"]
    system = first.messages[0].content
    assert 'the document collection "memory"' in system
    assert (
        system.index('"action": "search"')
        < system.index('"action": "python"')
        < system.index('"action": "answer"')
    )
    assert "385" in action_calls(model)[1].messages[-1].content  # the output is shown to the model

    [ran] = records(result.trace_path, "CodeRan")
    assert ran["agent"] == "agent-1" and ran["stdout"] == "385\n" and ran["isolation"] == "bwrap"
    [started] = records(result.trace_path, "RunStarted")
    assert started["corpus"] == "memory" and started["settings"]["tools"] == ["search", "python"]


async def test_without_python_the_agent_is_not_offered_it(settings: Settings) -> None:
    model = ScriptedModel([action("search", query="subprocess"), action("answer", answer="none", cite=[])])
    heavy = Heavy(model, MemorySearch(dict(PASSAGES)), settings=settings)
    await heavy.arun("q", "single", RunOptions(max_steps=2))
    assert allowed_actions(model.calls[0].json_schema) == ["search"]
    assert '"python"' not in model.calls[0].messages[0].content


async def test_python_alone_needs_no_corpus(settings: Settings, bubblewrap: None) -> None:
    model = ScriptedModel(
        [
            *python_turns(["pens = 800 + 800", "print(pens)"]),
            action("answer", answer="1600", cite=[]),
        ]
    )
    # The corpus does not exist: opening it would fail the run.
    heavy = Heavy(model, "no-such-corpus", settings=settings)
    result = await heavy.arun(
        "A shop sells 800 pens and then 800 more. How many pens?", "single", RunOptions(tools=("python",))
    )
    assert result.answer == "1600" and result.figures.searches == 0

    # The first action must use the tool (no answering before computing); then it may answer.
    assert [allowed_actions(call.json_schema) for call in action_calls(model)] == [
        ["python"],
        ["python", "answer"],
    ]
    assert model.calls[1].json_schema is None  # the script, written in free text
    system = model.calls[0].messages[0].content
    assert "no documents to search" in system and '"action": "python"' in system
    assert '"search"' not in system and "document collection" not in system
    [started] = records(result.trace_path, "RunStarted")
    assert started["corpus"] == "" and started["settings"]["tools"] == ["python"]
    assert [r["stdout"] for r in records(result.trace_path, "CodeRan")] == ["1600\n"]


async def test_heavy_gives_every_agent_python_over_one_sandbox(
    settings: Settings, bubblewrap: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[Sandbox] = []
    check = Sandbox.check
    monkeypatch.setattr(Sandbox, "check", lambda self: (checks.append(self), check(self))[1])
    systems: dict[str, str] = {}

    def respond(messages: list[Message], schema: dict[str, Any] | None) -> str:
        system = messages[0].content
        if "planner" in system:
            systems["planner"] = system
            tasks = ["compute 6 * 7", "compute 6 + 7"]
            return json.dumps(plan_reply(tasks, queries=[["product"], ["sum"]]))
        if "lead researcher" in system:
            return json.dumps(
                {"agreements": "", "conflicts": "", "short": "", "answer": "42 and 13", "cite": []}
            )
        assert "Search first for" not in messages[1].content  # agents without search get no queries
        task = messages[1].content.split("Your part of the work: ")[1].splitlines()[0]
        systems[task] = system
        if schema is None:  # asked for the script, after the action that picked python
            return f"```python\nprint({task.removeprefix('compute ')})\n```"
        if sum(m.role == "assistant" for m in messages) == 0:
            return action("python")
        return action("answer", answer=printed(messages[-1].content), cite=[])

    heavy = Heavy(FunctionModel(respond), "no-such-corpus", settings=settings)
    result = await heavy.arun(
        "What are 6 * 7 and 6 + 7?", "heavy", RunOptions(tools=("python",), max_agents=2)
    )
    assert result.answer == "42 and 13"
    ran = {r["agent"]: r["stdout"] for r in records(result.trace_path, "CodeRan")}
    assert ran == {"agent-1": "42\n", "agent-2": "13\n"}
    assert [a["answer"] for a in result.agents] == ["42", "13"]
    # Every agent was shown the python action, in one shared system prompt (prefix caches serve it once).
    agent_systems = {s for task, s in systems.items() if task != "planner"}
    assert len(agent_systems) == 1 and '"action": "python"' in agent_systems.pop()
    assert "working it out with its tools" in systems["planner"]
    assert len(checks) == 1  # one sandbox for the run, checked once before it started


def test_unknown_or_no_tools_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown tool\(s\) 'web'; agent tools are search, python"):
        RunOptions(tools=("python", "web"))
    with pytest.raises(ConfigError, match="at least one tool"):
        RunOptions(tools=())
    with pytest.raises(ConfigError, match="name each tool once"):
        RunOptions(tools=("python", "python"))
    assert RunOptions(tools=["python"]).tools == ("python",)  # type: ignore[arg-type]


async def test_a_mode_without_agents_refuses_tools_before_any_model_call(settings: Settings) -> None:
    model = ScriptedModel(["42"])
    heavy = Heavy(model, MemorySearch(dict(PASSAGES)), settings=settings)
    with pytest.raises(ConfigError, match="mode direct runs no agents, so it takes no tools"):
        await heavy.arun("q", "direct", RunOptions(tools=("python",)))
    # rank takes python for its program samples, and nothing else
    with pytest.raises(ConfigError, match=r"rank runs no agents, so it takes only python \(not search\)"):
        await heavy.arun("q", "rank", RunOptions(tools=("search", "python")))
    assert model.calls == []


async def test_missing_bubblewrap_fails_before_any_model_call(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    model = ScriptedModel([*python_turns(["print(1)"])])
    heavy = Heavy(model, MemorySearch(dict(PASSAGES)), settings=settings)
    with pytest.raises(SandboxUnavailableError, match="apt-get install bubblewrap"):
        await heavy.arun("q", "single", RunOptions(tools=("search", "python")))
    assert model.calls == []
    assert RunStore(run_store_path(settings.runs_dir)).list() == []  # no run was started


def test_ask_flags_bad_tools_and_missing_bubblewrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENHEAVY_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("OPENHEAVY_DATA_DIR", str(tmp_path / "data"))
    # A model that cannot be reached: the errors must come before anything talks to it.
    ask = ["ask", "q", "--model", "http://127.0.0.1:9/v1", "--json"]
    result = CliRunner().invoke(app, [*ask, "--tools", "search,web"], terminal_width=400)
    assert result.exit_code == 1 and "unknown tool(s) 'web'" in result.output
    result = CliRunner().invoke(app, [*ask, "--mode", "direct", "--tools", "python"], terminal_width=400)
    assert result.exit_code == 1 and "mode direct runs no agents" in result.output
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = CliRunner().invoke(app, [*ask, "--tools", "python"], terminal_width=400)
    assert result.exit_code == 1 and "apt-get install bubblewrap" in result.output


def test_the_eval_runner_keeps_the_tools_an_item_can_use(tmp_path: Path) -> None:
    runner = HeavyRunner(
        FunctionModel(lambda m, s: ""), Settings(data_dir=tmp_path), tools=("search", "python")
    )
    math = load_dataset("gsm8k", FIXTURE_DATA, limit=1)[0]
    searchable = load_dataset("hotpotqa", FIXTURE_DATA, limit=1)[0]
    # No corpus: python alone, and rank:N alternates prose and program samples.
    assert runner.options(math, ModeSpec("single"), seed=1) == (
        "single",
        RunOptions(seed=1, tools=("python",)),
    )
    assert runner.options(math, ModeSpec("rank", 3), seed=1) == (
        "rank",
        RunOptions(seed=1, n=3, tools=("python",)),
    )
    assert runner.options(math, ModeSpec("rank-tools", 3), seed=1)[0] == "rank-tools"
    # With a corpus to search, rank:N ranks research agents' trajectories.
    assert runner.options(searchable, ModeSpec("rank", 3), seed=1) == (
        "rank-tools",
        RunOptions(seed=1, n=3, tools=("search", "python")),
    )
    assert runner.options(searchable, ModeSpec("heavy", 2), seed=1)[1].tools == ("search", "python")
    # Modes without agents take no tools.
    assert runner.options(math, ModeSpec("direct"), seed=1) == ("direct", RunOptions(seed=1))
    with pytest.raises(ConfigError, match="--tools python"):
        HeavyRunner(runner.model, runner.settings).options(math, ModeSpec("single"), seed=1)


async def test_an_eval_of_math_with_python_agents(tmp_path: Path, bubblewrap: None) -> None:
    def respond(messages: list[Message], schema: dict[str, Any] | None) -> str:
        if schema is None:  # asked for the script
            numbers = [int(w) for w in messages[1].content.split() if w.isdigit()]
            return f"Add them.\n```python\nprint({numbers[0]} + {numbers[1]})\n```"
        if allowed_actions(schema) == ["python"]:
            return action("python")
        return action("answer", answer=printed(messages[-1].content), cite=[])

    settings = Settings(data_dir=tmp_path / "data")
    runner = HeavyRunner(FunctionModel(respond), settings, tools=("python",))
    items = load_dataset("gsm8k", FIXTURE_DATA, limit=1)
    out = tmp_path / "out"
    summary = await run_eval(items, [ModeSpec("single")], runner, out, progress=False, tools=("python",))
    [mode] = summary.modes
    assert mode.errors == 0 and mode.metrics[mode.primary].value == 1.0  # 800 + 800, computed in the sandbox
    # The results folder remembers the tools: resuming it with others would mix two evaluations.
    with pytest.raises(ConfigError, match="made with --tools python"):
        await run_eval(items, [ModeSpec("single")], runner, out, progress=False)


async def test_a_run_without_agents_records_no_tools(settings: Settings) -> None:
    heavy = Heavy(ScriptedModel(["42"]), MemorySearch(dict(PASSAGES)), settings=settings)
    result = await heavy.arun("What is 6 * 7?", "direct")
    [started] = records(result.trace_path, "RunStarted")
    assert started["settings"]["tools"] == [] and started["corpus"] == ""


def test_eval_of_math_with_agent_modes_points_at_the_python_tool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENHEAVY_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("OPENHEAVY_DATA_DIR", str(tmp_path / "data"))
    command = ["eval", "gsm8k", "--data-dir", str(FIXTURE_DATA), "--modes", "direct,single"]
    command += ["--model", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, command, terminal_width=400)
    said = " ".join(result.output.split())  # the error console wraps long lines
    assert result.exit_code == 1 and "or give the agents a tool that needs no corpus (--tools python)" in said
    result = CliRunner().invoke(app, [*command, "--tools", "python,web"], terminal_width=400)
    assert result.exit_code == 1 and "unknown tool(s) 'web'" in result.output
