"""The start order of a team whose prompts share a prefix (`team_start`): the lead's first call alone,
then the followers' first calls one at a time, and the lead's second call after them."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Sequence
from typing import Any

from fakes import PASSAGES, ListSink, MemorySearch, action, allowed_actions, plan_reply
from openheavy.heavy import Orchestrator
from openheavy.models.scripted import FunctionModel
from openheavy.search.cache import CachedSearch
from openheavy.team_start import TeamStart
from openheavy.types import EventStream, Message

GAP = 0.02
CALL = 0.05  # how long each fake call takes


class Clock:
    """Records when each agent's calls start and end, in the loop's time."""

    def __init__(self) -> None:
        self.starts: dict[tuple[str, int], float] = {}
        self.ends: dict[tuple[str, int], float] = {}

    async def agent(self, start: TeamStart, name: str, calls: int, *, fail_first: bool = False) -> None:
        loop = asyncio.get_running_loop()
        try:
            for index in range(calls):
                await start.before_call(name)
                self.starts[name, index] = loop.time()
                try:
                    await asyncio.sleep(CALL)
                    if fail_first:
                        raise RuntimeError("the backend went away")
                finally:
                    self.ends[name, index] = loop.time()
                    start.after_call(name)
        except RuntimeError:
            pass
        finally:
            start.finished(name)


async def test_the_lead_calls_alone_then_the_followers_in_turn_then_the_lead_again() -> None:
    clock = Clock()
    start = TeamStart("a1", ["a2", "a3", "a4"], gap=GAP)
    team = [clock.agent(start, name, 3) for name in ("a4", "a3", "a2", "a1")]  # the order they begin in
    await asyncio.wait_for(asyncio.gather(*team), timeout=5)

    lead_done = clock.ends["a1", 0]
    followers = sorted(clock.starts[name, 0] for name in ("a2", "a3", "a4"))
    # nobody shares the lead's first call
    assert followers[0] >= lead_done
    # the followers go one at a time, a gap apart, in the order they asked
    assert all(b - a >= GAP * 0.9 for a, b in itertools.pairwise(followers))
    # the lead's next call waits until the last follower has gone (and a gap more)
    assert clock.starts["a1", 1] >= followers[-1] + GAP * 0.9
    # later calls are not held: a follower's second call starts as soon as its first returned
    assert clock.starts["a2", 1] - clock.ends["a2", 0] < GAP


async def test_a_lead_that_fails_or_stops_holds_nobody() -> None:
    clock = Clock()
    start = TeamStart("a1", ["a2", "a3"], gap=GAP)
    await asyncio.wait_for(
        asyncio.gather(
            clock.agent(start, "a1", 2, fail_first=True), *(clock.agent(start, n, 2) for n in ("a2", "a3"))
        ),
        timeout=5,
    )
    assert ("a1", 1) not in clock.starts  # the lead stopped after its failed call
    assert {("a2", 1), ("a3", 1)} <= set(clock.starts)

    clock = Clock()
    start = TeamStart("a1", ["a2"], gap=GAP)
    await asyncio.wait_for(
        asyncio.gather(clock.agent(start, "a1", 0), clock.agent(start, "a2", 2)), timeout=5
    )
    assert ("a2", 1) in clock.starts


async def test_a_follower_that_stops_before_calling_holds_nobody() -> None:
    clock = Clock()
    start = TeamStart("a1", ["a2", "a3"], gap=GAP)
    await asyncio.wait_for(
        asyncio.gather(clock.agent(start, "a1", 2), clock.agent(start, "a2", 0), clock.agent(start, "a3", 1)),
        timeout=5,
    )
    assert clock.starts["a1", 1] >= clock.starts["a3", 0]


async def test_agents_not_in_the_team_are_not_held() -> None:
    clock = Clock()
    start = TeamStart("a1", ["a2"], gap=GAP)
    team = [clock.agent(start, "a1", 2), clock.agent(start, "a2", 1), clock.agent(start, "a9", 1)]
    await asyncio.wait_for(asyncio.gather(*team), timeout=5)
    assert clock.starts["a9", 0] < clock.ends["a1", 0]  # it ran alongside the lead's first call
    assert clock.starts["a2", 0] >= clock.ends["a1", 0]


def _first_calls_in_order(sink: ListSink) -> list[str]:
    """The agents in the order their first model calls returned."""
    seen: list[str] = []
    for event in sink.of("ModelCalled"):
        if event.agent.startswith("agent-") and event.agent not in seen:
            seen.append(event.agent)
    return seen


def respond(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
    system = messages[0].content
    if "planner" in system:
        return json.dumps(plan_reply(["find subprocess.run", "find shlex", "find timeouts"]))
    if "lead researcher" in system:
        return json.dumps({"agreements": "", "conflicts": "", "short": "", "answer": "See [1].", "cite": [1]})
    turns = sum(m.role == "assistant" for m in messages)
    if allowed_actions(schema) == ["answer"] or turns >= 1:
        return action("answer", answer="See [1].", cite=[1])
    return action("open", ref=1)


async def test_a_heavy_team_sharing_the_opening_starts_in_turn_and_can_be_turned_off() -> None:
    starts: dict[str, list[float]] = {}

    async def slow(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
        await asyncio.sleep(CALL)
        return respond(messages, schema)

    def timed(sink: ListSink) -> dict[str, list[float]]:
        for event in sink.of("ModelCalled"):
            if event.agent.startswith("agent-"):
                starts.setdefault(event.agent, []).append(event.at - event.seconds)
        return starts

    for staggered in (True, False):
        starts = {}
        sink = ListSink()
        orchestrator = Orchestrator(
            FunctionModel(slow),
            CachedSearch(MemorySearch(dict(PASSAGES))),
            stream=EventStream([sink]),
            run_id="r",
            agents=3,
            staggered_start=staggered,
        )
        await orchestrator.run("How do I run a subprocess with a timeout?")
        firsts = {agent: times[0] for agent, times in timed(sink).items()}
        lead_end = next(e.at for e in sink.of("ModelCalled") if e.agent == "agent-1")
        later = [firsts["agent-2"], firsts["agent-3"]]
        if staggered:
            assert _first_calls_in_order(sink)[0] == "agent-1"
            assert min(later) >= lead_end - 0.01  # the followers waited for the lead's first call
        else:
            assert max(later) < lead_end  # all three went together
