"""Heavy mode: plans with distinct queries and checked partitions, concurrent agents, shared cache,
failures, budgets, and merging by the answer's shape (vote, list union, synthesis)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from fakes import PASSAGES, ListSink, MemorySearch, action, allowed_actions, plan_reply
from openheavy.agent import SHORT_MAX_CHARS, Budget
from openheavy.citations import cited_numbers
from openheavy.display.formatting import describe_vote
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
    if "A program will test every document" in system:
        return "checker"
    return "agent"


def task_of(messages: Sequence[Message]) -> str:
    for task in TASKS:
        # a part names its task; a short answer's agents answer the question and differ by their queries
        if (
            f"Your part of the work: {task}" in messages[1].content
            or f'Search first for: "{QUERIES[task]}"' in messages[1].content
        ):
            return task
    raise AssertionError("no task in the agent prompt")


def synthesis_reply(answer: str, cite: list[int], short: str = "") -> str:
    return json.dumps({"agreements": "", "conflicts": "", "short": short, "answer": answer, "cite": cite})


def scripted_team(
    *,
    tasks: list[str] = TASKS,
    synthesis: dict[str, Any] | None = None,
    fail_task: str | None = None,
    shape: str = "long",
) -> Any:
    def respond(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
        role = role_of(messages)
        if role == "planner":
            return json.dumps(plan_reply(tasks, shape=shape, queries=[[QUERIES[t]] for t in tasks]))
        if role == "synthesizer":
            readable = schema["properties"]["cite"]["items"].get("enum", []) if schema else []
            cite = [1] if 1 in readable else []  # the schema allows only documents some agent read
            return json.dumps(
                synthesis
                or {
                    "agreements": "all agree",
                    "conflicts": "none",
                    "short": "",
                    "answer": "Use run [1].",
                    "cite": cite,
                }
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
        # the opening search and the planned first search have their own tests (test_opening.py)
        **{"opening_search": False, "planned_search": False, **kwargs},
    )
    return orchestrator, sink


async def test_plan_of_n_runs_one_agent_per_distinct_subtask() -> None:
    model = FunctionModel(scripted_team())
    orchestrator, sink = make(model)
    result = await orchestrator.run("How do I run commands?")
    assert result.plan.tasks == TASKS and result.plan.origin == "model"
    assert [a.queries for a in result.plan.assignments] == [(QUERIES[t],) for t in TASKS]
    assert [a.task for a in result.agents] == TASKS
    assert {e.agent for e in sink.of("AgentStarted")} == {"agent-1", "agent-2", "agent-3"}
    assert all(a.ok and a.citations for a in result.agents)
    # each agent is told its own first queries, after the shared question
    firsts = [
        c.messages[1].content for c in model.calls if role_of(c.messages) == "agent" and len(c.messages) == 2
    ]
    assert sorted(f'Search first for: "{QUERIES[t]}"' in m for t in TASKS for m in firsts).count(True) == 3
    [plan] = sink.of("PlanMade")
    assert (plan.shape, plan.origin, plan.problems) == ("long", "model", [])
    assert plan.assignments[0] == {"task": TASKS[0], "queries": ["subprocess run"]}


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
            return synthesis_reply("x", [])
        if not any(m.role == "assistant" for m in messages):  # the first action must use a tool
            return action("search", query="shlex")
        return action("answer", answer="nothing", cite=[])

    orchestrator, sink = make(FunctionModel(respond), agents=3)
    question = "How does shlex split a shell command line?"
    result = await orchestrator.run(question)
    assert result.plan.origin == "fallback"
    assert result.plan.tasks == [question, *fallback_angles()[:2]]
    assert all(a.ok for a in result.agents)
    [plan] = sink.of("PlanMade")
    assert "ValueError" in plan.problems[0]
    # even without a planner, each agent starts from other words of the question
    queries = [a.queries for a in result.plan.assignments]
    assert all(len(q) == 1 for q in queries) and len({q[0] for q in queries}) == 3


def list_team(
    plan: dict[str, Any], answers: dict[str, tuple[str, str, list[int]]], seen: list[str] | None = None
) -> Any:
    """A planner that replies `plan`, and agents that each search, open result 1 and answer; an agent's
    script is the entry of `answers` (query, answer, cite) whose key is in its prompt."""

    def respond(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
        role = role_of(messages)
        if role == "planner":
            return json.dumps(plan)
        if role == "synthesizer":
            return synthesis_reply("synthesized", [])
        if seen is not None and len(messages) == 2:
            seen.append(messages[1].content)
        key = next(k for k in answers if k in messages[1].content)
        query, answer, cite = answers[key]
        turns = sum(m.role == "assistant" for m in messages)
        if turns == 0:
            return action("search", query=query)
        if turns == 1 and cite:
            return action("open", ref=1)
        return action("answer", answer=answer, cite=cite)

    return respond


async def test_a_list_question_is_split_by_the_planners_facet_one_slice_per_agent() -> None:
    plan = plan_reply(
        ["PEPs by Jane"],
        shape="list",
        facet="year",
        values=["2016", "2017", "2018", "2019", "2020"],
        queries=[["Jane Doe PEP"]],
    )
    seen: list[str] = []
    answers = {y: ("PEP", "none found", []) for y in ("2016 to 2017", "2018", "2019", "2020")}
    orchestrator, sink = make(FunctionModel(list_team(plan, answers, seen)))  # auto: up to 4 agents
    question = "List every PEP Jane Doe wrote from 2016 to 2020, with links."
    result = await orchestrator.plan(question)
    assert result.shape == "list" and result.partition is not None
    assert result.partition.origin == "planner"
    # five years, four agents: contiguous slices that cover the span without overlap
    assert result.partition.slices == ("2016 to 2017", "2018", "2019", "2020")
    assert [a.slice for a in result.assignments] == ["2016 to 2017", "2018", "2019", "2020"]
    assert [a.queries for a in result.assignments] == [
        ("Jane Doe PEP 2016 to 2017",),
        ("Jane Doe PEP 2018",),
        ("Jane Doe PEP 2019",),
        ("Jane Doe PEP 2020",),
    ]
    await orchestrator.research(question, result)
    assert len(seen) == 4 and all(question in prompt for prompt in seen)  # everyone sees the question
    assert any("the items whose year is 2018" in prompt for prompt in seen)
    [event] = sink.of("PlanMade")
    assert event.partition["slices"] == list(result.partition.slices)


async def test_bad_numeric_values_are_repaired_from_the_span_the_question_names() -> None:
    plan = plan_reply(
        ["PEPs", "more PEPs"],
        shape="list",
        facet="year",
        values=["2016", "2018"],
        queries=[["Jane Doe PEP"], ["Doe"]],
    )
    orchestrator, _ = make(FunctionModel(list_team(plan, {})), agents=2)
    result = await orchestrator.plan("List every PEP Jane Doe wrote from 2016 to 2019.")
    assert result.partition is not None and result.partition.origin == "span"
    assert result.partition.slices == ("2016 to 2017", "2018 to 2019")
    assert "the values leave out 2017" in result.problems


async def test_a_list_question_without_numbers_is_split_by_a_named_facet() -> None:
    plan = plan_reply(
        ["Final ones", "Draft ones", "the rest"],
        shape="list",
        facet="status",
        values=["Final", "Draft", "Final"],
        queries=[["typing PEP final"], ["typing PEP draft"], ["typing PEP draft"]],
    )
    orchestrator, _ = make(FunctionModel(list_team(plan, {})), agents=3)
    result = await orchestrator.plan("List every PEP in the Typing topic.")
    assert result.partition is not None and result.partition.slices == ("Final", "Draft")
    assert "value 'Final' overlaps 'Final'" in result.problems
    # three agents, two slices: the third covers the whole list from another angle, with a query of its
    # own (its planned one repeats a slice's search)
    assert [a.slice for a in result.assignments] == ["Final", "Draft", ""]
    assert [a.queries for a in result.assignments][:2] == [("typing PEP final",), ("typing PEP draft",)]
    assert result.assignments[2].task == "the rest"
    assert result.assignments[2].queries and result.assignments[2].queries[0] not in {
        "typing PEP final",
        "typing PEP draft",
    }


async def test_an_unusable_partition_falls_back_to_distinct_query_angles() -> None:
    # the old failure: steps of work instead of slices, and the same query for everyone
    plan = plan_reply(
        ["find the PEPs", "organize them", "add links"],
        shape="list",
        facet="",
        values=["find", "organize", "add links"],
        queries=[["typing PEPs"], ["typing PEPs"], ["PEPs typing"]],
    )
    orchestrator, sink = make(FunctionModel(list_team(plan, {})), agents=3)
    question = "List every PEP in the Typing topic whose status is Final, with links."
    result = await orchestrator.plan(question)
    assert result.shape == "list" and result.partition is not None
    assert (result.partition.origin, result.partition.slices) == ("fallback", ())
    queries = [a.queries[0] for a in result.assignments]
    assert queries[0] == "typing PEPs" and len(set(queries)) == 3
    assert any("repeats agent-1's search" in p for p in result.problems)
    [event] = sink.of("PlanMade")
    assert event.partition["origin"] == "fallback" and event.problems == list(result.problems)


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


async def test_shared_cache_fetches_each_document_once() -> None:
    def two_queries(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
        role = role_of(messages)
        if role == "planner":
            return json.dumps(plan_reply(TASKS[:2], shape="short"))
        if role == "synthesizer":
            return synthesis_reply("ok [1]", [1])
        turns = sum(m.role == "assistant" for m in messages)
        if turns == 0:  # two searches whose first result is the same passage
            return action(
                # a short answer's brief names the agent's first queries (the task's last word), not its task
                "search",
                query="subprocess timeout"
                if f'"{TASKS[0].split()[-1]}"' in messages[1].content
                else "expires",
            )
        if turns == 1:
            return action("open", ref=1)
        return action("answer", answer="ok [1]", cite=[1])

    backend = MemorySearch(dict(PASSAGES), latency=0.02)
    orchestrator, sink = make(FunctionModel(two_queries), backend)
    await orchestrator.run("q")
    assert sorted(backend.searches) == ["expires", "subprocess timeout"]
    assert backend.opens == ["subprocess#1"]
    assert sorted(e.cached for e in sink.of("DocumentOpened")) == [False, True]


async def test_synthesis_may_cite_only_documents_some_agent_read() -> None:
    # `cite` is held to the documents read by the schema; markers in the text can name any number
    synthesis = {
        "agreements": "",
        "conflicts": "",
        "short": "",
        "answer": "run [1], shlex [3], fake [7].",
        "cite": [],
    }
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
    # the vote compares short answers; the tie goes to the greedy first agent
    assert ranking.ranked.best.answer == "find shlex: see" and ranking.best.task == "find shlex"
    assert ranking.best.answer == "find shlex: see [1]"
    assert [c.temperature for c in model.calls if role_of(c.messages) == "agent"][:1] == [0.0]
    assert ranking.ranked.best.evidence[0]["id"] == "shlex#1"
    best = ranking.ranked.best.text
    assert "Evidence read, as untrusted data" in best and "shlex.split" in best
    assert not [e for e in sink.of("ModelCalled") if e.purpose == "synthesis"]


async def test_in_auto_mode_the_planner_decides_how_many_agents_run() -> None:
    orchestrator, sink = make(FunctionModel(scripted_team(tasks=TASKS[:2])))
    result = await orchestrator.run("q")
    assert result.plan.tasks == TASKS[:2] and result.plan.origin == "model"
    assert len(result.agents) == 2
    assert sink.of("ModelCalled")[0].json_schema["properties"]["tasks"]["maxItems"] == 4


async def test_invalid_synthesis_twice_falls_back_to_the_best_agents_answer(tmp_path: Any) -> None:
    from openheavy.api import Heavy
    from openheavy.config import Settings

    def respond(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
        role = role_of(messages)
        if role == "planner":
            return json.dumps(plan_reply(["find subprocess.run", "find shlex"]))
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
    # the script numbers its own results and picks its own first search
    settings = Settings(data_dir=tmp_path, opening_search=False, planned_search=False)
    heavy = Heavy(FunctionModel(respond), MemorySearch(dict(PASSAGES)), settings=settings)
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


# ---------------------------------------------------------------- distinct first queries


async def test_near_duplicate_and_copied_queries_are_replaced_with_distinct_ones() -> None:
    question = "How do I stop subprocess.run from waiting forever on a command that hangs?"
    tasks = ["the timeout argument", "the exception raised", "alternatives", "shell quoting"]
    planned = [
        ["subprocess timeout"],
        ["Subprocess timeouts"],  # the same search, give or take a plural and a capital
        [question],  # the question's own wording
        ["shlex quoting"],
    ]
    plan = plan_reply(tasks, shape="short", queries=planned)
    seen: list[str] = []
    # each agent searches in its own words: a team never runs one search twice
    answers = {t: (f"subprocess {t.split()[-1]}", f"{t} [1]", [1]) for t in tasks}
    orchestrator, sink = make(FunctionModel(list_team(plan, answers, seen)), agents=4)
    result = await orchestrator.plan(question)
    queries = [a.queries[0] for a in result.assignments]
    assert queries[0] == "subprocess timeout" and queries[3] == "shlex quoting"
    assert queries[1] not in ("Subprocess timeouts", "subprocess timeout")
    assert queries[2] != question
    assert len({frozenset(q.casefold().split()) for q in queries}) == 4
    problems = sink.of("PlanMade")[0].problems
    assert "agent-2: query 'Subprocess timeouts' repeats agent-1's search" in problems
    assert any(p.startswith("agent-3: query") and "copies the question" in p for p in problems)
    # the agents are told their own queries, after the shared question
    await orchestrator.research(question, result)
    assert sorted(any(f'"{q}"' in prompt for prompt in seen) for q in queries) == [True] * 4
    assert all(prompt.startswith(f"Question: {question}\n") for prompt in seen)


async def test_an_agent_whose_assignment_repeats_another_samples_with_temperature() -> None:
    # "What is x?" has one content word: the fallback cannot give two agents different queries
    def respond(messages: Sequence[Message], schema: dict[str, Any] | None) -> Reply:
        if role_of(messages) == "planner":
            return Unconstrained("no plan")
        if role_of(messages) == "synthesizer":
            return synthesis_reply("x", [])
        if not any(m.role == "assistant" for m in messages):
            return action("search", query="x")
        return action("answer", answer="nothing", cite=[])

    model = FunctionModel(respond)
    orchestrator, _ = make(model, agents=2, temperature=0.0)
    plan = await orchestrator.plan("What is shlex?")
    assert plan.assignments[0].queries == ("shlex",) and plan.assignments[1].queries == ()
    await orchestrator.research("What is shlex?", plan)
    temperatures = {c.temperature for c in model.calls if role_of(c.messages) == "agent"}
    assert temperatures == {0.0}  # the tasks differ (question, fallback angle): no need to sample
    duplicated = replace(plan, assignments=(plan.assignments[0], plan.assignments[0]))
    model.calls.clear()
    await orchestrator.research("What is shlex?", duplicated)
    by_seed = {c.seed: c.temperature for c in model.calls if role_of(c.messages) == "agent"}
    assert by_seed == {1: 0.0, 2: 0.4}  # distinct seeds; the repeat samples


# ---------------------------------------------------------------- merging by the answer's shape


def short_team(plan: dict[str, Any], scripts: dict[str, tuple[str, ...]], synthesis: str = "") -> Any:
    """Agents that search their planned query, open result 1 and answer: `scripts[task]` is (query,
    answer) or (query, answer, short). The synthesizer, if called, answers `synthesis`."""

    def respond(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
        role = role_of(messages)
        if role == "planner":
            return json.dumps(plan)
        if role == "synthesizer":
            return synthesis_reply(synthesis, [], short=synthesis)
        # a part or slice is named in the brief; a short answer's agent is known by its first query
        brief = messages[1].content
        task = next(t for t in scripts if t in brief or f'Search first for: "{scripts[t][0]}"' in brief)
        query, answer, *short = scripts[task]
        turns = sum(m.role == "assistant" for m in messages)
        if turns == 0:
            return action("search", query=query)
        if turns == 1:
            return action("open", ref=1)
        return action("answer", answer=answer, cite=[1], **({"short": short[0]} if short else {}))

    return respond


NOVELISTS = {
    "farrell#1": ("J. G. Farrell", "J. G. Farrell wrote The Siege of Krishnapur (1973)."),
    "aragon#1": ("Louis Aragon", "Louis Aragon was a French poet and novelist."),
    "siege#1": ("The Siege of Krishnapur", "The Siege of Krishnapur is a novel by J. G. Farrell."),
}
NOVEL_QUESTION = "Which novelist, J. G. Farrell or Louis Aragon, wrote The Siege of Krishnapur?"


async def test_a_short_answers_agents_are_told_their_queries_not_a_reworded_question() -> None:
    # The default model's planner turned "… co-founder of what outlet?" into "What was Jaspan's role in
    # founding it?", and agents told that answered "co-founder". Each agent answers the question itself.
    tasks = ["What was Farrell's role in the siege?", "When was the novel published?"]
    scripts = {
        tasks[0]: ("siege krishnapur", "J. G. Farrell [1].", "J. G. Farrell"),
        tasks[1]: ("farrell", "J. G. Farrell [1].", "J. G. Farrell"),
    }
    plan = plan_reply(tasks, shape="short", queries=[[scripts[t][0]] for t in tasks])
    model = FunctionModel(short_team(plan, scripts))
    orchestrator, sink = make(model, MemorySearch(dict(NOVELISTS)), agents=2, planned_search=True)
    result = await orchestrator.run("Who wrote The Siege of Krishnapur?")
    agents = [c.messages for c in model.calls if role_of(c.messages) == "agent"]
    firsts = [messages[1].content for messages in agents]
    assert firsts and all("Question: Who wrote The Siege of Krishnapur?" in text for text in firsts)
    # nowhere in what they are shown: not in the brief, nor as the "missing" of their planned search
    assert not any(task in m.content for messages in agents for m in messages for task in tasks)
    assert {e.task for e in sink.of("AgentStarted")} == {"Who wrote The Siege of Krishnapur?"}
    assert {q for q in ("siege krishnapur", "farrell") if any(f'"{q}"' in t for t in firsts)} == {
        "siege krishnapur",
        "farrell",
    }
    assert result.plan.tasks == tasks and result.short_answer == "J. G. Farrell"


async def test_three_agreeing_short_answers_outvote_one_verbose_dissent_without_synthesis() -> None:
    tasks = ["angle one", "angle two", "angle three", "angle four"]
    scripts = {
        "angle one": ("siege krishnapur", "J. G. Farrell [1]."),
        "angle two": ("farrell", "J. G. Farrell. He wrote it in 1973 [1]."),
        "angle three": ("krishnapur novel", "J. G. Farrell [1]"),
        "angle four": (
            "aragon",
            "Louis Aragon. He was a prolific French novelist, and the siege it describes fits the themes "
            "of his long, detailed and very carefully argued work [1].",
        ),
    }
    plan = plan_reply(tasks, shape="short", queries=[[scripts[t][0]] for t in tasks])
    model = FunctionModel(short_team(plan, scripts, synthesis="Louis Aragon"))
    orchestrator, sink = make(model, MemorySearch(dict(NOVELISTS)), agents=4)
    result = await orchestrator.run(NOVEL_QUESTION)
    assert result.answer.startswith("J. G. Farrell")
    assert "Aragon" not in result.answer
    assert not [c for c in model.calls if role_of(c.messages) == "synthesizer"]  # the vote decided
    [vote] = sink.of("VoteTaken")
    assert (vote.winner, vote.decided_by) == ("J. G. Farrell", "majority")
    assert vote.candidates[0] == {"answer": "J. G. Farrell", "agents": ["agent-1", "agent-2", "agent-3"]}
    assert vote.candidates[1]["agents"] == ["agent-4"]
    # the answer cites what the agreeing agents read, and nothing only the dissenter read
    assert {c.id for c in result.citations} == {"siege#1", "farrell#1"}


async def test_a_tie_goes_to_the_synthesizer_which_sees_the_candidates() -> None:
    tasks = ["angle one", "angle two"]
    scripts = {"angle one": ("farrell", "J. G. Farrell [1]."), "angle two": ("aragon", "Louis Aragon [1].")}
    plan = plan_reply(tasks, shape="short", queries=[[scripts[t][0]] for t in tasks])
    model = FunctionModel(short_team(plan, scripts, synthesis="J. G. Farrell"))
    orchestrator, sink = make(model, MemorySearch(dict(NOVELISTS)), agents=2)
    result = await orchestrator.run(NOVEL_QUESTION)
    [synthesis] = [c for c in model.calls if role_of(c.messages) == "synthesizer"]
    assert 'The agents\' short answers disagree: "J. G. Farrell" (agent-1); "Louis Aragon" (agent-2)' in (
        synthesis.messages[1].content
    )
    assert result.answer == "J. G. Farrell"
    [vote] = sink.of("VoteTaken")
    assert (vote.winner, vote.decided_by) == ("J. G. Farrell", "synthesizer")


async def test_answers_worded_apart_that_most_agents_share_a_name_in_decide_without_synthesis() -> None:
    tasks = ["angle one", "angle two", "angle three", "angle four"]
    scripts = {
        "angle one": ("siege krishnapur", "He wrote it in 1973 [1].", "J. G. Farrell wrote it in 1973"),
        "angle two": ("farrell", "The novel is his [1].", "The novelist J. G. Farrell"),
        "angle three": ("aragon", "A French poet [1].", "Louis Aragon, a French poet"),
        "angle four": (
            "krishnapur novel",
            "Farrell wrote it [1].",
            "It was written by Farrell (J. G. Farrell)",
        ),
    }
    plan = plan_reply(tasks, shape="short", queries=[[scripts[t][0]] for t in tasks])
    model = FunctionModel(short_team(plan, scripts, synthesis="Louis Aragon"))
    orchestrator, sink = make(model, MemorySearch(dict(NOVELISTS)), agents=4)
    result = await orchestrator.run("Who wrote The Siege of Krishnapur?")
    assert not [c for c in model.calls if role_of(c.messages) == "synthesizer"]  # no tie to break
    assert result.short_answer == "J. G. Farrell" and result.answer.startswith("J. G. Farrell")
    [vote] = sink.of("VoteTaken")
    assert (vote.winner, vote.decided_by) == ("J. G. Farrell", "shared words")
    assert 'the answers of agent-1, agent-2, agent-4 all say "J. G. Farrell"' in vote.reason
    assert len(vote.candidates) == 4  # every answer as written stays in the record
    assert "aragon#1" not in {c.id for c in result.citations}  # only the agreeing agents' reads


async def test_the_synthesizers_short_answer_cut_at_its_bound_keeps_its_first_clause() -> None:
    tasks = ["angle one", "angle two"]
    scripts = {"angle one": ("farrell", "J. G. Farrell [1]."), "angle two": ("aragon", "Louis Aragon [1].")}
    plan = plan_reply(tasks, shape="short", queries=[[scripts[t][0]] for t in tasks])
    cut = "J. G. Farrell, whose novel about the siege won the Booker Prize in 1973, and who later dr"[:80]
    model = FunctionModel(short_team(plan, scripts, synthesis=cut))
    orchestrator, sink = make(model, MemorySearch(dict(NOVELISTS)), agents=2)
    result = await orchestrator.run("Who wrote The Siege of Krishnapur?")  # names no candidates
    assert result.short_answer == "J. G. Farrell"
    edited = [e for e in sink.of("AnswerEdited") if e.agent == "synthesizer" and e.text == "J. G. Farrell"]
    assert [[edit["kind"] for edit in e.edits] for e in edited] == [["short_answer_cut"]]
    assert edited[0].original == cut


async def test_sources_the_synthesizer_cites_but_never_marks_get_their_markers() -> None:
    # the default model's heavy answer on shallow vs deep copy listed 3 sources and marked no claim
    tasks = ["angle one", "angle two"]
    scripts = {
        "angle one": ("farrell", "An Irish novelist [1]."),
        "angle two": ("aragon", "A French poet [1]."),
    }
    plan = plan_reply(tasks, shape="long", queries=[[scripts[t][0]] for t in tasks])
    unmarked = "Farrell wrote The Siege of Krishnapur in 1973. Aragon was a French poet."

    def respond(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
        if role_of(messages) == "synthesizer":
            return synthesis_reply(unmarked, [1, 2])
        return short_team(plan, scripts)(messages, schema)

    orchestrator, sink = make(FunctionModel(respond), MemorySearch(dict(NOVELISTS)), agents=2)
    result = await orchestrator.run("Who were J. G. Farrell and Louis Aragon?")
    assert cited_numbers(result.answer) == [1, 2] and len(result.citations) == 2
    assert result.answer.startswith("Farrell wrote The Siege of Krishnapur in 1973 [")
    marked = [e for e in sink.of("AnswerEdited") if e.agent == "synthesizer"]
    assert [[edit["kind"] for edit in e.edits] for e in marked] == [["markers_added"]]
    assert marked[0].original == unmarked


async def test_a_synthesis_that_talks_about_its_notes_speaks_to_the_question_instead() -> None:
    # the default model on shallow vs deep copy: its short answer cut right after a comma, its answer
    # about the notes rather than about copying
    tasks = ["angle one", "angle two"]
    scripts = {"angle one": ("farrell", "J. G. Farrell [1]."), "angle two": ("aragon", "A French poet [1].")}
    plan = plan_reply(tasks, shape="long", queries=[[scripts[t][0]] for t in tasks])
    short = "Both notes agree that Farrell wrote The Siege of Krishnapur and that Aragon was,"
    assert len(short) == SHORT_MAX_CHARS

    def respond(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
        if role_of(messages) == "synthesizer":
            return synthesis_reply(
                "Both notes agree that Farrell wrote it [1], Aragon did not [2].", [1, 2], short
            )
        return short_team(plan, scripts)(messages, schema)

    orchestrator, sink = make(FunctionModel(respond), MemorySearch(dict(NOVELISTS)), agents=2)
    result = await orchestrator.run("Who wrote The Siege of Krishnapur, and who was Louis Aragon?")
    assert result.answer == "Farrell wrote it [1], Aragon did not [2]."  # no cut short answer leads it
    assert result.short_answer == ""
    kinds = [[edit["kind"] for edit in e.edits] for e in sink.of("AnswerEdited") if e.agent == "synthesizer"]
    assert kinds == [["note_talk_cut"], ["short_answer_dropped"]]


async def test_a_comparison_the_planner_called_a_list_gets_no_list_merge() -> None:
    # The planner's mistake: a list, one slice per novelist. Each agent researches its novelist; their
    # items are only the question's own candidates, so this is a choice: voted, with no list appended.
    plan = plan_reply(
        ["Farrell", "Aragon"],
        shape="list",
        facet="novelist",
        values=["J. G. Farrell", "Louis Aragon"],
        queries=[["farrell"], ["aragon"]],
    )
    scripts = {  # keyed by each agent's slice
        "novelist is J. G. Farrell": (
            "farrell",
            "J. G. Farrell wrote The Siege of Krishnapur [1].",
            "J. G. Farrell",
        ),
        "novelist is Louis Aragon": (
            "aragon",
            "Louis Aragon, a poet, did not write it [1].",
            "Louis Aragon",
        ),
    }
    model = FunctionModel(short_team(plan, scripts, synthesis="J. G. Farrell"))
    orchestrator, sink = make(model, MemorySearch(dict(NOVELISTS)), agents=2)
    # Worded in the plural, so that the question's form alone does not make it short (as "Which
    # novelist …?" is: `asks_for_one_thing`); the merge still sees a choice.
    result = await orchestrator.run(NOVEL_QUESTION.replace("Which novelist,", "Which novelists,"))
    assert result.plan.shape == "list"
    assert result.answer == "J. G. Farrell"
    assert "Items found" not in result.answer and "Aragon" not in result.answer
    assert not sink.of("ListMerged")
    [vote] = sink.of("VoteTaken")
    assert vote.decided_by == "synthesizer" and "a choice, not a list" in vote.reason


async def test_a_question_for_one_name_the_planner_called_a_list_is_voted() -> None:
    plan = plan_reply(
        ["one", "two"], shape="list", facet="year", values=["1973", "1974"], queries=[["siege"], ["farrell"]]
    )
    scripts = {  # keyed by task; the short answer's agents are told their queries
        "one": ("siege", "J. G. Farrell wrote it [1].", "J. G. Farrell"),
        "two": ("farrell", "J. G. Farrell [1].", "J. G. Farrell"),
    }
    model = FunctionModel(short_team(plan, scripts))
    orchestrator, sink = make(model, MemorySearch(dict(NOVELISTS)), agents=2)
    result = await orchestrator.run("Who wrote The Siege of Krishnapur?")
    assert result.plan.shape == "short" and result.plan.partition is None
    assert any("asks for one name, date, place or number" in p for p in result.plan.problems)
    assert result.short_answer == "J. G. Farrell" and "Items found" not in result.answer
    assert sink.of("VoteTaken")[0].decided_by == "majority" and not sink.of("ListMerged")


async def test_a_yes_no_question_is_never_a_list() -> None:
    plan = plan_reply(
        ["one", "two"],
        shape="list",
        facet="opera",
        values=["Vanessa", "Aida"],
        queries=[["vanessa"], ["aida"]],
    )
    scripts = {
        "one": ("vanessa", "Yes, both have three acts [1].", "Yes"),
        "two": ("aida", "Yes [1]", "Yes"),
    }
    operas = {
        "vanessa#1": ("Vanessa", "Vanessa, an opera in three acts."),
        "aida#1": ("Aida", "Aida: 3 acts"),
    }
    orchestrator, sink = make(FunctionModel(short_team(plan, scripts)), MemorySearch(operas), agents=2)
    result = await orchestrator.run("Do the operas Vanessa and Aida have the same number of acts?")
    assert result.plan.shape == "short" and result.plan.partition is None
    assert "a yes/no question has a short answer, not a list one" in result.plan.problems
    assert result.answer.startswith("Yes")
    assert sink.of("VoteTaken")[0].winner == "Yes" and not sink.of("ListMerged")


async def test_a_list_answer_is_the_deduplicated_union_of_every_agents_items_with_evidence() -> None:
    passages = {
        "pep-0484#1": ("PEP 484 – Type Hints", "Typing: Final. Type hints."),
        "pep-0526#1": ("PEP 526 – Variable Annotations", "Typing: Final. Variable annotations, type hints."),
        "pep-0544#1": ("PEP 544 – Protocols", "Typing: Final. Structural subtyping with protocols."),
    }
    plan = plan_reply(
        ["early", "late"], shape="list", facet="decade", values=["2010s", "2020s"], queries=[["PEP"], ["PEP"]]
    )

    def respond(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
        role = role_of(messages)
        if role == "planner":
            return json.dumps(plan)
        assert role != "synthesizer", "a list is merged in code, not synthesized"
        if role == "checker":  # states no condition to check: the agents' union stands
            return json.dumps({"must_mention": [], "low": 0, "high": 0})
        mine = "2010s" in messages[1].content
        script = (
            [
                action("search", query="type hints"),
                action("open", ref=1),  # pep-0484
                action("open", ref=2),  # pep-0526
                action("answer", answer="- PEP 484, type hints [1]\n- PEP 526 [2]", cite=[1, 2]),
            ]
            if mine
            else [
                action("search", query="protocols annotations"),
                action("open", ref=1),  # pep-0526
                action("open", ref=2),  # pep-0544
                # the same PEP 526 in other words, and one cited with no item text
                action("answer", answer="Variable annotations (PEP 526) [1].", cite=[1, 2]),
            ]
        )
        return script[sum(m.role == "assistant" for m in messages)]

    backend = MemorySearch(passages)
    orchestrator, sink = make(FunctionModel(respond), backend, agents=2)
    # no name spelled with capitals either (those would stand in for the checker's), so no condition
    result = await orchestrator.run("list every final pep in the typing topic.")
    assert result.answer == (
        "Items found (3):\n- PEP 484, type hints [1]\n- PEP 526 [2]\n- PEP 544 – Protocols [3]"
    )
    assert [(c.number, c.id, c.source.read_by) for c in result.citations] == [
        (1, "pep-0484#1", ("agent-1",)),
        (2, "pep-0526#1", ("agent-1", "agent-2")),
        (3, "pep-0544#1", ("agent-2",)),
    ]
    [merged] = sink.of("ListMerged")
    assert merged.duplicates == 1
    assert merged.checks == [] and merged.conditions["names"] == []
    assert merged.items[1] == {
        "text": "PEP 526",
        "documents": ["pep-0526#1"],
        "agents": ["agent-1", "agent-2"],
    }
    assert not sink.of("VoteTaken")


MAGAZINES = {
    "kestrel#1": ("Kestrel Review", "Kestrel Review is a quarterly literary magazine founded in 1990."),
    "harbor#1": ("Harbor Monthly", "Harbor Monthly is a literary magazine about boating and fishing."),
}
BOTH_QUESTION = "Are Kestrel Review and Harbor Monthly both literary magazines?"


def conjunct_team(said: dict[str, list[str]]) -> Any:
    """Agents that search the query their brief gives, open result 1 and answer for the name they were
    given: `said[name]` holds the short answers of that name's agents, in the order they answer ("fail":
    the agent fails)."""
    left = {name: list(answers) for name, answers in said.items()}

    def respond(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
        role = role_of(messages)
        if role == "planner":
            raise AssertionError("a question asked of two names is planned in code")
        if role == "synthesizer":
            return synthesis_reply("Yes, both are [1].", [1], short="Yes")
        brief = messages[1].content
        name = next(n for n in said if f"Your part of the work: {n} alone" in brief)
        query = brief.split("Search first for: ")[1].split('"')[1]
        turns = sum(m.role == "assistant" for m in messages)
        if turns == 0:
            return action("search", query=query)
        if turns == 1:
            return action("open", ref=1)
        short = left[name].pop(0)
        if short == "fail":
            raise RuntimeError(f"the agent checking {name} failed")
        return action("answer", short=short, answer=f"{short}: {name} [1].", cite=[1])

    return respond


async def test_a_yes_no_question_of_two_names_is_checked_name_by_name_and_needs_both() -> None:
    # One name's agents find yes, the other's no: the question is no, whatever the count of yeses.
    model = FunctionModel(conjunct_team({"Kestrel Review": ["Yes", "Yes"], "Harbor Monthly": ["No", "No"]}))
    orchestrator, sink = make(model, MemorySearch(dict(MAGAZINES)), agents=4)
    result = await orchestrator.run(BOTH_QUESTION)
    assert result.plan.origin == "conjuncts" and result.plan.conjuncts == ["Kestrel Review", "Harbor Monthly"]
    [plan] = sink.of("PlanMade")
    assert [a["conjunct"] for a in plan.assignments] == ["Kestrel Review", "Harbor Monthly"] * 2
    # each agent starts from its own query: the name, then the name with the question's other words
    assert [a["queries"] for a in plan.assignments] == [
        ["Kestrel Review"],
        ["Harbor Monthly"],
        ["Kestrel Review literary magazines"],
        ["Harbor Monthly literary magazines"],
    ]
    assert result.short_answer == "No" and result.answer.startswith("No")
    assert "Harbor Monthly" in result.answer and [c.id for c in result.citations] == ["harbor#1"]
    [vote] = sink.of("VoteTaken")
    assert (vote.winner, vote.decided_by) == ("No", "conjuncts")
    assert vote.candidates == [
        {"answer": "Kestrel Review: Yes", "agents": ["agent-1", "agent-3"]},
        {"answer": "Harbor Monthly: No", "agents": ["agent-2", "agent-4"]},
    ]
    assert not [c for c in model.calls if role_of(c.messages) in ("planner", "synthesizer")]


async def test_a_names_yes_that_its_page_does_not_support_is_a_no_in_the_vote() -> None:
    # every agent says yes, but Harbor Monthly's page says "boating and fishing magazine": its agents'
    # yes is not grounded (`grounding`), so the name's verdict, and the question's, is no
    pages = dict(
        MAGAZINES, **{"harbor#1": ("Harbor Monthly", "Harbor Monthly is a boating and fishing magazine.")}
    )
    model = FunctionModel(conjunct_team({"Kestrel Review": ["Yes", "Yes"], "Harbor Monthly": ["Yes", "Yes"]}))
    orchestrator, sink = make(model, MemorySearch(pages), agents=4)
    result = await orchestrator.run(BOTH_QUESTION)
    assert result.short_answer == "No"
    assert result.answer.startswith('No: no passage read about Harbor Monthly says "literary"')
    [vote] = sink.of("VoteTaken")
    assert vote.candidates == [
        {"answer": "Kestrel Review: Yes", "agents": ["agent-1", "agent-3"]},
        {"answer": "Harbor Monthly: No", "agents": ["agent-2", "agent-4"]},
    ]
    edited = {
        e.agent for e in sink.of("AnswerEdited") for edit in e.edits if edit["kind"] == "yes_not_grounded"
    }
    assert edited == {"agent-2", "agent-4"}


async def test_a_yes_needs_every_name_and_an_undecided_name_goes_to_the_plain_vote() -> None:
    model = FunctionModel(conjunct_team({"Kestrel Review": ["Yes", "Yes"], "Harbor Monthly": ["Yes", "Yes"]}))
    orchestrator, sink = make(model, MemorySearch(dict(MAGAZINES)), agents=4)
    result = await orchestrator.run(BOTH_QUESTION)
    assert result.short_answer == "Yes"
    assert {c.id for c in result.citations} == {"kestrel#1", "harbor#1"}  # one answer per name
    assert sink.of("VoteTaken")[0].decided_by == "conjuncts"

    # Harbor Monthly's agents disagree: "both" is not established for it, whatever the count of yeses
    # over all four (3 of 4); the answer is the dissenter's no
    model = FunctionModel(conjunct_team({"Kestrel Review": ["Yes", "Yes"], "Harbor Monthly": ["Yes", "No"]}))
    orchestrator, sink = make(model, MemorySearch(dict(MAGAZINES)), agents=4)
    result = await orchestrator.run(BOTH_QUESTION)
    [vote] = sink.of("VoteTaken")
    assert (vote.winner, vote.decided_by) == ("No", "conjuncts")
    assert vote.candidates[1]["answer"] == "Harbor Monthly: No (its agents disagree)"
    assert result.short_answer == "No" and result.answer.startswith("No")

    # no agent of Harbor Monthly answered: the names do not decide it, and the answers given vote
    model = FunctionModel(
        conjunct_team({"Kestrel Review": ["Yes", "Yes"], "Harbor Monthly": ["fail", "fail"]})
    )
    orchestrator, sink = make(model, MemorySearch(dict(MAGAZINES)), agents=4)
    result = await orchestrator.run(BOTH_QUESTION)
    [vote] = sink.of("VoteTaken")
    assert (vote.winner, vote.decided_by) == ("Yes", "majority")
    assert "Harbor Monthly: undecided" in vote.reason


async def test_answers_that_only_repeat_the_question_do_not_outvote_the_name_found() -> None:
    tasks = ["angle one", "angle two", "angle three", "angle four"]
    scripts = {
        "angle one": ("siege krishnapur", "The Siege of Krishnapur [1].", "The Siege of Krishnapur"),
        "angle two": ("krishnapur novel", "It is the Siege of Krishnapur [1].", "Siege of Krishnapur"),
        "angle three": ("farrell", "J. G. Farrell [1].", "J. G. Farrell"),
        "angle four": ("novelist", "Farrell wrote it [1].", "J. G. Farrell wrote it"),
    }
    plan = plan_reply(tasks, shape="short", queries=[[scripts[t][0]] for t in tasks])
    model = FunctionModel(short_team(plan, scripts, synthesis="Louis Aragon"))
    orchestrator, sink = make(model, MemorySearch(dict(NOVELISTS)), agents=4)
    result = await orchestrator.run("Who wrote The Siege of Krishnapur?")
    # two agents echoing the question would be the largest group; set aside, the name found decides
    assert result.short_answer == "J. G. Farrell" and result.answer.startswith("J. G. Farrell")
    [vote] = sink.of("VoteTaken")
    assert (vote.winner, vote.decided_by) == ("J. G. Farrell", "shared words")
    assert vote.candidates[-1] == {
        "answer": "The Siege of Krishnapur",
        "agents": ["agent-1", "agent-2"],
        "set_aside": "only repeats the question's words",
    }
    assert describe_vote(vote).endswith(
        '; set aside, only repeats the question\'s words: "The Siege of Krishnapur" (2)'
    )
