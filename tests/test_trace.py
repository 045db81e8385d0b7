"""Event sinks, the run store and run metrics, fed with synthetic event sequences."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

import openheavy.trace.run_store as run_store_module
from openheavy.errors import OpenHeavyError, RunNotFoundError
from openheavy.trace import (
    MIGRATIONS,
    AgentFigures,
    JsonlTraceSink,
    MetricsSink,
    RunFigures,
    RunStore,
    RunStoreSink,
    TokenFigures,
    TraceRecord,
    new_run_id,
    normalized_trace,
    read_trace,
    run_store_path,
    trace_path,
)
from openheavy.types import (
    ActionParsed,
    AgentFinished,
    AgentStarted,
    DocumentOpened,
    Event,
    EventStream,
    ModelCalled,
    Note,
    RunFinished,
    RunStarted,
    SearchDone,
)

RUN = "20261129-071502-a3f9c1"
T0 = 1_800_000_000.0


def model_called(
    agent: str, step: int, purpose: str, prompt: int, completion: int, *, at: float, cached: int = 0
) -> ModelCalled:
    return ModelCalled(
        run_id=RUN,
        agent=agent,
        at=at,
        step=step,
        purpose=purpose,
        messages=[{"role": "system", "content": "You are a careful research agent."}],
        json_schema=None,
        output='{"action": "search", "query": "x"}',
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        seconds=1.0,
    )


def search(agent: str, step: int, query: str, *, at: float, cached: bool = False) -> SearchDone:
    hit = {"ref": 1, "id": "a#1", "doc_id": "a", "title": "A", "url": "", "snippet": "s", "score": 1.0}
    return SearchDone(
        run_id=RUN, agent=agent, at=at, step=step, query=query, hits=[hit], seconds=0.01, cached=cached
    )


def opened(agent: str, step: int, chunk: str, *, at: float, cached: bool = False) -> DocumentOpened:
    doc_id = chunk.split("#")[0]
    return DocumentOpened(
        run_id=RUN,
        agent=agent,
        at=at,
        step=step,
        ref=1,
        doc={"id": chunk, "doc_id": doc_id, "title": doc_id.upper(), "url": "", "chars": 10},
        text_shown="text",
        seconds=0.01,
        cached=cached,
    )


def citation(number: int, chunk: str) -> dict[str, object]:
    doc_id = chunk.split("#")[0]
    return {"number": number, "ref": number, "id": chunk, "doc_id": doc_id, "title": doc_id, "url": ""}


def heavy_run() -> list[Event]:
    """Two agents and a synthesizer; agent-2 repeats agent-1's search and open from the shared cache."""
    return [
        RunStarted(run_id=RUN, at=T0, question="q?", mode="heavy", model="scripted", corpus="memory"),
        model_called("planner", 0, "plan", 100, 20, at=T0 + 1),
        Note(run_id=RUN, agent="planner", at=T0 + 1.1, topic="plan", data={"tasks": ["a", "b"]}),
        AgentStarted(run_id=RUN, agent="agent-1", at=T0 + 2, task="a"),
        AgentStarted(run_id=RUN, agent="agent-2", at=T0 + 2, task="b"),
        model_called("agent-1", 1, "action", 300, 10, at=T0 + 3),
        ActionParsed(run_id=RUN, agent="agent-1", at=T0 + 3, step=1, action="search", args={"query": "x"}),
        search("agent-1", 1, "x", at=T0 + 3.1),
        model_called("agent-2", 1, "action", 300, 10, at=T0 + 3.2, cached=250),
        search("agent-2", 1, "x", at=T0 + 3.3, cached=True),
        model_called("agent-1", 2, "action", 400, 10, at=T0 + 4),
        opened("agent-1", 2, "a#1", at=T0 + 4.1),
        model_called("agent-2", 2, "action", 400, 10, at=T0 + 4.2),
        opened("agent-2", 2, "a#1", at=T0 + 4.3, cached=True),
        model_called("agent-1", 3, "action", 500, 10, at=T0 + 5),
        opened("agent-1", 3, "a#2", at=T0 + 5.1),  # a second passage of the same document
        model_called("agent-2", 3, "action", 500, 10, at=T0 + 5.2),
        search("agent-2", 3, "y", at=T0 + 5.3),
        model_called("agent-2", 4, "action", 600, 10, at=T0 + 6),
        opened("agent-2", 4, "b#1", at=T0 + 6.1),
        model_called("agent-1", 4, "answer", 600, 30, at=T0 + 7),
        AgentFinished(
            run_id=RUN,
            agent="agent-1",
            at=T0 + 7,
            answer="A [1]",
            citations=[citation(1, "a#1"), citation(2, "a#2")],
            stop_reason="answered",
            steps=4,
        ),
        model_called("agent-2", 5, "answer", 700, 30, at=T0 + 8),
        AgentFinished(
            run_id=RUN,
            agent="agent-2",
            at=T0 + 8,
            answer="B [1]",
            citations=[citation(1, "b#1")],
            stop_reason="answered",
            steps=5,
        ),
        model_called("synthesizer", 1, "synthesis", 900, 50, at=T0 + 10),
    ]


def finished(figures: RunFigures, *, at: float = T0 + 12) -> RunFinished:
    return RunFinished(
        run_id=RUN,
        at=at,
        status="ok",
        answer="A and B [1]",
        citations=[citation(1, "b#1")],
        figures=figures.to_dict(),
    )


# ---------------------------------------------------------------- run ids and paths


def test_run_ids_are_short_sortable_and_unique() -> None:
    ids = [new_run_id() for _ in range(20_000)]  # unfixed, six random hex digits collide here
    assert all(re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", run_id) for run_id in ids)
    assert len(set(ids)) == len(ids)
    assert sorted(ids, key=lambda i: i[:15]) == ids  # the time part never goes backwards


def test_trace_and_store_paths_live_in_the_runs_dir(tmp_path: Path) -> None:
    assert trace_path(tmp_path, RUN) == tmp_path / f"{RUN}.jsonl"
    assert run_store_path(tmp_path).parent == tmp_path


# ---------------------------------------------------------------- JSONL trace


def test_jsonl_trace_round_trips_every_event(tmp_path: Path) -> None:
    events = heavy_run()
    events.append(finished(RunFigures()))
    path = tmp_path / "runs" / f"{RUN}.jsonl"
    sink = JsonlTraceSink(path)
    for event in events:
        sink.handle(event)
    sink.close()
    sink.close()  # twice is fine

    records = read_trace(path)
    assert [r.kind for r in records] == [e.kind for e in events]
    assert [r.to_event() for r in records] == events
    assert records[0].payload["question"] == "q?"
    assert len(path.read_text(encoding="utf-8").splitlines()) == len(events)


def test_each_line_is_flushed_before_the_run_ends(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    sink = JsonlTraceSink(path)
    sink.handle(heavy_run()[0])
    # Read while the sink is still open, as after a kill -9.
    assert json.loads(path.read_text(encoding="utf-8"))["kind"] == "RunStarted"
    sink.close()


def test_a_truncated_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    events = heavy_run()[:4]
    sink = JsonlTraceSink(path)
    for event in events:
        sink.handle(event)
    sink.close()
    whole = json.dumps(heavy_run()[4].to_record())
    with path.open("a", encoding="utf-8") as file:
        file.write(whole[: len(whole) // 2])  # the writer was killed mid-line
    assert [r.to_event() for r in read_trace(path)] == events


def test_a_damaged_line_in_the_middle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    good = json.dumps(heavy_run()[0].to_record())
    path.write_text(f"{good}\n{{not json\n{good}\n", encoding="utf-8")
    with pytest.raises(OpenHeavyError, match="line 2"):
        read_trace(path)


def test_a_missing_trace_says_where_to_look(tmp_path: Path) -> None:
    with pytest.raises(OpenHeavyError, match="openheavy runs"):
        read_trace(tmp_path / "nope.jsonl")


def test_records_of_unknown_kinds_are_kept_but_have_no_event() -> None:
    record = TraceRecord.model_validate({"kind": "FromTheFuture", "run_id": RUN, "at": T0, "x": 1})
    assert record.payload == {"x": 1}
    assert record.to_event() is None


def test_normalized_trace_hides_ids_times_and_durations(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    sink = JsonlTraceSink(path)
    for event in heavy_run()[:8]:
        sink.handle(event)
    sink.close()
    normalized = normalized_trace(read_trace(path))
    text = json.dumps(normalized)
    assert RUN not in text
    assert str(T0) not in text
    assert normalized[1]["seconds"] == "<seconds>"
    assert normalized[1]["prompt_tokens"] == 100  # counts are behaviour, they stay


# ---------------------------------------------------------------- metrics


def metrics_of(events: list[Event], now: float = T0 + 12) -> MetricsSink:
    metrics = MetricsSink(clock=lambda: now)
    for event in events:
        metrics.handle(event)
    return metrics


def test_metrics_count_cache_hits_apart_and_documents_once() -> None:
    figures = metrics_of(heavy_run()).figures(citations=[citation(1, "b#1")])
    assert figures.searches == 2  # agent-2's repeat of "x" came from the cache
    assert figures.search_cache_hits == 1
    assert figures.documents_read == 3  # passages a#1, a#2 and b#1: each one read is a document read
    assert figures.document_cache_hits == 1
    assert figures.sources_cited == 1
    assert figures.model_calls == 11
    assert figures.prompt_tokens == 100 + 2 * (300 + 400 + 500) + 600 + 600 + 700 + 900
    assert figures.completion_tokens == 20 + 10 * 7 + 30 + 30 + 50
    assert figures.cached_tokens == 250
    assert figures.agents == 2  # planner and synthesizer are not research agents
    assert figures.wall_seconds == 12.0


def test_metrics_per_agent() -> None:
    per_agent = metrics_of(heavy_run()).figures().per_agent
    assert set(per_agent) == {"planner", "agent-1", "agent-2", "synthesizer"}
    assert per_agent["agent-1"] == AgentFigures(
        searches=1,
        search_cache_hits=0,
        distinct_queries=1,
        documents_read=2,
        document_cache_hits=0,
        sources_cited=2,
        model_calls=4,
        prompt_tokens=1800,
        completion_tokens=60,
        cached_tokens=0,
        steps=4,
        wall_seconds=5.0,
    )
    agent_2 = per_agent["agent-2"]
    assert (agent_2.searches, agent_2.search_cache_hits) == (1, 1)
    assert (agent_2.documents_read, agent_2.document_cache_hits) == (2, 1)
    assert agent_2.steps == 5
    assert agent_2.cached_tokens == 250
    # The planner has no AgentStarted: its time is the span of its events (1 s model call).
    assert per_agent["planner"].wall_seconds == pytest.approx(1.1)
    totals = metrics_of(heavy_run()).figures()
    assert sum(a.searches for a in per_agent.values()) == totals.searches
    assert sum(a.prompt_tokens for a in per_agent.values()) == totals.prompt_tokens


def test_metrics_split_tokens_by_purpose() -> None:
    by_purpose = metrics_of(heavy_run()).figures().by_purpose
    assert by_purpose["plan"] == TokenFigures(model_calls=1, prompt_tokens=100, completion_tokens=20)
    assert by_purpose["synthesis"] == TokenFigures(model_calls=1, prompt_tokens=900, completion_tokens=50)
    assert by_purpose["action"].model_calls == 7
    assert by_purpose["action"].cached_tokens == 250
    assert by_purpose["answer"].total_tokens == 600 + 30 + 700 + 30


def test_sources_cited_follow_the_final_answer() -> None:
    events = heavy_run()
    # Before RunFinished and without the final citations: every agent's cited documents.
    assert metrics_of(events).figures().sources_cited == 3
    metrics = metrics_of(events)
    metrics.handle(finished(RunFigures()))
    assert metrics.figures().sources_cited == 1  # RunFinished's citations win


def test_wall_seconds_run_until_now_while_running() -> None:
    events = heavy_run()[:5]
    assert metrics_of(events, now=T0 + 3.5).figures().wall_seconds == 3.5
    metrics = metrics_of(events, now=T0 + 100)
    metrics.handle(finished(RunFigures(), at=T0 + 12))
    assert metrics.figures().wall_seconds == 12.0


def test_figures_survive_a_json_round_trip() -> None:
    figures = metrics_of(heavy_run()).figures()
    data = json.loads(json.dumps(figures.to_dict()))
    assert RunFigures.from_dict(data) == figures
    # Older or newer figures load: unknown keys are dropped, missing ones are zero.
    assert RunFigures.from_dict({"searches": 3, "from_the_future": 1}) == RunFigures(searches=3)


def test_metrics_through_an_event_stream() -> None:
    metrics = MetricsSink()
    stream = EventStream([metrics])
    for event in heavy_run():
        stream.emit(event)
    assert stream.sink_errors == []
    assert metrics.figures().model_calls == 11


# ---------------------------------------------------------------- run store


def started(run_id: str, at: float, question: str = "q?") -> RunStarted:
    return RunStarted(
        run_id=run_id, at=at, question=question, mode="single", model="scripted", corpus="memory"
    )


def test_migrations_are_idempotent(tmp_path: Path) -> None:
    db = tmp_path / "runs" / "runs.db"
    store = RunStore(db)
    store.start(started(RUN, T0), None)
    again = RunStore(db)
    assert again.schema_version == len(MIGRATIONS)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert [row.run_id for row in again.list()] == [RUN]


def test_a_new_migration_runs_once_on_an_existing_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "runs.db"
    RunStore(db).start(started(RUN, T0), None)
    applied: list[int] = []

    def add_tags(conn: sqlite3.Connection) -> None:
        applied.append(1)
        conn.execute("ALTER TABLE runs ADD COLUMN tags TEXT NOT NULL DEFAULT ''")

    monkeypatch.setattr(run_store_module, "MIGRATIONS", [*MIGRATIONS, add_tags])
    assert RunStore(db).schema_version == len(MIGRATIONS) + 1
    RunStore(db)
    assert applied == [1]
    assert RunStore(db).get(RUN).question == "q?"


def test_a_failing_migration_leaves_the_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "runs.db"
    RunStore(db)

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE runs ADD COLUMN half TEXT")
        raise sqlite3.OperationalError("boom")

    monkeypatch.setattr(run_store_module, "MIGRATIONS", [*MIGRATIONS, broken])
    with pytest.raises(sqlite3.OperationalError):
        RunStore(db)
    monkeypatch.setattr(run_store_module, "MIGRATIONS", MIGRATIONS)
    assert RunStore(db).schema_version == len(MIGRATIONS)
    with sqlite3.connect(db) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
    assert "half" not in columns


def test_list_is_newest_first_and_limited(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    for number in range(5):
        store.start(started(f"20261129-07150{number}-aaaaaa", T0 + number), None)
    rows = store.list(limit=3)
    assert [row.run_id for row in rows] == [f"20261129-07150{n}-aaaaaa" for n in (4, 3, 2)]
    assert all(row.status == "running" for row in rows)


def test_get_by_id_or_unique_prefix(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    store.start(started("20261129-071502-a3f9c1", T0), tmp_path / "a.jsonl")
    store.start(started("20261129-071502-b1b1b1", T0 + 1), None)
    assert store.get("20261129-071502-a3f9c1").trace_path == tmp_path / "a.jsonl"
    assert store.get("20261129-071502-b").run_id == "20261129-071502-b1b1b1"
    assert store.get("20261129-071502-b").trace_path is None
    with pytest.raises(RunNotFoundError, match="matches several runs"):
        store.get("20261129-0715")


def test_an_unknown_run_says_how_to_list_runs(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    for unknown in ("20991231-000000-ffffff", "", "x%"):
        with pytest.raises(RunNotFoundError, match="`openheavy runs` lists them"):
            store.get(unknown)


def test_run_store_sink_records_start_and_finish(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    sink = RunStoreSink(store, tmp_path / f"{RUN}.jsonl")
    metrics = MetricsSink(clock=lambda: T0 + 12)
    stream = EventStream([metrics, sink])
    events = heavy_run()
    for event in events:
        stream.emit(event)
    assert store.get(RUN).status == "running"
    figures = metrics.figures(citations=[citation(1, "b#1")])
    stream.emit(finished(figures))
    stream.close()
    assert stream.sink_errors == []

    row = store.get(RUN)
    assert row.status == "ok"
    assert row.mode == "heavy"
    assert row.answer == "A and B [1]"
    assert row.citations == [citation(1, "b#1")]
    assert row.finished_at == T0 + 12
    assert row.run_figures == figures
    assert row.trace_path == tmp_path / f"{RUN}.jsonl"
    assert row.error is None


def test_a_run_that_never_finishes_is_marked_cancelled_on_close(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    sink = RunStoreSink(store, None)
    sink.handle(started(RUN, T0))
    sink.close()
    row = store.get(RUN)
    assert row.status == "cancelled"
    assert row.finished_at is not None
    assert row.error == "interrupted before the run finished"


def test_mark_cancelled_leaves_finished_runs_alone(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    store.start(started(RUN, T0), None)
    store.finish(finished(RunFigures(searches=1)))
    assert store.mark_cancelled(RUN[:12]).status == "ok"
    with pytest.raises(RunNotFoundError):
        store.mark_cancelled("20991231-000000-ffffff")


def test_finishing_a_run_that_never_started_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RunNotFoundError):
        RunStore(tmp_path / "runs.db").finish(finished(RunFigures()))
