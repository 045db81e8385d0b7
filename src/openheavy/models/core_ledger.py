"""Machine-wide accounting of llama.cpp threads, so that all the llama-servers openheavy starts on one
machine (any data directory, shared or private) never run more threads than there are cores.

Why: llama.cpp's threads spin at barriers. Two servers each started with `-t` = all cores slow every
call 50-100x (a planner call measured 379 s under contention, 3.4 s alone).

How: a small owner-only JSON file in the runtime directory (`$OPENHEAVY_RUNTIME_DIR`, else the user's
runtime directory) lists the claims, each held by a process (the one whose death kills the server: the
supervisor of a shared server, the Python process of a private one) and pruned once that process is
gone, so a crash never leaks cores. A new server gets `min(wanted, free)` threads; with no core free it
waits, registered as a waiter, until one is released: a shared server that nobody uses gives its cores
up at once when it sees a waiter (see `models.supervisor`); one in use keeps them until it goes idle.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from openheavy.errors import EmbeddedModelError
from openheavy.models.processes import process_start, same_process, usable_cores
from openheavy.models.state_files import locked, read_json
from openheavy.private_files import write_private

__all__ = ["CoreClaim", "CoreLedger"]

log = logging.getLogger(__name__)

_LOCK_TIMEOUT = 30.0  # the lock is only ever held for a read and a write
_RETRY_SECONDS = 0.25


class _Claim(BaseModel):
    token: str
    holder_pid: int
    holder_start: int | None = None
    threads: int
    label: str = ""
    since: float = Field(default_factory=time.time)

    def live(self) -> bool:
        return same_process(self.holder_pid, self.holder_start)


class _Waiter(BaseModel):
    pid: int
    start: int | None = None
    label: str = ""
    since: float = Field(default_factory=time.time)

    def live(self) -> bool:
        return same_process(self.pid, self.start)


class _LedgerFile(BaseModel):
    claims: list[_Claim] = Field(default_factory=list)
    waiters: list[_Waiter] = Field(default_factory=list)


@dataclass(frozen=True)
class CoreClaim:
    """Threads held by one llama-server, released when it stops (or when its holder dies)."""

    token: str
    threads: int
    holder_pid: int
    label: str


class CoreLedger:
    """The thread claims of every llama-server openheavy runs on this machine (see the module doc)."""

    def __init__(self, directory: Path, cores: int | None = None) -> None:
        self.directory = Path(directory)
        self.cores = cores or usable_cores()

    @property
    def path(self) -> Path:
        return self.directory / "cores.json"

    @property
    def _lock_path(self) -> Path:
        return self.directory / "cores.lock"

    def _load(self) -> _LedgerFile:
        raw = read_json(self.path)
        try:
            ledger = _LedgerFile.model_validate(raw) if raw is not None else _LedgerFile()
        except ValidationError:  # damaged: claims are re-made by every server that starts
            ledger = _LedgerFile()
        return _LedgerFile(
            claims=[c for c in ledger.claims if c.live()], waiters=[w for w in ledger.waiters if w.live()]
        )

    def _save(self, ledger: _LedgerFile) -> None:
        write_private(self.path, ledger.model_dump_json(indent=1))

    def claims(self) -> list[CoreClaim]:
        """The live claims, oldest first."""
        with locked(self._lock_path, _LOCK_TIMEOUT, "the core ledger"):
            ledger = self._load()
        return [CoreClaim(c.token, c.threads, c.holder_pid, c.label) for c in ledger.claims]

    def used(self) -> int:
        """Threads held by live claims."""
        return sum(claim.threads for claim in self.claims())

    def has_waiters(self, *, besides: int | None = None) -> bool:
        """Whether a process (other than pid `besides`) is waiting for a core."""
        with locked(self._lock_path, _LOCK_TIMEOUT, "the core ledger"):
            ledger = self._load()
        return any(w.pid != besides for w in ledger.waiters)

    def _try_claim(self, threads: int, label: str, me: int) -> CoreClaim | None:
        with locked(self._lock_path, _LOCK_TIMEOUT, "the core ledger"):
            ledger = self._load()
            free = self.cores - sum(c.threads for c in ledger.claims)
            others = [w for w in ledger.waiters if w.pid != me]
            if free >= 1:
                claim = _Claim(
                    token=secrets.token_hex(8),
                    holder_pid=me,
                    holder_start=process_start(me),
                    threads=min(threads, free),
                    label=label,
                )
                self._save(_LedgerFile(claims=[*ledger.claims, claim], waiters=others))
                return CoreClaim(claim.token, claim.threads, me, label)
            mine = next((w for w in ledger.waiters if w.pid == me), None)
            if mine is None:
                self._save(_LedgerFile(claims=ledger.claims, waiters=[*others, _Waiter(pid=me, label=label)]))
            return None

    def _stop_waiting(self, me: int) -> None:
        with locked(self._lock_path, _LOCK_TIMEOUT, "the core ledger"):
            ledger = self._load()
            self._save(_LedgerFile(claims=ledger.claims, waiters=[w for w in ledger.waiters if w.pid != me]))

    async def claim(self, threads: int, *, label: str, wait: float) -> CoreClaim:
        """Claim up to `threads` threads (at least one), waiting up to `wait` seconds for a free core.

        `EmbeddedModelError` naming the servers that hold the cores when none frees up in time."""
        me = os.getpid()
        deadline = time.monotonic() + wait
        warned = False
        try:
            while True:
                claim = await asyncio.to_thread(self._try_claim, max(1, threads), label, me)
                if claim is not None:
                    return claim
                if not warned:
                    log.warning(
                        "all %d cores are held by other llama-servers (%s); waiting up to %g s for one",
                        self.cores,
                        self._holders(),
                        wait,
                    )
                    warned = True
                if time.monotonic() >= deadline:
                    raise EmbeddedModelError(
                        f"no CPU core free for a llama-server after {wait:g} s: all {self.cores} are held by "
                        f"{self._holders()} — stop one with `openheavy model stop` (in its data directory), "
                        "or raise OPENHEAVY_LLAMA_CORE_WAIT"
                    )
                await asyncio.sleep(_RETRY_SECONDS)
        except BaseException:
            # Synchronous: also runs when the wait itself is cancelled.
            self._stop_waiting(me)
            raise

    def release(self, claim: CoreClaim) -> None:
        """Give the claim's threads back (idempotent)."""
        with locked(self._lock_path, _LOCK_TIMEOUT, "the core ledger"):
            ledger = self._load()
            kept = [c for c in ledger.claims if c.token != claim.token]
            self._save(_LedgerFile(claims=kept, waiters=ledger.waiters))

    def _holders(self) -> str:
        held = self.claims()
        return ", ".join(
            f"{c.label or 'llama-server'} ({c.threads} threads, pid {c.holder_pid})" for c in held
        )
