"""Runs in flight: a client that leaves cancels its run, the concurrency limit answers 429 with
Retry-After, and a bounded loopback load test loses and duplicates nothing in the run store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx2
import openai

from openheavy.server.config import ServerConfig
from openheavy.trace import RunStore, run_store_path
from server_support import LiveServer, Team, wait_until

BODY = {"model": "single", "messages": [{"role": "user", "content": "How do I run a subprocess?"}]}


def store_of(server: LiveServer) -> RunStore:
    return RunStore(run_store_path(server.settings.runs_dir))


def only_run_status(server: LiveServer) -> str:
    rows = store_of(server).list()
    return rows[0].status if len(rows) == 1 else f"{len(rows)} runs"


def test_a_streaming_client_that_disconnects_cancels_its_run(tmp_path: Path) -> None:
    team = Team(hang=True)
    with LiveServer(tmp_path / "data", team) as server:
        with httpx2.stream(
            "POST", f"{server.url}/v1/chat/completions", json=BODY | {"stream": True}, timeout=30
        ) as response:
            lines = response.iter_lines()  # kept: a dropped iterator closes the response
            first = next(lines)
            assert first.startswith("data: ") and '"run_id"' in first
            wait_until(lambda: team.calls > 0, what="the agent's first model call")
            assert only_run_status(server) == "running"
        # the connection is closed here, mid-run
        wait_until(team.cancelled.is_set, what="the hung model call to be cancelled")
        wait_until(lambda: only_run_status(server) == "cancelled", what="the run to be marked cancelled")
        assert server.app.state.openheavy.hub.active == 0  # its slot is free again


def test_a_waiting_client_that_disconnects_cancels_its_run(tmp_path: Path) -> None:
    team = Team(hang=True)
    with LiveServer(tmp_path / "data", team) as server:
        try:
            httpx2.post(f"{server.url}/v1/chat/completions", json=BODY, timeout=1.0)
        except httpx2.TimeoutException:
            pass  # the client gives up and closes the connection
        else:
            raise AssertionError("a hung run answered")
        wait_until(team.cancelled.is_set, what="the hung model call to be cancelled")
        wait_until(lambda: only_run_status(server) == "cancelled", what="the run to be marked cancelled")


def test_a_full_server_answers_429_with_retry_after(tmp_path: Path) -> None:
    team = Team(hang=True)
    config = ServerConfig(max_concurrent=1, retry_after=7)
    with LiveServer(tmp_path / "data", team, config=config) as server:
        with httpx2.stream(
            "POST", f"{server.url}/v1/chat/completions", json=BODY | {"stream": True}, timeout=30
        ) as holding:
            lines = holding.iter_lines()
            next(lines)  # the first run holds the only slot
            refused = httpx2.post(f"{server.url}/v1/chat/completions", json=BODY, timeout=10)
            assert refused.status_code == 429 and refused.headers["retry-after"] == "7"
            assert "--max-concurrent 1" in refused.json()["error"]["message"]
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
            try:
                client.chat.completions.create(**BODY)  # type: ignore[call-overload]
            except openai.RateLimitError as exc:
                assert exc.response.headers["retry-after"] == "7"
            else:
                raise AssertionError("no 429")
        wait_until(lambda: server.app.state.openheavy.hub.active == 0, what="the slot to be released")
        team.hang = False
        ok = httpx2.post(f"{server.url}/v1/chat/completions", json=BODY, timeout=30)
        assert ok.status_code == 200


async def test_twenty_concurrent_clients_each_complete_or_get_429(tmp_path: Path) -> None:
    """Bounded: 20 requests on loopback against a scripted model; each either completes or is refused."""
    config = ServerConfig(max_concurrent=4)
    with LiveServer(tmp_path / "data", Team(latency=0.02), config=config) as server:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=60)

        async def ask(number: int) -> str:
            try:
                response = await client.chat.completions.create(
                    model="single", messages=[{"role": "user", "content": f"question {number}?"}]
                )
            except openai.RateLimitError:
                return "429"
            return str((response.model_extra or {})["openheavy"]["run_id"])

        outcomes = await asyncio.wait_for(asyncio.gather(*(ask(i) for i in range(20))), timeout=120)
        await client.close()
        answered = [o for o in outcomes if o != "429"]
        assert 4 <= len(answered) <= 20 and len(set(answered)) == len(answered)
        rows = store_of(server).list(limit=100)
    assert sorted(row.run_id for row in rows) == sorted(answered)  # none lost, none duplicated
    assert {row.status for row in rows} == {"ok"}
    assert sorted(row.question for row in rows) == sorted(
        f"question {i}?" for i, o in enumerate(outcomes) if o != "429"
    )
