"""Small state files that several openheavy processes share (the server registry, leases, the core
ledger): written owner-only and atomically (`openheavy.private_files.write_private`: they may hold a
server's API key), and guarded by `filelock` locks, which the kernel releases when a holder dies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import filelock

from openheavy.errors import EmbeddedModelError
from openheavy.private_files import private_dir

__all__ = ["async_locked", "locked", "read_json"]

_POLL_SECONDS = 0.05


def read_json(path: Path) -> object | None:
    """The JSON value in `path`, or None when it is missing or unreadable (a stale or damaged state
    file is treated as absent: every state file here can be rebuilt)."""
    try:
        value: object = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value


def _lock(path: Path) -> filelock.FileLock:
    private_dir(path.parent, exclusive=True)
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
