"""The sandbox that runs the python tool's code: each limit stops what it is meant to stop, the isolation
holds (network, file system), and without bubblewrap it refuses instead of running unconfined.

Tests that need bubblewrap are skipped, with the reason, where it is missing; in CI (which installs it
with `make setup`) a missing bubblewrap is a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openheavy.cli import app
from openheavy.config import Settings
from openheavy.errors import ConfigError, SandboxUnavailableError
from openheavy.sandbox import CodeResult, Sandbox, SandboxLimits

SMALL = SandboxLimits(
    cpu_seconds=1, wall_seconds=10, memory_mb=256, output_bytes=2000, processes=8, file_mb=1
)


def limits(**changes: float) -> SandboxLimits:
    values: dict[str, float] = {**SMALL.__dict__, **changes}
    return SandboxLimits(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def bwrap_ready() -> None:
    try:
        Sandbox(SMALL).check()
    except SandboxUnavailableError as exc:
        if os.environ.get("CI"):  # CI installs bubblewrap (make setup): missing there is a failure
            pytest.fail(f"sandbox unavailable in CI: {exc}")
        pytest.skip(f"sandbox unavailable: {exc}")


def run(code: str, sandbox_limits: SandboxLimits = SMALL, **options: object) -> CodeResult:
    return asyncio.run(Sandbox(sandbox_limits, **options).run(code))  # type: ignore[arg-type]


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A host folder every user can reach (pytest's own are the owner's only): as root, the sandbox runs
    code as `nobody`, and only the sandbox, not file permissions, should keep it out."""
    folder = Path(tempfile.mkdtemp(prefix="openheavy-test-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback TCP server on the host, accepting nothing unless connected to."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    yield server
    server.close()


# ------------------------------------------------------------------ basics
@pytest.mark.usefixtures("bwrap_ready")
def test_code_runs_in_a_fresh_scratch_directory_with_a_small_environment() -> None:
    result = run(
        "import os, sys\n"
        "open('note.txt', 'w').write('kept here')\n"
        "print(os.getcwd(), os.environ['HOME'], open('note.txt').read())\n"
        "print(sorted(os.environ))\n"
        "print('error line', file=sys.stderr)"
    )
    assert result.ok and result.exit_status == 0 and result.limit is None
    assert result.isolation == "bwrap"
    cwd_line, env_line = result.stdout.splitlines()
    assert cwd_line == "/scratch /scratch kept here"
    assert "OPENHEAVY" not in env_line and "API_KEY" not in env_line
    assert result.stderr == "error line\n"
    # A second run starts from an empty scratch directory.
    assert run("import os; print(os.listdir('.'))").stdout == "[]\n"


@pytest.mark.usefixtures("bwrap_ready")
def test_errors_of_the_code_are_in_the_result_with_its_own_traceback() -> None:
    result = run("x = 1\nraise ValueError('bad value')")
    assert result.exit_status == 1 and result.limit is None
    assert 'File "<code>", line 2' in result.stderr and "ValueError: bad value" in result.stderr
    assert "exec(compile" not in result.stderr  # the bootstrap's own frame is not shown
    assert run("import sys; sys.exit(3)").exit_status == 3


@pytest.mark.usefixtures("bwrap_ready")
def test_a_syntax_error_shows_the_code_alone() -> None:
    result = run("def f(x):")
    assert result.exit_status == 1
    assert result.stderr.startswith('  File "<code>", line 1\n') and "IndentationError" in result.stderr
    assert "<string>" not in result.stderr and "ast.py" not in result.stderr  # no bootstrap frames


@pytest.mark.usefixtures("bwrap_ready")
def test_code_run_before_is_replayed_silently_in_the_same_namespace() -> None:
    before = [
        "import math\nprint('first run')\nside = 3",
        "raise ValueError('this run failed')",  # skipped over: what it defined is not needed
        "import sys\ndef area():\n    return math.pi * side ** 2\nsys.exit(0)",  # exiting ends no replay
    ]
    result = asyncio.run(Sandbox(SMALL).run("print(round(area(), 2))", before=before))
    assert result.ok and result.stdout == "28.27\n" and result.stderr == ""
    # A function from an earlier run shows in a traceback under that run's name.
    failed = asyncio.run(Sandbox(SMALL).run("area()", before=["def area():\n    return 1 / 0"]))
    assert 'File "<earlier run 1>", line 2, in area' in failed.stderr
    # Without `before`, every run starts from nothing.
    assert "NameError" in run("print(side)").stderr


@pytest.mark.usefixtures("bwrap_ready")
@pytest.mark.parametrize(
    ("code", "shown"),
    [
        ("x = 6\nx * 7", "42\n"),  # a last bare expression, as an interactive interpreter shows it
        ("'text'", "'text'\n"),
        ("print('hi')", "hi\n"),  # None is not shown
        ("a, b = 2, 3\ntotal = a + b", "total = 5\n"),  # nothing printed: the last assignment
        ("count = 1\ncount += 1", "count = 2\n"),
        ("x, (y, z) = 1, (2, 3)", "x = 1\n"),  # plain names only
        ("print('done')\ntotal = 5", "done\n"),  # something was printed: no more
        ("for n in range(3):\n    n", ""),  # only a last top-level statement
    ],
)
def test_show_last_prints_what_the_last_statement_made(code: str, shown: str) -> None:
    result = asyncio.run(Sandbox(SMALL).run(code, show_last=True))
    assert result.ok and result.stdout == shown
    assert run(code).stdout == ("" if "print" not in code else shown)  # a plain run shows nothing


@pytest.mark.usefixtures("bwrap_ready")
def test_runs_are_independent_when_concurrent() -> None:
    sandbox = Sandbox(SMALL)

    async def three() -> list[CodeResult]:
        codes = [
            f"import time; time.sleep(0.2); open('me', 'w').write('{n}'); print(open('me').read())"
            for n in range(3)
        ]
        return await asyncio.gather(*(sandbox.run(code) for code in codes))

    assert [r.stdout for r in asyncio.run(three())] == ["0\n", "1\n", "2\n"]


# ------------------------------------------------------------------ limits
@pytest.mark.usefixtures("bwrap_ready")
def test_an_infinite_loop_is_stopped_by_the_cpu_limit() -> None:
    result = run("print('started')\nwhile True:\n    pass", limits(cpu_seconds=1, wall_seconds=20))
    assert result.limit == "cpu"
    assert result.exit_status == 128 + 24  # SIGXCPU
    assert result.stdout == "started\n"  # output before the kill is kept
    assert "CPU time limit (1 s)" in result.limit_message()


@pytest.mark.usefixtures("bwrap_ready")
def test_a_sleeping_process_is_stopped_by_the_wall_limit() -> None:
    result = run("import time\nprint('waiting')\ntime.sleep(60)", limits(cpu_seconds=30, wall_seconds=1))
    assert result.limit == "wall"
    assert result.exit_status == 128 + 9
    assert result.stdout == "waiting\n"


@pytest.mark.usefixtures("bwrap_ready")
def test_a_memory_hog_is_stopped_by_the_memory_limit() -> None:
    result = run("hog = bytearray(1024 * 1024 * 1024)\nprint('allocated')", limits(memory_mb=256))
    assert result.limit == "memory"
    assert "MemoryError" in result.stderr and "allocated" not in result.stdout


@pytest.mark.usefixtures("bwrap_ready")
def test_a_fork_bomb_is_bounded_by_the_process_limit_and_the_run_ends() -> None:
    code = (
        "import os, time\n"
        "children = 0\n"
        "try:\n"
        "    for _ in range(64):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(30)\n"
        "            os._exit(0)\n"
        "        children += 1\n"
        "finally:\n"
        "    print('children', children, flush=True)\n"
    )
    result = run(code, limits(processes=8, wall_seconds=20))
    assert result.limit == "processes"
    children = int(result.stdout.split()[-1])
    assert 0 < children < 8
    assert "BlockingIOError" in result.stderr
    # The children that were still sleeping went down with the sandbox: no wall limit was needed.
    assert result.seconds < 20


@pytest.mark.usefixtures("bwrap_ready")
def test_threads_count_against_the_process_limit() -> None:
    code = (
        "import threading, time\n"
        "for _ in range(32):\n"
        "    threading.Thread(target=time.sleep, args=(5,), daemon=True).start()"
    )
    # Memory for 32 thread stacks, so that only the process limit can stop them.
    result = run(code, limits(processes=8, memory_mb=2048))
    assert result.limit == "processes"
    assert "can't start new thread" in result.stderr


@pytest.mark.usefixtures("bwrap_ready")
def test_output_beyond_the_limit_is_truncated_marked_and_stops_the_run() -> None:
    result = run(
        "print('a' * 500)\nwhile True:\n    print('b' * 1000)", limits(output_bytes=2000, cpu_seconds=10)
    )
    assert result.limit == "output"
    kept, marker = result.stdout.rsplit("\n[", 1)
    assert len(kept.encode()) <= 2000
    assert kept.startswith("a" * 500 + "\nbbb")
    assert marker.startswith("… output truncated") and "2000 bytes" in marker
    assert result.seconds < 10  # stopped at the limit, not by the CPU limit


@pytest.mark.usefixtures("bwrap_ready")
def test_a_big_file_in_scratch_is_stopped_by_the_file_size_limit() -> None:
    result = run("open('big', 'wb').write(b'x' * (2 * 1024 * 1024))", limits(file_mb=1))
    assert result.exit_status != 0
    assert "File too large" in result.stderr or result.exit_status == 128 + 25  # EFBIG or SIGXFSZ


# ------------------------------------------------------------------ isolation
NETWORK_CODE = """\
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
    print("connected")
except OSError as exc:
    print("refused:", exc)
"""


@pytest.mark.usefixtures("bwrap_ready")
def test_no_network_not_even_the_hosts_loopback(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    result = run(NETWORK_CODE.format(port=port))
    assert result.stdout.startswith("refused:"), result.stdout
    with pytest.raises(TimeoutError):
        listener.accept()
    # The same code unconfined does reach the server: the refusal above is the sandbox's doing.
    assert run(NETWORK_CODE.format(port=port), isolation="none").stdout == "connected\n"


WRITE_CODE = """\
for path in {paths!r}:
    try:
        open(path, "w").write("escaped")
        print("wrote", path)
    except OSError as exc:
        print("refused", path, type(exc).__name__)
"""


@pytest.mark.usefixtures("bwrap_ready")
def test_writes_outside_the_scratch_directory_are_refused(open_dir: Path) -> None:
    outside = [str(open_dir / "escaped.txt"), "/usr/escaped.txt", "/escaped.txt", "/dev/shm/escaped.txt"]
    result = run(WRITE_CODE.format(paths=outside))
    assert result.stdout.splitlines() == [
        f"refused {path} " + result.stdout.splitlines()[i].split()[-1] for i, path in enumerate(outside)
    ]
    assert "wrote" not in result.stdout
    assert not (open_dir / "escaped.txt").exists()
    assert not Path("/usr/escaped.txt").exists()
    # Unconfined, the host folder is writable: the refusal above is the sandbox's doing.
    unconfined = run(WRITE_CODE.format(paths=outside[:1]), isolation="none")
    assert unconfined.stdout == f"wrote {outside[0]}\n"


@pytest.mark.usefixtures("bwrap_ready")
def test_the_callers_files_and_environment_are_not_visible(open_dir: Path) -> None:
    secret = open_dir / "secret.txt"
    secret.write_text("hunter2")
    secret.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IROTH)
    os.environ["OPENHEAVY_TEST_SECRET"] = "hunter2"
    try:
        result = run(
            f"import os\nprint(os.path.exists({str(secret)!r}), os.environ.get('OPENHEAVY_TEST_SECRET'))"
        )
    finally:
        del os.environ["OPENHEAVY_TEST_SECRET"]
    assert result.stdout == "False None\n"


# ------------------------------------------------------------------ refusal
def test_refuses_with_what_to_install_when_bwrap_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, open_dir: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    sandbox = Sandbox(SMALL)
    with pytest.raises(SandboxUnavailableError, match="apt-get install bubblewrap") as raised:
        sandbox.check()
    assert 'sandbox = "none"' in str(raised.value)
    # run() refuses too, and the code did not run unconfined instead.
    marker = open_dir / "ran.txt"
    with pytest.raises(SandboxUnavailableError):
        asyncio.run(sandbox.run(f"open({str(marker)!r}, 'w').write('ran')"))
    assert not marker.exists()
    with pytest.raises(SandboxUnavailableError, match="not an executable"):
        Sandbox(SMALL, bwrap=tmp_path / "no-such-bwrap").check()


def test_refuses_with_how_to_enable_namespaces_when_bwrap_cannot_create_them(open_dir: Path) -> None:
    fake = open_dir / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(SandboxUnavailableError, match="user namespaces") as raised:
        Sandbox(SMALL, bwrap=fake).check()
    assert "No permissions to create new namespace" in str(raised.value)


def test_unconfined_is_explicit_and_reported() -> None:
    result = run("print('hi')", isolation="none")
    assert result.isolation == "none" and result.stdout == "hi\n"
    with pytest.raises(ConfigError):
        Sandbox(SMALL, isolation="off")  # type: ignore[arg-type]


def test_unconfined_the_run_ends_with_the_code_and_its_children_are_killed() -> None:
    code = "import os, time\npid = os.fork()\nif pid == 0:\n    time.sleep(30)\nprint(pid)"
    result = run(code, limits(wall_seconds=20), isolation="none")
    assert result.limit is None and result.exit_status == 0
    child = Path(f"/proc/{int(result.stdout)}/status")

    def state() -> str:
        try:
            return child.read_text().split("State:")[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return "gone"

    # SIGKILL is delivered at once, but a loaded machine may take a moment to tear the process down
    deadline = time.monotonic() + 5
    while state() not in ("Z", "gone") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state() in ("Z", "gone")  # killed (a zombie until its new parent reaps it)


def test_limits_are_validated() -> None:
    with pytest.raises(ConfigError, match="wall_seconds"):
        limits(wall_seconds=0)
    with pytest.raises(ConfigError, match="cpu_seconds"):
        limits(cpu_seconds=float("nan"))


def test_settings_name_the_sandbox(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENHEAVY_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("OPENHEAVY_SANDBOX", "none")
    monkeypatch.setenv("OPENHEAVY_SANDBOX_MEMORY_MB", "300")
    sandbox = Sandbox.from_settings(Settings())
    assert sandbox.isolation == "none" and sandbox.limits.memory_mb == 300
    assert Sandbox.from_settings(Settings(sandbox="bwrap")).isolation == "bwrap"
    assert Settings(sandbox="bwrap").sandbox_wall_seconds == 20.0


# ------------------------------------------------------------------ command line
@pytest.mark.usefixtures("bwrap_ready")
def test_the_sandbox_command_runs_code_as_the_tool_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENHEAVY_CONFIG", str(tmp_path / "none.toml"))
    result = CliRunner().invoke(app, ["sandbox", "-c", "print(6 * 7)"])
    assert result.exit_code == 0, result.output
    assert "isolation: bubblewrap · exit status 0 · limit: none reached" in result.output
    assert "42" in result.output

    script = tmp_path / "loop.py"
    script.write_text("while True:\n    pass\n")
    result = CliRunner().invoke(app, ["sandbox", "-f", str(script), "--cpu-seconds", "1", "--json"])
    record = json.loads(result.output)
    assert record["limit"] == "cpu" and record["limits"]["cpu_seconds"] == 1.0
    assert result.exit_code == record["exit_status"] == 152


def test_the_sandbox_command_refuses_without_bwrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENHEAVY_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = CliRunner().invoke(app, ["sandbox", "-c", "print(1)"], terminal_width=400)
    assert result.exit_code == 1
    assert "apt-get install bubblewrap" in result.output
    assert CliRunner().invoke(app, ["sandbox"]).exit_code == 1  # neither -c nor -f
