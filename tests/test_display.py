"""The live display and the trace / runs / answer renderers, fed with what the engine really emitted: runs
of `Heavy` with a scripted model over an in-memory corpus, their events and the traces they wrote."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
from io import StringIO
from pathlib import Path
from typing import Any, TypeVar

import pytest
from rich.console import Console

from fakes import MemorySearch, action
from openheavy.api import Heavy, RunOptions
from openheavy.config import Settings
from openheavy.display.live import LiveDisplay, describe_event
from openheavy.display.render import render_answer, render_runs, render_summary, render_trace
from openheavy.models.scripted import FunctionModel, ScriptedModel, Unconstrained
from openheavy.trace import (
    JsonlTraceSink,
    MetricsSink,
    RunFigures,
    RunStore,
    TraceRecord,
    read_trace,
    run_store_path,
    trace_path,
)
from openheavy.types import (
    ActionParsed,
    DocumentOpened,
    Event,
    EventStream,
    JsonSchema,
    Message,
    ModelCalled,
    RunFinished,
)

SNAPSHOTS = Path(__file__).parent / "snapshots"
E = TypeVar("E", bound=Event)
QUESTION = "How do I time out subprocess.run?"
# Text that looks like rich markup must reach the screen as written, never as styling.
MARKUP = "[bold]TimeoutExpired[/bold]"
PASSAGES = {
    "subprocess#1": (
        "subprocess — run",
        f"subprocess.run(args, timeout=5) waits; {MARKUP} is raised when the timeout expires.",
    ),
    "subprocess#2": (
        "subprocess — check_output",
        "check_output runs a command and returns its output; it also accepts a timeout.",
    ),
    "shlex#1": ("shlex — split", "shlex.split splits a command line string like a shell would."),
}

SINGLE = [
    Unconstrained("search for subprocess timeout"),  # not JSON: rejected, and the agent is asked again
    action("search", query="subprocess timeout"),
    action("open", ref=1),
    # [5] was never seen: the engine drops it and says so
    action("answer", answer="Pass timeout= to subprocess.run [1]; compare [5].", cite=[1]),
]
TASKS = ["the timeout argument", "what is raised"]
HEAVY_ANSWER = "Pass timeout=; TimeoutExpired is raised when it expires [1]."


def heavy_team(messages: list[Message], schema: JsonSchema | None) -> str:
    """The planner, two research agents and the synthesizer, told apart by the schema they are asked for
    and by the sub-task in the agent's prompt."""
    properties = (schema or {}).get("properties", {})
    if "tasks" in properties:
        tasks = [
            {"task": TASKS[0], "queries": ["timeout argument"]},
            {"task": TASKS[1], "queries": ["TimeoutExpired"]},
        ]
        return json.dumps({"answer_shape": "long", "facet": "", "values": [], "tasks": tasks})
    if "agreements" in properties:
        return json.dumps(
            {"agreements": "both", "conflicts": "none", "short": "", "answer": HEAVY_ANSWER, "cite": [1]}
        )
    turns = sum(message.role == "assistant" for message in messages)
    # The second agent first repeats the first one's search (in other words): the team's query log
    # does not run it again, and the agent searches something else.
    steps = [action("search", query="subprocess timeout")]
    if TASKS[1] in messages[1].content:
        steps = [action("search", query="Timeout, subprocess?"), action("search", query="TimeoutExpired")]
    steps += [action("open", ref=1), action("answer", answer="See the documentation [1].", cite=[1])]
    return steps[turns]


def collect(
    settings: Settings, model: Any, mode: str, question: str = QUESTION, **options: Any
) -> list[Event]:
    """The events of one real run, as `Heavy.stream` yields them."""

    async def run() -> list[Event]:
        heavy = Heavy(model, MemorySearch(dict(PASSAGES)), settings=settings)
        return [event async for event in heavy.stream(question, mode, RunOptions(**options))]

    return asyncio.run(run())


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # The scripts number their own searches' results and pick their own first searches; the opening
    # search's line and the planned first search: test_opening.py
    return Settings(data_dir=tmp_path_factory.mktemp("display"), opening_search=False, planned_search=False)


@pytest.fixture(scope="module")
def single_run(settings: Settings) -> list[Event]:
    return collect(settings, ScriptedModel(SINGLE), "single")


@pytest.fixture(scope="module")
def heavy_run(settings: Settings) -> list[Event]:
    return collect(settings, FunctionModel(heavy_team), "heavy", agents=2)


def written_trace(events: list[Event], settings: Settings) -> list[TraceRecord]:
    """The trace the engine wrote for the run of `events`."""
    return read_trace(trace_path(settings.runs_dir, events[0].run_id))


def of_kind(events: list[Event], kind: type[E]) -> list[E]:
    return [event for event in events if isinstance(event, kind)]


def plain_console(width: int = 100) -> Console:
    return Console(file=StringIO(), force_terminal=False, width=width, color_system=None)


def output(console: Console) -> str:
    assert isinstance(console.file, StringIO)
    return console.file.getvalue()


# ---------------------------------------------------------------- live display


def plain_lines(events: list[Event]) -> str:
    """What the display prints for `events` where there is no terminal."""
    console = plain_console()
    display = LiveDisplay(console)
    for event in events:
        display.handle(event)
    return output(console)


def test_the_runs_are_what_the_display_tests_need(single_run: list[Event], heavy_run: list[Event]) -> None:
    kinds = {event.kind for event in single_run}
    assert {"OutputRejected", "CitationDropped", "SearchDone", "DocumentOpened", "AgentFinished"} <= kinds
    assert {event.agent for event in heavy_run} >= {"planner", "agent-1", "agent-2", "synthesizer"}
    assert [event.status for event in of_kind(single_run + heavy_run, RunFinished)] == ["ok", "ok"]


@pytest.mark.parametrize("run", ["single_run", "heavy_run"])
def test_plain_display_has_no_control_codes_and_names_every_agent(
    run: str, request: pytest.FixtureRequest
) -> None:
    events: list[Event] = request.getfixturevalue(run)
    console = plain_console()
    display = LiveDisplay(console)
    assert display.live is False
    stream = EventStream([display])
    for event in events:
        stream.emit(event)
    stream.close()
    assert stream.sink_errors == []
    text = output(console)
    assert "\x1b" not in text
    for agent in {e.agent for e in events if e.agent}:
        assert f"[{agent}]" in text
    assert '[agent-1] step 1 search "subprocess timeout" → 2 hits' in text
    opened = of_kind(events, DocumentOpened)[0]
    assert f"[agent-1] step 2 open [1] subprocess — run · {len(opened.text_shown)} chars shown" in text
    assert "[agent-1] finished (answered) after 3 steps · 1 source\n" in text
    assert text.rstrip().endswith("ok")


def test_plain_display_shows_rejected_output_and_dropped_citations(single_run: list[Event]) -> None:
    text = plain_lines(single_run)
    assert "[agent-1] step 1 output rejected: " in text
    assert "[agent-1] citation [5] dropped: never seen\n" in text


def test_plain_display_marks_cache_hits_and_repeated_searches(heavy_run: list[Event]) -> None:
    text = plain_lines(heavy_run)
    assert re.search(r"\[agent-2\] step 3 open \[1\] subprocess — run · \d+ chars shown \(cached\)", text)
    assert re.search(r'\[agent-2\] step 1 search "Timeout, subprocess\?" repeats agent-1\'s search: ', text)
    assert "[planner] plan: " in text


def test_plain_lines_are_never_wrapped(single_run: list[Event]) -> None:
    console = plain_console(width=40)
    LiveDisplay(console).handle(single_run[0])
    assert len(output(console).splitlines()) == 1


def test_quiet_display_prints_nothing_but_still_counts(single_run: list[Event]) -> None:
    console = plain_console()
    display = LiveDisplay(console, quiet=True)
    for event in single_run:
        display.handle(event)
    display.close()
    assert output(console) == ""
    assert display.metrics.figures().searches == 1


def test_a_shared_metrics_sink_is_not_fed_twice(single_run: list[Event]) -> None:
    metrics = MetricsSink()
    stream = EventStream([metrics, LiveDisplay(plain_console(), metrics=metrics)])
    for event in single_run:
        stream.emit(event)
    assert metrics.figures().model_calls == len(of_kind(single_run, ModelCalled)) == 4


@pytest.mark.parametrize("run", ["single_run", "heavy_run"])
def test_live_display_on_a_terminal_draws_a_panel_per_agent(run: str, request: pytest.FixtureRequest) -> None:
    events: list[Event] = request.getfixturevalue(run)
    console = Console(file=StringIO(), force_terminal=True, width=120, height=60)
    display = LiveDisplay(console, refresh_per_second=50)
    assert display.live is True
    stream = EventStream([display])
    for event in events[:-1]:
        stream.emit(event)
    stream.close()  # stops the live display before RunFinished, as after Ctrl-C
    stream.emit(events[-1])
    assert stream.sink_errors == []
    text = output(console)
    for agent in {e.agent for e in events if e.agent}:
        assert agent in text
    assert "answered after 3 steps" in text
    assert '"subprocess timeout" → 2 hits' in text


def test_describe_event_skips_actions_that_have_their_own_line(single_run: list[Event]) -> None:
    actions = of_kind(single_run, ActionParsed)
    assert {a.action for a in actions} == {"search", "open", "answer"}
    assert all(describe_event(a) is None for a in actions)
    python = dataclasses.replace(actions[0], action="python", args={"code": "1 + 1"})
    assert describe_event(python) is None  # its CodeRan event has the line
    # A tool whose outcome has no event of its own gets a line of its own.
    other = dataclasses.replace(actions[0], action="fetch", args={"url": "u"})
    assert describe_event(other) == '[agent-1] step 1 fetch {"url": "u"}'


# ---------------------------------------------------------------- summary, answer, runs


def test_summary_line() -> None:
    figures = RunFigures(
        searches=3,
        documents_read=2,
        sources_cited=2,
        prompt_tokens=1234,
        completion_tokens=210,
        wall_seconds=41.23,
        agents=1,
    )
    assert render_summary(figures, "20261129-071502-a3f9c1") == (
        "searches 3 · documents read 2 · sources cited 2 · tokens 1,234 in / 210 out · 41.2 s · "
        "run 20261129-071502-a3f9c1"
    )
    heavy = RunFigures(searches=3, search_cache_hits=2, agents=4, wall_seconds=0.25)
    assert render_summary(heavy, "r").startswith("agents 4 · searches 3 (+2 cached) · ")
    assert "250 ms" in render_summary(heavy, "r")


def test_summary_of_a_run(heavy_run: list[Event]) -> None:
    finished = of_kind(heavy_run, RunFinished)[0]
    summary = render_summary(RunFigures.from_dict(finished.figures), finished.run_id)
    assert summary.startswith("agents 2 · searches 3 · documents read 1 · sources cited 1 · ")
    assert summary.endswith(f" · run {finished.run_id}")


def test_answer_with_numbered_citations(single_run: list[Event]) -> None:
    finished = of_kind(single_run, RunFinished)[0]
    (citation,) = finished.citations
    console = plain_console()
    without_url = {**citation, "number": 2, "url": ""}  # a local file: its document id stands in
    render_answer(finished.answer, [citation, without_url], console)
    assert output(console) == (
        "Pass timeout= to subprocess.run [1]; compare.\n\n"
        "[1] subprocess — run — file:subprocess#1\n"
        "[2] subprocess — run — subprocess\n"
    )


def test_runs_table(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    collect(settings, ScriptedModel(SINGLE), "single")

    started = asyncio.Event()

    async def hang(messages: object, schema: object) -> str:
        started.set()
        await asyncio.sleep(3600)
        return ""

    async def cancelled_run() -> None:
        heavy = Heavy(FunctionModel(hang), MemorySearch(dict(PASSAGES)), settings=settings)
        task = asyncio.create_task(heavy.arun("x" * 200, "single"))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled_run())
    rows = RunStore(run_store_path(settings.runs_dir)).list()
    console = plain_console(width=160)
    render_runs(rows, console)
    text = output(console)
    assert "\x1b" not in text
    assert all(row.run_id in text for row in rows) and len(rows) == 2
    assert "ok" in text and "cancelled" in text
    assert QUESTION in text
    assert "x" * 61 not in text  # long questions are shortened
    assert text.index(rows[0].run_id) < text.index(rows[1].run_id)  # newest first
    assert rows[0].question.startswith("x")


def test_runs_table_when_there_are_none() -> None:
    console = plain_console()
    render_runs([], console)
    assert "openheavy ask" in output(console)


# ---------------------------------------------------------------- full trace


def test_trace_shows_prompts_outputs_searches_documents_and_answer(
    heavy_run: list[Event], settings: Settings
) -> None:
    console = plain_console(width=120)
    render_trace(written_trace(heavy_run, settings), console)
    text = output(console)
    assert "\x1b" not in text
    calls = of_kind(heavy_run, ModelCalled)
    planner = next(call for call in calls if call.agent == "planner")
    agent = next(call for call in calls if call.agent == "agent-1")
    assert planner.messages[0]["content"][:60] in text  # system prompts, in full
    assert agent.messages[0]["content"][:60] in text
    assert 'search "subprocess timeout" → 2 hits' in text
    assert "subprocess — check_output" in text and "returns its output" in text  # the hits
    assert f"{MARKUP} is raised when the timeout expires." in text  # text shown to the model, as written
    assert '"action": "open", "ref": 1}' in text  # a model output
    step_2 = [call for call in calls if call.agent == "agent-1" and call.step == 2]
    prompt = sum(call.prompt_tokens for call in step_2)
    completion = sum(call.completion_tokens for call in step_2)
    assert f"agent-1 · step 2 · {prompt:,} in / {completion:,} out" in text  # tokens per step
    assert HEAVY_ANSWER in text
    assert "[1] subprocess — run — file:subprocess#1" in text
    assert "tokens by purpose" in text
    # Agents' events are kept together even though the run interleaves them.
    assert text.index("agent-2 · step 1") > text.index("agent-1 · step 3")


def test_trace_shows_rejected_output_and_dropped_citations(
    single_run: list[Event], settings: Settings
) -> None:
    console = plain_console(width=120)
    render_trace(written_trace(single_run, settings), console)
    text = output(console)
    assert "output rejected: " in text
    assert "citation [5] dropped: never seen" in text


def test_trace_can_clip_long_texts(single_run: list[Event], settings: Settings) -> None:
    console = plain_console(width=120)
    render_trace(written_trace(single_run, settings), console, max_chars=20)
    text = output(console)
    system = of_kind(single_run, ModelCalled)[0].messages[0]["content"]
    assert system[:20] in text and system[:60] not in text
    assert "more characters]" in text


def test_trace_of_a_killed_run_and_an_unknown_record(
    single_run: list[Event], settings: Settings, tmp_path: Path
) -> None:
    # A process killed mid-run: its trace stops part-way, in the middle of a line.
    lines = trace_path(settings.runs_dir, single_run[0].run_id).read_text(encoding="utf-8").splitlines()
    killed = tmp_path / "killed.jsonl"
    killed.write_text("\n".join(lines[:6]) + "\n" + lines[6][:25], encoding="utf-8")
    records = read_trace(killed)
    assert len(records) == 6
    records.append(
        TraceRecord.model_validate({"kind": "FromTheFuture", "run_id": "r", "at": records[-1].at, "x": 42})
    )
    console = plain_console()
    render_trace(records, console)
    text = output(console)
    assert "FromTheFuture (not a known event)" in text
    assert "final answer" not in text


def pinned(events: list[Event]) -> list[Event]:
    """The run's events with fixed times and durations (and the figures computed from those), so that
    their rendering can be compared with a snapshot."""
    at = 1_800_000_000.0
    fixed: list[Event] = []
    for number, event in enumerate(events):
        changes: dict[str, Any] = {"at": at + number / 2}
        if hasattr(event, "seconds"):
            changes["seconds"] = 0.25
        fixed.append(dataclasses.replace(event, **changes))
    finished = fixed[-1]
    assert isinstance(finished, RunFinished)
    metrics = MetricsSink(clock=lambda: finished.at)
    for event in fixed:
        metrics.handle(event)
    figures = metrics.figures(citations=finished.citations).to_dict()
    return [*fixed[:-1], dataclasses.replace(finished, figures=figures)]


def normalize(text: str) -> str:
    text = re.sub(r"\b\d{8}-\d{6}-[0-9a-f]{4,}\b", "<run-id>", text)
    text = re.sub(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC", "<time>", text)
    text = re.sub(r"\bdata-[0-9a-f]{8}\b", "data-<tag>", text)  # untrusted-data fences: random per block
    # Table cells are padded to the width of what they held before normalizing; editors strip the rest.
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def test_trace_snapshot(heavy_run: list[Event], tmp_path: Path) -> None:
    """The rendered trace of a scripted heavy run, normalized. Behaviour changes (of the engine or of the
    renderer) show up as a diff here; update on purpose with
    `OPENHEAVY_UPDATE_SNAPSHOTS=1 pytest tests/test_display.py`."""
    sink = JsonlTraceSink(tmp_path / "trace.jsonl")
    for event in pinned(heavy_run):
        sink.handle(event)
    sink.close()
    console = plain_console(width=100)
    # Prompts and schemas clipped: their full text is checked above, and a snapshot of every prompt
    # would change with each edit of prompts/.
    render_trace(read_trace(tmp_path / "trace.jsonl"), console, max_chars=160)
    rendered = normalize(output(console))
    snapshot = SNAPSHOTS / "trace_heavy.txt"
    if os.environ.get("OPENHEAVY_UPDATE_SNAPSHOTS"):
        snapshot.parent.mkdir(exist_ok=True)
        snapshot.write_text(rendered, encoding="utf-8")
    assert rendered == snapshot.read_text(encoding="utf-8")


def test_pinning_keeps_what_the_engine_emitted(heavy_run: list[Event]) -> None:
    changed = {"at", "seconds", "figures"}
    for original, fixed in zip(heavy_run, pinned(heavy_run), strict=True):
        assert type(fixed) is type(original)
        kept = {name: value for name, value in vars(original).items() if name not in changed}
        assert {name: vars(fixed)[name] for name in kept} == kept
