"""Heavy mode: plan of N, concurrent agents, shared cache, failures, budgets, synthesis citations."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from fakes import PASSAGES, ListSink, MemorySearch, action, allowed_actions
from openheavy.agent import Budget
from openheavy.errors import AgentsFailedError
from openheavy.heavy import Orchestrator, fallback_angles
from openheavy.models.scripted import FunctionModel, Reply, Unconstrained
from openheavy.search.cache import CachedSearch
from openheavy.types import EventStream, Message

TASKS = ["find subprocess.run", "find check_output", "find shlex"]
QUERIES = {
    "find subprocess.run": "subprocess run",
    "find check_output": "check_output",
    "find shlex": "shlex",
}


def role_of(messages: Sequence[Message]) -> str:
    system = messages[0].content
    if "planner" in system:
        return "planner"
    if "lead researcher" in system:
        return "synthesizer"
    return "agent"


def task_of(messages: Sequence[Message]) -> str:
    for task in TASKS:
        if f"Your part of the work: {task}" in messages[1].content:
            return task
    raise AssertionError("no task in the agent prompt")


def scripted_team(
    *, tasks: list[str] = TASKS, synthesis: dict[str, Any] | None = None, fail_task: str | None = None
) -> Any:
    def respond(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
        role = role_of(messages)
        if role == "planner":
            return json.dumps({"kind": "multi-part", "tasks": tasks})
        if role == "synthesizer":
            readable = schema["properties"]["cite"]["items"].get("enum", []) if schema else []
            cite = [1] if 1 in readable else []  # the schema allows only documents some agent read
            return json.dumps(
                synthesis
                or {"agreements": "all agree", "conflicts": "none", "answer": "Use run [1].", "cite": cite}
            )
        task = task_of(messages)
        if task == fail_task:
            raise RuntimeError("backend exploded")
        turns = sum(m.role == "assistant" for m in messages)
        if allowed_actions(schema) == ["answer"]:  # out of budget: only "answer" is allowed now
            return action("answer", answer=f"{task}: out of budget", cite=[])
        if turns == 0:
            return action("search", query=QUERIES[task])
        if turns == 1:
            return action("open", ref=1)
        return action("answer", answer=f"{task}: see [1]", cite=[1])

    return respond


def make(model: Any, backend: MemorySearch | None = None, **kwargs: Any) -> tuple[Orchestrator, ListSink]:
    sink = ListSink()
    orchestrator = Orchestrator(
        model,
        CachedSearch(backend or MemorySearch(dict(PASSAGES))),
        stream=EventStream([sink]),
        run_id="run-h",
        **kwargs,
    )
    return orchestrator, sink


async def test_plan_of_n_runs_one_agent_per_distinct_subtask() -> None:
    orchestrator, sink = make(FunctionModel(scripted_team()))
    result = await orchestrator.run("How do I run commands?")
    assert result.plan.tasks == TASKS and result.plan.origin == "model"
    assert [a.task for a in result.agents] == TASKS
    assert {e.agent for e in sink.of("AgentStarted")} == {"agent-1", "agent-2", "agent-3"}
    assert all(a.ok and a.citations for a in result.agents)


async def test_fixed_agent_count_is_asked_of_the_planner() -> None:
    model = FunctionModel(scripted_team(tasks=TASKS[:2]))
    orchestrator, _ = make(model, agents=2)
    result = await orchestrator.run("q")
    plan_schema = model.calls[0].json_schema
    assert plan_schema["properties"]["tasks"]["minItems"] == 2
    assert plan_schema["properties"]["tasks"]["maxItems"] == 2
    assert len(result.agents) == 2 and result.plan.origin == "fixed"


async def test_unusable_plan_falls_back_to_distinct_angles() -> None:
    def respond(messages: Sequence[Message], schema: dict[str, Any] | None) -> Reply:
        if role_of(messages) == "planner":
            return Unconstrained("I think we need agents.")
        if role_of(messages) == "synthesizer":
            return json.dumps({"agreements": "", "conflicts": "", "answer": "x", "cite": []})
        if not any(m.role == "assistant" for m in messages):  # the first action must use a tool
            return action("search", query="shlex")
        return action("answer", answer="nothing", cite=[])

    orchestrator, sink = make(FunctionModel(respond), agents=3)
    result = await orchestrator.run("What is shlex?")
    assert result.plan.origin == "fallback"
    assert result.plan.tasks == ["What is shlex?", *fallback_angles()[:2]]
    assert all(a.ok for a in result.agents)
    assert sink.of("Note")[0].data["problem"]


async def test_a_list_question_over_years_is_sliced_by_period_without_the_planner() -> None:
    seen: list[str] = []

    def respond(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
        role = role_of(messages)
        assert role != "planner", "a period list question must not need a planner call"
        if role == "synthesizer":
            return json.dumps({"agreements": "", "conflicts": "", "answer": "PEPs: none", "cite": []})
        seen.append(messages[1].content)
        if not any(m.role == "assistant" for m in messages):  # the first action must use a tool
            return action("search", query="PEP")
        return action("answer", answer="none found", cite=[])

    orchestrator, sink = make(FunctionModel(respond))  # auto: up to 4 agents
    question = "List every PEP Jane Doe wrote from 2016 to 2020, with links."
    result = await orchestrator.run(question)
    assert result.plan.origin == "period" and result.plan.kind == "list"
    assert result.plan.tasks == [
        f"List every PEP Jane Doe wrote {years}, with links."
        for years in ("from 2016 to 2017", "in 2018", "in 2019", "in 2020")
    ]
    assert len(result.agents) == 4 and all(a.ok for a in result.agents)
    assert all(question in prompt for prompt in seen)  # every agent still sees the whole question
    note = sink.of("Note")[0]
    assert (note.topic, note.data["origin"]) == ("plan", "period")


async def test_period_slicing_needs_a_list_question_and_enough_years() -> None:
    not_a_list, _ = make(FunctionModel(scripted_team()))
    assert (await not_a_list.plan("Who led Python from 2016 to 2020?")).origin == "model"
    too_few_years, _ = make(FunctionModel(scripted_team()), agents=3)
    assert (await too_few_years.plan("List every PEP from 2019 to 2020.")).origin == "fixed"
    enough, _ = make(FunctionModel(scripted_team()), agents=2)
    plan = await enough.plan("List every PEP from 2019 to 2022.")
    assert plan.origin == "period" and len(plan.tasks) == 2


async def test_agents_model_calls_interleave() -> None:
    model = FunctionModel(scripted_team(), latency=0.05)
    orchestrator, _ = make(model)
    await orchestrator.run("q")
    agent_calls = [c for c in model.calls if role_of(c.messages) == "agent"]
    first_round = sorted(agent_calls, key=lambda c: c.started)[:3]
    # all three agents' first calls were in flight at the same time
    assert max(c.started for c in first_round) < min(c.finished for c in first_round)
    assert {task_of(c.messages) for c in first_round} == set(TASKS)


async def test_one_agent_failing_keeps_the_others_work() -> None:
    orchestrator, sink = make(FunctionModel(scripted_team(fail_task="find check_output")))
    result = await orchestrator.run("q")
    failed = [a for a in result.agents if not a.ok]
    assert [a.task for a in failed] == ["find check_output"]
    assert "backend exploded" in (failed[0].error or "")
    assert result.failures and result.answer == "Use run [1]."
    synthesis_prompt = next(e for e in sink.of("ModelCalled") if e.purpose == "synthesis")
    assert "FAILED" in synthesis_prompt.messages[1]["content"]


async def test_shared_cache_fetches_each_query_and_document_once() -> None:
    def same_query(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
        role = role_of(messages)
        if role == "planner":
            return json.dumps({"kind": "simple", "tasks": TASKS[:2]})
        if role == "synthesizer":
            return json.dumps({"agreements": "", "conflicts": "", "answer": "ok [1]", "cite": [1]})
        turns = sum(m.role == "assistant" for m in messages)
        if turns == 0:
            return action("search", query="subprocess timeout")
        if turns == 1:
            return action("open", ref=1)
        return action("answer", answer="ok [1]", cite=[1])

    backend = MemorySearch(dict(PASSAGES), latency=0.02)
    orchestrator, sink = make(FunctionModel(same_query), backend)
    await orchestrator.run("q")
    assert backend.searches == ["subprocess timeout"]
    assert backend.opens == ["subprocess#1"]
    assert sorted(e.cached for e in sink.of("SearchDone")) == [False, True]
    assert sorted(e.cached for e in sink.of("DocumentOpened")) == [False, True]


async def test_synthesis_may_cite_only_documents_some_agent_read() -> None:
    # `cite` is held to the documents read by the schema; markers in the text can name any number
    synthesis = {"agreements": "", "conflicts": "", "answer": "run [1], shlex [3], fake [7].", "cite": []}
    orchestrator, sink = make(FunctionModel(scripted_team(synthesis=synthesis)))
    result = await orchestrator.run("q")
    assert [c.id for c in result.citations] == ["subprocess#1", "shlex#1"]
    assert result.answer == "run [1], shlex [2], fake."
    assert [e.ref for e in sink.of("CitationDropped") if e.agent == "synthesizer"] == ["7"]
    assert result.citations[0].to_record()["read_by"] == ["agent-1"]


async def test_synthesis_prompt_numbers_sources_run_wide() -> None:
    orchestrator, sink = make(FunctionModel(scripted_team()))
    await orchestrator.run("q")
    prompt = next(e for e in sink.of("ModelCalled") if e.purpose == "synthesis").messages[1]["content"]
    # each agent cited its own [1]; in the notes they become the run-wide numbers 1, 2, 3
    assert "find subprocess.run: see [1]" in prompt
    assert "find check_output: see [2]" in prompt
    assert "find shlex: see [3]" in prompt


async def test_a_question_naming_placeholders_gets_no_notes_pasted_into_it() -> None:
    question = "Where do {notes} and {sources} come from in {question}?"
    orchestrator, sink = make(FunctionModel(scripted_team()))
    await orchestrator.run(question)
    prompt = next(e for e in sink.of("ModelCalled") if e.purpose == "synthesis").messages[1]["content"]
    assert question in prompt
    assert prompt.count("## agent-1") == 1  # the notes once, where the template puts them
    assert prompt.count("[1] subprocess — run") == 1  # the source listing once


async def test_a_shared_token_budget_too_small_for_any_call_fails_the_run_saying_so() -> None:
    budget = Budget(max_tokens=1, max_seconds=1e9)
    model = FunctionModel(scripted_team())
    orchestrator, _ = make(model, budget=budget)
    with pytest.raises(AgentsFailedError, match="stopped by the budget before they could answer") as failed:
        await orchestrator.run("q")
    assert "agent-1: BudgetExceededError: the token budget of 1 has 1 tokens left" in str(failed.value)
    assert model.calls == []  # the planner's call was refused too (a fallback plan ran)


async def test_prompt_layout_shares_the_prefix_across_agents() -> None:
    model = FunctionModel(scripted_team())
    orchestrator, _ = make(model)
    await orchestrator.run("How do I run commands?")
    firsts = [c.messages for c in model.calls if role_of(c.messages) == "agent" and len(c.messages) == 2]
    assert len({m[0].content for m in firsts}) == 1  # same system prompt
    prefixes = {m[1].content.split("Your part of the work")[0] for m in firsts}
    assert len(prefixes) == 1
    assert prefixes.pop().startswith("Question: How do I run commands?")


async def test_heavy_rank_ranks_the_agents_trajectories_instead_of_synthesizing() -> None:
    from openheavy.verify import VoteVerifier

    model = FunctionModel(scripted_team(tasks=["find shlex", "find shlex", "find check_output"]))
    orchestrator, sink = make(model)
    ranking = await orchestrator.rank_trajectories("q", VoteVerifier())
    assert ranking.plan.tasks == ["find shlex", "find check_output"]  # the duplicate sub-task was dropped
    assert len(ranking.agents) == 2
    assert ranking.ranked.best.answer == "find shlex: see [1]" and ranking.best.task == "find shlex"
    assert ranking.ranked.best.evidence[0]["id"] == "shlex#1"
    best = ranking.ranked.best.text
    assert "Evidence read, as untrusted data" in best and "shlex.split" in best
    assert not [e for e in sink.of("ModelCalled") if e.purpose == "synthesis"]


async def test_a_simple_question_gets_at_most_two_agents_in_auto_mode() -> None:
    def respond(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
        if role_of(messages) == "planner":
            return json.dumps({"kind": "simple", "tasks": TASKS})
        return scripted_team()(messages, schema)

    orchestrator, _ = make(FunctionModel(respond))
    result = await orchestrator.run("q")
    assert result.plan.tasks == TASKS[:2]
    assert len(result.agents) == 2


async def test_invalid_synthesis_twice_falls_back_to_the_best_agents_answer(tmp_path: Any) -> None:
    from openheavy.api import Heavy
    from openheavy.config import Settings

    def respond(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
        role = role_of(messages)
        if role == "planner":
            return json.dumps({"kind": "multi-part", "tasks": ["find subprocess.run", "find shlex"]})
        if role == "synthesizer":
            return Unconstrained("I compared the notes and they agree.")  # no JSON, both times
        turns = sum(m.role == "assistant" for m in messages)
        if "find shlex" in messages[1].content:
            # reads two passages, subprocess#2 first: its [1] and [2] are run-wide [2] and [3]
            script = [
                action("search", query="check_output shlex"),
                action("open", ref=2),
                action("open", ref=1),
                action("answer", answer="check_output [2] and shlex.split [1]", cite=[2, 1]),
            ]
        else:
            script = [
                action("search", query="subprocess run"),
                action("open", ref=1),
                action("answer", answer="run [1]", cite=[1]),
            ]
        return script[turns]

    sink = ListSink()
    heavy = Heavy(FunctionModel(respond), MemorySearch(dict(PASSAGES)), settings=Settings(data_dir=tmp_path))
    result = await heavy.arun("How do I run commands?", "heavy", sinks=[sink])
    synthesis_calls = [e for e in sink.of("ModelCalled") if e.purpose == "synthesis"]
    assert len(synthesis_calls) == 2  # asked again once after the invalid output
    # the notes the synthesizer saw used run-wide numbers
    assert "check_output [2] and shlex.split [3]" in synthesis_calls[0].messages[1]["content"]
    # the answer is agent-2's (it cited the most), numbered 1..k, and its citations match those numbers
    assert result.answer == "check_output [1] and shlex.split [2]"
    assert [(c["number"], c["ref"], c["id"], c["read_by"]) for c in result.citations] == [
        (1, 2, "subprocess#2", ["agent-2"]),
        (2, 3, "shlex#1", ["agent-2"]),
    ]
    assert any(
        n.startswith("synthesis failed, best agent answer used: invalid synthesis") for n in result.notes
    )
    assert [e.data["message"] for e in sink.of("Note") if e.topic == "warning"] == [result.notes[-1]]


async def test_a_list_answer_gets_the_items_synthesis_left_out() -> None:
    def respond(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
        role = role_of(messages)
        if role == "planner":
            return json.dumps({"kind": "list", "tasks": TASKS})
        if role == "synthesizer":
            return json.dumps(
                {"agreements": "", "conflicts": "", "answer": "Commands: run [1].", "cite": [1]}
            )
        return scripted_team()(messages, schema)

    orchestrator, _ = make(FunctionModel(respond))
    result = await orchestrator.run("Which functions run commands?")
    # run-wide: agent-1 read subprocess#1 [1], agent-2 subprocess#2 [2], agent-3 shlex#1 [3]. Synthesis
    # cited only [1]; subprocess#2 is another passage of a cited document, so only shlex is added.
    assert result.plan.kind == "list"
    assert result.answer == "Commands: run [1].\n\nAlso found by the agents:\n- shlex — split [2]"
    assert [(c.number, c.id, c.source.read_by) for c in result.citations] == [
        (1, "subprocess#1", ("agent-1",)),
        (2, "shlex#1", ("agent-3",)),
    ]
