"""The live display and the trace / runs / answer renderers, on synthetic runs."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from openheavy.display import (
    LiveDisplay,
    describe_event,
    render_answer,
    render_runs,
    render_summary,
    render_trace,
)
from openheavy.trace import (
    JsonlTraceSink,
    MetricsSink,
    RunFigures,
    RunStore,
    RunStoreSink,
    TraceRecord,
    new_run_id,
    read_trace,
)
from openheavy.types import (
    ActionParsed,
    AgentFinished,
    AgentStarted,
    CitationDropped,
    DocumentOpened,
    Event,
    EventStream,
    ModelCalled,
    Note,
    OutputRejected,
    RunFinished,
    RunStarted,
    SearchDone,
)

SNAPSHOTS = Path(__file__).parent / "snapshots"
T0 = 1_800_000_000.0
SYSTEM = "You are a careful research agent. Reply with one JSON action, like [bold]this[/bold]."
HITS = [
    {
        "ref": 1,
        "id": "subprocess#3",
        "doc_id": "subprocess",
        "title": "subprocess — Subprocess management",
        "url": "https://docs.python.org/3/library/subprocess.html",
        "snippet": "The timeout argument is passed to Popen.communicate().",
        "score": 7.25,
    },
    {
        "ref": 2,
        "id": "asyncio-subprocess#1",
        "doc_id": "asyncio-subprocess",
        "title": "Subprocesses",
        "url": "",
        "snippet": "asyncio: create_subprocess_exec",
        "score": 3.5,
    },
]
CITATION = {
    "number": 1,
    "ref": 1,
    "id": "subprocess#3",
    "doc_id": "subprocess",
    "title": "subprocess — Subprocess management",
    "url": "https://docs.python.org/3/library/subprocess.html",
}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self, step: float = 0.5) -> float:
        self.now += step
        return self.now


def agent_events(run_id: str, agent: str, task: str, clock: Clock, *, cached: bool = False) -> list[Event]:
    def model(step: int, output: str, purpose: str = "action") -> ModelCalled:
        return ModelCalled(
            run_id=run_id,
            agent=agent,
            at=clock(),
            step=step,
            purpose=purpose,
            messages=[
                {"role": "system", "content": SYSTEM},
                {
                    "role": "user",
                    "content": f"Question: How do I time out subprocess.run?\nYour part: {task}",
                },
            ],
            json_schema={"type": "object", "required": ["action"]} if step == 1 else None,
            output=output,
            prompt_tokens=400 * step,
            completion_tokens=20,
            cached_tokens=300 if cached else 0,
            seconds=1.25,
        )

    return [
        AgentStarted(run_id=run_id, agent=agent, at=clock(), task=task),
        model(1, "search for subprocess timeout"),
        OutputRejected(
            run_id=run_id,
            agent=agent,
            at=clock(),
            step=1,
            output="search for subprocess timeout",
            error="not a JSON object",
        ),
        model(1, '{"action": "search", "query": "subprocess timeout"}'),
        ActionParsed(
            run_id=run_id,
            agent=agent,
            at=clock(),
            step=1,
            action="search",
            args={"query": "subprocess timeout"},
        ),
        SearchDone(
            run_id=run_id,
            agent=agent,
            at=clock(),
            step=1,
            query="subprocess timeout",
            hits=HITS,
            seconds=0.02,
            cached=cached,
        ),
        model(2, '{"action": "open", "ref": 1}'),
        ActionParsed(run_id=run_id, agent=agent, at=clock(), step=2, action="open", args={"ref": 1}),
        DocumentOpened(
            run_id=run_id,
            agent=agent,
            at=clock(),
            step=2,
            ref=1,
            doc={**{k: v for k, v in CITATION.items() if k not in ("number", "ref")}, "chars": 72},
            text_shown="If the timeout expires, the child process will be killed and waited for.",
            seconds=0.01,
            cached=cached,
        ),
        model(3, '{"action": "answer", "answer": "Pass timeout= [1]", "cite": [1, 5]}', "answer"),
        ActionParsed(
            run_id=run_id,
            agent=agent,
            at=clock(),
            step=3,
            action="answer",
            args={"answer": "Pass timeout= [1]", "cite": [1, 5]},
        ),
        CitationDropped(run_id=run_id, agent=agent, at=clock(), ref="5", reason="never seen"),
        AgentFinished(
            run_id=run_id,
            agent=agent,
            at=clock(),
            answer="Pass timeout= [1]",
            citations=[CITATION],
            stop_reason="answered",
            steps=3,
        ),
    ]


def single_run(run_id: str = "20261129-071502-a3f9c1") -> list[Event]:
    clock = Clock()
    question = "How do I time out subprocess.run?"
    events: list[Event] = [
        RunStarted(
            run_id=run_id,
            at=T0,
            question=question,
            mode="single",
            model="scripted",
            corpus="pydocs",
            settings={"max_steps": 4},
        )
    ]
    events += agent_events(run_id, "agent-1", question, clock)
    return finish(events, clock, "Pass timeout= [1]")


def heavy_run(run_id: str = "20261129-071502-a3f9c1") -> list[Event]:
    clock = Clock()
    events: list[Event] = [
        RunStarted(
            run_id=run_id,
            at=T0,
            question="How do I time out subprocess.run?",
            mode="heavy",
            model="scripted",
            corpus="pydocs",
        ),
        ModelCalled(
            run_id=run_id,
            agent="planner",
            at=clock(),
            step=0,
            purpose="plan",
            messages=[
                {"role": "system", "content": "You are the planner of a research team."},
                {"role": "user", "content": "Question: How do I time out subprocess.run?"},
            ],
            json_schema=None,
            output='{"kind": "multi-part", "tasks": ["the timeout argument", "what is raised"]}',
            prompt_tokens=150,
            completion_tokens=25,
            cached_tokens=0,
            seconds=2.0,
        ),
        Note(
            run_id=run_id,
            agent="planner",
            at=clock(),
            topic="plan",
            data={"kind": "multi-part", "tasks": ["the timeout argument", "what is raised"]},
        ),
    ]
    events += agent_events(run_id, "agent-1", "the timeout argument", clock)
    events += agent_events(run_id, "agent-2", "what is raised", clock, cached=True)
    events.append(
        ModelCalled(
            run_id=run_id,
            agent="synthesizer",
            at=clock(),
            step=1,
            purpose="synthesis",
            messages=[{"role": "system", "content": "You are the lead researcher."}],
            json_schema=None,
            output='{"answer": "Pass timeout=; TimeoutExpired is raised [1]", "cite": [1]}',
            prompt_tokens=600,
            completion_tokens=40,
            cached_tokens=0,
            seconds=3.0,
        )
    )
    return finish(events, clock, "Pass timeout=; TimeoutExpired is raised [1]")


def finish(events: list[Event], clock: Clock, answer: str) -> list[Event]:
    at = clock()
    metrics = MetricsSink(clock=lambda: at)
    for event in events:
        metrics.handle(event)
    figures = metrics.figures(citations=[CITATION])
    events.append(
        RunFinished(
            run_id=events[0].run_id,
            at=at,
            status="ok",
            answer=answer,
            citations=[CITATION],
            figures=figures.to_dict(),
        )
    )
    return events


def plain_console(width: int = 100) -> Console:
    return Console(file=StringIO(), force_terminal=False, width=width, color_system=None)


def output(console: Console) -> str:
    assert isinstance(console.file, StringIO)
    return console.file.getvalue()


# ---------------------------------------------------------------- live display


@pytest.mark.parametrize("run", [single_run, heavy_run])
def test_plain_display_has_no_control_codes_and_names_every_agent(run: Callable[[], list[Event]]) -> None:
    console = plain_console()
    display = LiveDisplay(console)
    assert display.live is False
    stream = EventStream([display])
    events = run()
    for event in events:
        stream.emit(event)
    stream.close()
    assert stream.sink_errors == []
    text = output(console)
    assert "\x1b" not in text
    for agent in {e.agent for e in events if e.agent}:
        assert f"[{agent}]" in text
    assert '[agent-1] step 1 search "subprocess timeout" → 2 hits\n' in text
    assert "[agent-1] step 2 open [1] subprocess — Subprocess management · 72 chars shown\n" in text
    assert "[agent-1] step 1 output rejected: not a JSON object\n" in text
    assert "[agent-1] finished (answered) after 3 steps · 1 source\n" in text
    assert text.rstrip().endswith("ok")


def test_plain_display_marks_cache_hits() -> None:
    console = plain_console()
    display = LiveDisplay(console)
    for event in heavy_run():
        display.handle(event)
    text = output(console)
    assert '[agent-2] step 1 search "subprocess timeout" → 2 hits (cached)' in text
    assert "[planner] plan: " in text


def test_plain_lines_are_never_wrapped() -> None:
    console = plain_console(width=40)
    LiveDisplay(console).handle(single_run()[0])
    assert len(output(console).splitlines()) == 1


def test_quiet_display_prints_nothing_but_still_counts() -> None:
    console = plain_console()
    display = LiveDisplay(console, quiet=True)
    for event in single_run():
        display.handle(event)
    display.close()
    assert output(console) == ""
    assert display.metrics.figures().searches == 1


def test_a_shared_metrics_sink_is_not_fed_twice() -> None:
    metrics = MetricsSink()
    stream = EventStream([metrics, LiveDisplay(plain_console(), metrics=metrics)])
    for event in single_run():
        stream.emit(event)
    assert metrics.figures().model_calls == 4


@pytest.mark.parametrize("run", [single_run, heavy_run])
def test_live_display_on_a_terminal_draws_a_panel_per_agent(run: Callable[[], list[Event]]) -> None:
    console = Console(file=StringIO(), force_terminal=True, width=120, height=60)
    display = LiveDisplay(console, refresh_per_second=50)
    assert display.live is True
    stream = EventStream([display])
    events = run()
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


def test_describe_event_skips_actions_that_have_their_own_line() -> None:
    events = single_run()
    actions = [e for e in events if isinstance(e, ActionParsed)]
    assert actions and all(describe_event(e) is None for e in actions)
    python = ActionParsed(run_id="r", agent="agent-1", step=2, action="python", args={"code": "1 + 1"})
    assert describe_event(python) is None  # its CodeRan event has the line
    other = ActionParsed(run_id="r", agent="agent-1", step=2, action="fetch", args={"url": "u"})
    assert describe_event(other) == '[agent-1] step 2 fetch {"url": "u"}'


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


def test_answer_with_numbered_citations() -> None:
    console = plain_console()
    second = {"number": 2, "id": "notes#1", "doc_id": "notes.md", "title": "My notes", "url": ""}
    render_answer("Pass timeout= [1]; see also [2].", [CITATION, second], console)
    assert output(console) == (
        "Pass timeout= [1]; see also [2].\n\n"
        "[1] subprocess — Subprocess management — https://docs.python.org/3/library/subprocess.html\n"
        "[2] My notes — notes.md\n"
    )


def test_runs_table(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    sink = RunStoreSink(store, None)
    for event in single_run("20261129-071502-aaaaaa"):
        sink.handle(event)
    sink.handle(
        RunStarted(
            run_id="20261129-081502-bbbbbb",
            at=T0 + 60,
            question="x" * 200,
            mode="heavy",
            model="m",
            corpus="c",
        )
    )
    sink.close()
    console = plain_console(width=160)
    render_runs(store.list(), console)
    text = output(console)
    assert "\x1b" not in text
    assert "20261129-071502-aaaaaa" in text and "20261129-081502-bbbbbb" in text
    assert "ok" in text and "cancelled" in text
    assert "How do I time out subprocess.run?" in text
    assert "x" * 61 not in text  # long questions are shortened
    assert text.index("bbbbbb") < text.index("aaaaaa")  # newest first


def test_runs_table_when_there_are_none() -> None:
    console = plain_console()
    render_runs([], console)
    assert "openheavy ask" in output(console)


# ---------------------------------------------------------------- full trace


def write_and_read(events: list[Event], tmp_path: Path) -> list[TraceRecord]:
    path = tmp_path / "trace.jsonl"
    sink = JsonlTraceSink(path)
    for event in events:
        sink.handle(event)
    sink.close()
    return read_trace(path)


def test_trace_shows_prompts_outputs_searches_documents_and_answer(tmp_path: Path) -> None:
    console = plain_console(width=120)
    render_trace(write_and_read(heavy_run(), tmp_path), console)
    text = output(console)
    assert "\x1b" not in text
    assert SYSTEM[:60] in text  # the system prompt, with its bracketed text kept as written
    assert "[bold]this[/bold]" in text
    assert "You are the planner of a research team." in text
    assert 'search "subprocess timeout" → 2 hits' in text
    assert "Subprocesses" in text and "Popen.communicate()" in text  # the hits
    assert "If the timeout expires, the child process will be killed" in text  # text shown to the model
    assert '{"action": "open", "ref": 1}' in text  # a model output
    assert "output rejected: not a JSON object" in text
    assert "citation [5] dropped: never seen" in text
    assert "agent-1 · step 2 · 800 in / 20 out" in text  # tokens and seconds per step
    assert "Pass timeout=; TimeoutExpired is raised [1]" in text
    assert (
        "[1] subprocess — Subprocess management — https://docs.python.org/3/library/subprocess.html" in text
    )
    assert "tokens by purpose" in text
    # Agents' events are kept together even though the run interleaves them.
    assert text.index("agent-2 · step 1") > text.index("agent-1 · step 3")


def test_trace_can_clip_long_texts(tmp_path: Path) -> None:
    console = plain_console(width=120)
    render_trace(write_and_read(single_run(), tmp_path), console, max_chars=20)
    text = output(console)
    assert SYSTEM[:20] in text and SYSTEM[:60] not in text
    assert "more characters]" in text


def test_trace_of_a_killed_run_and_an_unknown_record(tmp_path: Path) -> None:
    events = single_run()[:6]  # no RunFinished
    records = write_and_read(events, tmp_path)
    records.append(TraceRecord.model_validate({"kind": "FromTheFuture", "run_id": "r", "at": T0, "x": 42}))
    console = plain_console()
    render_trace(records, console)
    text = output(console)
    assert "FromTheFuture (not a known event)" in text
    assert "final answer" not in text


def normalize(text: str) -> str:
    text = re.sub(r"\b\d{8}-\d{6}-[0-9a-f]{4,}\b", "<run-id>", text)
    text = re.sub(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC", "<time>", text)
    # Table cells are padded to the width of what they held before normalizing; editors strip the rest.
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def test_trace_snapshot(tmp_path: Path) -> None:
    """The rendered trace of a fixed heavy run, normalized. Behaviour changes show up as a diff here;
    update on purpose with `OPENHEAVY_UPDATE_SNAPSHOTS=1 pytest tests/test_display.py`."""
    console = plain_console(width=100)
    render_trace(write_and_read(heavy_run(new_run_id()), tmp_path), console)
    rendered = normalize(output(console))
    snapshot = SNAPSHOTS / "trace_heavy.txt"
    if os.environ.get("OPENHEAVY_UPDATE_SNAPSHOTS"):
        snapshot.parent.mkdir(exist_ok=True)
        snapshot.write_text(rendered, encoding="utf-8")
    assert rendered == snapshot.read_text(encoding="utf-8")
