"""The one migration runner behind the run store and the search index: order, idempotence, rollback,
refusals, where the version lives, and files written before the runner was shared."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import openheavy.search.local as search_local
from openheavy.errors import SchemaError
from openheavy.search.local import (
    SCHEMA_VERSION,
    IndexedDocument,
    LocalIndex,
    Passage,
    SourceFingerprint,
)
from openheavy.sqlite_migrations import Migration, migrate
from openheavy.trace import MIGRATIONS, RunStore


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    yield connection
    connection.close()


def tables(conn: sqlite3.Connection) -> list[str]:
    return sorted(row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))


def user_version(conn: sqlite3.Connection) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def test_scripts_and_functions_apply_in_order_once(conn: sqlite3.Connection) -> None:
    calls: list[str] = []

    def add_column(db: sqlite3.Connection) -> None:
        calls.append("add_column")
        db.execute("ALTER TABLE a ADD COLUMN note TEXT NOT NULL DEFAULT ''")

    steps: list[Migration] = ["CREATE TABLE a (x INTEGER);\nCREATE TABLE b (y TEXT);", add_column]
    assert migrate(conn, steps, what="a test file") == 2
    assert tables(conn) == ["a", "b"] and user_version(conn) == 2
    assert migrate(conn, steps, what="a test file") == 2
    assert calls == ["add_column"]
    # A step appended later runs on the existing file, and only that step.
    assert migrate(conn, [*steps, "CREATE TABLE c (z REAL)"], what="a test file") == 3
    assert tables(conn) == ["a", "b", "c"] and calls == ["add_column"]


def test_a_failing_step_leaves_the_file_as_it_was(conn: sqlite3.Connection) -> None:
    migrate(conn, ["CREATE TABLE a (x INTEGER)"], what="a test file")

    def broken(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE half (x INTEGER)")
        raise sqlite3.OperationalError("boom")

    with pytest.raises(sqlite3.OperationalError, match="boom"):
        migrate(conn, ["CREATE TABLE a (x INTEGER)", "CREATE TABLE b (y TEXT)", broken], what="a test file")
    assert tables(conn) == ["a"] and user_version(conn) == 1
    assert not conn.in_transaction


def test_a_newer_file_is_refused(conn: sqlite3.Connection) -> None:
    migrate(conn, ["CREATE TABLE a (x INTEGER)", "CREATE TABLE b (y TEXT)"], what="a test file")
    with pytest.raises(SchemaError, match=r"newer openheavy \(schema 2, this one knows 1\)"):
        migrate(conn, ["CREATE TABLE a (x INTEGER)"], what="a test file")


def test_another_applications_database_is_left_alone(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE orders (id INTEGER)")
    with pytest.raises(SchemaError, match=r"db\.sqlite is an SQLite database but not a test file"):
        migrate(conn, ["CREATE TABLE a (x INTEGER)"], what="a test file")
    assert tables(conn) == ["orders"] and user_version(conn) == 0


class InATable:
    """A version kept in a table of the file's own, as search indexes keep theirs."""

    def read(self, conn: sqlite3.Connection) -> int:
        if "version" not in tables(conn):
            return 0
        row = conn.execute("SELECT n FROM version").fetchone()
        return int(row[0]) if row else 0

    def write(self, conn: sqlite3.Connection, version: int) -> None:
        conn.execute("DELETE FROM version")
        conn.execute("INSERT INTO version (n) VALUES (?)", (version,))


def test_the_version_can_live_elsewhere_than_user_version(conn: sqlite3.Connection) -> None:
    steps: list[Migration] = ["CREATE TABLE version (n INTEGER)", "CREATE TABLE a (x INTEGER)"]
    assert migrate(conn, steps, what="a test file", version=InATable()) == 2
    assert conn.execute("SELECT n FROM version").fetchall() == [(2,)]
    assert user_version(conn) == 0
    assert migrate(conn, steps, what="a test file", version=InATable()) == 2


def test_an_index_written_before_the_shared_runner_opens_unchanged(tmp_path: Path) -> None:
    # What the earlier code wrote: the schema script, the version in `meta`, nothing in user_version.
    path = tmp_path / "old.sqlite"
    (script,) = search_local._MIGRATIONS
    assert isinstance(script, str)
    raw = sqlite3.connect(path)
    raw.executescript(
        script + "INSERT INTO meta (key, value) VALUES ('schema_version', '1'),"
        " ('created_at', '2026-01-02T03:04:05+00:00'), ('updated_at', '2026-01-02T03:04:05+00:00');"
    )
    raw.close()
    with LocalIndex(path, create=False) as index:
        stats = index.stats()
        assert stats.schema_version == SCHEMA_VERSION == 1
        assert stats.created_at.isoformat() == "2026-01-02T03:04:05+00:00"
        index.replace_source(
            "s",
            [IndexedDocument("d", "Dune", "", (Passage("Dune", "Spice must flow."),))],
            SourceFingerprint(),
        )
        assert [hit.id for hit in index.search_sync("spice")] == ["d#0"]
    raw = sqlite3.connect(path)
    assert user_version(raw) == 0
    raw.close()


def test_a_run_store_written_before_the_shared_runner_opens(tmp_path: Path) -> None:
    # The earlier code's run store: the runs table at user_version 1.
    path = tmp_path / "runs.db"
    raw = sqlite3.connect(path, isolation_level=None)
    assert callable(MIGRATIONS[0])
    MIGRATIONS[0](raw)
    raw.execute(
        "INSERT INTO runs (run_id, started_at, question, mode, model, corpus, status)"
        " VALUES ('r1', 1.0, 'q?', 'single', 'scripted', 'memory', 'ok')"
    )
    raw.execute("PRAGMA user_version = 1")
    raw.close()
    store = RunStore(path)
    assert store.schema_version == len(MIGRATIONS) == 1
    assert store.get("r1").question == "q?"
