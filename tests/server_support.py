"""What the server tests share: a scripted research team and a real uvicorn server on a loopback port."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from fakes import PASSAGES, MemorySearch, action, allowed_actions, plan_reply
from openheavy.config import Settings
from openheavy.models.scripted import FunctionModel
from openheavy.server.app import create_app
from openheavy.server.config import ServerConfig
from openheavy.types import Message

ANSWER = "Use subprocess.run(args, capture_output=True, timeout=5) [1]."
AGENT_ANSWER = "subprocess.run takes timeout= and capture_output= [1]"
DIRECT_ANSWER = "Use subprocess.run with a timeout."


@dataclass
class Team:
    """How the scripted model behaves: per-call latency, and an optional hang on agent steps."""

    latency: float = 0.0
    hang: bool = False  # agent calls never return (until cancelled)
    fail: bool = False  # every call raises, as a backend that is down
    # When given, the synthesizer waits for it: the run stays live until the test lets it finish.
    gate: threading.Event | None = None
    tasks: list[str] = field(default_factory=lambda: ["find subprocess.run", "find check_output"])
    cancelled: threading.Event = field(default_factory=threading.Event)  # a hung call was cancelled
    calls: int = 0


def planned_tasks(tasks: list[str], schema: dict[str, Any] | None) -> list[str]:
    """`tasks`, cut or extended to the count the plan's schema asks for (`agents=N` fixes it)."""
    bounds = (schema or {}).get("properties", {}).get("tasks", {})
    count = max(bounds.get("minItems", 1), min(len(tasks), bounds.get("maxItems", len(tasks))))
    return [tasks[i % len(tasks)] + (f" (angle {i + 1})" if i >= len(tasks) else "") for i in range(count)]


def first_query(task: str, team: Team) -> str:
    """What an agent of `team` searches first for `task`: agents of one run word their searches
    differently (a team never repeats one), and the planner plans the same words."""
    words = "subprocess" if not task or task == team.tasks[0] else task.removeprefix("find ")
    return f"{words} timeout"


def research_model(team: Team) -> FunctionModel:
    """A `FunctionModel` that plays every role of a run: planner, agents, synthesizer, direct, rank."""

    async def respond(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
        team.calls += 1
        if team.fail:
            raise RuntimeError("backend exploded")
        system = messages[0].content
        if "planner" in system:
            tasks = planned_tasks(team.tasks, schema)
            return json.dumps(plan_reply(tasks, queries=[[first_query(t, team)] for t in tasks]))
        if "lead researcher" in system:
            gate = team.gate
            while gate is not None and not await asyncio.to_thread(gate.wait, 0.05):
                pass  # short waits, so a test that fails before opening the gate still ends
            return json.dumps(
                {"agreements": "all agree", "conflicts": "none", "short": "", "answer": ANSWER, "cite": [1]}
            )
        if system.startswith("You are a helpful assistant"):
            return DIRECT_ANSWER
        if system.startswith("You are a careful problem solver"):
            return "It is 4.\nANSWER: 4"
        if team.hang:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                team.cancelled.set()
                raise
        if allowed_actions(schema) == ["answer"]:
            return action("answer", answer=AGENT_ANSWER, cite=[1])
        turns = sum(m.role == "assistant" for m in messages)
        if turns == 0:  # a single agent, or a team agent told its queries without the planned search
            task = messages[1].content.partition("Your part of the work: ")[2].split("\n")[0]
            return action("search", query=first_query(task, team))
        if turns == 1:
            return action("open", ref=1)
        return action("answer", answer=AGENT_ANSWER, cite=[1])

    return FunctionModel(respond, name="scripted", latency=team.latency)


def memory_corpus() -> MemorySearch:
    return MemorySearch(dict(PASSAGES))


class LiveServer:
    """The whole app under uvicorn in a thread, on a free loopback port: real sockets, real clients."""

    def __init__(
        self,
        data_dir: Path,
        team: Team | None = None,
        *,
        config: ServerConfig | None = None,
        settings: Settings | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.team = team or Team()
        self.settings = settings or Settings(data_dir=data_dir)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((host, 0))
        self.port = self._sock.getsockname()[1]
        self.config = config or ServerConfig(port=self.port)
        self.model = research_model(self.team)
        self.app = create_app(self.config, self.settings, model=self.model, corpus=memory_corpus())
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app, log_level="warning", ws="none", lifespan="on", timeout_graceful_shutdown=2
            )
        )
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=20)
        self._sock.close()


def wait_until(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll `predicate()` until it is true; fail after `timeout` seconds (a bound, not a timing assert)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
