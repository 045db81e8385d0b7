"""Named corpora: building, listing and opening the index files under one directory.

This is the API the CLI (`openheavy index PATH --name NAME`) and the agent call. A corpus named NAME is
the file `index_dir / "NAME.sqlite"`. The corpus `pydocs` is built on first use.
"""

from __future__ import annotations

import hashlib
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from openheavy.corpus import pydocs
from openheavy.corpus.chunking import chunk_document
from openheavy.corpus.sources import SourceDoc, discover_files, read_file, supported_suffixes
from openheavy.errors import (
    CorpusError,
    DamagedIndexError,
    EmptyIndexError,
    SearchError,
    UnknownCorpusError,
)
from openheavy.search.local import IndexedDocument, LocalIndex, Passage, SourceFingerprint

ProgressCallback = Callable[[int, int, str], None]
"""Called as `progress(done, total, label)`; `total` is 0 when it is not known in advance."""

WarningCallback = Callable[[str], None]
"""Called with a one-line message as soon as indexing skips a file or reads one in a guessed encoding."""

DEFAULT_CORPUS = "pydocs"

# Bump when reading or chunking changes, so that re-indexing re-reads files whose bytes did not change.
READER_VERSION = "1"

FILE_SOURCE_PREFIX = "file:"
DOCUMENTS_SOURCE = "documents"
PYDOCS_SOURCE = "pydocs"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class SkippedFile:
    """A file that indexing left out, and why (a one-line message naming it and what to do)."""

    path: Path
    reason: str


@dataclass(frozen=True)
class IndexReport:
    """What one indexing run did. `documents` and `chunks` are the corpus totals afterwards.

    For `index_documents` the collection counts as one source: `files_indexed` or `files_unchanged`
    is 1. `skipped` lists the files that could not be read or parsed (`files_seen` counts them too);
    `notes` says which files were decoded with a detected encoding.
    """

    name: str
    path: Path
    files_seen: int
    files_indexed: int
    files_unchanged: int
    files_removed: int
    documents: int
    chunks: int
    seconds: float
    skipped: tuple[SkippedFile, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CorpusInfo:
    """One corpus in the index directory. A corpus whose file cannot be used has a `problem` (what is
    wrong and how to fix it); its counts are then 0 and `updated_at` is the file's modification time."""

    name: str
    path: Path
    documents: int
    chunks: int
    updated_at: datetime
    problem: str | None = None


def validate_name(name: str) -> str:
    """`name` if it can name a corpus (letters, digits, `-`, `_`, `.`; up to 64), else `CorpusError`."""
    if not _NAME.fullmatch(name) or name.endswith(".sqlite"):
        raise CorpusError(
            f"invalid corpus name {name!r} — use letters, digits, '-', '_' and '.', starting with a letter"
            " or digit (at most 64 characters), e.g. --name my-notes"
        )
    return name


def index_file(name: str, index_dir: Path) -> Path:
    """The index file of corpus `name`."""
    return Path(index_dir) / f"{validate_name(name)}.sqlite"


# One build at a time per index file within this process: two agents opening `pydocs` at once must not
# both render it. (Across processes, SQLite's write lock keeps each source replacement whole.)
_build_locks: dict[Path, threading.Lock] = {}
_build_locks_guard = threading.Lock()


def _build_lock(path: Path) -> threading.Lock:
    with _build_locks_guard:
        return _build_locks.setdefault(path.resolve(), threading.Lock())


# ------------------------------------------------------------------ building


def index_paths(
    paths: list[Path],
    name: str,
    index_dir: Path,
    progress: ProgressCallback | None = None,
    warn: WarningCallback | None = None,
) -> IndexReport:
    """Index files and folders (recursively) into corpus `name`, incrementally, one file at a time.

    Unchanged files (same size and mtime, or same bytes) are skipped; changed ones are re-indexed; files
    that were indexed from under these paths and are gone now (or gone anywhere) are removed. Supported:
    .md, .rst, .txt, .html/.htm, .pdf, and .jsonl (one document per line: id, title, text, url).

    A file that cannot be read or parsed (binary, malformed, unreadable, an undetectable encoding) is
    skipped: `warn` gets a line naming it and why, the report lists it, and the rest is indexed (a
    skipped file indexed before keeps its previous version). Raises `CorpusError` for a missing path or
    an unsupported file named explicitly, and when the run leaves nothing of these paths in the corpus
    (no supported files, all skipped, no text): an empty corpus is never created. Raises
    `DamagedIndexError` when the corpus file exists but is damaged.
    """
    started = time.perf_counter()
    path = index_file(name, index_dir)
    roots = [Path(p).expanduser().resolve() for p in paths]
    if not roots:
        raise CorpusError("nothing to index — give at least one file or folder: openheavy index PATH")
    missing = [str(p) for p, root in zip(paths, roots, strict=True) if not root.exists()]
    if missing:
        raise CorpusError(f"no such file or folder: {', '.join(missing)} — check the path to index")
    skipped: list[SkippedFile] = []
    notes: list[str] = []

    def skip(file: Path, reason: str) -> None:
        skipped.append(SkippedFile(file, reason))
        if warn is not None:
            warn(f"skipped: {reason}")

    def unlistable(exc: OSError) -> None:
        folder = Path(exc.filename or "(a folder)")
        skip(folder, f"{folder}: cannot list this folder ({exc.strerror or exc}) — check its permissions")

    files: dict[Path, Path] = {}  # file -> the root it was found under
    for root in roots:
        for file in discover_files(root, on_error=unlistable):
            files.setdefault(file, root)

    with _build_lock(path), _LazyIndex(path, name) as index:
        stored = index.sources()
        seen = {FILE_SOURCE_PREFIX + str(file) for file in files}
        stale = [
            source
            for source in stored
            if source.startswith(FILE_SOURCE_PREFIX)
            and source not in seen
            and _stale_file(Path(source.removeprefix(FILE_SOURCE_PREFIX)), roots)
        ]
        for source in stale:
            index.open().delete_source(source)
        indexed = unchanged = 0
        for done, (file, root) in enumerate(files.items()):
            if progress is not None:
                progress(done, len(files), _label(file, root))
            previous = stored.get(FILE_SOURCE_PREFIX + str(file))
            try:
                docs = _index_file(index, file, root, previous)
            except CorpusError as exc:  # its message names the file and says what to do
                skip(file, _kept(str(exc), previous))
                continue
            except OSError as exc:
                skip(file, _kept(f"{file}: cannot read it ({exc.strerror or exc})", previous))
                continue
            if docs is None:
                unchanged += 1
                continue
            indexed += 1
            encodings = sorted({doc.encoding for doc in docs} - {"utf-8"})
            if encodings:
                notes.append(f"{file}: not UTF-8, read as {', '.join(encodings)} (detected)")
                if warn is not None:
                    warn(notes[-1])
        if progress is not None:
            progress(len(files), len(files), "done")
        documents, chunks = index.counts()
    if indexed + unchanged == 0 or documents == 0:
        raise CorpusError(
            _nothing_indexed(name, paths, len(files), indexed + unchanged, len(stale), path.is_file())
        )
    return IndexReport(
        name=name,
        path=path,
        files_seen=len(files),
        files_indexed=indexed,
        files_unchanged=unchanged,
        files_removed=len(stale),
        documents=documents,
        chunks=chunks,
        seconds=time.perf_counter() - started,
        skipped=tuple(skipped),
        notes=tuple(notes),
    )


class _LazyIndex:
    """The index of a corpus being built from files, created only when there is a passage to store, so
    that a run that indexes nothing (or fails first) leaves no empty corpus behind."""

    def __init__(self, path: Path, name: str) -> None:
        self.path, self.name = path, name
        self._index = _open_index(path, name) if path.exists() else None
        self._created = False

    def open(self) -> LocalIndex:
        """The index, created now if it does not exist yet."""
        if self._index is None:
            self._created = not self.path.exists()
            self._index = LocalIndex(self.path, self.name)
        return self._index

    @property
    def is_open(self) -> bool:
        return self._index is not None

    def sources(self) -> dict[str, SourceFingerprint]:
        return {} if self._index is None else self._index.sources()

    def document_source(self, doc_id: str) -> str | None:
        return None if self._index is None else self._index.document_source(doc_id)

    def counts(self) -> tuple[int, int]:
        """The corpus's documents and chunks."""
        if self._index is None:
            return 0, 0
        stats = self._index.stats()
        return stats.documents, stats.chunks

    def __enter__(self) -> _LazyIndex:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._index is None:
            return
        # Created by this run, yet empty (its first write failed or was interrupted): remove it, as
        # if the run had never started. An index that existed before is never removed.
        try:
            empty = self._created and self._index.stats().sources == 0
        finally:
            self._index.close()
        if empty:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)


def _kept(reason: str, previous: SourceFingerprint | None) -> str:
    return reason if previous is None else f"{reason} (its previously indexed version stays)"


def _nothing_indexed(
    name: str, paths: list[Path], found: int, readable: int, removed: int, exists: bool
) -> str:
    where = ", ".join(str(p) for p in paths)
    if not exists:
        outcome = f"corpus {name!r} was not created"
    elif removed:
        outcome = f"{removed} files that are gone were removed from corpus {name!r}"
    else:
        outcome = f"corpus {name!r} is left as it was"
    if found == 0:
        problem = f"no supported files ({' '.join(supported_suffixes())}) in {where}"
    elif readable == 0:
        skipped = "the file in" if found == 1 else f"all {found} files in"
        problem = f"{skipped} {where} {'was' if found == 1 else 'were'} skipped (see the warnings)"
    else:
        problem = f"the files in {where} hold no text to search"
    return f"nothing indexed: {problem} — {outcome}"


def _stale_file(file: Path, roots: list[Path]) -> bool:
    """An indexed file to remove: under a root being indexed (and not found there now), or gone."""
    return any(file == root or file.is_relative_to(root) for root in roots) or not file.exists()


def _label(file: Path, root: Path) -> str:
    return file.relative_to(root.parent).as_posix() if root.is_dir() else file.name


def _index_file(
    index: _LazyIndex, file: Path, root: Path, stored: SourceFingerprint | None
) -> list[SourceDoc] | None:
    """Bring one file up to date in the index: its documents when it was (re)indexed, None when it was
    unchanged. Raises `CorpusError` or `OSError` when it cannot be read or parsed; the index is then
    left as it was."""
    source = FILE_SOURCE_PREFIX + str(file)
    stat = file.stat()
    if (
        stored is not None
        and stored.version == READER_VERSION
        and stored.size == stat.st_size
        and stored.mtime_ns == stat.st_mtime_ns
    ):
        return None
    data = file.read_bytes()
    fingerprint = SourceFingerprint(
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        sha256=hashlib.sha256(data).hexdigest(),
        version=READER_VERSION,
    )
    if stored is not None and stored.version == READER_VERSION and stored.sha256 == fingerprint.sha256:
        index.open().update_fingerprint(source, fingerprint)  # touched, not edited
        return None
    docs = read_file(file, data, _file_doc_id(index, file, root, source))
    prepared = [_prepare(doc) for doc in docs]
    if index.is_open or any(doc.passages for doc in prepared):
        index.open().replace_source(source, prepared, fingerprint)
    return docs


def _file_doc_id(index: _LazyIndex, file: Path, root: Path, source: str) -> str:
    """A file's document id: its path from the indexed folder ("docs/guide/intro.md"), or the full path
    when another file already holds that id."""
    short = file.relative_to(root.parent).as_posix() if root.is_dir() else file.name
    holder = index.document_source(short)
    return short if holder is None or holder == source else file.as_posix()


def _prepare(doc: SourceDoc) -> IndexedDocument:
    chunks = chunk_document(doc.title, doc.text, doc.format)
    return IndexedDocument(
        id=doc.id,
        title=doc.title,
        url=doc.url,
        passages=tuple(Passage(chunk.title, chunk.text) for chunk in chunks),
    )


def index_documents(
    docs: Iterable[SourceDoc], name: str, index_dir: Path, progress: ProgressCallback | None = None
) -> IndexReport:
    """Make `docs` the programmatic content of corpus `name` (files indexed into it stay).

    Calling it again with the same documents changes nothing; with different ones, they replace the
    previous set atomically. `docs` may be a generator. Raises `CorpusError` on a repeated id.
    """
    started = time.perf_counter()
    path = index_file(name, index_dir)
    with _build_lock(path), _open_index(path, name, create=True) as index:
        changed = _replace_documents(index, DOCUMENTS_SOURCE, docs, READER_VERSION, progress)
        stats = index.stats()
    return IndexReport(
        name=name,
        path=path,
        files_seen=1,
        files_indexed=int(changed),
        files_unchanged=int(not changed),
        files_removed=0,
        documents=stats.documents,
        chunks=stats.chunks,
        seconds=time.perf_counter() - started,
    )


def _replace_documents(
    index: LocalIndex,
    source: str,
    docs: Iterable[SourceDoc],
    version: str,
    progress: ProgressCallback | None,
) -> bool:
    total = len(docs) if isinstance(docs, Sized) else 0

    def prepared() -> Iterator[IndexedDocument]:
        for done, doc in enumerate(docs):
            if progress is not None and done % 100 == 0:
                progress(done, total, f"index {doc.id}")
            yield _prepare(doc)

    result = index.replace_source(source, prepared(), SourceFingerprint(version=version))
    if progress is not None:
        progress(total or result.documents, total or result.documents, "done")
    return result.changed


# ------------------------------------------------------------------ listing and opening


def list_corpora(index_dir: Path) -> list[CorpusInfo]:
    """The corpora in `index_dir`, by name. One that cannot be used (damaged, not an index, written by
    a newer openheavy) is listed with its `problem`; it never hides the others."""
    corpora: list[CorpusInfo] = []
    for path in sorted(Path(index_dir).glob("*.sqlite")):
        if not _NAME.fullmatch(path.stem):
            continue
        try:
            with _open_index(path, path.stem) as index:
                stats = index.stats()
        except SearchError as exc:
            try:
                modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            except OSError:
                continue  # removed meanwhile
            corpora.append(CorpusInfo(path.stem, path, 0, 0, modified, problem=str(exc)))
            continue
        corpora.append(CorpusInfo(path.stem, path, stats.documents, stats.chunks, stats.updated_at))
    return corpora


def _open_index(path: Path, name: str, *, create: bool = False) -> LocalIndex:
    """The index file of corpus `name`, after SQLite's quick check found it sound.

    Raises `DamagedIndexError` saying how to rebuild it when it is damaged or not a database, and
    `SearchError` when it is another application's database or from a newer openheavy.
    """
    if create and not path.exists():
        return LocalIndex(path, name)  # brand new: nothing to check
    try:
        index = LocalIndex(path, name, create=create)
    except DamagedIndexError as exc:
        raise _damaged(name, path, str(exc.__cause__ or exc)) from exc
    try:
        problems = index.integrity_problems()
        if problems:
            raise _damaged(name, path, "; ".join(problems))
    except BaseException:
        index.close()
        raise
    return index


def _damaged(name: str, path: Path, detail: str) -> DamagedIndexError:
    rebuild = (
        "ask again to rebuild it"
        if name == DEFAULT_CORPUS
        else f"rebuild it: openheavy index PATH --name {name}"
    )
    return DamagedIndexError(
        f"corpus {name!r} is damaged ({detail}) — move it aside (mv {path} {path}.damaged) and {rebuild}"
    )


def open_corpus(name: str, index_dir: Path, progress: ProgressCallback | None = None) -> LocalIndex:
    """The index of corpus `name`, ready to search; the caller closes it.

    `pydocs` is built on first use (10-20 s on 2 cores; `progress` reports it) and reused afterwards.
    Raises `UnknownCorpusError` when no such corpus was built, `EmptyIndexError` when it holds no
    documents, and `DamagedIndexError` (saying how to rebuild it) when its file is damaged.
    """
    path = index_file(name, index_dir)
    if name == DEFAULT_CORPUS:
        ensure_pydocs(index_dir, progress)
    if not path.is_file():
        available = ", ".join(info.name for info in list_corpora(index_dir) if info.problem is None)
        raise UnknownCorpusError(
            f"no corpus named {name!r} in {index_dir} (available: {available or 'none yet'}) —"
            f" run: openheavy index PATH --name {name}"
        )
    index = _open_index(path, name)
    if index.stats().documents == 0:
        index.close()
        raise EmptyIndexError(
            f"corpus {name!r} ({path}) holds no documents — index files into it:"
            f" openheavy index PATH --name {name} (supported: .md .rst .txt .html .pdf .jsonl)"
        )
    return index


def pydocs_version() -> str:
    """What a built `pydocs` must match to be reused: this Python and this way of rendering it."""
    return f"{READER_VERSION}.{pydocs.PYDOCS_VERSION}:{sys.version.split()[0]}"


def ensure_pydocs(index_dir: Path, progress: ProgressCallback | None = None) -> bool:
    """Build the `pydocs` corpus unless a current one exists; True when it was built now."""
    path = index_file(DEFAULT_CORPUS, index_dir)
    with _build_lock(path), _open_index(path, DEFAULT_CORPUS, create=True) as index:
        stored = index.sources().get(PYDOCS_SOURCE)
        if stored is not None and stored.version == pydocs_version() and index.stats().documents > 0:
            return False
        docs = pydocs.pydocs_documents(progress)
        _replace_documents(index, PYDOCS_SOURCE, docs, pydocs_version(), progress)
    return True
