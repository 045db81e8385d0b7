"""One embedded llama-server per data directory and model, shared by every openheavy process.

Why: each process starting its own llama-server with `-t` = all cores made two processes at once (an
`eval` in one terminal, an `ask` in another) 50-100x slower. One server per model serves them all with
continuous batching over its slots, and `models.core_ledger` keeps the threads of all servers at or
under the cores.

Design
------
- **A record per model**, `DATA_DIR/servers/KEY.json` (owner-only: it holds the server's API key): the
  port, the llama-server and supervisor pids (with their start times, since pids are reused), the binary
  and weights it runs (path, size, mtime), threads, slots, log files.
- **A lock per model**, `KEY.lock`: a process holds it while it checks the record and then reuses it,
  or replaces it by starting a server; so two processes never start two servers for one model, and a
  second one simply waits for the first one's start and reuses it.
- **Checked before reuse.** A record is stale when its supervisor or server is gone, it runs another
  binary or other weights, or the port does not answer `/health` and the key is refused. A stale record
  is replaced: leftover processes are stopped (only after checking that the pid still runs what we
  started) and a new server is started. A server that runs other files while other processes use it is
  not pulled from under them: the error names them and `openheavy model stop`.
- **A detached supervisor** (`models.supervisor`, a small Python process in its own session, so Ctrl-C
  in the terminal that started it does not reach it) owns the llama-server: the server dies with it
  (parent-death signal), so killing the supervisor in any way never leaves a server behind, and
  `openheavy model stop` is a SIGTERM to it. llama-server has no idle exit of its own; the supervisor
  polls, about once a second, the leases and the server's busy slots (`/metrics`), and stops the server
  once nobody has held a lease and no slot was busy for `llama_idle_timeout` seconds, or at once when
  idle and another server is waiting for cores.
- **Leases**, `KEY.leases/PID-TOKEN.json`: a process that uses the server holds one from its first
  request until it closes the model; its mtime is touched as requests are made (for "idle for"). A lease
  is live while its process is: one that crashed or was killed is pruned, so reference counting
  survives any death, with no heartbeat to miss.
- The supervisor takes the model lock before it retires an idle server, and a client creates its lease
  under the same lock before its health check: a server is never retired between the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openheavy.config import Settings
from openheavy.errors import EmbeddedModelError
from openheavy.models.llama_server import ended_within, find_llama_server, log_tail, parse_metrics
from openheavy.models.processes import (
    process_command,
    process_start,
    same_process,
    terminate_and_wait,
)
from openheavy.models.state_files import async_locked, read_json
from openheavy.private_files import child_environment, private_dir, write_private

__all__ = [
    "ServerFiles",
    "ServerRecord",
    "ServerStatus",
    "SharedServer",
    "SupervisorConfig",
    "server_statuses",
    "stop_servers",
]

log = logging.getLogger(__name__)

SUPERVISOR_MODULE = "openheavy.models.supervisor"
_HEALTH_TIMEOUT = 5.0
_TOUCH_EVERY = 1.0  # seconds between two lease touches: a touch per request would be a write per call
_RETIRE_GRACE = 15.0  # the supervisor's own lock wait (2 s) plus llama-server's stop grace (10 s)
# The supervisor is started through a throwaway Python that starts it in a new session and exits at
# once: the supervisor is then nobody's child here, so it never becomes our zombie or our ResourceWarning.
_DETACH = "import subprocess, sys; subprocess.Popen(sys.argv[1:], start_new_session=True)"


class _File(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SupervisorConfig(_File):
    """What the supervisor needs to start and watch one server (no secret: it is passed on argv)."""

    data_dir: Path
    model: str
    alias: str
    model_path: Path
    binary: Path
    slots: int
    ctx_per_slot: int
    threads: int
    start_timeout: float
    idle_timeout: float
    core_wait: float
    runtime_dir: Path

    @property
    def poll_seconds(self) -> float:
        """How often the supervisor looks: once a second, faster when the idle timeout is short."""
        return min(1.0, max(0.05, self.idle_timeout / 5))


class ServerRecord(_File):
    """`KEY.json`: a running shared server, as its supervisor wrote it."""

    model: str
    alias: str
    model_path: str
    model_size: int
    model_mtime_ns: int
    binary: str
    binary_mtime_ns: int
    host: str = "127.0.0.1"
    port: int
    server_pid: int
    server_start: int | None = None
    supervisor_pid: int
    supervisor_start: int | None = None
    api_key: str
    threads: int
    slots: int
    ctx_per_slot: int
    idle_timeout: float
    started_at: float
    log_path: str
    supervisor_log: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"


class ServerState(_File):
    """`KEY.state.json`: what the supervisor saw last."""

    busy_slots: int | None = None
    last_in_use_at: float = 0.0  # the last time a lease was held or a slot was busy
    last_request_at: float = 0.0  # the newest lease touch or busy slot
    checked_at: float = 0.0


class Lease(_File):
    """`KEY.leases/PID-TOKEN.json`: one process using the server."""

    pid: int
    start: int | None = None
    command: str = ""
    since: float = Field(default_factory=time.time)


@dataclass(frozen=True)
class ServerFiles:
    """Where one model's shared server is recorded in a data directory."""

    data_dir: Path
    model: str

    @property
    def key(self) -> str:
        return re.sub(r"[^\w.-]+", "-", self.model)

    @property
    def directory(self) -> Path:
        return self.data_dir / "servers"

    @property
    def record(self) -> Path:
        return self.directory / f"{self.key}.json"

    @property
    def lock(self) -> Path:
        return self.directory / f"{self.key}.lock"

    @property
    def state(self) -> Path:
        return self.directory / f"{self.key}.state.json"

    @property
    def leases(self) -> Path:
        return self.directory / f"{self.key}.leases"

    @property
    def supervisor_log(self) -> Path:
        return self.data_dir / "logs" / f"supervisor-{self.key}.log"

    @classmethod
    def all_in(cls, data_dir: Path) -> list[ServerFiles]:
        """The models with a record in `data_dir`."""
        directory = data_dir / "servers"
        found = []
        for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
            if path.name.endswith(".state.json"):
                continue
            record = read_record(cls(data_dir, path.stem))
            found.append(cls(data_dir, record.model if record is not None else path.stem))
        return found


def read_record(files: ServerFiles) -> ServerRecord | None:
    """The record of `files.model`, or None when there is none or it is unreadable (then it is stale)."""
    raw = read_json(files.record)
    if raw is None:
        return None
    try:
        return ServerRecord.model_validate(raw)
    except ValidationError:
        return None


def read_state(files: ServerFiles) -> ServerState | None:
    raw = read_json(files.state)
    try:
        return ServerState.model_validate(raw) if raw is not None else None
    except ValidationError:
        return None


def remove_record(files: ServerFiles, supervisor_pid: int) -> None:
    """Remove the record (and the supervisor's state) if it still names `supervisor_pid`."""
    record = read_record(files)
    if record is None or record.supervisor_pid == supervisor_pid:
        for path in (files.record, files.state):
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class LeaseInfo:
    """A live lease: who uses the server, since when, and when it last made a request."""

    path: Path
    pid: int
    command: str
    since: float
    last_used: float


def live_leases(files: ServerFiles) -> list[LeaseInfo]:
    """The leases whose process still runs; the others (crashed or killed clients) are removed."""
    found = []
    for path in sorted(files.leases.glob("*.json")) if files.leases.is_dir() else []:
        raw = read_json(path)
        try:
            lease = Lease.model_validate(raw)
            mtime = path.stat().st_mtime
        except (ValidationError, OSError):
            lease = None
        if lease is None or not same_process(lease.pid, lease.start):
            path.unlink(missing_ok=True)
            continue
        found.append(LeaseInfo(path, lease.pid, lease.command, lease.since, mtime))
    return found


def _create_lease(files: ServerFiles) -> Path:
    me = os.getpid()
    path = private_dir(files.leases, exclusive=True) / f"{me}-{secrets.token_hex(4)}.json"
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:2]]) if sys.argv and sys.argv[0] else "python"
    write_private(path, Lease(pid=me, start=process_start(me), command=command).model_dump_json())
    return path


# --------------------------------------------------------------------------- checking a record


@dataclass(frozen=True)
class _Files:
    """The binary and weights a process wants a server for: a record is reusable only if they match."""

    binary: Path
    weights: Path

    def mismatch(self, record: ServerRecord) -> str | None:
        if record.binary != str(self.binary):
            return f"it runs another llama-server binary ({record.binary})"
        if record.binary_mtime_ns != self.binary.stat().st_mtime_ns:
            return f"its llama-server binary {record.binary} has changed since it started"
        stat = self.weights.stat()
        if record.model_path != str(self.weights):
            return f"it serves other weights ({record.model_path})"
        if (record.model_size, record.model_mtime_ns) != (stat.st_size, stat.st_mtime_ns):
            return f"its weights {record.model_path} have changed since it started"
        return None


def _processes_gone(record: ServerRecord) -> str | None:
    if not same_process(record.supervisor_pid, record.supervisor_start):
        return f"its supervisor (pid {record.supervisor_pid}) is gone"
    if not same_process(record.server_pid, record.server_start):
        return f"its llama-server (pid {record.server_pid}) is gone"
    return None


async def _answers(record: ServerRecord) -> bool:
    """Whether the recorded port is our server: healthy, and it takes the recorded key (a port freed by
    a crash can be taken by another process, which would refuse the key)."""
    headers = {"Authorization": f"Bearer {record.api_key}"}
    async with httpx2.AsyncClient(timeout=_HEALTH_TIMEOUT, trust_env=False) as client:
        try:
            health = await client.get(f"{record.url}/health")
            models = await client.get(f"{record.base_url}/models", headers=headers)
        except httpx2.HTTPError:
            return False
    return health.status_code == 200 and models.status_code == 200


def _is_our(pid: int, start: int | None, marker: str) -> bool:
    """`pid` is still the process we recorded, and runs `marker` (so a reused pid is never signalled)."""
    if not same_process(pid, start):
        return False
    command = process_command(pid)
    return command is None or any(marker in part for part in command)


def _retire(record: ServerRecord, files: ServerFiles) -> bool:
    """Stop a recorded server's processes (those still ours) and remove its record; True once gone."""
    gone = True
    if _is_our(record.supervisor_pid, record.supervisor_start, SUPERVISOR_MODULE):
        gone = terminate_and_wait(record.supervisor_pid, _RETIRE_GRACE)
    # The server dies with its supervisor; if the supervisor was already gone, it is stopped here.
    if _is_our(record.server_pid, record.server_start, Path(record.binary).name):
        gone = terminate_and_wait(record.server_pid, _RETIRE_GRACE) and gone
    remove_record(files, record.supervisor_pid)
    return gone


# --------------------------------------------------------------------------- the client side


class SharedServer:
    """A lease on the shared llama-server of one model in one data directory.

    `await SharedServer.acquire(...)` reuses the running server or starts one (see the module doc);
    `release()` gives the lease back and leaves the server running for others until it idles out.
    Offers what `EmbeddedModel` uses of a `LlamaServer`: `base_url`, `api_key`, `pid`, `log_path`,
    `log_tail()`, `exited_within()`, `metrics()`.
    """

    def __init__(self, record: ServerRecord, files: ServerFiles, lease: Path) -> None:
        self.record = record
        self.files = files
        self.lease = lease
        self._touched = 0.0

    @classmethod
    async def acquire(cls, model: str, alias: str, weights: Path, settings: Settings) -> SharedServer:
        """A lease on `model`'s shared server in `settings.data_dir`, starting the server if needed."""
        files = ServerFiles(settings.data_dir, model)
        wanted = _Files(find_llama_server(settings.llama_server), weights)
        # Another process may be starting this very server: wait as long as its start may take.
        wait = settings.llama_start_timeout + settings.llama_core_wait + 30
        async with async_locked(files.lock, wait, f"the {model} server record"):
            record = read_record(files)
            if record is not None:
                lease = _create_lease(files)  # before the check: the supervisor never retires it now
                problem = _processes_gone(record) or wanted.mismatch(record)
                if problem is None and not await _answers(record):
                    problem = f"its port {record.port} does not answer"
                if problem is None:
                    return cls(record, files, lease)
                lease.unlink(missing_ok=True)
                users = [u for u in live_leases(files) if u.pid != os.getpid()]
                if users and _processes_gone(record) is None and wanted.mismatch(record) is not None:
                    raise EmbeddedModelError(
                        f"the shared {model} llama-server (pid {record.server_pid}) is in use by "
                        f"{_describe(users)}, and {problem} — let them finish, or stop it with "
                        f"`openheavy model stop {model}`"
                    )
                log.warning("replacing the shared %s llama-server: %s", model, problem)
                await asyncio.to_thread(_retire, record, files)
            record = await _start_supervisor(files, settings, alias, wanted)
            return cls(record, files, _create_lease(files))

    # ------------------------------------------------------------ what EmbeddedModel uses
    @property
    def base_url(self) -> str:
        return self.record.base_url

    @property
    def api_key(self) -> str:
        return self.record.api_key

    @property
    def pid(self) -> int:
        return self.record.server_pid

    @property
    def log_path(self) -> Path:
        return Path(self.record.log_path)

    @property
    def running(self) -> bool:
        return same_process(self.record.server_pid, self.record.server_start)

    @property
    def returncode(self) -> int | None:
        """Not ours to know: the supervisor is the server's parent (see its log)."""
        return None

    def log_tail(self) -> str:
        return log_tail(self.log_path)

    async def exited_within(self, seconds: float) -> bool:
        """Whether the server has ended or ends within `seconds`."""
        return await ended_within(lambda: self.running, seconds)

    async def metrics(self) -> dict[str, float]:
        """The server's Prometheus counters, as `LlamaServer.metrics` (shared by every client)."""
        return await _metrics(self.record)

    def touch(self) -> None:
        """Mark the lease used now (at most once a second), for `openheavy model status`."""
        now = time.monotonic()
        if now - self._touched >= _TOUCH_EVERY:
            self._touched = now
            with contextlib.suppress(OSError):
                os.utime(self.lease)

    def release(self) -> None:
        """Give the lease back; the server stays up for others until it has been idle a while."""
        self.lease.unlink(missing_ok=True)


def _describe(users: list[LeaseInfo]) -> str:
    return ", ".join(f"pid {u.pid} ({u.command})" for u in users)


def _supervisor_environment() -> dict[str, str]:
    """Never the keys and tokens of the user's shell (the supervisor hands it on to llama-server)."""
    env = child_environment()
    # The supervisor imports this very copy of openheavy, however this process found it.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    return env


async def _start_supervisor(
    files: ServerFiles, settings: Settings, alias: str, wanted: _Files
) -> ServerRecord:
    config = SupervisorConfig(
        data_dir=settings.data_dir,
        model=files.model,
        alias=alias,
        model_path=wanted.weights,
        binary=wanted.binary,
        slots=settings.llama_slots,
        ctx_per_slot=settings.llama_ctx_per_slot,
        threads=settings.llama_threads,
        start_timeout=settings.llama_start_timeout,
        idle_timeout=settings.llama_idle_timeout,
        core_wait=settings.llama_core_wait,
        runtime_dir=settings.runtime_dir,
    )
    private_dir(files.supervisor_log.parent, exclusive=True)
    command = [
        sys.executable,
        "-c",
        _DETACH,
        sys.executable,
        "-m",
        SUPERVISOR_MODULE,
        config.model_dump_json(),
    ]
    launcher = _launch(command, files.supervisor_log)
    assert launcher.stdout is not None
    supervisor: int | None = None
    try:
        await asyncio.to_thread(launcher.wait)
        # The supervisor says its pid at once, then "ready" or the error once the server is up or not.
        timeout = settings.llama_start_timeout + settings.llama_core_wait + 30
        first = await asyncio.wait_for(asyncio.to_thread(launcher.stdout.readline), timeout)
        pid = _message(first, files).get("pid")
        supervisor = pid if isinstance(pid, int) else None
        reply = _message(await asyncio.wait_for(asyncio.to_thread(launcher.stdout.readline), timeout), files)
    except BaseException:
        # Cancelled (Ctrl-C) or timed out while it starts: it must not run on with nobody to use it.
        if supervisor is not None:
            with contextlib.suppress(OSError):
                os.kill(supervisor, signal.SIGTERM)
        raise
    finally:
        launcher.stdout.close()
    if "error" in reply:
        raise EmbeddedModelError(str(reply["error"]))
    record = read_record(files)
    if record is None or record.supervisor_pid != supervisor:
        raise EmbeddedModelError(
            f"the {files.model} supervisor said it was ready but left no record in {files.record} — "
            f"see {files.supervisor_log}"
        )
    return record


def _launch(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_file,
            env=_supervisor_environment(),
        )


def _message(line: bytes, files: ServerFiles) -> dict[str, object]:
    try:
        message = json.loads(line)
    except ValueError:
        message = None
    if not isinstance(message, dict):
        raise EmbeddedModelError(
            f"the {files.model} model supervisor ended before its llama-server was ready; last lines of "
            f"{files.supervisor_log}:\n{log_tail(files.supervisor_log)}"
        )
    return message


async def _metrics(record: ServerRecord) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {record.api_key}"}
    async with httpx2.AsyncClient(timeout=5.0, trust_env=False) as client:
        try:
            response = await client.get(f"{record.url}/metrics", headers=headers)
        except httpx2.HTTPError:
            return {}
    return parse_metrics(response.text) if response.status_code == 200 else {}


# --------------------------------------------------------------------------- status and stop


@dataclass(frozen=True)
class ServerStatus:
    """One model's shared server as `openheavy model status` shows it."""

    model: str
    problem: str | None  # None: running; else why the record is stale
    server_pid: int
    supervisor_pid: int
    port: int
    threads: int
    slots: int
    busy_slots: int | None
    started_at: float
    idle_timeout: float
    last_request_at: float
    users: list[LeaseInfo] = field(default_factory=list)

    @property
    def uptime(self) -> float:
        return time.time() - self.started_at

    @property
    def idle_for(self) -> float | None:
        """Seconds since the last request (None while a slot is busy)."""
        if self.busy_slots:
            return None
        return max(0.0, time.time() - max(self.last_request_at, self.started_at))

    def to_dict(self) -> dict[str, object]:
        """JSON-ready (the API key is never part of it)."""
        return {
            "model": self.model,
            "running": self.problem is None,
            "problem": self.problem,
            "pid": self.server_pid,
            "supervisor_pid": self.supervisor_pid,
            "port": self.port,
            "threads": self.threads,
            "slots": self.slots,
            "slots_busy": self.busy_slots,
            "uptime_seconds": round(self.uptime, 1),
            "idle_seconds": None if self.idle_for is None else round(self.idle_for, 1),
            "idle_timeout_seconds": self.idle_timeout,
            "users": [
                {"pid": u.pid, "command": u.command, "since": u.since, "last_used": u.last_used}
                for u in self.users
            ],
        }


def _busy_slots(record: ServerRecord) -> int | None:
    headers = {"Authorization": f"Bearer {record.api_key}"}
    try:
        response = httpx2.get(f"{record.url}/metrics", headers=headers, timeout=2.0, trust_env=False)
    except httpx2.HTTPError:
        return None
    figures = parse_metrics(response.text) if response.status_code == 200 else {}
    busy = figures.get("requests_processing")
    return int(busy) if busy is not None else None


def server_statuses(data_dir: Path) -> list[ServerStatus]:
    """Every shared server recorded in `data_dir`, with who uses it; stale records say why."""
    statuses = []
    for files in ServerFiles.all_in(data_dir):
        record = read_record(files)
        if record is None:
            continue
        problem = _processes_gone(record)
        users = live_leases(files)
        state = read_state(files)
        last_request = max([u.last_used for u in users] + [state.last_request_at if state else 0.0])
        statuses.append(
            ServerStatus(
                model=record.model,
                problem=problem,
                server_pid=record.server_pid,
                supervisor_pid=record.supervisor_pid,
                port=record.port,
                threads=record.threads,
                slots=record.slots,
                busy_slots=_busy_slots(record) if problem is None else None,
                started_at=record.started_at,
                idle_timeout=record.idle_timeout,
                last_request_at=last_request,
                users=users,
            )
        )
    return statuses


@dataclass(frozen=True)
class StoppedServer:
    """What `stop_servers` did for one model."""

    model: str
    server_pid: int
    was_running: bool
    stopped: bool


def stop_servers(data_dir: Path, model: str | None = None) -> list[StoppedServer]:
    """Stop the shared servers of `data_dir` (or only `model`'s) and remove their records; stale
    records are removed too. Clients in the middle of a request get an error."""
    done = []
    for files in ServerFiles.all_in(data_dir):
        if model is not None and files.model != model:
            continue
        record = read_record(files)
        if record is None:
            files.record.unlink(missing_ok=True)
            continue
        was_running = _processes_gone(record) is None
        stopped = _retire(record, files)
        done.append(StoppedServer(record.model, record.server_pid, was_running, stopped))
    return done
