"""`LocalIndex`: a corpus of passages in one SQLite file, searched with FTS5 and ranked by BM25.

One file per corpus. Documents come from *sources* (a file, or a programmatic collection); each source
keeps a fingerprint so that re-indexing skips what has not changed. Documents are stored as chunks
(passages); a search returns chunks, `open` returns one chunk's full text.

Schema (version 1)::

    meta(key, value)                 schema_version, created_at, updated_at
    sources(source, size, mtime_ns, sha256, version, content_sha256, indexed_at)
    documents(rowid, id, source, title, url, chunks)
    chunks(rowid, doc, n)            rowid shared with chunks_fts
    chunks_fts(title, text)          FTS5, porter + unicode61, ranked by bm25(title 4, text 1)
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from openheavy.errors import CorpusError, DamagedIndexError, DocumentNotFoundError, SchemaError, SearchError
from openheavy.private_files import create_private_file
from openheavy.search.terms import query_terms
from openheavy.sqlite_migrations import Migration, is_damage, migrate, quick_check
from openheavy.types import Document, Hit

# Title matches count more than body matches: a passage titled "subprocess — ... › run()" is about
# running subprocesses even when its body uses the word once. Measured with benchmarks/bench_index.py
# (title weight 1 / 2.5 / 4 / 8): HotpotQA supporting-paragraph recall@5 0.79 / 0.84 / 0.85 / 0.86,
# pydocs expected-module hit@5 45 / 46 / 46 / 46 of 50. The weights are stored in each index when it is
# created, so changing them takes a migration.
TITLE_WEIGHT = 4.0
BODY_WEIGHT = 1.0

# FTS5 `snippet()` counts tokens, not characters: 48 tokens of prose is about 300 characters.
SNIPPET_TOKENS = 48
# A passage this short comes whole with its hit (`Hit.text`): the results show it in full, and the agent
# reads it without spending a step on `open`. Three in four HotpotQA paragraphs fit (median 478
# characters); with every result of its opening search needing an open, a 4-step agent had no step left
# to search for the entity a page named (the second hop). About 175 tokens of prose.
WHOLE_PASSAGE_CHARS = 700

# Index `i` upgrades a file from schema version `i` to `i + 1`. Append, never edit.
_MIGRATIONS: tuple[Migration, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE sources (
        source TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        version TEXT NOT NULL,
        content_sha256 TEXT NOT NULL,
        indexed_at TEXT NOT NULL
    );
    CREATE TABLE documents (
        rowid INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        source TEXT NOT NULL,
        title TEXT NOT NULL,
        url TEXT NOT NULL,
        chunks INTEGER NOT NULL
    );
    CREATE INDEX documents_by_source ON documents (source);
    CREATE TABLE chunks (
        rowid INTEGER PRIMARY KEY,
        doc INTEGER NOT NULL,
        n INTEGER NOT NULL,
        UNIQUE (doc, n)
    );
    CREATE VIRTUAL TABLE chunks_fts USING fts5 (
        title, text, tokenize = 'porter unicode61 remove_diacritics 2'
    );
    """
    # The weights live in the index, so that `ORDER BY rank` uses them and keeps FTS5's fast top-k path.
    f"INSERT INTO chunks_fts (chunks_fts, rank) VALUES ('rank', 'bm25({TITLE_WEIGHT}, {BODY_WEIGHT})');",
)
SCHEMA_VERSION = len(_MIGRATIONS)

_CHUNK_ID = re.compile(r"(?P<doc>.+)#(?P<n>\d+)", re.DOTALL)
_SPACE = re.compile(r"\s+")


def match_expression(query: str) -> str:
    """An FTS5 MATCH expression for a free-text query: its content words, each quoted, OR-ed together.

    Every term is a quoted string, so no user input can be read as FTS5 syntax (AND, NEAR, `-`, `*`,
    column filters, parentheses). Returns "" when the query has no content words.
    """
    # A quoted string holds no `"` (`\w+` has none); FTS5 tokenizes inside it, so "check_output"
    # becomes the phrase `check output`, which is exactly how the index stored it.
    return " OR ".join(f'"{term}"' for term in query_terms(query))


@dataclass(frozen=True)
class Passage:
    """One chunk of a document as stored: its title (document title and section) and text."""

    title: str
    text: str


@dataclass(frozen=True)
class IndexedDocument:
    """A document ready for the index: already split into passages."""

    id: str
    title: str
    url: str
    passages: tuple[Passage, ...]


@dataclass(frozen=True)
class SourceFingerprint:
    """What identified a source when it was indexed: file size and mtime for a quick check, the sha256
    of its bytes for a sure one, and the version of the reader that parsed it."""

    size: int = 0
    mtime_ns: int = 0
    sha256: str = ""
    version: str = ""


@dataclass(frozen=True)
class ReplaceResult:
    """The outcome of `LocalIndex.replace_source`: the source's documents and chunks now in the index,
    and whether anything changed."""

    documents: int
    chunks: int
    changed: bool


@dataclass(frozen=True)
class IndexStats:
    documents: int
    chunks: int
    sources: int
    schema_version: int
    created_at: datetime
    updated_at: datetime


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _stamp(conn: sqlite3.Connection) -> None:
    """Record that the index content changed now."""
    conn.execute("UPDATE meta SET value = ? WHERE key = 'updated_at'", (_now(),))


class _MetaVersion:
    """An index keeps its schema version in its `meta` table, next to when it was created and changed."""

    def read(self, conn: sqlite3.Connection) -> int:
        has_meta = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if has_meta is None:
            return 0
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def write(self, conn: sqlite3.Connection, version: int) -> None:
        now = _now()
        conn.executemany(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
            [("created_at", now), ("updated_at", now)],
        )
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(version),))


def _chunk_id(doc_id: str, n: int) -> str:
    return f"{doc_id}#{n}"


class _ConnectionPool:
    """Connections to one database file, lent to one thread at a time.

    sqlite3 connections must not be used by two threads at once, but searches from several agents should
    run in parallel (SQLite releases the GIL while it works). So each `asyncio.to_thread` call borrows a
    connection, creating one when all are busy, and gives it back afterwards.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._all: list[sqlite3.Connection] = []
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        # Autocommit mode: writers open their transactions explicitly with BEGIN IMMEDIATE.
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        # A writer holds the lock while it replaces a source; readers in WAL mode never wait for it, and
        # other writers wait this long before giving up.
        conn.execute("PRAGMA busy_timeout = 60000")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise SearchError(f"the index {self._path} is closed — open the corpus again")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
            with self._lock:
                self._all.append(conn)
        try:
            yield conn
        finally:
            with self._lock:
                if self._closed:
                    conn.close()
                else:
                    self._idle.append(conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class LocalIndex:
    """A `SearchBackend` over one SQLite FTS5 index file.

    Searching is async (the work runs in a thread, so several agents can search at once); building is
    sync. Use it as a context manager or call `close()`.
    """

    def __init__(self, path: Path, name: str | None = None, *, create: bool = True) -> None:
        """Open the index at `path`, creating it (when `create`) and upgrading its schema as needed."""
        self.path = Path(path)
        self.name = name if name is not None else self.path.stem
        if not create and not self.path.is_file():
            raise SearchError(f"no index file at {self.path}")
        create_private_file(self.path)  # owner-only when new: an index holds the documents' text
        self._pool = _ConnectionPool(self.path)
        self._write_lock = threading.Lock()
        try:
            self._migrate()
        except SchemaError as exc:
            self._pool.close()
            raise SearchError(str(exc)) from exc
        except sqlite3.DatabaseError as exc:
            self._pool.close()
            raise DamagedIndexError(
                f"{self.path} is not a usable openheavy index ({exc}) — delete it and index again"
            ) from exc
        except BaseException:
            self._pool.close()
            raise

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close every connection. Searches after this raise `SearchError`."""
        self._pool.close()

    def __enter__(self) -> LocalIndex:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LocalIndex(name={self.name!r}, path={str(self.path)!r})"

    def _migrate(self) -> None:
        with self._write_lock, self._pool.connection() as conn:
            # WAL lets readers search while a writer replaces a source; it is a property of the file.
            conn.execute("PRAGMA journal_mode = WAL")
            migrate(conn, _MIGRATIONS, what="an openheavy index", version=_MetaVersion())

    # ------------------------------------------------------------------ SearchBackend

    async def search(self, query: str, k: int = 5) -> list[Hit]:
        """Best `k` passages for `query`, best first; [] when the query has no content words."""
        return await asyncio.to_thread(self.search_sync, query, k)

    async def open(self, id: str) -> Document:
        """The passage with chunk id `id` ("<doc_id>#<n>"), or a document's first passage given its id."""
        return await asyncio.to_thread(self.open_sync, id)

    def search_sync(self, query: str, k: int = 5) -> list[Hit]:
        """Blocking `search`."""
        expression = match_expression(query)
        if not expression or k <= 0:
            return []
        # The inner query is FTS5's own top-k (ORDER BY rank LIMIT); joins run on those k rows only.
        sql = f"""
            SELECT top.title, top.snippet, top.rank, c.n, d.id, d.url, top.whole
            FROM (
                SELECT rowid, title, snippet(chunks_fts, 1, '', '', '…', {SNIPPET_TOKENS}) AS snippet, rank,
                    CASE WHEN length(text) <= {WHOLE_PASSAGE_CHARS} THEN text END AS whole
                FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?
            ) AS top
            JOIN chunks AS c ON c.rowid = top.rowid
            JOIN documents AS d ON d.rowid = c.doc
            ORDER BY top.rank
        """
        with self._pool.connection() as conn:
            try:
                rows = conn.execute(sql, (expression, k)).fetchall()
            except sqlite3.Error as exc:
                raise self._read_error("search", exc) from exc
        return [
            Hit(
                id=_chunk_id(doc_id, n),
                doc_id=doc_id,
                title=title,
                url=url,
                snippet=_SPACE.sub(" ", snippet).strip(),
                # bm25() is lower-is-better and negative; flip it so a higher score is a better hit.
                score=-rank,
                text=None if whole is None else " ".join(whole.split()),
            )
            for title, snippet, rank, n, doc_id, url, whole in rows
        ]

    def open_sync(self, id: str) -> Document:
        """Blocking `open`."""
        with self._pool.connection() as conn:
            found = _CHUNK_ID.fullmatch(id)
            try:
                row = self._passage(conn, found["doc"], int(found["n"])) if found else None
                if row is None:
                    row = self._passage(conn, id, 0)
            except sqlite3.Error as exc:
                raise self._read_error(f"opening {id!r}", exc) from exc
        if row is None:
            raise DocumentNotFoundError(
                f"no passage {id!r} in corpus {self.name!r} — open an id from a search result"
                " (like 'doc-id#0'), or a document id"
            )
        doc_id, n, url, title, text = row
        return Document(id=_chunk_id(doc_id, n), doc_id=doc_id, title=title, url=url, text=text)

    def _read_error(self, action: str, exc: sqlite3.Error) -> SearchError:
        """A search-time SQLite error as ours: damage found mid-run says how to rebuild."""
        if is_damage(exc):
            return DamagedIndexError(
                f"{action} in corpus {self.name!r} failed: {self.path} is damaged ({exc}) — move it aside"
                f" and rebuild it: openheavy index PATH --name {self.name}"
            )
        return SearchError(f"{action} in corpus {self.name!r} failed: {exc}")

    @staticmethod
    def _passage(conn: sqlite3.Connection, doc_id: str, n: int) -> tuple[str, int, str, str, str] | None:
        row = conn.execute(
            """
            SELECT d.id, c.n, d.url, f.title, f.text
            FROM documents AS d
            JOIN chunks AS c ON c.doc = d.rowid AND c.n = ?
            JOIN chunks_fts AS f ON f.rowid = c.rowid
            WHERE d.id = ?
            """,
            (n, doc_id),
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2], row[3], row[4])

    # ------------------------------------------------------------------ building

    def sources(self) -> dict[str, SourceFingerprint]:
        """Every source in the index with the fingerprint it was indexed with."""
        with self._pool.connection() as conn:
            rows = conn.execute("SELECT source, size, mtime_ns, sha256, version FROM sources").fetchall()
        return {row[0]: SourceFingerprint(row[1], row[2], row[3], row[4]) for row in rows}

    def document_source(self, doc_id: str) -> str | None:
        """The source that holds document `doc_id`, or None."""
        with self._pool.connection() as conn:
            row = conn.execute("SELECT source FROM documents WHERE id = ?", (doc_id,)).fetchone()
        return None if row is None else str(row[0])

    def replace_source(
        self, source: str, documents: Iterable[IndexedDocument], fingerprint: SourceFingerprint
    ) -> ReplaceResult:
        """Make `documents` the whole content of `source`, atomically: searches see the old or the new.

        `documents` may be a generator; it is consumed inside the transaction. When the new passages are
        identical to the stored ones the write is rolled back and only the fingerprint is updated, so an
        unchanged corpus costs no index churn. Raises `CorpusError` when a document id is already held by
        another source or repeats within this one.
        """
        with self._writing() as conn:
            previous = conn.execute(
                "SELECT content_sha256 FROM sources WHERE source = ?", (source,)
            ).fetchone()
            self._delete_rows(conn, source)
            digest = hashlib.sha256()
            doc_rowid = conn.execute("SELECT coalesce(max(rowid), 0) FROM documents").fetchone()[0]
            chunk_rowid = conn.execute("SELECT coalesce(max(rowid), 0) FROM chunks").fetchone()[0]
            n_documents = n_chunks = 0
            for doc in documents:
                if not doc.passages:
                    continue
                doc_rowid += 1
                try:
                    conn.execute(
                        "INSERT INTO documents (rowid, id, source, title, url, chunks)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (doc_rowid, doc.id, source, doc.title, doc.url, len(doc.passages)),
                    )
                except sqlite3.IntegrityError:
                    raise self._duplicate(conn, doc.id, source) from None
                rowids = range(chunk_rowid + 1, chunk_rowid + 1 + len(doc.passages))
                chunk_rowid += len(doc.passages)
                conn.executemany(
                    "INSERT INTO chunks (rowid, doc, n) VALUES (?, ?, ?)",
                    [(rowid, doc_rowid, n) for n, rowid in enumerate(rowids)],
                )
                conn.executemany(
                    "INSERT INTO chunks_fts (rowid, title, text) VALUES (?, ?, ?)",
                    [(rowid, p.title, p.text) for rowid, p in zip(rowids, doc.passages, strict=True)],
                )
                for part in (doc.id, doc.title, doc.url, *(f"{p.title}\x1f{p.text}" for p in doc.passages)):
                    digest.update(part.encode("utf-8", "surrogatepass"))
                    digest.update(b"\x1e")
                n_documents += 1
                n_chunks += len(doc.passages)
            content_sha256 = digest.hexdigest()
            changed = previous is None or previous[0] != content_sha256
            if not changed:
                # Same passages as before: undo the rewrite (cheaper for the FTS segments than keeping
                # it) and record the new fingerprint alone.
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
            else:
                _stamp(conn)
            conn.execute(
                """
                INSERT OR REPLACE INTO sources
                    (source, size, mtime_ns, sha256, version, content_sha256, indexed_at)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """,
                (
                    source,
                    fingerprint.size,
                    fingerprint.mtime_ns,
                    fingerprint.sha256,
                    fingerprint.version,
                    content_sha256,
                    _now(),
                ),
            )
        return ReplaceResult(documents=n_documents, chunks=n_chunks, changed=changed)

    def update_fingerprint(self, source: str, fingerprint: SourceFingerprint) -> None:
        """Record a new fingerprint for an indexed source whose content is known to be unchanged
        (a file touched but not edited)."""
        with self._writing() as conn:
            conn.execute(
                "UPDATE sources SET size = ?, mtime_ns = ?, sha256 = ?, version = ? WHERE source = ?",
                (fingerprint.size, fingerprint.mtime_ns, fingerprint.sha256, fingerprint.version, source),
            )

    def delete_source(self, source: str) -> int:
        """Remove a source and its documents; returns how many documents went."""
        with self._writing() as conn:
            removed = self._delete_rows(conn, source)
            conn.execute("DELETE FROM sources WHERE source = ?", (source,))
            _stamp(conn)
        return removed

    def integrity_problems(self) -> list[str]:
        """What SQLite's quick check finds wrong with the file (a few at most); [] when it is sound.

        See `openheavy.sqlite_migrations.quick_check`.
        """
        with self._pool.connection() as conn:
            return quick_check(conn)

    def stats(self) -> IndexStats:
        """How many documents, chunks and sources the index holds, and when it was built and changed."""
        with self._pool.connection() as conn:
            documents = conn.execute("SELECT count(*) FROM documents").fetchone()[0]
            chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
            sources = conn.execute("SELECT count(*) FROM sources").fetchone()[0]
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        return IndexStats(
            documents=documents,
            chunks=chunks,
            sources=sources,
            schema_version=int(meta["schema_version"]),
            created_at=datetime.fromisoformat(meta["created_at"]),
            updated_at=datetime.fromisoformat(meta["updated_at"]),
        )

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: commits on success, rolls back on error."""
        with self._write_lock, self._pool.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    @staticmethod
    def _delete_rows(conn: sqlite3.Connection, source: str) -> int:
        conn.execute(
            """
            DELETE FROM chunks_fts WHERE rowid IN (
                SELECT c.rowid FROM documents AS d JOIN chunks AS c ON c.doc = d.rowid WHERE d.source = ?
            )
            """,
            (source,),
        )
        conn.execute(
            "DELETE FROM chunks WHERE doc IN (SELECT rowid FROM documents WHERE source = ?)", (source,)
        )
        return conn.execute("DELETE FROM documents WHERE source = ?", (source,)).rowcount

    @staticmethod
    def _duplicate(conn: sqlite3.Connection, doc_id: str, source: str) -> CorpusError:
        row = conn.execute("SELECT source FROM documents WHERE id = ?", (doc_id,)).fetchone()
        holder = row[0] if row else source
        if holder == source:
            return CorpusError(f"document id {doc_id!r} appears twice in {source} — ids must be unique")
        return CorpusError(
            f"document id {doc_id!r} from {source} is already indexed from {holder} — ids must be unique"
            " within a corpus; rename one, or index them into separate corpora (--name)"
        )
