"""Event sinks, the run store and run metrics.

Every run writes its events to a JSONL trace (one line per event, flushed as it goes), records itself in
a SQLite run store, and has its figures (searches, documents read, sources cited, tokens, wall time)
computed here from the events alone. The CLI summary line, JSON output, run store and evals all read the
same `RunFigures`, so nothing is computed twice.
"""

from __future__ import annotations

import builtins
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from openheavy.errors import OpenHeavyError, RunNotFoundError
from openheavy.types import (
    ActionParsed,
    AgentFinished,
    AgentStarted,
    CitationDropped,
    DocumentOpened,
    Event,
    EventSink,
    FetchRefused,
    ModelCalled,
    Note,
    OutputRejected,
    PageUnreadable,
    RunFinished,
    RunStarted,
    SearchDone,
)

__all__ = [
    "EVENT_TYPES",
    "MIGRATIONS",
    "AgentFigures",
    "JsonlTraceSink",
    "MetricsSink",
    "RunFigures",
    "RunRow",
    "RunStatus",
    "RunStore",
    "RunStoreSink",
    "TokenFigures",
    "TraceRecord",
    "new_run_id",
    "normalized_trace",
    "read_trace",
    "run_store_path",
    "trace_path",
]

RunStatus = Literal["running", "ok", "cancelled", "failed"]
_F = TypeVar("_F")

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        RunStarted,
        AgentStarted,
        ModelCalled,
        ActionParsed,
        OutputRejected,
        SearchDone,
        DocumentOpened,
        FetchRefused,
        PageUnreadable,
        CitationDropped,
        AgentFinished,
        Note,
        RunFinished,
    )
}
"""Event classes by `Event.kind`, for turning trace records back into events."""


def new_run_id() -> str:
    """A short, unique run id that sorts by start time (UTC), e.g. `20261129-071502-a3f9c1`."""
    # Six hex digits, not four: an eval fanning out 100 runs in one second would collide on four
    # with a chance of about 7%, on six about 0.03%.
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def trace_path(runs_dir: Path, run_id: str) -> Path:
    """Where the JSONL trace of `run_id` lives under the runs directory (`Settings.runs_dir`)."""
    return runs_dir / f"{run_id}.jsonl"


def run_store_path(runs_dir: Path) -> Path:
    """Where the run store database lives under the runs directory (`Settings.runs_dir`)."""
    return runs_dir / "runs.db"


# ---------------------------------------------------------------- JSONL trace


# One encoder for every line: `json.dumps` with options builds a new encoder per call, which showed up
# in the engine benchmark. default=str: settings may hold paths; a trace line must never fail.
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


class JsonlTraceSink(EventSink):
    """Appends one JSON line per event to `path`, flushed per line so that a killed run keeps its trace."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = path.open("a", encoding="utf-8")
        self._last_prompt: dict[str, list[dict[str, str]]] = {}

    def handle(self, event: Event) -> None:
        """Write `event.to_record()` as one line.

        An agent's prompt grows by a message or two per step, so writing every prompt whole makes a
        trace quadratic in its length. A `ModelCalled` line therefore stores only the messages after
        the part it shares with the same agent's previous prompt (`messages_prefix` = how many are
        shared); `read_trace` puts the whole prompt back.
        """
        if self._file is None:
            raise OpenHeavyError(f"trace {self.path} is already closed")
        record = event.to_record()
        if isinstance(event, ModelCalled):
            previous = self._last_prompt.get(event.agent, [])
            shared = _shared_prefix(previous, event.messages)
            self._last_prompt[event.agent] = event.messages
            if shared:
                record["messages"] = event.messages[shared:]
                record["messages_prefix"] = shared
        self._file.write(_ENCODER.encode(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file. Safe to call twice."""
        if self._file is not None:
            self._file.close()
            self._file = None


class TraceRecord(BaseModel):
    """One line of a JSONL trace. The event's own fields are kept as extra fields."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: str
    run_id: str
    agent: str = ""
    at: float

    @property
    def payload(self) -> dict[str, Any]:
        """The event's fields other than kind, run_id, agent and at."""
        return dict(self.model_extra or {})

    def to_event(self) -> Event | None:
        """The event this record was written from; None for an unknown kind or a record that does not
        fit its event class (a trace written by another version)."""
        cls = EVENT_TYPES.get(self.kind)
        if cls is None:
            return None
        values = {"run_id": self.run_id, "agent": self.agent, "at": self.at, **self.payload}
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{name: value for name, value in values.items() if name in names})
        except TypeError:  # a required field is missing
            return None


def read_trace(path: Path) -> list[TraceRecord]:
    """The records of a JSONL trace. A truncated last line (a run killed mid-write) is skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise OpenHeavyError(
            f"no trace file at {path} — `openheavy runs` lists runs and their traces"
        ) from None
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    records: list[TraceRecord] = []
    prompts: dict[str, list[dict[str, str]]] = {}
    for position, (number, line) in enumerate(numbered):
        try:
            record = TraceRecord.model_validate_json(line)
            if record.kind == "ModelCalled":
                record = _whole_prompt(record, prompts)
            records.append(record)
        except ValidationError as exc:
            if position == len(numbered) - 1:
                break  # the writer was killed mid-line
            raise OpenHeavyError(f"trace {path} line {number} is not a valid event record: {exc}") from exc
    return records


def _shared_prefix(previous: list[dict[str, str]], messages: list[dict[str, str]]) -> int:
    shared = 0
    for old, new in zip(previous, messages, strict=False):
        if old != new:
            break
        shared += 1
    return shared


def _whole_prompt(record: TraceRecord, prompts: dict[str, list[dict[str, str]]]) -> TraceRecord:
    """Undo the prefix sharing of `JsonlTraceSink` for one `ModelCalled` record."""
    payload = record.payload
    messages = list(payload.get("messages") or [])
    shared = payload.pop("messages_prefix", 0)
    if shared:
        messages = prompts.get(record.agent, [])[:shared] + messages
    prompts[record.agent] = messages
    payload["messages"] = messages
    return TraceRecord(kind=record.kind, run_id=record.run_id, agent=record.agent, at=record.at, **payload)


_VOLATILE_FLOATS = frozenset({"seconds", "wall_seconds"})


def normalized_trace(records: Iterable[TraceRecord]) -> list[dict[str, Any]]:
    """Records with run ids, timestamps and durations replaced by placeholders, for snapshot tests."""

    def scrub(value: Any, run_ids: set[str]) -> Any:
        if isinstance(value, dict):
            return {
                key: "<seconds>"
                if key in _VOLATILE_FLOATS and isinstance(item, float)
                else scrub(item, run_ids)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [scrub(item, run_ids) for item in value]
        if isinstance(value, str) and value in run_ids:
            return "<run>"
        return value

    materialized = list(records)
    run_ids = {record.run_id for record in materialized}
    normalized = []
    for record in materialized:
        data = record.model_dump()
        data["run_id"] = "<run>"
        data["at"] = "<at>"
        normalized.append(scrub(data, run_ids))
    return normalized


# ---------------------------------------------------------------- metrics


@dataclass(frozen=True)
class TokenFigures:
    """Model calls and their tokens."""

    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class AgentFigures:
    """The figures of one agent. Cached searches and document opens count as cache hits, not as new work."""

    searches: int = 0
    search_cache_hits: int = 0
    documents_read: int = 0  # unique documents opened
    document_cache_hits: int = 0
    sources_cited: int = 0  # unique documents cited
    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    steps: int = 0
    wall_seconds: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class RunFigures:
    """The figures of a run, computed by `MetricsSink` from the run's events."""

    searches: int = 0
    search_cache_hits: int = 0
    documents_read: int = 0
    document_cache_hits: int = 0
    sources_cited: int = 0
    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    wall_seconds: float = 0.0
    agents: int = 0
    per_agent: dict[str, AgentFigures] = field(default_factory=dict)
    # Tokens by `ModelCalled.purpose` ("action", "plan", "synthesis", ...): heavy mode's overhead.
    by_purpose: dict[str, TokenFigures] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (what `RunFinished.figures` and the run store hold)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunFigures:
        """Figures read back from `to_dict()` output. Unknown keys are ignored, missing ones are zero,
        so figures written by older versions still load."""
        flat = _known(cls, {k: v for k, v in data.items() if k not in ("per_agent", "by_purpose")})
        return replace(
            flat,
            per_agent={
                name: _known(AgentFigures, value) for name, value in data.get("per_agent", {}).items()
            },
            by_purpose={
                name: _known(TokenFigures, value) for name, value in data.get("by_purpose", {}).items()
            },
        )


def _known(cls: type[_F], data: dict[str, Any]) -> _F:
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{key: value for key, value in data.items() if key in names})


@dataclass
class _Tally:
    """Mutable counters behind one `AgentFigures` (per agent) or the run's totals."""

    searches: int = 0
    search_cache_hits: int = 0
    documents: set[str] = field(default_factory=set)
    document_cache_hits: int = 0
    cited: set[str] = field(default_factory=set)
    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    steps: int = 0
    started_at: float | None = None  # RunStarted / AgentStarted
    finished_at: float | None = None  # RunFinished / AgentFinished
    # Span of the events seen, for emitters with no start event (a heavy run's planner, synthesizer).
    first_at: float | None = None
    last_at: float | None = None

    def saw(self, event: Event) -> None:
        seconds = getattr(event, "seconds", 0.0)
        begun = event.at - seconds if isinstance(seconds, int | float) else event.at
        self.first_at = begun if self.first_at is None else min(self.first_at, begun)
        self.last_at = event.at if self.last_at is None else max(self.last_at, event.at)

    def wall_seconds(self, now: float) -> float:
        if self.started_at is not None:
            end = self.finished_at if self.finished_at is not None else now
            return max(0.0, end - self.started_at)
        if self.first_at is not None and self.last_at is not None:
            return self.last_at - self.first_at
        return 0.0

    def agent_figures(self, now: float) -> AgentFigures:
        return AgentFigures(
            searches=self.searches,
            search_cache_hits=self.search_cache_hits,
            documents_read=len(self.documents),
            document_cache_hits=self.document_cache_hits,
            sources_cited=len(self.cited),
            model_calls=self.model_calls,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cached_tokens=self.cached_tokens,
            steps=self.steps,
            wall_seconds=self.wall_seconds(now),
        )


def _cited_documents(citations: list[dict[str, Any]]) -> set[str]:
    # Passages (what an agent opens and cites), not whole files: four sections of one module's
    # documentation, read and cited, are four sources.
    return {str(c.get("id") or c.get("doc_id") or c.get("url") or c.get("number")) for c in citations}


class MetricsSink(EventSink):
    """Computes a run's figures from its events. `figures()` may be called at any time, also mid-run
    and from another thread (the live display redraws from rich's refresh thread)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._run = _Tally()
        self._agents: dict[str, _Tally] = {}
        self._started_agents: list[str] = []
        self._purposes: dict[str, TokenFigures] = {}
        self._final_citations: list[dict[str, Any]] | None = None

    def _agent(self, name: str) -> _Tally:
        if name not in self._agents:
            self._agents[name] = _Tally()
        return self._agents[name]

    def handle(self, event: Event) -> None:
        """Count one event."""
        with self._lock:
            self._count(event)

    def _count(self, event: Event) -> None:
        tallies = [self._run, self._agent(event.agent)] if event.agent else [self._run]
        if event.agent:
            agent = tallies[1]
            agent.saw(event)
            step = getattr(event, "step", None)
            if isinstance(step, int):
                agent.steps = max(agent.steps, step)
        match event:
            case RunStarted():
                self._run.started_at = event.at
            case RunFinished():
                self._run.finished_at = event.at
                self._final_citations = event.citations
            case AgentStarted():
                if event.agent not in self._started_agents:
                    self._started_agents.append(event.agent)
                self._agent(event.agent).started_at = event.at
            case AgentFinished():
                tally = self._agent(event.agent)
                tally.finished_at = event.at
                tally.cited = _cited_documents(event.citations)
                tally.steps = max(tally.steps, event.steps)
            case ModelCalled():
                for tally in tallies:
                    tally.model_calls += 1
                    tally.prompt_tokens += event.prompt_tokens
                    tally.completion_tokens += event.completion_tokens
                    tally.cached_tokens += event.cached_tokens
                before = self._purposes.get(event.purpose, TokenFigures())
                self._purposes[event.purpose] = TokenFigures(
                    model_calls=before.model_calls + 1,
                    prompt_tokens=before.prompt_tokens + event.prompt_tokens,
                    completion_tokens=before.completion_tokens + event.completion_tokens,
                    cached_tokens=before.cached_tokens + event.cached_tokens,
                )
            case SearchDone():
                for tally in tallies:
                    if event.cached:
                        tally.search_cache_hits += 1
                    else:
                        tally.searches += 1
            case DocumentOpened():
                doc_key = str(event.doc.get("id") or event.doc.get("doc_id") or event.ref)
                for tally in tallies:
                    tally.documents.add(doc_key)
                    if event.cached:
                        tally.document_cache_hits += 1
            case _:
                pass

    def figures(self, citations: list[dict[str, Any]] | None = None) -> RunFigures:
        """The figures so far. `citations`: the final answer's, when figures are taken just before
        `RunFinished` is emitted; by default those of `RunFinished` once seen, else every agent's."""
        with self._lock:
            return self._figures(citations, self._clock())

    def _figures(self, citations: list[dict[str, Any]] | None, now: float) -> RunFigures:
        if citations is not None:
            cited = _cited_documents(citations)
        elif self._final_citations is not None:
            cited = _cited_documents(self._final_citations)
        else:
            cited = set().union(*(tally.cited for tally in self._agents.values()))
        run = self._run
        return RunFigures(
            searches=run.searches,
            search_cache_hits=run.search_cache_hits,
            documents_read=len(run.documents),
            document_cache_hits=run.document_cache_hits,
            sources_cited=len(cited),
            model_calls=run.model_calls,
            prompt_tokens=run.prompt_tokens,
            completion_tokens=run.completion_tokens,
            cached_tokens=run.cached_tokens,
            wall_seconds=run.wall_seconds(now),
            agents=len(self._started_agents),
            per_agent={name: tally.agent_figures(now) for name, tally in self._agents.items()},
            by_purpose=dict(self._purposes),
        )


# ---------------------------------------------------------------- run store


def _m001_runs(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            started_at REAL NOT NULL,
            finished_at REAL,
            question TEXT NOT NULL,
            mode TEXT NOT NULL,
            model TEXT NOT NULL,
            corpus TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('running', 'ok', 'cancelled', 'failed')),
            answer TEXT NOT NULL DEFAULT '',
            citations TEXT NOT NULL DEFAULT '[]',
            figures TEXT NOT NULL DEFAULT '{}',
            trace_path TEXT,
            error TEXT
        )
        """
    )
    db.execute("CREATE INDEX runs_started_at ON runs (started_at)")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_m001_runs]
"""Schema migrations in order; `PRAGMA user_version` counts those applied. Only ever append."""


class RunRow(BaseModel):
    """One run as the run store holds it."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    started_at: float
    finished_at: float | None
    question: str
    mode: str
    model: str
    corpus: str
    status: RunStatus
    answer: str
    citations: list[dict[str, Any]]
    figures: dict[str, Any]
    trace_path: Path | None
    error: str | None

    @property
    def run_figures(self) -> RunFigures:
        """The stored figures as `RunFigures` (all zero for a run that never finished)."""
        return RunFigures.from_dict(self.figures)


_COLUMNS = (
    "run_id, started_at, finished_at, question, mode, model, corpus, status, answer, citations, figures, "
    "trace_path, error"
)


def _row(values: sqlite3.Row) -> RunRow:
    data = dict(values)
    data["citations"] = json.loads(data["citations"])
    data["figures"] = json.loads(data["figures"])
    return RunRow.model_validate(data)


class RunStore:
    """Past runs in SQLite: what was asked, how it ended, its figures and where its trace is."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        db_path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            self._migrate(db)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # A connection per operation: the store is shared by the CLI, the server and eval workers.
        with closing(sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)) as db:
            db.row_factory = sqlite3.Row
            yield db

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        if db.execute("PRAGMA user_version").fetchone()[0] >= len(MIGRATIONS):
            return
        db.execute("BEGIN IMMEDIATE")  # two processes starting at once must not both migrate
        try:
            version: int = db.execute("PRAGMA user_version").fetchone()[0]
            for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
                migration(db)
                db.execute(f"PRAGMA user_version = {number}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @property
    def schema_version(self) -> int:
        """How many migrations the database has applied."""
        with self._connect() as db:
            version: int = db.execute("PRAGMA user_version").fetchone()[0]
            return version

    def start(self, event: RunStarted, trace_path: Path | None) -> None:
        """Record a run that has just started."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (run_id, started_at, question, mode, model, corpus, status, trace_path)"
                " VALUES (?, ?, ?, ?, ?, ?, 'running', ?)",
                (
                    event.run_id,
                    event.at,
                    event.question,
                    event.mode,
                    event.model,
                    event.corpus,
                    str(trace_path) if trace_path else None,
                ),
            )

    def finish(self, event: RunFinished) -> None:
        """Record how a run ended: status, answer, citations, figures, error."""
        with self._connect() as db:
            cursor = db.execute(
                "UPDATE runs SET finished_at = ?, status = ?, answer = ?, citations = ?, figures = ?,"
                " error = ? WHERE run_id = ?",
                (
                    event.at,
                    event.status,
                    event.answer,
                    json.dumps(event.citations, ensure_ascii=False, default=str),
                    json.dumps(event.figures, ensure_ascii=False, default=str),
                    event.error,
                    event.run_id,
                ),
            )
            if cursor.rowcount == 0:
                raise RunNotFoundError(f"run {event.run_id} finished but was never recorded as started")

    def list(self, limit: int = 20) -> builtins.list[RunRow]:
        """The most recent runs, newest first."""
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM runs ORDER BY started_at DESC, run_id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_row(row) for row in rows]

    def get(self, run_id: str) -> RunRow:
        """The run with this id, or with this unique id prefix. Raises `RunNotFoundError`."""
        with self._connect() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is not None:
                return _row(row)
            matches = (
                db.execute(
                    f"SELECT {_COLUMNS} FROM runs WHERE substr(run_id, 1, ?) = ? ORDER BY run_id LIMIT 6",
                    (len(run_id), run_id),
                ).fetchall()
                if run_id
                else []
            )
        if len(matches) == 1:
            return _row(matches[0])
        if not matches:
            raise RunNotFoundError(f"no run {run_id!r} in {self.db_path} — `openheavy runs` lists them")
        shown = ", ".join(match["run_id"] for match in matches[:5])
        more = ", …" if len(matches) > 5 else ""
        raise RunNotFoundError(
            f"run id prefix {run_id!r} matches several runs ({shown}{more}) — give more of the id"
        )

    def mark_cancelled(self, run_id: str, error: str | None = None) -> RunRow:
        """Mark a run that was interrupted without `RunFinished` as cancelled. A finished run is left as
        it is. Accepts a unique id prefix; returns the run as stored afterwards."""
        row = self.get(run_id)
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET status = 'cancelled', finished_at = ?, error = ?"
                " WHERE run_id = ? AND status = 'running'",
                (time.time(), error, row.run_id),
            )
        return self.get(row.run_id)


class RunStoreSink(EventSink):
    """Records a run in the store: inserted on `RunStarted`, updated on `RunFinished`. A run whose stream
    closes without `RunFinished` (Ctrl-C, a crash the runner caught) is marked cancelled."""

    def __init__(self, store: RunStore, trace_path: Path | None = None) -> None:
        self.store = store
        self.trace_path = trace_path
        self._open_run: str | None = None

    def handle(self, event: Event) -> None:
        """Insert or update the run's row."""
        if isinstance(event, RunStarted):
            self.store.start(event, self.trace_path)
            self._open_run = event.run_id
        elif isinstance(event, RunFinished):
            self.store.finish(event)
            self._open_run = None

    def close(self) -> None:
        """Mark a run that never finished as cancelled."""
        if self._open_run is not None:
            self.store.mark_cancelled(self._open_run, error="interrupted before the run finished")
            self._open_run = None
