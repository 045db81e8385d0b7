"""Run untrusted Python code in a separate, confined process: the engine of the `python` tool.

Isolation (`isolation="bwrap"`, the default; Linux with bubblewrap): the code runs inside `bwrap` with new
user, pid, network, IPC, UTS and mount namespaces and no capabilities. Its file system is the system's
libraries and the interpreter's own directory, read-only, plus a fresh scratch directory, the only
writable place, deleted afterwards. There is no network at all (not even loopback to the host), and
killing the sandbox ends every process in it, because they all live in its pid namespace.

Each run is a fresh process. Code that ran before can be replayed first, silently, in the same namespace
(`run(before=...)`), so that successive runs behave like a notebook's cells; `show_last` shows what the
last statement made, as an interactive interpreter does.

Limits, in every mode: CPU seconds, memory (address space), size of a written file and number of
processes are kernel resource limits set inside the sandbox before the code starts; wall time and
output size are enforced here, by killing the process group. When openheavy runs as root the code runs
as user `nobody`: the kernel does not enforce the process limit for root.

If bubblewrap is missing or cannot create namespaces, `Sandbox.check` and `Sandbox.run` raise
`SandboxUnavailableError` saying what to install or enable. Running unconfined takes an explicit
`isolation="none"` (setting `sandbox = "none"`): resource limits and wall time only, no file system or
network isolation, no process limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from openheavy.errors import ConfigError, SandboxUnavailableError

if TYPE_CHECKING:
    from openheavy.config import Settings

Isolation = Literal["bwrap", "none"]
Limit = Literal["cpu", "wall", "memory", "output", "processes"]

SCRATCH_IN_SANDBOX = "/scratch"
# Exit statuses the bootstrap uses when the code dies of a limit that shows only as an exception inside
# it (the code could exit with these on purpose: that would mislabel its own report, nothing more).
MEMORY_EXIT = 201
PROCESSES_EXIT = 202
_PROBE_TIMEOUT = 30.0
_INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: `sudo apt-get install bubblewrap`; Fedora: `sudo dnf install "
    "bubblewrap`; Arch: `sudo pacman -S bubblewrap`)"
)
_USERNS_HINT = (
    "bubblewrap could not create its namespaces: enable unprivileged user namespaces "
    "(`sudo sysctl -w kernel.unprivileged_userns_clone=1` on older Debian, `user.max_user_namespaces` "
    "> 0, and on Ubuntu 23.10+ `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` or "
    "bubblewrap's AppArmor profile); inside a container, allow user namespaces (e.g. Docker "
    "`--security-opt seccomp=unconfined`)"
)
_OPT_OUT_HINT = (
    'or, on a machine where that is impossible, run code UNCONFINED with `sandbox = "none"` in the '
    "config file (OPENHEAVY_SANDBOX=none): no file system or network isolation"
)

# Runs inside the sandbox before the code: sets the resource limits, reads the job (the code, the cells to
# replay first, whether to show the last statement's value) from stdin as JSON, replays the cells without
# their output, runs the code as `__main__`, and turns the two limits that surface as exceptions into exit
# statuses. Every cell shares one namespace, as a notebook's cells do.
_BOOTSTRAP = """\
import ast, io, json, linecache, os, resource, sys, traceback
_setup = json.loads(sys.argv[1])
for _name, _value in _setup["rlimits"].items():
    resource.setrlimit(getattr(resource, _name), tuple(_value))
_job = json.loads(sys.stdin.read())
_null = os.open(os.devnull, os.O_RDONLY)
os.dup2(_null, 0)
os.close(_null)
sys.argv = ["<code>"]
_namespace = {"__name__": "__main__", "__builtins__": __builtins__}

class _Discard(io.TextIOBase):
    def write(self, text):
        return len(text)

class _Watched:
    def __init__(self, stream):
        self.stream, self.wrote = stream, False
    def write(self, text):
        self.wrote = self.wrote or bool(text)
        return self.stream.write(text)
    def __getattr__(self, name):
        return getattr(self.stream, name)

def _source(code, name):
    linecache.cache[name] = (len(code), None, code.splitlines(True), name)
    return ast.parse(code, name)

def _assigned(statement):
    if isinstance(statement, ast.Assign):
        targets = statement.targets
    elif isinstance(statement, (ast.AugAssign, ast.AnnAssign)) and statement.value is not None:
        targets = [statement.target]
    else:
        return []
    names = []
    for target in targets:
        for node in target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]:
            if isinstance(node, ast.Name) and node.id not in names:
                names.append(node.id)
    return names

_shown, _errors = sys.stdout, sys.stderr
sys.stdout = sys.stderr = _Discard()
for _number, _cell in enumerate(_job["before"], 1):
    _name = f"<earlier run {_number}>"
    try:
        exec(compile(_source(_cell, _name), _name, "exec"), _namespace)
    except BaseException:
        pass
_watched = _Watched(_shown)
sys.stdout, sys.stderr = _watched, _errors
try:
    _tree = _source(_job["code"], "<code>")
    _last = _tree.body[-1] if _job["show_last"] and _tree.body else None
    if isinstance(_last, ast.Expr):
        _head = ast.Module(_tree.body[:-1], type_ignores=[])
        exec(compile(_head, "<code>", "exec"), _namespace)
        _value = eval(compile(ast.Expression(_last.value), "<code>", "eval"), _namespace)
        if _value is not None:
            print(repr(_value))
    else:
        exec(compile(_tree, "<code>", "exec"), _namespace)
        if _last is not None and not _watched.wrote:
            for _name in _assigned(_last):
                if _name in _namespace:
                    print(f"{_name} = {_namespace[_name]!r}")
except SystemExit:
    raise
except BaseException as _exc:
    _tb = _exc.__traceback__
    while _tb is not None and _tb.tb_frame.f_code.co_filename != "<code>":
        _tb = _tb.tb_next
    traceback.print_exception(type(_exc), _exc, _tb)
    if isinstance(_exc, MemoryError):
        sys.exit(_setup["memory_exit"])
    if isinstance(_exc, BlockingIOError) or "can't start new thread" in str(_exc):
        sys.exit(_setup["processes_exit"])
    sys.exit(1)
"""


@dataclass(frozen=True)
class SandboxLimits:
    """What one run of code may use. Memory and CPU are per process; processes count threads too.
    The defaults are the settings' (`sandbox_*` in config.py)."""

    cpu_seconds: float
    wall_seconds: float
    memory_mb: int
    output_bytes: int  # stdout and stderr together; the process is killed beyond this
    processes: int
    file_mb: int  # largest file the code may write in its scratch directory

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"sandbox limit {name} must be a positive number, got {value!r}")

    def rlimits(self, isolation: Isolation) -> dict[str, tuple[int, int]]:
        """The kernel resource limits, by `resource` name. The CPU hard limit is a second above the soft
        one, so the code gets SIGXCPU (reported as the CPU limit) before SIGKILL."""
        cpu = math.ceil(self.cpu_seconds)
        limits = {
            "RLIMIT_CPU": (cpu, cpu + 1),
            "RLIMIT_AS": (self.memory_mb << 20, self.memory_mb << 20),
            "RLIMIT_FSIZE": (self.file_mb << 20, self.file_mb << 20),
            "RLIMIT_CORE": (0, 0),
        }
        # The kernel counts processes per user; only inside the sandbox's own user namespace is that
        # count this run's alone. Unconfined, it would count every process of the user.
        if isolation == "bwrap":
            limits["RLIMIT_NPROC"] = (self.processes, self.processes)
        return limits


@dataclass(frozen=True)
class CodeResult:
    """The record of one run of code. `exit_status` is 128 + N when signal N ended it, as in a shell."""

    code: str
    stdout: str
    stderr: str
    exit_status: int
    limit: Limit | None  # the limit that ended the run, if one did
    seconds: float
    isolation: Isolation
    limits: SandboxLimits

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and self.limit is None

    def limit_message(self) -> str:
        """The limit that ended the run, in words with its value, or "" if none did."""
        limits = self.limits
        messages: dict[Limit, str] = {
            "cpu": f"CPU time limit ({limits.cpu_seconds:g} s) reached",
            "wall": f"wall time limit ({limits.wall_seconds:g} s) reached: the process was killed",
            "memory": f"memory limit ({limits.memory_mb} MiB per process) reached",
            "output": f"output limit ({limits.output_bytes} bytes) reached: the process was killed",
            "processes": f"process limit ({limits.processes}, threads included) reached",
        }
        return messages[self.limit] if self.limit else ""

    def to_record(self) -> dict[str, Any]:
        """JSON-ready data, e.g. for `openheavy sandbox --json`."""
        return {
            "code": self.code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "exit_status": self.exit_status,
            "limit": self.limit,
            "seconds": self.seconds,
            "isolation": self.isolation,
            "limits": dict(self.limits.__dict__),
        }


@dataclass(frozen=True)
class _Launch:
    """How to start code, once the machine has been checked: bwrap and its arguments (empty when
    unconfined), the interpreter, and the user to run as (None: the current one)."""

    bwrap: tuple[str, ...]
    python: str
    run_as: tuple[int, int] | None


class Sandbox:
    """Runs Python code under `limits`, isolated as `isolation` says. Safe to share between agents:
    each `run` has its own process and scratch directory."""

    def __init__(
        self,
        limits: SandboxLimits,
        *,
        isolation: Isolation = "bwrap",
        python: str | Path | None = None,
        bwrap: str | Path | None = None,
    ) -> None:
        """`python`: the interpreter to run code with (default: the one running openheavy, outside
        any virtual environment, so the code sees the standard library only). `bwrap`: the bubblewrap
        binary (default: `bwrap` on PATH)."""
        if isolation not in ("bwrap", "none"):
            raise ConfigError(f'sandbox isolation must be "bwrap" or "none", got {isolation!r}')
        self.limits = limits
        self.isolation: Isolation = isolation
        # A bare name ("python3") is looked up on PATH now: the sandbox has a PATH of its own.
        self.python = Path(shutil.which(python) or python) if python else None
        self.bwrap = str(bwrap) if bwrap else None
        self._launch: _Launch | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Sandbox:
        """The sandbox the settings describe (`sandbox`, `sandbox_python`, `sandbox_*` limits)."""
        limits = SandboxLimits(
            cpu_seconds=settings.sandbox_cpu_seconds,
            wall_seconds=settings.sandbox_wall_seconds,
            memory_mb=settings.sandbox_memory_mb,
            output_bytes=settings.sandbox_output_bytes,
            processes=settings.sandbox_processes,
            file_mb=settings.sandbox_file_mb,
        )
        return cls(limits, isolation=settings.sandbox, python=settings.sandbox_python)

    # ------------------------------------------------------------ checking
    def check(self) -> None:
        """Make sure code can run as configured (once; about 0.1 s): raises `SandboxUnavailableError`
        with what to install or enable. Call it before a run starts to fail early."""
        self._ensure_launch()

    def _ensure_launch(self) -> _Launch:
        with self._lock:
            if self._launch is None:
                self._launch = self._find_launch()
            return self._launch

    def _find_launch(self) -> _Launch:
        run_as = _unprivileged_user() if self.isolation == "bwrap" and os.geteuid() == 0 else None
        if self.isolation == "none":
            python = self.python or _base_interpreter()
            launch = _Launch((), str(python), None)
            self._probe(launch, f"the interpreter {python}")
            return launch
        bwrap = shutil.which(self.bwrap or "bwrap")
        if bwrap is None:
            where = f"{self.bwrap} is not an executable" if self.bwrap else "bwrap is not on PATH"
            raise SandboxUnavailableError(
                f"the python tool needs bubblewrap to isolate code, and {where}: {_INSTALL_HINT}; "
                f"{_OPT_OUT_HINT}"
            )
        self._probe_namespaces(bwrap, run_as)
        # The interpreter must be readable by the user the code runs as: as root that is `nobody`, who
        # may not reach e.g. a pyenv under /root. Without an explicit choice, a system one then serves.
        candidates = [self.python] if self.python else _interpreter_candidates()
        failures = []
        for python in candidates:
            launch = _Launch((bwrap, *_bwrap_arguments(python)), str(python), run_as)
            try:
                self._probe(launch, f"the interpreter {python}")
                return launch
            except SandboxUnavailableError as exc:
                failures.append(str(exc))
        who = " (as user nobody, since openheavy runs as root)" if run_as else ""
        raise SandboxUnavailableError(
            f"no Python interpreter runs inside the sandbox{who}: {'; '.join(failures)}. Set "
            "`sandbox_python` to an interpreter that user can read, e.g. /usr/bin/python3"
        )

    def _probe_namespaces(self, bwrap: str, run_as: tuple[int, int] | None) -> None:
        command = [bwrap, *_namespace_arguments(), *_system_binds(), "--remount-ro", "/", "true"]
        try:
            probe = subprocess.run(
                command, capture_output=True, text=True, timeout=_PROBE_TIMEOUT, **_credentials(run_as)
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SandboxUnavailableError(f"could not start {bwrap}: {exc}; {_INSTALL_HINT}") from exc
        if probe.returncode != 0:
            said = " ".join(probe.stderr.split())[:300] or f"exit status {probe.returncode}"
            raise SandboxUnavailableError(f"{bwrap} failed ({said}). {_USERNS_HINT}; {_OPT_OUT_HINT}")

    def _probe(self, launch: _Launch, what: str) -> None:
        with _scratch_dir(launch.run_as) as scratch:
            command, cwd, env = _command(launch, scratch, self.limits, self.isolation)
            try:
                probe = subprocess.run(
                    command,
                    input=_job("print('ok')"),
                    capture_output=True,
                    text=True,
                    cwd=cwd,
                    env=env,
                    timeout=_PROBE_TIMEOUT,
                    **_credentials(launch.run_as),
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise SandboxUnavailableError(f"{what} did not start: {exc}") from exc
        if probe.returncode != 0 or probe.stdout.strip() != "ok":
            said = " ".join(probe.stderr.split())[:300] or f"exit status {probe.returncode}"
            raise SandboxUnavailableError(f"{what} failed in the sandbox ({said})")

    # ------------------------------------------------------------- running
    async def run(self, code: str, *, before: Sequence[str] = (), show_last: bool = False) -> CodeResult:
        """Run `code` as a script and return what happened. Raises only `SandboxUnavailableError`;
        errors of the code itself are in the result.

        `before`: code that ran earlier, run again first in the same namespace with its output dropped,
        so that what it defined is defined for `code`, as in a notebook's cells (its time counts against
        the limits; what draws random numbers or reads the clock gets new values). `show_last`: as an
        interactive interpreter does, print the value of a last bare expression; and when the code
        printed nothing, the names its last statement assigned, with their values."""
        launch = self._launch if self._launch is not None else await asyncio.to_thread(self._ensure_launch)
        limits = self.limits
        started = time.monotonic()
        with _scratch_dir(launch.run_as) as scratch:
            command, cwd, env = _command(launch, scratch, limits, self.isolation)
            loop = asyncio.get_running_loop()
            transport, protocol = await loop.subprocess_exec(
                lambda: _ExitAwareProtocol(loop),
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=cwd,
                env=env,
                start_new_session=True,  # its own process group, so one kill ends it all
                **_credentials(launch.run_as),
            )
            process = asyncio.subprocess.Process(transport, protocol, loop)
            try:
                job = _job(code, before, show_last)
                output, limit = await self._watch(process, protocol.exited, job)
            finally:
                if process.returncode is None:  # cancelled: the run must not outlive its caller
                    _kill_group(process.pid)
                transport.close()  # the pipes too, even if a process that escaped the group holds them
        returncode = process.returncode if process.returncode is not None else -signal.SIGKILL
        exit_status = 128 - returncode if returncode < 0 else returncode
        return CodeResult(
            code=code,
            stdout=output.text(output.stdout),
            stderr=output.text(output.stderr),
            exit_status=exit_status,
            limit=limit or _limit_from_exit(exit_status),
            seconds=time.monotonic() - started,
            isolation=self.isolation,
            limits=limits,
        )

    async def _watch(
        self, process: asyncio.subprocess.Process, exit_seen: asyncio.Event, job: str
    ) -> tuple[_Output, Limit | None]:
        """Feed the job, keep the output, and kill the process group at the wall or output limit.
        Returns the output and the limit that this side enforced, if any."""
        assert process.stdin and process.stdout and process.stderr
        output = _Output(self.limits.output_bytes)
        feeding = asyncio.create_task(_feed(process.stdin, job))
        readers = asyncio.gather(
            output.drain(process.stdout, output.stdout), output.drain(process.stderr, output.stderr)
        )
        exited = asyncio.create_task(exit_seen.wait())
        overflowed = asyncio.create_task(output.overflow.wait())
        limit: Limit | None = None
        try:
            done, _ = await asyncio.wait(
                {exited, overflowed}, timeout=self.limits.wall_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            if exited not in done:
                limit = "output" if output.overflow.is_set() else "wall"
                _kill_group(process.pid)
            await exited
            if self.isolation == "none":
                # What it left running in its group; in bwrap, the pid namespace took everything down.
                _kill_group(process.pid)
            with contextlib.suppress(TimeoutError):
                # Bounded: a process that left the group (unconfined) could hold the pipes open.
                await asyncio.wait_for(asyncio.shield(readers), timeout=2.0)
        finally:
            for task in (feeding, exited, overflowed):
                task.cancel()
            readers.cancel()
            await asyncio.gather(feeding, exited, overflowed, readers, return_exceptions=True)
        if output.overflow.is_set():
            limit = limit or "output"
        return output, limit


# ------------------------------------------------------------------ commands
# -I: no user site-packages, no PYTHON* variables, no script directory on the path; -u: output reaches
# us even when the code is killed; -X utf8: text output whatever the locale.
_PYTHON_FLAGS = ("-I", "-B", "-u", "-X", "utf8", "-c", _BOOTSTRAP)


def _namespace_arguments() -> list[str]:
    # --unshare-user on top of --unshare-all (which only tries): the process limit needs a user
    # namespace of its own. --new-session: no TIOCSTI keystrokes into the caller's terminal.
    return [
        "--unshare-all",
        "--unshare-user",
        "--new-session",
        "--die-with-parent",
        "--cap-drop",
        "ALL",
        "--hostname",
        "sandbox",
    ]


def _system_binds() -> list[str]:
    """Read-only binds of what programs need to start: /usr, the top-level library and binary folders
    (symlinks into /usr on merged-/usr systems) and the dynamic linker's configuration."""
    arguments = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        path = Path(top)
        if path.is_symlink():
            arguments += ["--symlink", os.readlink(path), top]
        elif path.is_dir():
            arguments += ["--ro-bind", top, top]
    for etc in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"):
        arguments += ["--ro-bind-try", etc, etc]
    return arguments


def _bwrap_arguments(python: Path) -> list[str]:
    arguments = [*_namespace_arguments(), *_system_binds()]
    for root in _interpreter_roots(python):
        arguments += ["--ro-bind", str(root), str(root)]
    return [*arguments, "--proc", "/proc", "--dev", "/dev"]


def _command(
    launch: _Launch, scratch: Path, limits: SandboxLimits, isolation: Isolation
) -> tuple[list[str], str, dict[str, str]]:
    """The full command line, working directory and environment for one run."""
    setup = {
        "rlimits": limits.rlimits(isolation),
        "memory_exit": MEMORY_EXIT,
        "processes_exit": PROCESSES_EXIT,
    }
    python = [launch.python, *_PYTHON_FLAGS, json.dumps(setup)]
    if isolation == "none":
        return python, str(scratch), _environment(str(scratch))
    # The scratch directory is the one writable bind; then the rest is made read-only.
    scratch_bind = ["--bind", str(scratch), SCRATCH_IN_SANDBOX, "--chdir", SCRATCH_IN_SANDBOX]
    read_only = ["--remount-ro", "/", "--remount-ro", "/dev"]
    command = [*launch.bwrap, *scratch_bind, *read_only, *python]
    return command, str(scratch), _environment(SCRATCH_IN_SANDBOX)


def _environment(scratch: str) -> dict[str, str]:
    """A small, fixed environment: nothing of the caller's (API keys live there) reaches the code."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": scratch,
        "TMPDIR": scratch,
        "LANG": "C.UTF-8",
        # One thread each: numerical libraries otherwise start one per core, against the process limit.
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    }


def _base_interpreter() -> Path:
    """The interpreter running openheavy, outside its virtual environment (a venv's python is a link)."""
    return Path(os.path.realpath(sys.executable))


def _interpreter_candidates() -> list[Path]:
    found = [_base_interpreter()]
    for system in ("/usr/bin/python3", "/usr/local/bin/python3"):
        path = Path(system)
        if path.exists() and Path(os.path.realpath(path)) not in found:
            found.append(Path(os.path.realpath(path)))
    return found


def _interpreter_roots(python: Path) -> list[Path]:
    """The folders `python` needs beside /usr: its installation prefix, resolved or not, and for a
    virtual environment the base installation it points to."""
    prefixes = {Path(os.path.abspath(python)).parent.parent, Path(os.path.realpath(python)).parent.parent}
    for prefix in list(prefixes):
        config = prefix / "pyvenv.cfg"
        if config.is_file():
            for line in config.read_text(encoding="utf-8", errors="replace").splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "home" and value.strip():
                    prefixes.add(Path(os.path.realpath(value.strip())).parent)
    covered = (Path("/usr"), Path("/bin"), Path("/lib"), Path("/lib64"))
    roots = [p for p in prefixes if p != Path("/") and not any(p.is_relative_to(c) for c in covered)]
    return sorted(roots)


def _unprivileged_user() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


def _credentials(run_as: tuple[int, int] | None) -> dict[str, Any]:
    if run_as is None:
        return {}
    return {"user": run_as[0], "group": run_as[1], "extra_groups": []}


@contextlib.contextmanager
def _scratch_dir(run_as: tuple[int, int] | None) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="openheavy-sandbox-"))
    try:
        if run_as is not None:
            os.chown(path, *run_as)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------ running
@dataclass
class _Kept:
    data: bytearray = field(default_factory=bytearray)
    truncated: bool = False


class _Output:
    """stdout and stderr of one run, kept up to a shared byte budget; past it, `overflow` is set."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.total = 0
        self.stdout = _Kept()
        self.stderr = _Kept()
        self.overflow = asyncio.Event()

    async def drain(self, stream: asyncio.StreamReader, kept: _Kept) -> None:
        while chunk := await stream.read(65536):
            room = max(0, self.max_bytes - self.total)
            kept.data += chunk[:room]
            if len(chunk) > room:
                kept.truncated = True
                self.overflow.set()
            self.total += len(chunk)

    def text(self, kept: _Kept) -> str:
        text = kept.data.decode("utf-8", errors="replace")
        if kept.truncated:
            text += f"\n[… output truncated: the limit is {self.max_bytes} bytes for stdout and stderr]"
        return text


class _ExitAwareProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Sets `exited` as soon as the process exits. `Process.wait()` before Python 3.12 also waits for
    the pipes to close, which children left running (unconfined) would hold open until the wall limit."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=2**16, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


def _job(code: str, before: Sequence[str] = (), show_last: bool = False) -> str:
    """What the bootstrap reads on stdin: the code, the cells to replay before it, and whether to show
    the last statement's value."""
    return json.dumps({"code": code, "before": list(before), "show_last": show_last})


async def _feed(stdin: asyncio.StreamWriter, job: str) -> None:
    with contextlib.suppress(ConnectionError):  # the process may die before reading it all
        stdin.write(job.encode("utf-8"))
        await stdin.drain()
        stdin.close()
        await stdin.wait_closed()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _limit_from_exit(exit_status: int) -> Limit | None:
    if exit_status == 128 + signal.SIGXCPU:
        return "cpu"
    if exit_status == MEMORY_EXIT:
        return "memory"
    if exit_status == PROCESSES_EXIT:
        return "processes"
    return None
