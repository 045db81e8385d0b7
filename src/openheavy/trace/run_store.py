"""The run store: past runs in SQLite (what was asked, how it ended, its figures, where its trace is), and
the ids runs are known by."""

from __future__ import annotations

import builtins
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from openheavy.errors import DamagedRunStoreError, RunNotFoundError
from openheavy.private_files import create_private_file, private_dir
from openheavy.sqlite_migrations import USER_VERSION, Migration, is_damage, migrate, quick_check
from openheavy.trace.metrics import RunFigures
from openheavy.types import Event, EventSink, RunFinished, RunStarted

__all__ = [
    "MIGRATIONS",
    "RunRow",
    "RunStatus",
    "RunStore",
    "RunStoreSink",
    "new_run_id",
    "run_store_path",
]

RunStatus = Literal["running", "ok", "cancelled", "failed"]


# The suffixes this process gave out in the current second: random suffixes collide by the birthday
# rule (1,000 ids in one second: about 3% on six hex digits), so one process never repeats one.
_issued: tuple[str, set[str]] = ("", set())
_issued_lock = threading.Lock()


def new_run_id() -> str:
    """A short, unique run id that sorts by start time (UTC), e.g. `20261129-071502-a3f9c1`: random
    across processes, never repeated within one."""
    global _issued
    with _issued_lock:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        if _issued[0] != stamp:
            _issued = (stamp, set())
        suffix = secrets.token_hex(3)
        while suffix in _issued[1]:
            suffix = secrets.token_hex(3)
        _issued[1].add(suffix)
        return f"{stamp}-{suffix}"


def run_store_path(runs_dir: Path) -> Path:
    """Where the run store database lives under the runs directory (`Settings.runs_dir`)."""
    return runs_dir / "runs.db"


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


MIGRATIONS: list[Migration] = [_m001_runs]
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


# Run store files this process found sound, by path and inode: checked once, not on every run.
_SOUND: set[tuple[str, int]] = set()
_WHAT = "an openheavy run store"
_MAX_SQLITE_INTEGER = 2**63 - 1


class RunStore:
    """Past runs in SQLite: what was asked, how it ended, its figures and where its trace is.

    Opening it checks the file (SQLite's quick check, once per process): a damaged, truncated or empty
    file raises `DamagedRunStoreError` saying how to start a new one, rather than a traceback now or
    silently losing the history later. A new store is created whole under a temporary name and linked
    into place, so an empty file is never one that is being created.
    """

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        private_dir(db_path.parent)
        if not db_path.exists():
            _create(db_path)
        self._check()
        with self._connect() as db:
            self._migrate(db)

    def _check(self) -> None:
        stat = self.db_path.stat()
        if stat.st_size == 0:
            raise self._damaged("it is empty: the file was truncated, and the runs it listed are gone")
        key = (str(self.db_path.resolve()), stat.st_ino)
        if key in _SOUND:
            return
        with self._connect() as db:
            problems = quick_check(db)
        if problems:
            raise self._damaged("; ".join(problems))
        _SOUND.add(key)

    def _damaged(self, detail: str) -> DamagedRunStoreError:
        path = self.db_path
        return DamagedRunStoreError(
            f"the run store {path} is damaged ({detail}) — move it aside (mv {path} {path}.damaged) and "
            "openheavy starts a new one; the run traces beside it are kept"
        )

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # A connection per operation: the store is shared by the CLI, the server and eval workers.
        try:
            with closing(sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)) as db:
                db.row_factory = sqlite3.Row
                yield db
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise self._damaged(str(exc)) from exc
            raise

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        migrate(db, MIGRATIONS, what=_WHAT)

    @property
    def schema_version(self) -> int:
        """How many migrations the database has applied."""
        with self._connect() as db:
            return USER_VERSION.read(db)

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
        """The most recent runs, newest first (`limit` beyond what SQLite counts means all of them)."""
        limit = min(limit, _MAX_SQLITE_INTEGER)
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


def _create(path: Path) -> None:
    """Create an empty, migrated run store at `path`, whole or not at all: built under a temporary name
    and hard-linked into place. When another process got there first, its store is kept."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.new")
    create_private_file(temporary)  # owner-only from the start: the store holds every question asked
    try:
        with closing(sqlite3.connect(temporary, isolation_level=None)) as db:
            migrate(db, MIGRATIONS, what=_WHAT)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


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
