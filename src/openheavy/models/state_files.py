"""Small state files that several openheavy processes share (the server registry, leases, the core
ledger): owner-only (they may hold a server's API key), replaced atomically (a reader never sees half a
file), and guarded by `filelock` locks, which the kernel releases when a holder dies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import filelock

from openheavy.errors import EmbeddedModelError

__all__ = ["async_locked", "locked", "private_dir", "read_json", "write_private"]

_POLL_SECONDS = 0.05


def private_dir(path: Path) -> Path:
    """Create `path` (and its parents) if needed; the directory itself is owner-only (0700).

    `EmbeddedModelError` if someone else owns it: in a shared temporary directory another user could
    have made it first, to read or forge our state."""
    path.mkdir(parents=True, exist_ok=True)
    if hasattr(os, "getuid") and path.stat().st_uid != os.getuid():
        raise EmbeddedModelError(
            f"{path} belongs to another user — set OPENHEAVY_RUNTIME_DIR (or OPENHEAVY_DATA_DIR) to a "
            "folder of your own"
        )
    path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically; the file is owner-only (0600) from its first byte."""
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> object | None:
    """The JSON value in `path`, or None when it is missing or unreadable (a stale or damaged state
    file is treated as absent: every state file here can be rebuilt)."""
    try:
        value: object = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value


def _lock(path: Path) -> filelock.FileLock:
    private_dir(path.parent)
    return filelock.FileLock(path, mode=0o600)


def _held_too_long(path: Path, wait: float, what: str) -> EmbeddedModelError:
    return EmbeddedModelError(
        f"{what} has been locked by another openheavy process for {wait:g} s ({path}) — "
        "wait for it, or check `openheavy model status`"
    )


@contextlib.contextmanager
def locked(path: Path, wait: float, what: str) -> Iterator[None]:
    """Hold the lock file `path` (blocking up to `wait` s); `EmbeddedModelError` naming `what` after."""
    lock = _lock(path)
    try:
        lock.acquire(timeout=wait, poll_interval=_POLL_SECONDS)
    except filelock.Timeout:
        raise _held_too_long(path, wait, what) from None
    try:
        yield
    finally:
        lock.release()


@contextlib.asynccontextmanager
async def async_locked(path: Path, wait: float, what: str) -> AsyncIterator[None]:
    """`locked` for async code: polls without blocking the event loop, so waiting stays cancellable."""
    lock = _lock(path)
    deadline = time.monotonic() + wait
    while True:
        try:
            lock.acquire(blocking=False)
            break
        except filelock.Timeout:
            if time.monotonic() >= deadline:
                raise _held_too_long(path, wait, what) from None
            await asyncio.sleep(_POLL_SECONDS)
    try:
        yield
    finally:
        lock.release()
