"""Honest failures: a run whose agents all failed is a failed run in every mode (exit code, run store,
eval error); a partial failure names the agents that failed; SIGTERM and SIGHUP end a run like Ctrl-C;
a damaged run store is reported with the fix; `--json` reports a failure as JSON with the run id."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import openheavy
from fakes import PASSAGES, MemorySearch, action, damage_sqlite_page, plan_reply, silent_server
from openheavy import cli
from openheavy.api import Heavy
from openheavy.config import Settings
from openheavy.corpus.catalog import index_paths
from openheavy.errors import AgentsFailedError, DamagedRunStoreError, ModelError, OpenHeavyError
from openheavy.evals import ModeSpec, run_eval
from openheavy.evals.datasets import CorpusSpec, EvalItem
from openheavy.evals.runner import HeavyRunner
from openheavy.evals.store import read_results
from openheavy.models.scripted import FunctionModel
from openheavy.modes import MODES, RunOptions
from openheavy.trace import RunStore, read_trace, run_store_path
from openheavy.types import JsonSchema, Message, RunStarted

FIXTURE_CORPUS = Path(__file__).parent / "fixtures" / "corpus"


SYNTHESIS = {"agreements": "", "conflicts": "", "short": "run", "answer": "Use run [1].", "cite": [1]}


def role_of(messages: Sequence[Message]) -> str:
    system = messages[0].content
    if "planner" in system:
        return "planner"
    if "lead researcher" in system:
        return "synthesizer"
    if "research agent" in system:
        return "agent"
    return "other"  # direct, rank samples, judges


def down(messages: Sequence[Message], schema: JsonSchema | None) -> str:
    raise ModelError("chat completion at http://gpu:8000/v1 failed with HTTP 500 after 4 attempts")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


# ------------------------------------------------------------------ every agent failed


@pytest.mark.parametrize("mode", list(MODES))
async def test_a_run_whose_model_always_fails_is_a_failed_run_in_every_mode(
    settings: Settings, mode: str
) -> None:
    heavy = Heavy(FunctionModel(down), MemorySearch(dict(PASSAGES)), settings=settings)
    with pytest.raises(OpenHeavyError):
        await heavy.arun("How do I time out subprocess.run?", mode, RunOptions(agents=2, n=2))
    [row] = RunStore(run_store_path(settings.runs_dir)).list()
    assert row.status == "failed" and row.answer == "" and "HTTP 500" in (row.error or "")
    assert row.trace_path is not None
    finished = read_trace(row.trace_path)[-1]
    assert finished.kind == "RunFinished" and finished.payload["status"] == "failed"


async def test_heavy_with_every_agent_failed_raises_naming_each_agent(settings: Settings) -> None:
    def planner_only(messages: Sequence[Message], schema: JsonSchema | None) -> str:
        if role_of(messages) == "planner":
            return json.dumps(plan_reply(["the timeout", "the error"]))
        return down(messages, schema)

    heavy = Heavy(FunctionModel(planner_only), MemorySearch(dict(PASSAGES)), settings=settings)
    with pytest.raises(AgentsFailedError) as failed:
        await heavy.arun("How do I time out subprocess.run?", "heavy", RunOptions(agents=2))
    message = str(failed.value)
    assert message.startswith("all 2 agents failed, so there is no answer (agent-1: ModelError: ")
    assert "agent-2: ModelError: chat completion at http://gpu:8000/v1 failed with HTTP 500" in message
    [row] = RunStore(run_store_path(settings.runs_dir)).list()
    assert row.status == "failed" and row.error == f"AgentsFailedError: {message}"


def team_with_one_failing_agent(messages: Sequence[Message], schema: JsonSchema | None) -> str:
    role = role_of(messages)
    if role == "planner":
        return json.dumps(plan_reply(["find subprocess.run", "find shlex"]))
    if role == "synthesizer":
        return json.dumps(SYNTHESIS)
    if role == "other":  # a judge breaking ties
        return json.dumps({"reason": "fine", "score": 7})
    if "find shlex" in messages[1].content:
        return down(messages, schema)
    turns = sum(m.role == "assistant" for m in messages)
    if turns == 0:
        return action("search", query="subprocess run")
    if turns == 1:
        return action("open", ref=1)
    return action("answer", answer="Use run [1].", cite=[1])


@pytest.mark.parametrize("mode", ["heavy", "heavy-rank"])
async def test_a_partial_failure_names_the_agent_that_failed_in_the_notes(
    settings: Settings, mode: str
) -> None:
    heavy = Heavy(FunctionModel(team_with_one_failing_agent), MemorySearch(dict(PASSAGES)), settings=settings)
    result = await heavy.arun("How do I time out subprocess.run?", mode, RunOptions(agents=2))
    assert result.answer.endswith("Use run [1].")
    failed = [note for note in result.notes if "agent-2" in note]
    assert len(failed) == 1 and "failed" in failed[0] and "HTTP 500" in failed[0]
    assert not any("agent-1" in note for note in result.notes)


async def test_eval_counts_a_run_whose_agents_all_failed_as_an_error_and_retries_it(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    index_paths([FIXTURE_CORPUS], "notes", settings.index_dir)
    corpus = CorpusSpec(name="notes", sources=(), read=lambda: iter(()))
    items = [EvalItem("q1", "How do I time out subprocess.run?", ("timeout",), "qa", corpus)]
    out = tmp_path / "out"
    runner = HeavyRunner(FunctionModel(down), settings)
    await run_eval(items, [ModeSpec("heavy", 2)], runner, out, progress=False)
    [row] = read_results(out)
    assert row.error is not None and row.error.startswith("AgentsFailedError: all 2 agents failed")
    # --retry-errors runs it again (and here it fails again: still an error, never an answer)
    await run_eval(items, [ModeSpec("heavy", 2)], runner, out, progress=False, retry_errors=True)
    rows = read_results(out)
    assert len(rows) == 2 and all(r.error is not None for r in rows)


# ------------------------------------------------------------------ the CLI against a failing server


class _Always500(BaseHTTPRequestHandler):
    requests = 0

    def do_POST(self) -> None:
        type(self).requests += 1
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = b'{"error": {"message": "the server is broken"}}'
        self.send_response(500)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def server_500() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Always500)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1#m"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("OPENHEAVY_DATA_DIR", str(data))
    monkeypatch.setenv("OPENHEAVY_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("OPENHEAVY_MAX_RETRIES", "0")
    monkeypatch.delenv("OPENHEAVY_API_KEY", raising=False)
    index_paths([FIXTURE_CORPUS], "notes", data / "indexes")
    return data


@pytest.mark.parametrize("mode", ["heavy", "single", "rank", "heavy-rank"])
def test_ask_against_a_server_that_only_returns_500_exits_non_zero(
    cli_env: Path, server_500: str, mode: str
) -> None:
    result = CliRunner().invoke(
        cli.app, ["ask", "--mode", mode, "--model", server_500, "--corpus", "notes", "--agents", "2", "q?"]
    )
    assert result.exit_code == 1, result.output
    assert "HTTP 500" in result.output and "Traceback" not in result.output
    [row] = RunStore(run_store_path(cli_env / "runs")).list()
    assert row.status == "failed"
    assert f"run {row.run_id}: `openheavy trace {row.run_id}`" in " ".join(result.output.split())


def test_ask_json_on_failure_prints_a_json_error_with_the_run_id(cli_env: Path, server_500: str) -> None:
    result = CliRunner().invoke(
        cli.app, ["ask", "--json", "--mode", "heavy", "--model", server_500, "--corpus", "notes", "q?"]
    )
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    [row] = RunStore(run_store_path(cli_env / "runs")).list()
    assert report["status"] == "failed" and report["run_id"] == row.run_id and report["exit_code"] == 1
    assert "all 2 agents failed" in report["error"] or "HTTP 500" in report["error"]


def test_ask_json_reports_a_usage_error_as_json_too(cli_env: Path) -> None:
    result = CliRunner().invoke(cli.app, ["ask", "--json", "--mode", "nope", "q?"])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "status": "failed",
        "error": json.loads(result.stdout)["error"],
        "run_id": None,
        "exit_code": 1,
    }
    assert "unknown --mode 'nope'" in json.loads(result.stdout)["error"]


# ------------------------------------------------------------------ SIGTERM and SIGHUP


@pytest.fixture
def hanging_server() -> Iterator[str]:
    with silent_server() as url:
        yield url


def _wait_for_running_run(db: Path, process: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if db.exists():
            with closing(sqlite3.connect(db)) as conn:
                try:
                    rows = conn.execute("SELECT run_id FROM runs WHERE status = 'running'").fetchall()
                except sqlite3.OperationalError:
                    rows = []
            if rows:
                return str(rows[0][0])
        time.sleep(0.1)
    raise AssertionError("the run never started")


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell starts a background job


@pytest.mark.parametrize(
    ("sig", "code", "background"),
    [(signal.SIGTERM, 143, False), (signal.SIGHUP, 129, False), (signal.SIGTERM, 143, True)],
)
def test_a_termination_signal_cancels_the_run_like_ctrl_c(
    tmp_path: Path, hanging_server: str, sig: signal.Signals, code: int, background: bool
) -> None:
    data = tmp_path / "data"
    env = {
        **os.environ,
        "OPENHEAVY_DATA_DIR": str(data),
        "OPENHEAVY_CONFIG": str(tmp_path / "no-config.toml"),
        "PYTHONPATH": str(Path(openheavy.__file__).parents[1]),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "openheavy", "ask", "--mode", "direct", "--model", hanging_server, "q?"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ignore_sigint if background else None,
    )
    try:
        run_id = _wait_for_running_run(data / "runs" / "runs.db", process)
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == code, stderr
    assert f"{sig.name}: the run's trace was kept" in stderr and "Traceback" not in stderr
    row = RunStore(run_store_path(data / "runs")).get(run_id)
    assert row.status == "cancelled"
    assert row.trace_path is not None
    finished = read_trace(row.trace_path)[-1]
    assert finished.kind == "RunFinished" and finished.payload["status"] == "cancelled"


# ------------------------------------------------------------------ a damaged run store


def _store_with_a_run(runs_dir: Path) -> Path:
    """A run store holding one run, as another process left it (a copy: this process never opened it)."""
    made = runs_dir.parent / f"{runs_dir.name}-made"
    store = RunStore(run_store_path(made))
    store.start(RunStarted(run_id="r1", question="q", mode="direct", model="m", corpus=""), None)
    runs_dir.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(store.db_path, run_store_path(runs_dir)))


def test_a_run_store_with_a_damaged_header_is_reported_with_the_fix(tmp_path: Path) -> None:
    db = _store_with_a_run(tmp_path / "fresh")
    with db.open("r+b") as file:
        file.write(b"this is no sqlite header")
    with pytest.raises(DamagedRunStoreError, match=r"is damaged \(file is not a database\) — move it aside"):
        RunStore(db)


def test_a_run_store_with_a_damaged_page_is_reported_with_the_fix(tmp_path: Path) -> None:
    db = _store_with_a_run(tmp_path / "pages")
    damage_sqlite_page(db, "runs")
    with pytest.raises(DamagedRunStoreError, match=rf"mv {db} {db}.damaged"):
        RunStore(db)


def test_an_empty_run_store_file_is_reported_not_silently_recreated(tmp_path: Path) -> None:
    db = _store_with_a_run(tmp_path / "empty")
    db.write_bytes(b"")
    with pytest.raises(DamagedRunStoreError, match="it is empty"):
        RunStore(db)
    assert db.stat().st_size == 0  # left as it was for the user to look at


def test_concurrent_first_opens_create_one_sound_store(tmp_path: Path) -> None:
    db = run_store_path(tmp_path / "runs")
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            RunStore(db)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert RunStore(db).list() == [] and sorted(p.name for p in db.parent.iterdir()) == ["runs.db"]


@pytest.mark.parametrize("command", [["runs"], ["trace", "r1"], ["ask", "--mode", "direct", "q?"]])
def test_the_cli_reports_a_damaged_run_store_in_one_line(cli_env: Path, command: list[str]) -> None:
    db = _store_with_a_run(cli_env / "runs")
    with db.open("r+b") as file:
        file.write(b"garbage" * 20)
    result = CliRunner().invoke(cli.app, command)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "move it aside" in result.output and "runs.db" in result.output
    assert not list((cli_env / "runs").glob("*.jsonl"))  # no empty trace left behind
