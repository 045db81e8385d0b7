"""Schema migrations and damage checks for openheavy's SQLite files (the run store, search indexes): one
runner and one quick check for all.

A database's schema is an ordered list of migrations that is only ever appended to; the database records
how many it has applied (its schema version), and `migrate` applies the rest, in order, inside one
`BEGIN IMMEDIATE` transaction, so two processes opening the same file at once never both migrate it and
a failing migration leaves the file as it was.

Where the version is recorded is the one thing that differs between files: `PRAGMA user_version` by
default; search indexes keep theirs in their `meta` table (`SchemaVersion`), as they always have, so
files made by earlier versions open unchanged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Protocol

from openheavy.errors import SchemaError

__all__ = ["USER_VERSION", "Migration", "SchemaVersion", "is_damage", "migrate", "quick_check"]

Migration = str | Callable[[sqlite3.Connection], None]
"""One schema step: an SQL script, or a function for a step SQL alone cannot express."""


class SchemaVersion(Protocol):
    """Where a database records how many migrations it has applied."""

    def read(self, conn: sqlite3.Connection) -> int:
        """The number of migrations applied; 0 for a new database."""
        ...

    def write(self, conn: sqlite3.Connection, version: int) -> None:
        """Record that `version` migrations are applied (inside the migrating transaction)."""
        ...


class _UserVersion:
    """The version in SQLite's own header field, `PRAGMA user_version`."""

    def read(self, conn: sqlite3.Connection) -> int:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        return version

    def write(self, conn: sqlite3.Connection, version: int) -> None:
        conn.execute(f"PRAGMA user_version = {int(version)}")


USER_VERSION: SchemaVersion = _UserVersion()


def migrate(
    conn: sqlite3.Connection,
    migrations: Sequence[Migration],
    *,
    what: str,
    version: SchemaVersion = USER_VERSION,
) -> int:
    """Bring the database behind `conn` up to `len(migrations)` and return that version.

    `conn` must be in autocommit mode (`isolation_level=None`): the runner opens and ends its own
    transaction. `what` names the kind of file in error messages ("an openheavy index"). Raises
    `SchemaError` for a database written by a newer openheavy (more migrations applied than known) and
    for one that holds tables but no version (another application's database: nothing is added to it).
    """
    target = len(migrations)
    if version.read(conn) == target:
        return target
    conn.execute("BEGIN IMMEDIATE")  # two processes opening the file at once must not both migrate it
    try:
        found = version.read(conn)  # again, under the lock: another process may have migrated meanwhile
        if found > target:
            raise SchemaError(
                f"{_path(conn)} was written by a newer openheavy (schema {found}, this one knows {target})"
                " — upgrade openheavy, or move the file aside to start a new one"
            )
        if found == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise SchemaError(
                f"{_path(conn)} is an SQLite database but not {what} — move it aside, or choose another"
                " name or folder for openheavy's file"
            )
        for number, migration in enumerate(migrations[found:], start=found + 1):
            if isinstance(migration, str):
                for statement in _statements(migration):
                    conn.execute(statement)
            else:
                migration(conn)
            version.write(conn, number)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return target


def _path(conn: sqlite3.Connection) -> str:
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return str(file) or "the in-memory database"
    return "the database"


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (`executescript` would commit our transaction)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        statements.append(pending.strip())
    return statements


# SQLite's primary result codes for a damaged file: SQLITE_CORRUPT and SQLITE_NOTADB.
_DAMAGE_CODES = frozenset({11, 26})


def is_damage(exc: sqlite3.Error) -> bool:
    """Whether `exc` says the file is damaged or not a database (not merely busy, locked or full)."""
    return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF in _DAMAGE_CODES


def quick_check(conn: sqlite3.Connection) -> list[str]:
    """What SQLite's quick check finds wrong with the database behind `conn` (a few at most); [] when
    it is sound.

    `PRAGMA quick_check` reads every page once and checks the b-tree structure, without the slower
    cross-checks of `integrity_check`; benchmarks/bench_index.py measures it.
    """
    try:
        rows = conn.execute("PRAGMA quick_check(5)").fetchall()
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    # One line each, without the "*** in database main ***" header SQLite puts before the first.
    problems = [" ".join(str(row[0]).replace("*** in database main ***", "").split()) for row in rows]
    return [] if problems == ["ok"] else problems
