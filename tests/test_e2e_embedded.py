"""End to end with the real embedded tiny model (SmolLM2-135M through llama-server).

Structure, not wording: a 135M model answers poorly, but every run must finish with a valid trace,
citations that resolve to documents the agent opened, figures, and no llama-server left behind once
`openheavy model stop` has run. Only the servers of each test's own data directory are watched: other
llama-servers on the machine (a user's eval, another test session) are none of these tests' business.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from openheavy import RunOptions
from openheavy.api import Heavy
from openheavy.config import Settings
from openheavy.corpus import index_paths
from openheavy.models.embedded import EmbeddedModel
from openheavy.models.processes import pid_alive
from openheavy.models.shared_server import server_statuses, stop_servers
from openheavy.trace import RunStore, read_trace, run_store_path

pytestmark = pytest.mark.embedded

FIXTURES = Path(__file__).parent / "fixtures" / "corpus"
QUESTION = "How often should tomatoes be watered?"
# Short budgets: a 135M model may repeat itself until a string's maxLength, so keep those small.
SMALL = {
    "OPENHEAVY_LLAMA_CTX_PER_SLOT": "4096",
    "OPENHEAVY_ANSWER_MAX_CHARS": "300",
    "OPENHEAVY_ANSWER_MAX_TOKENS": "128",
    # A backstop: a shared server a failed test left behind stops by itself soon.
    "OPENHEAVY_LLAMA_IDLE_TIMEOUT": "60",
}


def servers_of(data_dir: Path) -> dict[str, list[int]]:
    """The shared servers recorded in `data_dir`: model -> [llama-server pid, supervisor pid]."""
    return {s.model: [s.server_pid, s.supervisor_pid] for s in server_statuses(data_dir) if s.problem is None}


def assert_stops_cleanly(data_dir: Path) -> None:
    """`openheavy model stop` ends the data directory's servers, and nothing of them is left."""
    running = servers_of(data_dir)
    stopped = cli(data_dir, "model", "stop")
    assert stopped.returncode == 0, stopped.stderr
    pids = [pid for pair in running.values() for pid in pair]
    deadline = time.monotonic() + 15
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(pid) for pid in pids), f"left running after `model stop`: {running}"
    assert servers_of(data_dir) == {}


def cli(data_dir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **SMALL, "OPENHEAVY_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "openheavy", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def fixture_corpus(tmp_path: Path) -> Iterator[Path]:
    data = tmp_path / "data"
    result = cli(data, "index", str(FIXTURES), "--name", "fixture")
    assert result.returncode == 0, result.stderr
    yield data
    stop_servers(data)  # whatever a failed test left behind


def test_ask_with_the_tiny_model_end_to_end(fixture_corpus: Path) -> None:
    result = cli(
        fixture_corpus,
        "ask",
        QUESTION,
        "--model",
        "local:tiny",
        "--corpus",
        "fixture",
        "--max-steps",
        "3",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["answer"].strip()
    assert data["figures"]["searches"] >= 1  # the opening search (the question's words) at least
    assert data["figures"]["model_calls"] >= 2
    records = read_trace(Path(data["trace_path"]))
    opened = {r.payload["doc"]["id"] for r in records if r.kind == "DocumentOpened"}
    assert {c["id"] for c in data["citations"]} <= opened
    assert [c["number"] for c in data["citations"]] == list(range(1, len(data["citations"]) + 1))
    assert records[0].kind == "RunStarted" and records[-1].kind == "RunFinished"
    # every prompt, the system prompt included, is in the trace
    first_call = next(r for r in records if r.kind == "ModelCalled")
    assert first_call.payload["messages"][0]["role"] == "system"

    # The shared server outlives the CLI for the next run, which reuses it; nobody holds it now.
    (server,) = server_statuses(fixture_corpus)
    assert server.model == "local:tiny" and server.problem is None and server.users == []
    again = cli(
        fixture_corpus, "ask", QUESTION, "--model", "local:tiny", "--corpus", "fixture", "--max-steps", "1"
    )
    assert again.returncode == 0, again.stderr
    assert [s.server_pid for s in server_statuses(fixture_corpus)] == [server.server_pid]
    status = cli(fixture_corpus, "model", "status", "--json")
    assert json.loads(status.stdout)["servers"][0]["pid"] == server.server_pid

    shown = cli(fixture_corpus, "trace", data["run_id"])
    assert shown.returncode == 0, shown.stderr
    assert "research agent" in shown.stdout and "search" in shown.stdout
    listed = cli(fixture_corpus, "runs")
    assert data["run_id"][:15] in listed.stdout
    assert_stops_cleanly(fixture_corpus)


def test_ctrl_c_mid_run_keeps_the_trace_and_leaves_no_server(fixture_corpus: Path) -> None:
    env = {**os.environ, **SMALL, "OPENHEAVY_DATA_DIR": str(fixture_corpus)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "openheavy",
            "ask",
            QUESTION,
            "--model",
            "local:tiny",
            "--corpus",
            "fixture",
            "--max-steps",
            "6",
            "--quiet",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    runs = fixture_corpus / "runs"
    deadline = time.monotonic() + 120
    # wait until the model has answered at least once: the server is up and the run is mid-way
    while time.monotonic() < deadline:
        traces = list(runs.glob("*.jsonl")) if runs.exists() else []
        if traces and "ModelCalled" in traces[0].read_text():
            break
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    else:
        process.kill()
        pytest.fail("the run never reached its first model call")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "cancelled" in stderr
    (row,) = RunStore(run_store_path(runs)).list()
    if row.status != "ok":  # the run may just have finished before the signal landed
        assert row.status == "cancelled"
        assert read_trace(Path(row.trace_path or ""))[-1].kind == "RunFinished"
    # Ctrl-C reaches the run, not the shared server (its own session): it stays, unused, until stopped.
    (server,) = server_statuses(fixture_corpus)
    assert server.problem is None and server.users == []
    assert_stops_cleanly(fixture_corpus)


@pytest.fixture
def indexed_settings(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path / "data", answer_max_chars=300, answer_max_tokens=128)
    index_paths([FIXTURES], "fixture", settings.index_dir)
    return settings


async def test_heavy_run_with_the_tiny_model(
    embedded_tiny: EmbeddedModel, indexed_settings: Settings
) -> None:
    heavy = Heavy(embedded_tiny, "fixture", settings=indexed_settings)
    result = await heavy.arun(QUESTION, "heavy", RunOptions(agents=2, max_steps=2))
    assert result.plan is not None
    assert len(result.agents) == 2
    assert result.figures.agents == 2
    # with two steps, each agent's first is its planned search (no model call), its second the answer
    assert {"plan", "answer"} <= set(result.figures.by_purpose)
    planned = [
        r for r in read_trace(result.trace_path) if r.kind == "ActionParsed" and r.payload.get("planned")
    ]
    assert sorted(r.agent for r in planned) == ["agent-1", "agent-2"]
    read = {d for a in result.agents for d in a["documents_read"]}
    assert {c["id"] for c in result.citations} <= read
    # the team's common prompt was computed once and copied into llama-server slots: each agent's first
    # call found all of it in its slot's cache, bar the few tokens where the prompt goes on with its brief
    calls = [r for r in read_trace(result.trace_path) if r.kind == "ModelCalled"]
    [prefix] = [r.payload for r in calls if r.payload["purpose"] == "prefix"]
    assert prefix["prompt_tokens"] > 0
    for agent in ("agent-1", "agent-2"):
        first = next(r.payload for r in calls if r.agent == agent)
        assert first["messages"][1]["content"].startswith(prefix["messages"][1]["content"])
        assert first["cached_tokens"] >= prefix["prompt_tokens"] - 12
    await heavy.aclose()


async def test_rank_run_with_the_tiny_model(embedded_tiny: EmbeddedModel, indexed_settings: Settings) -> None:
    heavy = Heavy(embedded_tiny, "fixture", settings=indexed_settings)
    result = await heavy.arun("What is 2 + 3?", "rank", RunOptions(n=3, verifier="vote"))
    assert result.ranking is not None and 1 <= len(result.ranking) <= 3
    assert [r["rank"] for r in result.ranking] == list(range(1, len(result.ranking) + 1))
    samples = [r for r in read_trace(result.trace_path) if r.kind == "ModelCalled"]
    assert (
        len({r.payload["messages"][1]["content"] for r in samples if r.payload["purpose"] == "sample"}) == 1
    )
    await heavy.aclose()


async def test_rank_with_the_python_tool_runs_a_program_sample_with_the_tiny_model(
    embedded_tiny: EmbeddedModel, indexed_settings: Settings, bubblewrap: None
) -> None:
    heavy = Heavy(embedded_tiny, "fixture", settings=indexed_settings)
    result = await heavy.arun("What is 2 + 3?", "rank", RunOptions(n=2, verifier="vote", tools=("python",)))
    trace = read_trace(result.trace_path)
    purposes = sorted(r.payload["purpose"] for r in trace if r.kind == "ModelCalled")
    assert purposes == ["program", "sample"]  # sample 0 reasons in prose, sample 1 writes a program
    # the program ran in the sandbox, or its sample says why it cast no vote
    ran = [r for r in trace if r.kind == "CodeRan" and r.agent == "sample-1"]
    failed = [r for r in trace if r.kind == "Note" and r.payload.get("topic") == "sample_failed"]
    assert ran or [r.agent for r in failed] == ["sample-1"]
    assert all(r.payload["isolation"] == "bwrap" for r in ran)
    await heavy.aclose()
