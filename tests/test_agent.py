"""The research agent loop, tools and citation bookkeeping, driven by a ScriptedModel."""

from __future__ import annotations

import pytest

from fakes import PASSAGES, ListSink, MemorySearch, action, allowed_actions
from openheavy.agent import MISSING_MAX_CHARS, SHORT_MAX_CHARS, Budget, ResearchAgent, StopReason
from openheavy.models.recording import output_token_bound
from openheavy.models.scripted import ScriptedModel, Unconstrained
from openheavy.search.cache import CachedSearch
from openheavy.types import Completion, EventStream, Usage


def make_agent(
    steps: list[object], max_steps: int = 6, budget: Budget | None = None
) -> tuple[ResearchAgent, ScriptedModel, ListSink, MemorySearch]:
    model = ScriptedModel(steps)
    backend = MemorySearch(dict(PASSAGES))
    sink = ListSink()
    agent = ResearchAgent(
        model,
        CachedSearch(backend),
        stream=EventStream([sink]),
        run_id="run-1",
        max_steps=max_steps,
        budget=budget,
    )
    return agent, model, sink, backend


async def test_search_open_answer_cites_the_opened_document() -> None:
    agent, _model, sink, backend = make_agent(
        [
            action("search", query="subprocess timeout"),
            action("open", ref=1),
            action("answer", answer="Use subprocess.run with timeout and capture_output [1].", cite=[1]),
        ]
    )
    result = await agent.run("How do I run a subprocess with a timeout?")
    assert str(result.stop_reason) == "answered"
    assert result.answer == "Use subprocess.run with timeout and capture_output [1]."
    assert [(c.number, c.id) for c in result.citations] == [(1, "subprocess#1")]
    assert backend.searches == ["subprocess timeout"]
    assert backend.opens == ["subprocess#1"]
    assert [e.query for e in sink.of("SearchDone")] == ["subprocess timeout"]
    assert sink.of("DocumentOpened")[0].doc["id"] == "subprocess#1"
    # every model call is in the trace with its full prompt, system prompt first
    calls = sink.of("ModelCalled")
    assert len(calls) == 3
    assert calls[0].messages[0]["role"] == "system"
    assert "How do I run a subprocess" in calls[0].messages[1]["content"]
    # the observation of the search is shown to the model on the next call
    assert "[1] subprocess — run" in calls[1].messages[-1]["content"]


async def test_open_is_constrained_to_results_seen_and_not_yet_read() -> None:
    agent, model, _, _ = make_agent(
        [
            action("search", query="subprocess"),
            action("open", ref=2),
            action("answer", answer="done", cite=[]),
        ]
    )
    await agent.run("q")
    first, second, third = (call.json_schema for call in model.calls)
    assert allowed_actions(first) == ["search"]  # nothing to open yet, and no answer before looking
    assert allowed_actions(second) == ["search", "open", "answer"]
    open_option = next(o for o in second["anyOf"] if o["properties"]["action"]["enum"] == ["open"])
    assert open_option["properties"]["ref"]["enum"] == [1, 2]
    answer_option = next(o for o in third["anyOf"] if o["properties"]["action"]["enum"] == ["answer"])
    assert answer_option["properties"]["cite"]["items"]["enum"] == [2]


async def test_citations_to_unread_documents_are_dropped_and_recorded() -> None:
    agent, _, sink, _ = make_agent(
        [
            action("search", query="subprocess"),
            action("open", ref=2),
            # the schema limits `cite` to opened documents; markers in the text can name any number
            action("answer", answer="run [1] or check_output [2] or magic [9].", cite=[2]),
        ]
    )
    result = await agent.run("q")
    # [2] was the only document opened: it becomes citation 1; [1] and [9] are removed from the text
    assert result.answer == "run or check_output [1] or magic."
    assert [c.id for c in result.citations] == ["subprocess#2"]
    dropped = {(e.ref, e.reason) for e in sink.of("CitationDropped")}
    assert dropped == {("1", "seen in results but never opened"), ("9", "never seen")}


async def test_malformed_output_is_shown_back_once_then_accepted() -> None:
    agent, model, sink, _ = make_agent(
        [
            Unconstrained("Sure! I will search."),  # a backend without constrained output
            action("search", query="shlex"),
            action("open", ref=1),
            action("answer", answer="shlex splits [1].", cite=[1]),
        ]
    )
    result = await agent.run("q")
    assert result.answer == "shlex splits [1]."
    rejected = sink.of("OutputRejected")
    assert len(rejected) == 1 and "no JSON object" in rejected[0].error
    assert "not a valid action" in model.calls[1].messages[-1].content
    # the rejected exchange is not kept in the conversation once a valid action came
    assert len(model.calls[2].messages) == 4


async def test_the_first_action_must_use_a_tool() -> None:
    agent, _model, sink, _ = make_agent(
        [
            # the schema allows only tools at step 1; a backend that does not enforce it can still answer
            Unconstrained(action("answer", answer="From memory!", cite=[])),
            action("search", query="shlex"),
            action("open", ref=1),
            action("answer", answer="shlex.split [1]", cite=[1]),
        ]
    )
    result = await agent.run("q")
    assert sink.of("OutputRejected")[0].error == "\"action\" must be one of ['search'], got 'answer'"
    assert result.answer == "shlex.split [1]" and result.steps == 3


async def test_twice_malformed_output_fails_clearly() -> None:
    agent, _, sink, _ = make_agent([Unconstrained('{"action": "dance"}'), Unconstrained("still not json")])
    result = await agent.run("q")
    assert str(result.stop_reason) == "error"
    assert result.error and "no valid action at step 1" in result.error
    assert sink.of("AgentFinished")[0].error == result.error


async def test_step_budget_forces_an_answer_and_says_so() -> None:
    agent, model, _, _ = make_agent(
        [action("search", query="shlex"), action("answer", answer="shlex.split [1]", cite=[])],
        max_steps=2,
    )
    result = await agent.run("q")
    assert result.stop_reason == StopReason("budget", "steps")
    last_schema = model.calls[-1].json_schema
    assert "anyOf" not in last_schema and last_schema["properties"]["action"]["enum"] == ["answer"]
    assert "no actions left" in model.calls[-1].messages[-1].content
    assert result.citations == []  # [1] was seen but never opened


async def test_a_token_budget_with_room_for_one_more_call_makes_it_the_answer() -> None:
    """After the search the run's budget can pay for one more call, not two: that call must answer
    (checked before the call, so the answer is not lost to a refused call). The 4,000 tokens left pay
    for the answer's bound (its prompt, and the short answer and answer at their schema's maxLength)."""
    budget = Budget(max_tokens=10_000, max_seconds=1e9)
    searched = Completion(action("search", query="subprocess"), usage=Usage(prompt_tokens=6_000))
    agent, model, _, _ = make_agent([searched, action("answer", answer="partial", cite=[])], budget=budget)
    result = await agent.run("q")
    assert result.stop_reason == StopReason("budget", "tokens") and result.answer == "partial"
    assert len(model.calls) == 2
    assert allowed_actions(model.calls[1].json_schema) == ["answer"]
    assert budget.used.total <= budget.max_tokens and budget.reserved == 0


async def test_a_token_budget_too_small_for_a_call_stops_the_agent_before_calling() -> None:
    budget = Budget(max_tokens=300, max_seconds=1e9)
    agent, model, sink, _ = make_agent([action("search", query="subprocess")], budget=budget)
    result = await agent.run("q")
    assert model.calls == [] and not result.ok
    assert result.stop_reason == StopReason("budget", "tokens")
    assert result.error is not None and result.error.startswith(
        "BudgetExceededError: the token budget of 300 has 300 tokens left, and agent-1's answer call at "
        "step 1 may spend up to"
    )
    [finished] = sink.of("AgentFinished")
    assert finished.stop_reason == "budget:tokens" and finished.error == result.error


async def test_a_search_that_finds_nothing_yields_an_answer_without_citations() -> None:
    agent, model, sink, _ = make_agent(
        [
            action("search", query="quantum chromodynamics"),
            # sent back once: nothing was read, so the agent is told to search with other words
            action("answer", answer="The documents do not cover this.", cite=[]),
            action("search", query="QCD quarks"),
            action("answer", answer="The documents do not cover this [1].", cite=[]),
        ]
    )
    result = await agent.run("What is QCD?")
    assert "No results" in model.calls[1].messages[-1].content
    assert "your searches found nothing to read" in model.calls[2].messages[-1].content
    assert result.citations == [] and result.answer == "The documents do not cover this."
    assert sink.of("SearchDone")[0].hits == []
    assert [e.reason for e in sink.of("AnswerRejected")] == ["nothing_read"]


async def test_invalid_max_steps_is_rejected() -> None:
    with pytest.raises(Exception, match="max_steps"):
        make_agent([], max_steps=0)


async def test_answer_length_bound_reaches_the_schema_and_max_tokens() -> None:
    model = ScriptedModel([action("search", query="shlex"), action("answer", answer="x", cite=[])])
    agent = ResearchAgent(
        model,
        CachedSearch(MemorySearch(dict(PASSAGES))),
        stream=EventStream([]),
        run_id="r",
        max_steps=2,
        answer_max_chars=200,
    )
    await agent.run("q")
    final = model.calls[-1]
    # The prompt asks for the length (in words); the schema's bound is only a safety net above it,
    # because the grammar would stop the text there mid-word.
    assert "in at most 33 words" in final.messages[0].content
    assert final.json_schema["properties"]["answer"]["maxLength"] == 300
    # max_tokens covers the longest output the schema allows, and not much more
    assert final.max_tokens == output_token_bound(final.json_schema)
    bound = 300 + SHORT_MAX_CHARS + MISSING_MAX_CHARS
    assert bound < final.max_tokens < 2 * bound


async def test_tool_observations_read_as_before_from_the_tool_templates() -> None:
    from openheavy.tools.base import ToolContext
    from openheavy.tools.research import OpenArgs, OpenTool, SearchArgs, SearchTool
    from openheavy.tools.sources import SourceBook

    search = CachedSearch(MemorySearch(dict(PASSAGES)))
    ctx = ToolContext("run-1", "agent-1", 1, search, SourceBook(), EventStream([ListSink()]))
    before = await OpenTool().call(OpenArgs(ref=3), ctx)
    assert before.text == "There is no result [3]. Known results: none yet — search first."
    found = await SearchTool().call(SearchArgs(query="shlex"), ctx)
    # what came from the corpus is fenced as data, under a line that says so (test_untrusted.py)
    assert found.text.startswith('Results for "shlex", as untrusted data between <data-')
    assert found.text.splitlines()[2] == "[1] shlex — split"
    opened = await OpenTool().call(OpenArgs(ref=1), ctx)
    assert opened.text.startswith("Document [1], as untrusted data")
    assert "\n[1] shlex — split (file:shlex#1)\nshlex.split splits" in opened.text
    again = await SearchTool().call(SearchArgs(query="shlex split"), ctx)
    assert again.text.splitlines()[2] == "[1] shlex — split (already read)"
    unknown = await OpenTool().call(OpenArgs(ref=9), ctx)
    assert unknown.text == "There is no result [9]. Known results: [1]."
    nothing = await SearchTool().call(SearchArgs(query="zzzz"), ctx)
    assert nothing.text == 'No results for "zzzz". Try other keywords, or answer if done.'


async def test_an_answer_cut_off_at_max_tokens_is_kept_up_to_its_last_sentence() -> None:
    # A code-heavy answer is written JSON-escaped and can run past its token bound: the reply stops
    # inside the answer string. The text so far is kept, ended at its last full sentence, and the
    # edit is recorded; before, the agent failed with "Unterminated string".
    whole = action(
        "answer", answer="Use subprocess.run with timeout=5 [1]. Then read\\nthe output of", cite=[1]
    )
    cut = whole[: whole.index("the output of") + len("the output of")]
    agent, _model, sink, _ = make_agent(
        [
            action("search", query="subprocess timeout"),
            action("open", ref=1),
            Completion(cut, finish_reason="length"),
        ]
    )
    result = await agent.run("How do I run a subprocess with a timeout?")
    assert result.ok and str(result.stop_reason) == "answered"
    assert result.answer == "Use subprocess.run with timeout=5 [1]."
    assert not sink.of("OutputRejected")
    edits = sink.of("AnswerEdited")
    assert edits and edits[0].original.endswith("the output of")


async def test_a_cut_reply_that_is_not_inside_an_answer_stays_an_error() -> None:
    cut_search = action("search", query="subprocess timeout")[:-8]  # cut inside the query string
    agent, _model, sink, _ = make_agent(
        [Completion(cut_search, finish_reason="length"), Completion(cut_search, finish_reason="length")]
    )
    result = await agent.run("q")
    assert not result.ok and "no valid action" in (result.error or "")
    assert len(sink.of("OutputRejected")) == 2
