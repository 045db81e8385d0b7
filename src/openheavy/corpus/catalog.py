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
from datetime import datetime
from pathlib import Path

from openheavy.corpus import pydocs
from openheavy.corpus.chunking import chunk_document
from openheavy.corpus.sources import SourceDoc, discover_files, read_file
from openheavy.errors import CorpusError, EmptyIndexError, SearchError, UnknownCorpusError
from openheavy.search.local import IndexedDocument, LocalIndex, Passage, SourceFingerprint

ProgressCallback = Callable[[int, int, str], None]
"""Called as `progress(done, total, label)`; `total` is 0 when it is not known in advance."""

DEFAULT_CORPUS = "pydocs"

# Bump when reading or chunking changes, so that re-indexing re-reads files whose bytes did not change.
READER_VERSION = "1"

FILE_SOURCE_PREFIX = "file:"
DOCUMENTS_SOURCE = "documents"
PYDOCS_SOURCE = "pydocs"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class IndexReport:
    """What one indexing run did. `documents` and `chunks` are the corpus totals afterwards.

    For `index_documents` the collection counts as one source: `files_indexed` or `files_unchanged`
    is 1.
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


@dataclass(frozen=True)
class CorpusInfo:
    """One corpus in the index directory."""

    name: str
    path: Path
    documents: int
    chunks: int
    updated_at: datetime


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
    paths: list[Path], name: str, index_dir: Path, progress: ProgressCallback | None = None
) -> IndexReport:
    """Index files and folders (recursively) into corpus `name`, incrementally.

    Unchanged files (same size and mtime, or same bytes) are skipped; changed ones are re-indexed; files
    that were indexed from under these paths and are gone now (or gone anywhere) are removed. Supported:
    .md, .rst, .txt, .html/.htm, .pdf, and .jsonl (one document per line: id, title, text, url).
    Raises `CorpusError` for a missing path, an unsupported file named explicitly, or a malformed file;
    files indexed before the error stay indexed, so a second run after the fix resumes.
    """
    started = time.perf_counter()
    path = index_file(name, index_dir)
    roots = [Path(p).expanduser().resolve() for p in paths]
    if not roots:
        raise CorpusError("nothing to index — give at least one file or folder: openheavy index PATH")
    missing = [str(p) for p, root in zip(paths, roots, strict=True) if not root.exists()]
    if missing:
        raise CorpusError(f"no such file or folder: {', '.join(missing)} — check the path to index")
    files: dict[Path, Path] = {}  # file -> the root it was found under
    for root in roots:
        for file in discover_files(root):
            files.setdefault(file, root)

    with _build_lock(path), LocalIndex(path, name) as index:
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
            index.delete_source(source)
        indexed = unchanged = 0
        for done, (file, root) in enumerate(files.items()):
            if progress is not None:
                progress(done, len(files), _label(file, root))
            if _index_file(index, file, root, stored.get(FILE_SOURCE_PREFIX + str(file))):
                indexed += 1
            else:
                unchanged += 1
        if progress is not None:
            progress(len(files), len(files), "done")
        stats = index.stats()
    return IndexReport(
        name=name,
        path=path,
        files_seen=len(files),
        files_indexed=indexed,
        files_unchanged=unchanged,
        files_removed=len(stale),
        documents=stats.documents,
        chunks=stats.chunks,
        seconds=time.perf_counter() - started,
    )


def _stale_file(file: Path, roots: list[Path]) -> bool:
    """An indexed file to remove: under a root being indexed (and not found there now), or gone."""
    return any(file == root or file.is_relative_to(root) for root in roots) or not file.exists()


def _label(file: Path, root: Path) -> str:
    return file.relative_to(root.parent).as_posix() if root.is_dir() else file.name


def _index_file(index: LocalIndex, file: Path, root: Path, stored: SourceFingerprint | None) -> bool:
    """Bring one file up to date in the index; True when it was (re)indexed, False when unchanged."""
    source = FILE_SOURCE_PREFIX + str(file)
    stat = file.stat()
    if (
        stored is not None
        and stored.version == READER_VERSION
        and stored.size == stat.st_size
        and stored.mtime_ns == stat.st_mtime_ns
    ):
        return False
    data = file.read_bytes()
    fingerprint = SourceFingerprint(
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        sha256=hashlib.sha256(data).hexdigest(),
        version=READER_VERSION,
    )
    if stored is not None and stored.version == READER_VERSION and stored.sha256 == fingerprint.sha256:
        index.update_fingerprint(source, fingerprint)  # touched, not edited
        return False
    doc_id = _file_doc_id(index, file, root, source)
    docs = read_file(file, data, doc_id)
    index.replace_source(source, (_prepare(doc) for doc in docs), fingerprint)
    return True


def _file_doc_id(index: LocalIndex, file: Path, root: Path, source: str) -> str:
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
    with _build_lock(path), LocalIndex(path, name) as index:
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
    """The corpora built in `index_dir`, by name. Files that are not openheavy indexes are left out."""
    corpora: list[CorpusInfo] = []
    for path in sorted(Path(index_dir).glob("*.sqlite")):
        if not _NAME.fullmatch(path.stem):
            continue
        try:
            with LocalIndex(path, path.stem, create=False) as index:
                stats = index.stats()
        except SearchError:
            continue
        corpora.append(CorpusInfo(path.stem, path, stats.documents, stats.chunks, stats.updated_at))
    return corpora


def open_corpus(name: str, index_dir: Path, progress: ProgressCallback | None = None) -> LocalIndex:
    """The index of corpus `name`, ready to search; the caller closes it.

    `pydocs` is built on first use (10-20 s on 2 cores; `progress` reports it) and reused afterwards.
    Raises `UnknownCorpusError` when no such corpus was built and `EmptyIndexError` when it holds no
    documents.
    """
    path = index_file(name, index_dir)
    if name == DEFAULT_CORPUS:
        ensure_pydocs(index_dir, progress)
    if not path.is_file():
        available = ", ".join(info.name for info in list_corpora(index_dir)) or "none yet"
        raise UnknownCorpusError(
            f"no corpus named {name!r} in {index_dir} (available: {available}) —"
            f" run: openheavy index PATH --name {name}"
        )
    index = LocalIndex(path, name)
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
    with _build_lock(path), LocalIndex(path, DEFAULT_CORPUS) as index:
        stored = index.sources().get(PYDOCS_SOURCE)
        if stored is not None and stored.version == pydocs_version() and index.stats().documents > 0:
            return False
        docs = pydocs.pydocs_documents(progress)
        _replace_documents(index, PYDOCS_SOURCE, docs, pydocs_version(), progress)
    return True
