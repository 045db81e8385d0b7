"""The opening search: the question's own words searched once, before a run's agents start, and its
results shown to every agent right after the question (`tools.research.Opening`)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from fakes import PASSAGES, ListSink, MemorySearch, action, allowed_actions, plan_reply
from openheavy.api import Heavy
from openheavy.config import Settings
from openheavy.display.live import describe_event
from openheavy.heavy import Orchestrator
from openheavy.models.scripted import FunctionModel, ScriptedModel
from openheavy.models.slot_share import SharedPrefix
from openheavy.search.cache import CachedSearch
from openheavy.types import Completion, EventStream, Message, Usage

QUESTION = "How do I run a subprocess with a timeout?"
FENCE_END = re.compile(r"</data-[0-9a-f]{8}>")


def first_prompt(call: Any) -> str:
    """The user message an agent starts from (the question, then what it is shown before acting)."""
    return str(call.messages[1].content)


async def test_a_single_agent_starts_from_the_results_of_the_questions_own_words(tmp_path: Path) -> None:
    # the agent's first action opens [1], a result it only saw in the opening search, and cites it
    model = ScriptedModel(
        [
            action("open", ref=1),
            action("answer", answer="subprocess.run(..., timeout=5) [1]", cite=[1]),
        ]
    )
    sink = ListSink()
    heavy = Heavy(model, MemorySearch(dict(PASSAGES)), settings=Settings(data_dir=tmp_path))
    result = await heavy.arun(QUESTION, "single", sinks=[sink])

    [opening] = sink.of("SearchDone")
    assert (opening.query, opening.step, opening.agent, opening.page) == (QUESTION, 0, "", 1)
    assert [hit["ref"] for hit in opening.hits] == list(range(1, len(opening.hits) + 1))
    prompt = first_prompt(model.calls[0])
    # right after the question, fenced as untrusted data, with the lead the agent should read first
    assert prompt.startswith(f'Question: {QUESTION}\n\nResults for "{QUESTION}", as untrusted data')
    assert "[1] subprocess — run" in prompt and FENCE_END.search(prompt)
    assert "shares the most words with the question" in prompt
    # the first action must still use a tool: an answer from snippets alone is not on offer
    assert "answer" not in allowed_actions(model.calls[0].json_schema)
    assert result.citations[0]["id"] == opening.hits[0]["id"]
    assert (result.figures.searches, result.figures.documents_read) == (1, 1)
    assert describe_event(opening) == f'[run] search "{QUESTION}" → {len(opening.hits)} hits'


async def test_opening_results_shown_whole_are_read_by_each_agent_before_it_acts(tmp_path: Path) -> None:
    # every passage is short enough to come whole: nothing is left to open, so the first action searches
    model = ScriptedModel(
        [
            action("search", query="subprocess timeout argument"),
            action("answer", answer="subprocess.run(..., timeout=5) [1]", cite=[1]),
        ]
    )
    sink = ListSink()
    heavy = Heavy(model, MemorySearch(dict(PASSAGES), whole=10_000), settings=Settings(data_dir=tmp_path))
    result = await heavy.arun(QUESTION, "single", sinks=[sink])

    opening = sink.of("SearchDone")[0]
    prompt = first_prompt(model.calls[0])
    assert "(shown whole: read)" in prompt
    assert "shares the most words with the question" not in prompt  # no lead to a page read already
    assert allowed_actions(model.calls[0].json_schema) == ["search"]
    read = [e for e in sink.of("DocumentOpened") if e.step == 0]
    assert [(e.agent, e.ref, e.in_results) for e in read] == [
        ("agent-1", hit["ref"], True) for hit in opening.hits
    ]
    assert describe_event(read[0]).startswith(
        "[agent-1] read [1] "
    ) and "whole in the results" in describe_event(read[0])
    assert result.citations[0]["id"] == opening.hits[0]["id"]
    assert result.figures.documents_read >= len(opening.hits)


async def test_turned_off_the_agent_starts_from_the_question_alone(tmp_path: Path) -> None:
    model = ScriptedModel(
        [
            action("search", query="subprocess timeout"),
            action("open", ref=1),
            action("answer", answer="subprocess.run(..., timeout=5) [1]", cite=[1]),
        ]
    )
    sink = ListSink()
    settings = Settings(data_dir=tmp_path, opening_search=False)
    await Heavy(model, MemorySearch(dict(PASSAGES)), settings=settings).arun(QUESTION, "single", sinks=[sink])
    assert [e.step for e in sink.of("SearchDone")] == [1]
    assert first_prompt(model.calls[0]).strip() == f"Question: {QUESTION}"
    assert allowed_actions(model.calls[0].json_schema) == ["search"]  # nothing seen yet to open


def team(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
    """A planner of two tasks; agent 1 searches the question's words again, agent 2 its planned query."""
    system = messages[0].content
    if "planner" in system:
        return json.dumps(plan_reply(["find subprocess.run", "find shlex"]))
    if "lead researcher" in system:
        return json.dumps({"agreements": "", "conflicts": "", "short": "", "answer": "See [1].", "cite": [1]})
    turns = sum(m.role == "assistant" for m in messages)
    if allowed_actions(schema) == ["answer"] or turns >= 2:
        return action("answer", answer="See [1].", cite=[1])
    if turns == 0:
        mine = "find shlex" in messages[1].content
        return action("search", query="shlex" if mine else QUESTION)
    return action("open", ref=1)


async def test_a_team_shares_one_opening_search_as_a_common_prompt_prefix() -> None:
    sink = ListSink()
    # more results than one page holds, so that the question's words have a second page
    more = {f"timeouts#{n}": (f"Timeouts, part {n}", "A subprocess timeout, explained.") for n in range(6)}
    backend = MemorySearch({**PASSAGES, **more})
    orchestrator = Orchestrator(
        FunctionModel(team),
        CachedSearch(backend),
        stream=EventStream([sink]),
        run_id="r",
        agents=2,
        planned_search=False,  # agent 1 picks the question's words itself (the planned search: below)
    )
    await orchestrator.run(QUESTION)

    openings = [e for e in sink.of("SearchDone") if e.step == 0]
    assert len(openings) == 1 and openings[0].query == QUESTION and openings[0].agent == ""
    firsts = {
        e.agent: e.messages[1]["content"]
        for e in sink.of("ModelCalled")
        if e.agent.startswith("agent-") and len(e.messages) == 2
    }
    assert set(firsts) == {"agent-1", "agent-2"}
    one, two = firsts["agent-1"], firsts["agent-2"]
    end = FENCE_END.search(one)
    assert end is not None
    # the same bytes up to the end of the opening's results (a prompt cache serves them once), then
    # each agent's own brief
    assert one[: end.end()] == two[: end.end()] and one != two
    assert "Search first for" in one[end.end() :] and "Search first for" in two[end.end() :]
    # the team ran the question's words: the agent that searched them again got their next page
    [repeated] = sink.of("SearchRepeated")
    assert (repeated.agent, repeated.page, repeated.repeat_of) == ("agent-1", 2, ["Your team"])
    observation = next(
        e.messages[-1]["content"] for e in sink.of("ModelCalled") if e.agent == "agent-1" and e.step == 2
    )
    assert "(Your team already ran this search, so this is the next page" in observation
    # the opening (the top 5), then agent-1's page 2 (the top 10: backends rank without offsets)
    assert sorted(backend.searches) == sorted([QUESTION, QUESTION, "shlex"])


async def test_agents_without_search_get_no_opening(tmp_path: Path) -> None:
    model = ScriptedModel(["4"])
    sink = ListSink()
    heavy = Heavy(model, "no-such-corpus", settings=Settings(data_dir=tmp_path))
    await heavy.arun("What is 2+2?", "direct", sinks=[sink])
    assert sink.of("SearchDone") == []


async def test_agents_that_check_one_name_each_start_from_their_own_search() -> None:
    magazines = {
        "kestrel#0": ("Kestrel Review", "Kestrel Review is a literary magazine."),
        "harbor#0": ("Harbor Monthly", "Harbor Monthly is a magazine about boats."),
    }

    def respond(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
        turns = sum(m.role == "assistant" for m in messages)
        if allowed_actions(schema) == ["answer"] or turns >= 2:
            return action("answer", short="Yes", answer="Yes [1]", cite=[1])
        if turns == 0:
            mine = "kestrel" if "Kestrel Review alone" in messages[1].content else "harbor"
            return action("search", query=mine)
        return action("open", ref=1)

    sink = ListSink()
    orchestrator = Orchestrator(
        FunctionModel(respond),
        CachedSearch(MemorySearch(magazines)),
        stream=EventStream([sink]),
        run_id="r",
        agents=2,
    )
    result = await orchestrator.run("Are Kestrel Review and Harbor Monthly both magazines?")
    assert [a.conjunct for a in result.plan.assignments] == ["Kestrel Review", "Harbor Monthly"]
    assert [e.step for e in sink.of("SearchDone")] == [1, 1]  # no opening search
    # each searches its name on its own: no planned first step (see `Orchestrator._first_search`)
    assert sorted(e.query for e in sink.of("SearchDone")) == ["harbor", "kestrel"]
    assert not any(e.planned for e in sink.of("ActionParsed"))
    firsts = [e.messages[1]["content"] for e in sink.of("ModelCalled") if len(e.messages) == 2]
    assert len(firsts) == 2 and not any("Results for" in m for m in firsts)
    assert result.short_answer == "Yes"


async def test_results_listed_before_come_back_as_one_line(tmp_path: Path) -> None:
    # [1] and [2] were in the opening search; the agent reads [1], then a search brings all three back
    model = ScriptedModel(
        [
            action("open", ref=1),
            action("search", query="shlex command"),
            action("answer", answer="subprocess.run(..., timeout=5) [1]", cite=[1]),
        ]
    )
    heavy = Heavy(model, MemorySearch(dict(PASSAGES)), settings=Settings(data_dir=tmp_path))
    await heavy.arun(QUESTION, "single", sinks=[ListSink()])
    assert "[2] subprocess — check_output\n    check_output runs" in first_prompt(model.calls[0])
    results = str(model.calls[2].messages[-1].content).splitlines()
    assert results[2:5] == [
        "[3] shlex — split",
        "    shlex.split splits a command line string like a shell would.",
        "[1] subprocess — run (already read)",
    ]
    # its snippet is in the prompt already
    assert results[5] == "[2] subprocess — check_output (listed above)"


def planned_team(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
    """A planner of two tasks with their own queries; agents that read [1] of what they see and answer."""
    system = messages[0].content
    if "planner" in system:
        return json.dumps(
            plan_reply(["find subprocess.run", "find shlex"], queries=[["run timeout"], ["shlex"]])
        )
    if "lead researcher" in system:
        return json.dumps({"agreements": "", "conflicts": "", "short": "", "answer": "See [1].", "cite": [1]})
    turns = sum(m.role == "assistant" for m in messages)
    if allowed_actions(schema) == ["answer"] or turns >= 2:
        return action("answer", answer="See [1].", cite=[1])
    return action("search", query="subprocess") if turns == 0 else action("open", ref=1)


@pytest.mark.parametrize("planned", [True, False])
async def test_each_agent_starts_with_its_planned_search_without_a_model_call(planned: bool) -> None:
    sink = ListSink()
    model = FunctionModel(planned_team)
    orchestrator = Orchestrator(
        model,
        CachedSearch(MemorySearch(dict(PASSAGES))),
        stream=EventStream([sink]),
        run_id="r",
        agents=2,
        max_steps=3,
        planned_search=planned,
    )
    await orchestrator.run(QUESTION)
    agent_calls = [e for e in sink.of("ModelCalled") if e.agent.startswith("agent-")]
    searches = {e.agent: e.query for e in sink.of("SearchDone") if e.step == 1}
    if not planned:  # told its queries, each agent picked its own first search, at a model call
        assert {e.step for e in agent_calls} == {1, 2, 3} and not any(
            e.planned for e in sink.of("ActionParsed")
        )
        assert searches == {"agent-1": "subprocess", "agent-2": "subprocess"}  # the second: the next page
        return
    # step 1 is each agent's planned query, run without a model call: two calls each, not three
    assert searches == {"agent-1": "run timeout", "agent-2": "shlex"}
    first_actions = {e.agent: e for e in sink.of("ActionParsed") if e.step == 1}
    assert all(e.planned and e.action == "search" for e in first_actions.values())
    assert sorted(e.step for e in agent_calls) == [2, 2, 3, 3]
    # the conversation reads as if the agent had picked that search: its reply, then the results
    firsts = {e.agent: e.messages for e in agent_calls if e.step == 2}
    for agent, query in searches.items():
        _system, _question, reply, results = firsts[agent]
        assert (reply["role"], json.loads(reply["content"])["query"]) == ("assistant", query)
        assert (
            results["content"].startswith(f'Results for "{query}"')
            and "(Action 1 of 3 done." in results["content"]
        )
    # the agents still share their prompt's prefix up to the end of the opening search's results
    one, two = firsts["agent-1"][1]["content"], firsts["agent-2"][1]["content"]
    end = FENCE_END.search(one)
    assert (
        end is not None
        and one[: end.end()] == two[: end.end()]
        and firsts["agent-1"][0] == firsts["agent-2"][0]
    )
    line = describe_event(first_actions["agent-2"])
    assert line == '[agent-2] step 1 planned search "shlex" (no model call)'


class SlotSharingModel(FunctionModel):
    """A scripted model whose "server" can compute a prompt prefix once for several requests
    (`models.base.PrefixSharing`, as the embedded llama-server does with its slots)."""

    def __init__(self, fn: Any) -> None:
        super().__init__(fn)
        self.shared: list[tuple[list[Message], int]] = []

    async def share_prefix(self, messages: Sequence[Message], copies: int) -> SharedPrefix | None:
        self.shared.append((list(messages), copies))
        return SharedPrefix(Completion("I", Usage(900, 1, 500)), tuple(range(copies)))


async def test_the_teams_common_prompt_is_computed_once_for_all_its_agents() -> None:
    sink = ListSink()
    model = SlotSharingModel(team)
    orchestrator = Orchestrator(
        model, CachedSearch(MemorySearch(dict(PASSAGES))), stream=EventStream([sink]), run_id="r", agents=2
    )
    result = await orchestrator.run(QUESTION)

    # once, before the agents start, for both of them
    [(prefix, copies)] = model.shared
    assert copies == 2
    calls = sink.of("ModelCalled")
    [shared] = [e for e in calls if e.purpose == "prefix"]
    assert shared.agent == "team" and (shared.prompt_tokens, shared.cached_tokens) == (900, 500)
    assert shared.messages == [{"role": m.role, "content": m.content} for m in prefix]
    first_agent_call = min(i for i, e in enumerate(calls) if e.agent.startswith("agent-"))
    assert calls.index(shared) < first_agent_call
    # exactly what every agent's first prompt starts with: the system prompt, the question, the opening
    firsts = [e for e in calls if e.agent.startswith("agent-") and len(e.messages) >= 2]
    for agent in ("agent-1", "agent-2"):
        first = next(e for e in firsts if e.agent == agent)
        assert first.messages[0] == shared.messages[0]
        assert first.messages[1]["content"].startswith(shared.messages[1]["content"] + "\n")
        assert len(first.messages[1]["content"]) > len(shared.messages[1]["content"])  # then its brief
    assert FENCE_END.search(shared.messages[1]["content"])  # the opening's results are in it
    # its tokens are the run's: in the usage and the figures like any call
    assert result.usage.prompt_tokens == sum(e.prompt_tokens for e in calls)


async def test_no_common_prompt_is_shared_without_an_opening_or_by_a_model_that_cannot() -> None:
    model = SlotSharingModel(team)
    search = CachedSearch(MemorySearch(dict(PASSAGES)))
    await Orchestrator(model, search, stream=EventStream([]), run_id="r", agents=2, opening_search=False).run(
        QUESTION
    )
    assert model.shared == []
    await Orchestrator(model, search, stream=EventStream([]), run_id="r1", agents=2, share_prefix=False).run(
        QUESTION
    )
    assert model.shared == []  # turned off (`share_prefix = false` in the settings)
    sink = ListSink()
    await Orchestrator(FunctionModel(team), search, stream=EventStream([sink]), run_id="r2", agents=2).run(
        QUESTION
    )
    assert all(e.purpose != "prefix" for e in sink.of("ModelCalled"))
