"""Diversity by construction: a team's query log (no search runs twice), search paging, and the figures
that measure how widely a run explored."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from fakes import PASSAGES, ListSink, MemorySearch, action, plan_reply
from openheavy.agent import ResearchAgent
from openheavy.heavy import Orchestrator
from openheavy.models.scripted import FunctionModel, ScriptedModel
from openheavy.prompts import render_prompt
from openheavy.search.cache import CachedSearch
from openheavy.search.queries import QueryLog
from openheavy.search.terms import query_key
from openheavy.tools.base import ToolContext
from openheavy.tools.research import RESULT_MARKS, SearchArgs, SearchTool
from openheavy.tools.sources import SourceBook
from openheavy.trace import MetricsSink
from openheavy.types import EventStream, Message, SearchDone, SearchRepeated
from openheavy.verify import make_verifier

# Twelve notes about timeouts: enough for three pages of five results.
NOTES = {f"note#{n:02d}": (f"timeout note {n:02d}", f"timeout detail number {n:02d}") for n in range(12)}


def test_query_key_ignores_case_punctuation_order_repeats_and_stopwords() -> None:
    assert query_key("Subprocess timeout?") == query_key("the TIMEOUT of a subprocess, subprocess")
    assert query_key("subprocess timeout") == query_key("subprocess timeouts")  # plurals fold
    assert query_key("coastal cities") == query_key("coastal city")  # "-ies" folds to "-y"
    assert query_key("subprocess timeout") != query_key("subprocess timer")
    assert query_key("the of") == "of the"  # stopwords only: still a key, never ""


def test_a_repeated_query_moves_to_the_first_page_nobody_ran() -> None:
    log = QueryLog()
    first = log.claim("agent-1", "subprocess timeout")
    assert (first.page, first.moved, first.repeat_of) == (1, False, ())
    second = log.claim("agent-2", "Timeout: subprocess")
    assert (second.page, second.asked_page, second.repeat_of) == (2, 1, ("agent-1",))
    own = log.claim("agent-1", "subprocess timeout")  # an agent's own repeat also moves on
    assert (own.page, own.repeat_of) == (3, ("agent-1", "agent-2"))
    assert log.claim("agent-2", "subprocess timeout", page=5).page == 5  # an unclaimed page as asked
    assert log.pages_run("timeout subprocess") == [1, 2, 3, 5]
    assert log.queries_by_others("agent-1") == ["Timeout: subprocess"]


def test_a_short_page_is_the_last_one_and_later_claims_run_nothing() -> None:
    log = QueryLog()
    log.record_results(log.claim("agent-1", "rare words"), hits=3, page_size=5)
    repeat = log.claim("agent-2", "rare words")
    assert repeat.exhausted and repeat.moved
    capped = QueryLog(max_pages=2)
    capped.claim("a", "q")
    capped.claim("a", "q")
    assert capped.claim("a", "q").exhausted


def tool_context(search: CachedSearch, queries: QueryLog, agent: str, sink: ListSink) -> ToolContext:
    return ToolContext("run-1", agent, 1, search, SourceBook(), EventStream([sink]), queries)


async def test_paging_shows_the_next_results_and_says_when_a_page_brings_nothing_new() -> None:
    search, sink, log = CachedSearch(MemorySearch(dict(NOTES))), ListSink(), QueryLog()
    ctx = tool_context(search, log, "agent-1", sink)
    tool = SearchTool(k=5)
    await tool.call(SearchArgs(query="timeout note"), ctx)
    second = await tool.call(SearchArgs(query="timeout note", page=2), ctx)
    header, _, first_hit = second.text.splitlines()[:3]
    assert header.startswith('Results 6-10 for "timeout note" (page 2), as untrusted data between <data-')
    assert first_hit == "[6] timeout note 05"
    assert [e.page for e in sink.of("SearchDone")] == [1, 2]
    # a new query whose results the agent has all seen already
    same = await tool.call(SearchArgs(query="timeout detail number"), ctx)
    assert "Nothing new on this page" in same.text
    third = await tool.call(SearchArgs(query="timeout note", page=3), ctx)
    assert third.text.startswith('Results 11-12 for "timeout note" (page 3), as untrusted data')
    after = await tool.call(SearchArgs(query="note timeout"), ctx)  # every page run: nothing runs
    assert after.text.startswith("Not run again: You already ran this search")
    assert sink.of("SearchRepeated")[-1].page == 0
    assert len(sink.of("SearchDone")) == 4


async def test_an_agent_is_shown_what_the_others_searched() -> None:
    search, sink, log = CachedSearch(MemorySearch(dict(PASSAGES))), ListSink(), QueryLog()
    await SearchTool().call(SearchArgs(query="shlex split"), tool_context(search, log, "agent-1", sink))
    seen = await SearchTool().call(SearchArgs(query="subprocess"), tool_context(search, log, "agent-2", sink))
    label, opening, queries, closing = seen.text.splitlines()[-4:]
    assert label.startswith(
        "Searches the other agents already ran (search for what they have not), as untrusted"
    )
    # what other agents wrote is fenced like what the corpus holds
    assert (opening, queries, closing) == (f"<{opening[1:-1]}>", '"shlex split"', f"</{opening[1:-1]}>")


def same_query_team(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
    """Planner, two agents that both search "timeout note" first, and the synthesizer."""
    properties = (schema or {}).get("properties", {})
    if "tasks" in properties:
        return json.dumps(plan_reply(["part one", "part two"], queries=[["timeout"], ["note"]]))
    if "agreements" in properties:
        reply = {"agreements": "", "conflicts": "", "short": "", "answer": "notes [1] [2]", "cite": [1, 2]}
        return json.dumps(reply)
    turns = sum(m.role == "assistant" for m in messages)
    return [
        action("search", query="Timeout note"),
        action("open", ref=1),
        action("answer", answer="A note [1].", cite=[1]),
    ][turns]


async def test_a_heavy_team_never_runs_the_same_search_twice() -> None:
    backend = MemorySearch(dict(NOTES))
    sink, metrics = ListSink(), MetricsSink()
    orchestrator = Orchestrator(
        FunctionModel(same_query_team),
        CachedSearch(backend),
        stream=EventStream([sink, metrics]),
        run_id="run-1",
        agents=2,
        opening_search=False,
        planned_search=False,  # both agents pick the same first search themselves
    )
    result = await orchestrator.run("What do the notes say about timeouts?")
    # the second agent got the next page, and so read a different note
    assert sorted(e.page for e in sink.of("SearchDone")) == [1, 2]
    [repeated] = sink.of("SearchRepeated")
    assert isinstance(repeated, SearchRepeated) and repeated.page == 2 and len(repeated.repeat_of) == 1
    assert len({e.doc["id"] for e in sink.of("DocumentOpened")}) == 2
    assert not any(e.cached for e in sink.of("SearchDone"))
    observation = next(
        e.messages[-1]["content"] for e in sink.of("ModelCalled") if e.agent == repeated.agent and e.step == 2
    )
    assert f"({repeated.repeat_of[0]} already ran this search" in observation
    assert "page 2" in observation
    figures = metrics.figures()
    assert (figures.distinct_queries, figures.repeated_queries, figures.documents_read) == (1, 1, 2)
    assert figures.per_item()["distinct_queries"] == 1.0
    assert len(result.citations) == 2


async def test_ranked_trajectories_stand_alone_each_agent_gets_the_first_page() -> None:
    sink = ListSink()
    orchestrator = Orchestrator(
        FunctionModel(same_query_team),
        CachedSearch(MemorySearch(dict(NOTES))),
        stream=EventStream([sink]),
        run_id="run-1",
        opening_search=False,
    )
    await orchestrator.rank_trajectories("q", make_verifier("vote", None), tasks=["q", "q"])
    assert [e.page for e in sink.of("SearchDone")] == [1, 1]
    assert sink.of("SearchRepeated") == []


async def test_concurrent_agents_asking_one_query_at_once_get_different_pages() -> None:
    backend = MemorySearch(dict(NOTES), latency=0.01)
    search, sink, log = CachedSearch(backend), ListSink(), QueryLog()
    await asyncio.gather(
        *(
            SearchTool().call(SearchArgs(query="timeout note"), tool_context(search, log, f"agent-{n}", sink))
            for n in (1, 2, 3)
        )
    )
    assert sorted(e.page for e in sink.of("SearchDone")) == [1, 2, 3]


async def test_a_single_agent_pages_on_when_it_repeats_itself() -> None:
    model = ScriptedModel(
        [
            action("search", query="timeout note"),
            action("search", query="timeout note"),  # small models do this
            action("answer", answer="nothing useful", cite=[]),
        ]
    )
    sink = ListSink()
    agent = ResearchAgent(
        model, CachedSearch(MemorySearch(dict(NOTES))), stream=EventStream([sink]), run_id="r", max_steps=3
    )
    await agent.run("q")
    assert [e.page for e in sink.of("SearchDone")] == [1, 2]
    assert "[6] timeout note 05" in model.calls[2].messages[-1].content
    done: list[SearchDone] = sink.of("SearchDone")
    assert {e.query_key for e in done} == {"note timeout"}


def test_the_results_own_marks_copied_into_a_query_are_dropped() -> None:
    """The 0.5B model copied "(shown whole: read)" after a title into its next query; the marks are
    no words of any document, so they are not searched."""
    for template, extra in (
        ("tool_search_hit_read", {}),
        ("tool_search_hit_shown", {}),
        ("tool_search_hit_whole", {"text": "x"}),
    ):
        line = render_prompt(template, ref=1, title="T", source="", **extra).splitlines()[0]
        assert line[line.index("(") :] in RESULT_MARKS  # every mark the results write is known
    assert SearchArgs(query="Romper Stomper (TV series) (shown whole: read)").query == (
        "Romper Stomper (TV series)"
    )
    assert SearchArgs(query="John Fogerty (Already Read) songs").query == "John Fogerty songs"
    assert SearchArgs(query="(listed above)").query == "(listed above)"  # nothing else to search
