"""The MCP tools through the official `mcp` client: over streamable HTTP at `/mcp` under the server, and
over stdio from a real `python -m openheavy mcp` subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from typer.testing import CliRunner

from openheavy.cli import app
from openheavy.config import Settings
from openheavy.corpus.catalog import index_paths
from openheavy.modes import MODES
from openheavy.server.config import ServerConfig
from openheavy.trace import RunStore, run_store_path
from server_support import ANSWER, DIRECT_ANSWER, LiveServer, Team, wait_until

SRC = Path(__file__).resolve().parents[1] / "src"
QUESTION = "How do I run a subprocess with a timeout?"


def text_of(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


async def test_research_search_and_get_run_over_http_with_progress(tmp_path: Path) -> None:
    with LiveServer(tmp_path / "data", Team(latency=0.01)) as server:
        progress: list[tuple[float, str | None]] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append((done, message))

        async with Client(server.url + "/mcp") as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert set(tools) == {"research", "search", "get_run"}
            # the mode argument offers every mode in the engine's registry
            assert set(tools["research"].input_schema["properties"]["mode"]["enum"]) == set(MODES)
            result = await client.call_tool(
                "research",
                {"question": QUESTION, "mode": "heavy", "agents": 2},
                progress_callback=on_progress,
            )
            assert not result.is_error, text_of(result)
            answer = result.structured_content
            assert answer["answer"].startswith(ANSWER.replace("[1]", "[^1]"))
            assert answer["citations"][0]["id"] == "subprocess#1" and answer["status"] == "ok"
            run_id = answer["run_id"]

            hits = await client.call_tool("search", {"query": "check_output timeout", "k": 2})
            assert not hits.is_error
            assert [h["id"] for h in hits.structured_content["result"]][:1] == ["subprocess#2"]

            record = await client.call_tool("get_run", {"id": run_id, "trace": True})
            assert record.structured_content["run"]["status"] == "ok"
            assert {"PlanMade", "AgentStarted", "SearchDone"} <= {
                r["kind"] for r in record.structured_content["trace"]
            }

            refused = await client.call_tool(
                "research", {"question": QUESTION, "mode": "single", "corpus": "nope"}
            )
            assert refused.is_error and "no corpus named 'nope'" in text_of(refused)
            misnamed = await client.call_tool("research", {"question": QUESTION, "mode": "rank_tools"})
            assert misnamed.is_error and "unknown mode 'rank_tools'" in text_of(misnamed)
            ranked = await client.call_tool("research", {"question": QUESTION, "mode": "rank-tools", "n": 2})
            assert not ranked.is_error, text_of(ranked)
            assert ranked.structured_content["mode"] == "rank-tools"
            unknown = await client.call_tool("get_run", {"id": "no-such-run"})
            assert unknown.is_error and "no run" in text_of(unknown)
    # progress: one notification per step of the run, counting up, saying what happened
    assert len(progress) >= 10 and [p for p, _ in progress] == sorted(p for p, _ in progress)
    messages = [m or "" for _, m in progress]
    assert any("planner" in m and "plan" in m for m in messages)
    assert any('search "subprocess timeout"' in m for m in messages)


async def test_mcp_over_http_needs_the_key_too(tmp_path: Path) -> None:
    with LiveServer(tmp_path / "data", config=ServerConfig(api_key="k3y")) as server:
        assert httpx2.post(server.url + "/mcp", json={}, timeout=10).status_code == 401
        headers = {"Authorization": "Bearer k3y"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            Client(streamable_http_client(server.url + "/mcp", http_client=http)) as client,
        ):
            result = await client.call_tool("research", {"question": "hi?", "mode": "direct"})
    assert result.structured_content["answer"] == DIRECT_ANSWER


@pytest.fixture
def notes_data_dir(tmp_path: Path) -> Path:
    """A data directory with a small corpus `notes` built by the real indexer."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "timeouts.md").write_text(
        "# Timeouts\n\nsubprocess.run accepts timeout= and raises TimeoutExpired.\n"
    )
    (folder / "shells.md").write_text("# Shells\n\nshlex.split splits a command line like a shell.\n")
    data_dir = tmp_path / "mcp-data"
    index_paths([folder], "notes", Settings(data_dir=data_dir).index_dir)
    return data_dir


def stdio_command(backend_url: str) -> list[str]:
    # The backend is an openheavy server on the scripted model: `openheavy mcp` reaches it as any
    # OpenAI-compatible endpoint, `#direct` naming the mode, so the real CLI runs with no real model.
    return ["-m", "openheavy", "mcp", "--model", f"{backend_url}/v1#direct", "--corpus", "notes"]


def stdio_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENHEAVY_")}
    return env | {
        "OPENHEAVY_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(SRC),
        "OPENHEAVY_CONFIG": "/dev/null",
    }


async def test_research_over_stdio_gives_a_run_that_openheavy_trace_shows(
    tmp_path: Path, notes_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LiveServer(tmp_path / "backend-data") as backend:
        params = StdioServerParameters(
            command=sys.executable, args=stdio_command(backend.url), env=stdio_env(notes_data_dir)
        )
        async with Client(params) as client:
            result = await client.call_tool("research", {"question": QUESTION, "mode": "direct"})
            assert not result.is_error, text_of(result)
            run_id = result.structured_content["run_id"]
            assert result.structured_content["answer"] == DIRECT_ANSWER
            hits = await client.call_tool("search", {"query": "timeout", "corpus": "notes"})
            assert [h["title"] for h in hits.structured_content["result"]][:1] == ["Timeouts"]
            record = await client.call_tool("get_run", {"id": run_id})
            assert record.structured_content["run"]["question"] == QUESTION
    monkeypatch.setenv("OPENHEAVY_DATA_DIR", str(notes_data_dir))
    monkeypatch.setenv("OPENHEAVY_CONFIG", "/dev/null")
    shown = CliRunner().invoke(app, ["trace", run_id])
    assert shown.exit_code == 0, shown.output
    assert run_id in shown.output and DIRECT_ANSWER in shown.output


def test_stdout_of_openheavy_mcp_carries_protocol_messages_only(tmp_path: Path, notes_data_dir: Path) -> None:
    with LiveServer(tmp_path / "backend-data") as backend:
        requests = [
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "0"},
                },
            },
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "research", "arguments": {"question": "hi?", "mode": "direct"}},
            },
        ]
        with subprocess.Popen(
            [sys.executable, *stdio_command(backend.url)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=stdio_env(notes_data_dir),
        ) as process:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write("".join(json.dumps(r) + "\n" for r in requests))
            process.stdin.flush()
            lines: list[str] = []
            while not any('"id":2' in line.replace(" ", "") for line in lines):
                line = process.stdout.readline()  # bounded by the test timeout
                assert line, "openheavy mcp closed stdout before answering"
                lines.append(line)
            process.stdin.close()
            lines += process.stdout.read().splitlines()
            assert process.wait(timeout=30) == 0
    lines = [line for line in lines if line.strip()]
    messages = [json.loads(line) for line in lines]  # every line is JSON ...
    assert all(m.get("jsonrpc") == "2.0" for m in messages)  # ... and JSON-RPC
    answer = next(m for m in messages if m.get("id") == 2)
    assert answer["result"]["structuredContent"]["answer"] == DIRECT_ANSWER


async def test_cancelling_a_research_call_cancels_its_run(tmp_path: Path) -> None:
    team = Team(hang=True)
    with LiveServer(tmp_path / "data", team) as server:
        store = RunStore(run_store_path(server.settings.runs_dir))
        async with Client(server.url + "/mcp") as client:
            call = asyncio.create_task(client.call_tool("research", {"question": "q?", "mode": "single"}))
            await asyncio.to_thread(wait_until, lambda: team.calls > 0, 10.0, "the agent's first model call")
            assert [row.status for row in store.list()] == ["running"]
            call.cancel()  # the client sends notifications/cancelled
            with contextlib.suppress(asyncio.CancelledError):
                await call
            await asyncio.to_thread(wait_until, team.cancelled.is_set, 10.0, "the model call to be cancelled")
            await asyncio.to_thread(
                wait_until, lambda: [r.status for r in store.list()] == ["cancelled"], 10.0, "a cancelled run"
            )
