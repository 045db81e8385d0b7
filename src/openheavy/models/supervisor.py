"""The detached process that owns one shared llama-server (the design is in `models.shared_server`).

It starts the server (its threads claimed from the core ledger), writes the record, then watches: the
leases and the server's busy slots, about once a second. It stops the server and removes the record
when nobody has used it for the idle timeout, at once when it is idle and another server waits for
cores, on SIGTERM (`openheavy model stop`), or when its record was replaced. The server is its child
and dies with it, whatever ends it.

Run as `python -m openheavy.models.supervisor CONFIG_JSON` by `SharedServer.acquire`, which reads two
JSON lines from its stdout: `{"pid": N}` at once, then `{"ready": true}` or `{"error": "..."}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time

from openheavy.errors import EmbeddedModelError
from openheavy.models.core_ledger import CoreLedger
from openheavy.models.llama_server import LlamaServer
from openheavy.models.processes import process_start
from openheavy.models.shared_server import (
    ServerFiles,
    ServerRecord,
    ServerState,
    SupervisorConfig,
    live_leases,
    read_record,
    remove_record,
)
from openheavy.models.state_files import async_locked
from openheavy.private_files import write_private

log = logging.getLogger(__name__)

_LOCK_WAIT = 2.0  # a client holding the lock is reusing or replacing this server: look again later
_STATE_EVERY = 5.0  # seconds between state writes while nothing changes


def _say(message: dict[str, object]) -> None:
    try:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()
    except OSError:  # the process that started us is gone (cancelled): nobody to tell
        pass


def _close_stdout() -> None:
    """Nothing more goes to the starter: point stdout at /dev/null so a stray write cannot fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


async def supervise(config: SupervisorConfig) -> int:
    """Start the server, watch it, stop it; the exit code is 0 unless it never became ready."""
    me = os.getpid()
    files = ServerFiles(config.data_dir, config.model)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    server = LlamaServer(
        config.model_path,
        log_dir=config.data_dir / "logs",
        binary=config.binary,
        alias=config.alias,
        slots=config.slots,
        ctx_per_slot=config.ctx_per_slot,
        threads=config.threads,
        start_timeout=config.start_timeout,
        core_ledger=CoreLedger(config.runtime_dir),
        core_wait=config.core_wait,
    )
    starting = asyncio.create_task(server.start())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await starting
        _say({"error": f"the {config.model} llama-server was stopped before it was ready"})
        return 1
    stopping.cancel()
    try:
        starting.result()
    except Exception as exc:
        message = str(exc) if isinstance(exc, EmbeddedModelError) else f"{type(exc).__name__}: {exc}"
        log.error("llama-server did not start: %s", message)
        _say({"error": message})
        return 1
    assert server.pid is not None and server.port is not None and server.log_path is not None
    weights = config.model_path.stat()
    record = ServerRecord(
        model=config.model,
        alias=config.alias,
        model_path=str(config.model_path),
        model_size=weights.st_size,
        model_mtime_ns=weights.st_mtime_ns,
        binary=str(config.binary),
        binary_mtime_ns=config.binary.stat().st_mtime_ns,
        port=server.port,
        server_pid=server.pid,
        server_start=process_start(server.pid),
        supervisor_pid=me,
        supervisor_start=process_start(me),
        api_key=server.api_key,
        threads=server.threads_running or config.threads,
        slots=config.slots,
        ctx_per_slot=config.ctx_per_slot,
        idle_timeout=config.idle_timeout,
        started_at=time.time(),
        log_path=str(server.log_path),
        supervisor_log=str(files.supervisor_log),
    )
    write_private(files.record, record.model_dump_json(indent=1))
    log.info(
        "%s llama-server pid %d on port %d, %d threads, %d slots",
        config.model,
        server.pid,
        server.port,
        record.threads,
        config.slots,
    )
    _say({"ready": True})
    _close_stdout()
    try:
        reason = await _watch(server, files, config, stop)
        log.info("stopping the %s llama-server: %s", config.model, reason)
    finally:
        with contextlib.suppress(EmbeddedModelError):
            async with async_locked(files.lock, _LOCK_WAIT, "the server record"):
                remove_record(files, me)
        await server.stop()
    return 0


async def _watch(
    server: LlamaServer, files: ServerFiles, config: SupervisorConfig, stop: asyncio.Event
) -> str:
    """Poll until the server should stop; the reason, for the log."""
    me = os.getpid()
    last_in_use = last_request = time.time()
    written: tuple[int, int] | None = None
    written_at = 0.0
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), config.poll_seconds)
        if stop.is_set():
            return "asked to stop"
        if not server.running:
            return f"llama-server exited with code {server.returncode}; see {server.log_path}"
        record = read_record(files)
        if record is None or record.supervisor_pid != me:
            return "its record was removed or replaced"
        users = live_leases(files)
        busy = int((await server.metrics()).get("requests_processing", 0))
        now = time.time()
        if users or busy:
            last_in_use = now
        if busy:
            last_request = now
        last_request = max([last_request, *(u.last_used for u in users)])
        if not users and not busy:
            idle = now - last_in_use
            waiting = server.core_ledger.has_waiters(besides=me)
            if (idle >= config.idle_timeout or waiting) and await _retire_if_unused(files, me):
                if waiting:
                    return "idle, and another llama-server is waiting for its cores"
                return f"nobody used it for {idle:.1f} s"
        if (busy, len(users)) != written or now - written_at >= _STATE_EVERY:
            state = ServerState(
                busy_slots=busy, last_in_use_at=last_in_use, last_request_at=last_request, checked_at=now
            )
            write_private(files.state, state.model_dump_json())
            written, written_at = (busy, len(users)), now


async def _retire_if_unused(files: ServerFiles, me: int) -> bool:
    """Remove our record, unless a client took a lease meanwhile (clients lease under the same lock)."""
    try:
        async with async_locked(files.lock, _LOCK_WAIT, "the server record"):
            if live_leases(files):
                return False
            remove_record(files, me)
            return True
    except EmbeddedModelError:
        return False


def main(argv: list[str] | None = None) -> int:
    """Entry point: `python -m openheavy.models.supervisor CONFIG_JSON`."""
    args = sys.argv[1:] if argv is None else argv
    config = SupervisorConfig.model_validate_json(args[0])
    logging.basicConfig(
        level=logging.WARNING,  # not the HTTP clients' line per poll
        format=f"%(asctime)s supervisor {config.model} pid %(process)d: %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("openheavy").setLevel(logging.INFO)
    _say({"pid": os.getpid()})
    return asyncio.run(supervise(config))


if __name__ == "__main__":
    sys.exit(main())
