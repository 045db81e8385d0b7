"""One research agent: the step loop, budgets and citation bookkeeping.

`ResearchAgent.run` loops `step`: ask the model for one JSON action (constrained to a schema built from
what the agent may do right now), run the tool, show the observation. It ends when the model answers or
a budget runs out, in which case the last call may only answer. Malformed output is shown back to the
model once; a second failure raises `ModelOutputError`.

Every action starts with `missing`: what the agent still has to find out, written before it picks the
action, so that it commits to what it lacks (for a multi-hop question: the bridge entity it has just
read about). An answer is sent back once, with what to do instead, while it says something is missing,
when nothing has been read, or when it cites nothing that was read; never at the last step, never
when no step would be left to act on it, and never when the budget could not pay for acting on it and
answering after (when the budget says "answer now", the answer stands, `missing` or not).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from openheavy.answer_text import (
    Edit,
    attach_markers,
    copied_instructions,
    drop_copied_sentences,
    is_placeholder,
    join_split_sentence,
    lead_with,
    repair_free_text,
    restates_question,
    settle_short,
)
from openheavy.citations import Citation, Source, cited_numbers, resolve_citations
from openheavy.dated_choice import DatedChoice, choose_by_date
from openheavy.errors import BudgetExceededError, ModelOutputError, OpenHeavyError
from openheavy.evidence import closest_sentences
from openheavy.grounding import grounded_choice, ungrounded_yes
from openheavy.json_output import close_cut_json, first_json_object
from openheavy.models.base import ChatModel
from openheavy.models.budget import Budget, BudgetName, estimate_prompt_tokens
from openheavy.models.recording import CallLabel, RecordingModel, output_token_bound
from openheavy.normalize import last_number_plain, numbers_equal, numbers_in
from openheavy.prompts import fence_untrusted, render_prompt
from openheavy.question_forms import (
    asks_for_one_thing,
    conjunct_predicate,
    conjuncts,
    names_candidates,
    short_answer_schema,
)
from openheavy.search.cache import CachedSearch
from openheavy.search.queries import QueryLog
from openheavy.tools.base import Observation, Tool, ToolContext, WrittenInFreeText
from openheavy.tools.research import (
    QUERY_MAX_CHARS,
    Opening,
    OpenTool,
    SearchArgs,
    SearchTool,
    mark_read_whole,
    opening_search,
    read_in_results,
)
from openheavy.tools.sources import SourceBook
from openheavy.types import (
    ActionParsed,
    AgentFinished,
    AgentStarted,
    AnswerEdited,
    AnswerRejected,
    Completion,
    Document,
    EventStream,
    JsonSchema,
    Message,
    OutputRejected,
    Usage,
)

__all__ = ["ANSWERED", "FAILED", "AgentResult", "Budget", "BudgetName", "ResearchAgent", "StopReason"]

ANSWER_MAX_CHARS = 1500
MAX_CITES = 8
MISSING_MAX_CHARS = 120
SHORT_MAX_CHARS = 80
# The prompt asks for at most `answer_max_chars` (as words); the schema's maxLength is only a safety net
# this much larger, because the grammar stops a string there mid-word. Text that reaches it is ended at
# its last sentence in code.
ANSWER_HARD_LIMIT_FACTOR = 1.5
CHARS_PER_WORD = 6
# What small models write for "nothing is missing" although the prompt asks for "" (with an answer,
# "answer" names the action, not a gap).
_NOTHING = frozenset(
    {
        *("", "none", "nothing", "n a", "na", "no", "nil", "nothing missing", "nothing is missing"),
        *("answer", "the answer", "final answer", "the final answer"),
    }
)


@dataclass(frozen=True)
class StopReason:
    """Why an agent stopped: it answered, a budget ran out (`budget` says which), or it failed.

    `str()` gives the form traces and JSON results carry: "answered", "budget:tokens", "error"."""

    kind: Literal["answered", "budget", "error"]
    budget: BudgetName | None = None

    def __str__(self) -> str:
        return f"budget:{self.budget}" if self.kind == "budget" else self.kind


ANSWERED = StopReason("answered")
FAILED = StopReason("error")


class AnswerArgs(BaseModel):
    short: str = ""  # the bare answer: a name, yes or no, a number
    answer: str = Field(min_length=1)  # the answer in full, with [n] markers
    cite: list[int] = Field(default_factory=list)


# An agent that has read nothing opens a result after this many searches, before it searches again.
SEARCHES_BEFORE_READING = 2


@dataclass(frozen=True)
class Action:
    name: str  # a tool name or "answer"
    args: BaseModel
    raw: str
    missing: str = ""  # what the agent said it still had to find out

    @property
    def states_missing(self) -> bool:
        """Whether `missing` names something (rather than being empty or saying "none")."""
        return " ".join(re.sub(r"[^\w\s]", " ", self.missing.casefold()).split()) not in _NOTHING


@dataclass(frozen=True)
class AgentResult:
    agent: str
    task: str
    answer: str
    citations: list[Citation]
    stop_reason: StopReason
    steps: int
    usage: Usage
    sources: SourceBook
    error: str | None = None
    missing: str = ""  # what the agent said was still missing when it answered ("" when nothing)
    short_answer: str = ""  # the bare answer (a name, yes/no, a number), for votes and graders

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failure(
        cls, agent: str, task: str, steps: int, usage: Usage, sources: SourceBook, error: str
    ) -> AgentResult:
        """The result of an agent that failed: no answer, what it spent and read, and the error."""
        return cls(agent, task, "", [], FAILED, steps, usage, sources, error=error)

    def to_record(self) -> dict[str, Any]:
        """The JSON form in run results: answer, citations, how it stopped and what it read."""
        return {
            "agent": self.agent,
            "task": self.task,
            "answer": self.answer,
            "citations": [c.to_record() for c in self.citations],
            "stop_reason": str(self.stop_reason),
            "steps": self.steps,
            "documents_read": [d.id for d in self.sources.opened.values()],
            "error": self.error,
            "missing": self.missing,
            "short_answer": self.short_answer,
        }


async def team_opening(
    search: CachedSearch | None,
    tools: Iterable[Tool] | None,
    query: str,
    *,
    stream: EventStream,
    run_id: str,
) -> Opening | None:
    """The opening search (`tools.research.opening_search`) for agents with `tools` (None: the default
    ones, search among them) over `search`; None for agents without search or without a corpus."""
    tool = next((t for t in tools if isinstance(t, SearchTool)), None) if tools is not None else SearchTool()
    if tool is None or search is None:
        return None
    return await opening_search(search, query, tool, stream=stream, run_id=run_id)


def works_on_corpus(tools: Iterable[Tool]) -> bool:
    """Whether agents with `tools` search a corpus: with the search tool among them."""
    return any(tool.name == SearchTool.name for tool in tools)


class ResearchAgent:
    """A tool-using agent that researches one (sub-)question and answers with citations."""

    def __init__(
        self,
        model: ChatModel,
        search: CachedSearch | None,
        *,
        stream: EventStream,
        run_id: str,
        name: str = "agent-1",
        corpus: str = "",
        max_steps: int = 6,
        budget: Budget | None = None,
        max_tokens_per_call: int | None = None,
        temperature: float | None = 0.0,
        seed: int | None = None,
        tools: Sequence[Tool] | None = None,
        answer_max_chars: int = ANSWER_MAX_CHARS,
        queries: QueryLog | None = None,
        answer_from_recap: bool = True,
    ) -> None:
        if max_steps < 1:
            raise OpenHeavyError(f"max_steps must be at least 1, got {max_steps}")
        tools = [SearchTool(), OpenTool()] if tools is None else tools
        self.tools: dict[str, Tool] = {t.name: t for t in tools}
        if not self.tools:
            raise OpenHeavyError("an agent needs at least one tool; for no tools, answer directly")
        if search is None and self.works_on_corpus:
            raise OpenHeavyError("the search tool needs a corpus: pass `search`, or leave search out")
        # The budget is the run's (given, or carried by a run's model); every call is checked against it.
        self.model = RecordingModel(
            model, stream=stream, run_id=run_id, label=CallLabel(agent=name), budget=budget
        )
        self.search = search
        self.stream = stream
        self.run_id = run_id
        self.name = name
        self.corpus = corpus or (search.name if search is not None else "")
        self.max_steps = max_steps
        self.budget = self.model.budget or Budget.unlimited()
        self.max_tokens_per_call = max_tokens_per_call
        # The length the prompt asks for; the schema allows `answer_hard_chars` (see the factor's note).
        self.answer_max_chars = answer_max_chars
        self.answer_hard_chars = int(answer_max_chars * ANSWER_HARD_LIMIT_FACTOR)
        self.temperature = temperature
        self.seed = seed
        self.sources = SourceBook()
        # Shared by a team of agents so that none runs another's search again; else the agent's own.
        self.queries = queries if queries is not None else QueryLog()
        # Whether the last call of a one-thing question is the question and the recap alone
        # (`_compact_final`); a team gives it to one agent only (`heavy.Orchestrator._agent`).
        self.answer_from_recap = answer_from_recap
        self._tool_state: dict[str, object] = {}  # each tool's own per-agent state (ToolContext.tool_state)
        self._used_a_tool = False
        self._tools_used: set[str] = set()
        self._rejected: set[str] = set()  # reasons an answer was already sent back for (once each)
        # The tool the next action may not use and the prompt that says why (None: any), see `_stall`.
        self._stalled: tuple[str, str] | None = None
        self._searches = 0
        self._computed: list[str] = []  # what the agent's tool calls computed (`Observation.computed`)
        self._question = ""  # the question being researched (the user's, not a sub-task)
        self._names: list[str] = []  # what the agent must read about before answering (see `run`)
        self.messages: list[Message] = []
        self.usage = Usage()

    # ------------------------------------------------------------------ loop
    async def run(
        self,
        question: str,
        task: str | None = None,
        *,
        brief: str | None = None,
        names: Sequence[str] | None = None,
        opening: Opening | None = None,
        first_search: str | None = None,
    ) -> AgentResult:
        """Research `question` (or the sub-`task` of it) until an answer or a spent budget. `brief`, when
        given, is shown instead of the sub-task line: an orchestrator's instructions for this agent
        (heavy mode's task, slice and first queries). `names`: the things the agent must read about
        before it answers (default: those a yes/no question asks the same thing of,
        `question_forms.conjuncts`); after each search or read, the agent is told which one it has not
        read about yet, and which result is about it. `opening`: the results of a search run for the
        team before it started (`tools.research.opening_search`), shown right after the question; they
        count as the agent's first search, and its first action must still use a tool. `first_search`:
        a query the orchestrator planned for this agent; it is the agent's first action, run without a
        model call (`ActionParsed.planned`), so agents that were told to search different words do,
        whatever a small model would have picked instead."""
        self.stream.emit(AgentStarted(run_id=self.run_id, agent=self.name, task=task or question))
        self._question = question
        self._names = list(conjuncts(question) if names is None else names)
        # Shared prefix first (system, question), the agent's own sub-task last: prompt caches in
        # llama.cpp / vLLM then serve the common part once for all agents of a run.
        system, user = (m.content for m in self.opening_prompt(question, opening))
        search_tool = self.tools.get(SearchTool.name)
        if opening is not None and isinstance(search_tool, SearchTool):
            # The team ran it: an agent that searches it again gets its next page (`QueryLog.share`).
            self.queries.share(opening.query, len(opening.hits), search_tool.k)
            hits = list(opening.hits)
            refs = self.sources.register(hits)
            read_in_results(
                refs, hits, self.sources, self.stream, run_id=self.run_id, agent=self.name, step=0
            )
            self._searches = 1
        if brief:
            user += "\n" + brief
        elif task and task.strip() != question.strip():
            user += "\n" + render_prompt("agent_subtask", task=task)
        self.messages = [Message("system", system), Message("user", user)]
        step = 0
        try:
            first = 1
            if first_search and isinstance(search_tool, SearchTool) and self.max_steps > 1:
                await self._planned_search(first_search, task or question)
                first = 2
            for step in range(first, self.max_steps + 1):
                last = step == self.max_steps  # then one call is all that is left to pay for
                spent = self.budget.exhausted() or (None if last else self._no_room_for_two_calls())
                final = last or spent is not None
                action = await self.step(step, final=final)
                if action.name == "answer":
                    assert isinstance(action.args, AnswerArgs)
                    problem = None if final else self._answer_problem(action, step)
                    if problem is not None:
                        self._send_back(step, action, *problem)
                        continue
                    reason = StopReason("budget", spent or "steps") if final else ANSWERED
                    return self._finish(task or question, action, reason, step)
        except OpenHeavyError as exc:
            return self._fail(task or question, step, exc)
        raise AssertionError("unreachable: the last step can only answer")  # pragma: no cover

    def opening_prompt(self, question: str, opening: Opening | None = None) -> list[Message]:
        """The system prompt and the question, with the team's `opening` results and the result closest
        to the question, as `run` shows them before an agent's own brief: the prefix every agent of a team
        given the same opening starts with (heavy has it computed once, `RecordingModel.share_prefix`)."""
        user = render_prompt("agent_question", question=question)
        if opening is not None and isinstance(self.tools.get(SearchTool.name), SearchTool):
            book = SourceBook()  # numbered as the agent's own book numbers them: the opening comes first
            hits = list(opening.hits)
            mark_read_whole(book.register(hits), hits, book)  # read already: never the lead to open
            user += "\n" + opening.text
            lead = book.closest_unopened(question)
            if lead is not None:
                user += "\n" + render_prompt("agent_closest_unread", ref=lead).strip()
        return [Message("system", self.system_prompt()), Message("user", user)]

    async def search_for_team(self, query: str) -> Opening | None:
        """Run the opening search with this agent's tools (`team_opening`)."""
        return await team_opening(
            self.search, self.tools.values(), query, stream=self.stream, run_id=self.run_id
        )

    @property
    def works_on_corpus(self) -> bool:
        """Whether the agent has the search tool (and so a corpus to answer from, and to cite)."""
        return works_on_corpus(self.tools.values())

    def system_prompt(self) -> str:
        """The system prompt: the agent's actions, one per tool in order, then `answer`. An agent without
        search is told there are no documents (it computes its answer, e.g. with python)."""
        actions = "\n".join(render_prompt(f"agent_action_{name}").strip() for name in self.tools)
        words = max(20, self.answer_max_chars // CHARS_PER_WORD)
        if self.works_on_corpus:
            return render_prompt(
                "agent_system",
                corpus=self.corpus,
                actions=actions,
                max_steps=self.max_steps,
                answer_words=words,
            )
        return render_prompt(
            "agent_system_no_corpus", actions=actions, max_steps=self.max_steps, answer_words=words
        )

    async def step(self, step: int, *, final: bool) -> Action:
        """Ask for one action, run it, and append the observation. Returns the action."""
        action = await self._next_action(step, final)
        written = await self._write_free_text(step, action)
        if written is not None:
            action, turns = written
        else:
            turns = [Message("assistant", action.raw)]
        return await self._act(step, action, turns)

    async def _planned_search(self, query: str, task: str) -> None:
        """Step 1 as planned: search `query` without asking the model. The conversation then reads as if
        the agent had picked that search itself (its reply is the action, shown like any other), so the
        steps after it look like the ones it is used to; the trace marks it as planned."""
        args = SearchArgs(query=" ".join(query.split())[:QUERY_MAX_CHARS])
        missing = " ".join(task.split())[:MISSING_MAX_CHARS]
        raw = json.dumps({"missing": missing, "action": SearchTool.name, "query": args.query}, indent=2)
        action = Action(SearchTool.name, args, raw, missing)
        await self._act(1, action, [Message("assistant", raw)], planned=True)

    async def _act(self, step: int, action: Action, turns: list[Message], *, planned: bool = False) -> Action:
        """Run `action` (chosen at `step`, or `planned` for the agent) and append `turns` and what it
        observed to the conversation. An answer is returned as it is, for the loop to settle."""
        self.stream.emit(
            ActionParsed(
                run_id=self.run_id,
                agent=self.name,
                step=step,
                action=action.name,
                args=action.args.model_dump(),
                missing=action.missing,
                planned=planned,
            )
        )
        if action.name == "answer":
            return action
        tool = self.tools[action.name]
        self._used_a_tool = True
        self._tools_used.add(action.name)
        ctx = ToolContext(self.run_id, self.name, step, self.search, self.sources, self.stream, self.queries)
        ctx.tool_state = self._tool_state
        seen_before = len(self.sources.seen)
        observation = await self.budget.bounded(
            f"{self.name}'s {action.name} at step {step}", lambda: tool.call(action.args, ctx)
        )
        self._stalled = self._stall(action.name, observation, found_new=len(self.sources.seen) > seen_before)
        if observation.computed.strip():
            self._computed.append(observation.computed)
        said = observation.text
        last = step + 1 == self.max_steps or self.budget.exhausted() is not None
        if last and self.works_on_corpus:
            text = render_prompt("agent_final", observation=said, recap=self._recap())
        elif last:
            text = render_prompt("agent_final_no_corpus", observation=said)
        else:
            if self._stalled and self._stalled[0] not in self.allowed_actions(final=False):
                said += "\n" + render_prompt(self._stalled[1]).strip()
            unread = self.sources.unread_name(self._names) if self.works_on_corpus else None
            lead = self.sources.closest_unopened(self._question) if action.name == SearchTool.name else None
            if unread is not None and unread[1] is not None:
                # The name is the question's; of the result, only its number (a title is document text).
                said += "\n" + render_prompt("agent_unread_name", name=unread[0], ref=unread[1]).strip()
            elif unread is not None:
                said += "\n" + render_prompt("agent_unread_name_search", name=unread[0]).strip()
            elif lead is not None:
                # Only the number: a title is the document's text, which stays inside its data fence.
                said += "\n" + render_prompt("agent_closest_unread", ref=lead).strip()
            text = render_prompt("agent_observation", observation=said, step=step, max_steps=self.max_steps)
        self.messages += [*turns, Message("user", text)]
        return action

    def _compact_final(self) -> list[Message] | None:
        """The last call's prompt for a question that asks for one name, date, place or number
        (`asks_for_one_thing`): the system prompt, the question and the recap of the read sentences
        closest to it, without the transcript of searches and pages. None (the whole conversation is
        sent) for other questions, without a corpus, for an agent told not to (`answer_from_recap`), for an
        agent's first call (its conversation is then
        the team's cached common prompt and at most its planned search), or when no read sentence holds a
        question word.

        Why: by its last step an agent has read ten or more passages, and the 0.5B model answered from
        the last results listed, not from the recap below them: on the r15 HotpotQA-50 single runs it
        answered "Small Planet Institute" with "Andrew Jaspan, … the co-founder of "The Conversation""
        in its recap. Replayed on the 23 last calls of those runs whose question asks for one thing, the
        short-answer F1 went from 0.157 with the whole conversation to 0.270 with this prompt (0.252 with
        five recap sentences instead of three). A list or an explanation needs what was read in full, so
        those questions keep the whole conversation."""
        if not self.answer_from_recap or not self.works_on_corpus or not asks_for_one_thing(self._question):
            return None
        if self.usage.prompt_tokens == 0:
            # Its first call: the conversation is the team's common prompt (cached for it) and at most
            # its planned search, not a transcript to leave out.
            return None
        restated = recap(self._question, self.sources.opened)
        if not restated:
            return None
        text = render_prompt("agent_final_compact", question=self._question, recap=restated)
        return [self.messages[0], Message("user", text)]

    def _recap(self) -> str:
        """The recap of what this agent read, for its last prompt (`recap`), on lines of its own."""
        text = recap(self._question, self.sources.opened)
        return f"\n{text}\n" if text else ""

    async def _write_free_text(self, step: int, action: Action) -> tuple[Action, list[Message]] | None:
        """For a tool whose arguments are written in free text (the python tool's script: see
        `tools.python`), ask for them after the JSON action that picked the tool, with no schema, and
        parse them; the action with those arguments, and the turns the conversation gains. None for
        every other action."""
        tool = self.tools.get(action.name)
        if not isinstance(tool, WrittenInFreeText):
            return None
        for prompt in (tool.free_text_prompt, tool.free_text_again_prompt):
            last_try = prompt == tool.free_text_again_prompt
            # The second request replaces the first and its reply: a model that copied the first
            # request's example, or answered it with a JSON action, is asked afresh without them.
            turns = [Message("assistant", action.raw), Message("user", render_prompt(prompt).strip())]
            completion = await self._complete(
                step, "write", [*self.messages, *turns], None, tool.free_text_max_tokens
            )
            turns.append(Message("assistant", completion.text))
            args = tool.args_from_text(completion.text, last_try=last_try)
            if args is not None:
                return replace(action, args=args), turns
        raise AssertionError("args_from_text must give arguments on its last try")

    def _stall(self, action: str, observation: Observation, *, found_new: bool) -> tuple[str, str] | None:
        """The tool the next action may not use, with the prompt that says why; None when any may be
        used. Small models repeat an action until the steps run out: the same search page after page,
        never reading what it found, or the same code that printed the same. So after a search that found
        nothing new, or a second search with nothing read yet, the agent opens a result (or answers)
        before it searches again; after a call that repeated an earlier one and got the same
        (`Observation.repeated`), it does something else with that answer in hand."""
        if observation.repeated:
            return action, "agent_tool_repeated"
        if action != SearchTool.name:
            return None
        self._searches += 1
        if not found_new:
            return action, "agent_search_stalled"
        if self._searches >= SEARCHES_BEFORE_READING and not self.sources.opened:
            return action, "agent_read_first"
        return None

    # ------------------------------------------------------------- actions
    def allowed_actions(self, final: bool) -> list[str]:
        """Actions the agent may take now: the last step may only answer, the first must use a tool
        (an agent that answers before looking, or before computing, is a direct answer in disguise;
        small models do this)."""
        if final:
            return ["answer"]
        tools = [name for name, tool in self.tools.items() if tool.available(self.sources)]
        stalled = self._stalled[0] if self._stalled is not None else None
        # A stalled search gives way to reading; with nothing left to read it stays (see `_stall`).
        if stalled in tools and (stalled != SearchTool.name or OpenTool.name in tools):
            tools.remove(stalled)
        return [*tools, "answer"] if self._used_a_tool or not tools else tools

    def _answer_problem(self, action: Action, step: int) -> tuple[str, str] | None:
        """Why an answer is not ready (`(reason, what to do)`), or None. Each reason sends an answer back
        once, and only when a step that can act on it is left (the last step may only answer) and the
        budget can pay for that step and an answer after it: a rejection never costs the answer."""
        if step + 1 >= self.max_steps or self.budget.exhausted() is not None:
            return None
        assert isinstance(action.args, AnswerArgs)
        opened = self.sources.opened
        problems: list[tuple[str, str]] = []
        copied = [text.strip() for text in (action.args.short, action.args.answer) if is_placeholder(text)]
        if copied:
            problems.append(
                ("placeholder", render_prompt("agent_reject_placeholder", copied=" and ".join(copied)))
            )
        # Reading and citing apply to answers from the corpus alone: an agent that computed (python) has
        # that tool's output as its evidence, and nothing to open or cite for it.
        corpus = self.works_on_corpus and self._tools_used <= {SearchTool.name, OpenTool.name}
        if corpus and not opened:
            unread = ", ".join(f"[{ref}]" for ref in self.sources.unopened_refs())
            message = (
                render_prompt("agent_reject_unread", refs=unread)
                if unread
                else render_prompt("agent_reject_unsearched")
            )
            problems.append(("nothing_read", message))
        if action.states_missing:
            # Without documents to search (a computing agent) the gap is to be worked out, not looked up.
            template = "agent_reject_missing" if self.works_on_corpus else "agent_reject_missing_work"
            problems.append(("missing", render_prompt(template, missing=action.missing.strip())))
        if restates_question(action.args.short, self._question):
            problems.append(("restated", render_prompt("agent_reject_restated")))
        copied_words = copied_instructions(action.args.short, self._instructions(), self._question)
        if copied_words is not None:
            problems.append(("copied", render_prompt("agent_reject_copied", words=copied_words)))
        if self._uncomputed(action.args.short):
            problems.append(("uncomputed", render_prompt("agent_reject_uncomputed", short=action.args.short)))
        cited = set(action.args.cite) | set(cited_numbers(action.args.answer))
        if corpus and opened and not cited & opened.keys():
            read = ", ".join(f"[{ref}]" for ref in opened)
            problems.append(("uncited", render_prompt("agent_reject_uncited", refs=read)))
        fresh = [(reason, message.strip()) for reason, message in problems if reason not in self._rejected]
        if not fresh:
            return None
        reason, message = fresh[0]
        if self._no_room_for_two_calls(self._rejection(step, action, message)) is not None:
            return None
        return reason, message

    def _instructions(self) -> list[str]:
        """What the agent was told: its system prompt and the run's messages (fenced data and the question
        in them are not instructions, see `answer_text.copied_instructions`)."""
        return [m.content for m in self.messages if m.role in ("system", "user")]

    def _last_printed_number(self) -> str | None:
        """The last number the agent's code printed (what its last run that printed numbers computed), as
        written plainly ("104.0" gives "104"); None when it printed none."""
        return next(filter(None, map(last_number_plain, reversed(self._computed))), None)

    def _uncomputed(self, short: str) -> bool:
        """Whether `short` is a number that none of the agent's computations printed, though it ran some
        that printed something: a small model computes 7 and answers 14. The answer's number must come
        from the code's output (or the agent must compute it)."""
        said = numbers_in(short)
        if len(said) != 1 or not self._computed:  # no number, or several: nothing to check it against
            return False
        printed = [n for output in self._computed for n in numbers_in(output)]
        return bool(printed) and not any(numbers_equal(said[0], n) for n in printed)

    def _send_back(self, step: int, action: Action, reason: str, message: str) -> None:
        """Reject an answer once: record why and show the model what to do instead. The step is spent."""
        self._rejected.add(reason)
        self.stream.emit(
            AnswerRejected(run_id=self.run_id, agent=self.name, step=step, reason=reason, message=message)
        )
        self.messages += self._rejection(step, action, message)

    def _rejection(self, step: int, action: Action, message: str) -> list[Message]:
        """The turns a rejected answer adds: the answer, then why it was sent back and what to do."""
        text = render_prompt("agent_answer_rejected", problem=message, step=step, max_steps=self.max_steps)
        return [Message("assistant", action.raw), Message("user", text)]

    def action_schema(self, final: bool) -> JsonSchema:
        """The JSON schema of the actions allowed now."""
        options: list[JsonSchema] = []
        for name in self.allowed_actions(final):
            if name == "answer":
                options.append(_action_option("answer", self._answer_schema()))
            else:
                options.append(_action_option(name, self.tools[name].args_schema(self.sources)))
        return options[0] if len(options) == 1 else {"anyOf": options}

    def _answer_schema(self) -> JsonSchema:
        opened = sorted(self.sources.opened)
        cite: JsonSchema = (
            {"type": "array", "items": {"type": "integer", "enum": opened}, "maxItems": MAX_CITES}
            if opened
            else {"type": "array", "items": {"type": "integer"}, "maxItems": 0}
        )
        return {
            "type": "object",
            "properties": {
                # A yes/no question is answered yes or no, one that names its candidates by one of them.
                "short": short_answer_schema(self._question, SHORT_MAX_CHARS),
                "answer": {"type": "string", "minLength": 1, "maxLength": self.answer_hard_chars},
                "cite": cite,
            },
            "required": ["short", "answer", "cite"],
        }

    async def _next_action(self, step: int, final: bool) -> Action:
        schema = self.action_schema(final)
        messages = (final and self._compact_final()) or list(self.messages)
        error = ""
        for attempt in (1, 2):
            purpose = "answer" if final else "action"
            completion = await self._complete(step, purpose, messages, schema, self.max_tokens_per_call)
            try:
                return self._parse(completion.text, final)
            except ValueError as exc:
                salvaged = self._salvage_cut_answer(completion.text, completion.finish_reason, final)
                if salvaged is not None:
                    return salvaged
                error = str(exc)
                self.stream.emit(
                    OutputRejected(
                        run_id=self.run_id,
                        agent=self.name,
                        step=step,
                        output=completion.text,
                        error=error,
                    )
                )
                if attempt == 1:
                    messages += [
                        Message("assistant", completion.text),
                        Message("user", render_prompt("agent_invalid", error=error)),
                    ]
        raise ModelOutputError(
            f"{self.model.name} gave no valid action at step {step}, even after being shown the "
            f"error ({error}). Try a larger model, or a backend with JSON-schema constrained output."
        )

    async def _complete(
        self,
        step: int,
        purpose: str,
        messages: Sequence[Message],
        schema: JsonSchema | None,
        max_tokens: int | None,
    ) -> Completion:
        """One model call, recorded under `step` and `purpose`, its usage counted."""
        completion = await self.model.labelled(step=step, purpose=purpose).complete(
            messages,
            json_schema=schema,
            max_tokens=max_tokens,
            temperature=self.temperature,
            seed=self.seed,
        )
        self.usage = self.usage + completion.usage
        return completion

    def _salvage_cut_answer(self, text: str, finish_reason: str | None, final: bool) -> Action | None:
        """An answer cut off at `max_tokens` inside its text, closed and kept (its text is then ended at
        its last full sentence, recorded as an edit); None for anything else, which stays an error."""
        if finish_reason != "length":
            return None
        closed = close_cut_json(text)
        if closed is None:
            return None
        try:
            action = self._parse(closed, final)
        except ValueError:
            return None
        return action if action.name == "answer" else None

    def _parse(self, text: str, final: bool) -> Action:
        payload = first_json_object(text)
        name = payload.pop("action", None)
        missing = payload.pop("missing", "")
        allowed = self.allowed_actions(final)
        if name not in allowed:
            raise ValueError(f'"action" must be one of {allowed}, got {name!r}')
        try:
            missing = str(missing or "")[:MISSING_MAX_CHARS]
            if name == "answer":
                return Action("answer", AnswerArgs.model_validate(payload), text, missing)
            tool = self.tools[name]
            if isinstance(tool, WrittenInFreeText):  # its arguments come next (`_write_free_text`)
                return Action(name, tool.Args.model_construct(), text, missing)
            return Action(name, tool.Args.model_validate(payload), text, missing)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"bad arguments for {name}: {problems}") from exc

    # ------------------------------------------------------------ results
    def _finish(self, task: str, action: Action, stop_reason: StopReason, steps: int) -> AgentResult:
        assert isinstance(action.args, AnswerArgs)
        # "Yes, both are magazines." answers "Yes"; a short answer that only repeats the question
        # answers nothing and one cut at its bound keeps its first whole clause: what is not an answer
        # must not lead the answer, be voted on or be graded; nor may a copy of its instructions.
        short, settled = settle_short(
            action.args.short, self._question, max_chars=SHORT_MAX_CHARS, instructions=self._instructions()
        )
        edits = [settled] if settled is not None else []
        printed = self._last_printed_number() if not short else None
        if printed is not None:
            # An agent that computed but left no short answer (it copied the format's placeholder
            # after its code printed 276) answers with what its code printed last: its evidence.
            short = printed
            edits.append(
                Edit("short_answer_from_code", f"no short answer was left: the code's last number {printed}")
            )
        args = action.args
        if short == "Yes" and self._names:
            short, args, grounded = self._ground_yes(args)
            edits += grounded
        candidates = names_candidates(self._question) if self.works_on_corpus else []
        dated = choose_by_date(self._question, self.sources.opened.values()) if candidates else None
        if dated is not None and dated.winner is not None:
            short, args, grounded = self._dated_choice(short, args, dated)
            edits += grounded
        elif short in candidates:
            short, args, grounded = self._ground_choice(short, args, candidates)
            edits += grounded
        text = self._written_answer(args, short, steps, settled=edits)
        answer, citations = self._resolve_citations(text, args.cite)
        self.stream.emit(
            AgentFinished(
                run_id=self.run_id,
                agent=self.name,
                answer=answer,
                citations=[c.to_record() for c in citations],
                stop_reason=str(stop_reason),
                steps=steps,
                short_answer=short,
            )
        )
        missing = action.missing.strip() if action.states_missing else ""
        return AgentResult(
            self.name,
            task,
            answer,
            citations,
            stop_reason,
            steps,
            self.usage,
            self.sources,
            missing=missing,
            short_answer=short,
        )

    def _ground_yes(self, args: AnswerArgs) -> tuple[str, AnswerArgs, list[Edit]]:
        """A "yes" to a question asked of several names (`self._names`) stands only when a passage this
        agent read about each name holds the predicate's words (`grounding.ungrounded_yes`); otherwise
        the answer is "no", written from what was read, and the change is recorded."""
        predicate = conjunct_predicate(self._question)
        about = {name: self.sources.about(name) for name in self._names}
        found = ungrounded_yes(predicate, self._names, about)
        if found is None:
            return "Yes", args, []
        why = found.describe()
        markers = "".join(f"[{ref}]" for ref in found.refs)
        text = f"No: {why}{' ' + markers if markers else ''}."
        edit = Edit("yes_not_grounded", f'"Yes" became "No": {why} ({predicate})')
        return "No", AnswerArgs(short="No", answer=text, cite=list(found.refs)), [edit]

    def _ground_choice(
        self, short: str, args: AnswerArgs, candidates: Sequence[str]
    ) -> tuple[str, AnswerArgs, list[Edit]]:
        """A choice between the candidates a question names stands unless the passages this agent read
        about every candidate say what the question asks of another one (`grounding.grounded_choice`);
        then the answer is that one, written from what was read, and the change is recorded."""
        about = {name: self.sources.about(name) for name in candidates}
        found = grounded_choice(self._question, candidates, about)
        if found is None or found.name == short:
            return short, args, []
        why = found.describe()
        cite = [*found.refs, *(ref for _, _, refs in found.others for ref in refs)]
        edit = Edit("choice_grounded", f'"{short}" became "{found.name}": {why}')
        return found.name, AnswerArgs(short=found.name, answer=f"{found.name}: {why}.", cite=cite), [edit]

    def _dated_choice(
        self, short: str, args: AnswerArgs, dated: DatedChoice
    ) -> tuple[str, AnswerArgs, list[Edit]]:
        """A question that asks which of its candidates is earliest or latest goes to the one whose page,
        read by this agent, opens with that year (`dated_choice.choose_by_date`, decided before this is
        called); the answer says the years, cited to the pages, and a changed answer is recorded."""
        winner = dated.winner
        assert winner is not None
        if short == winner.name:
            return short, args, []
        refs = {doc.id: ref for ref, doc in self.sources.opened.items()}
        facts = " ".join(
            f"{c.name}: {c.year} [{refs[c.document.id]}]." for c in dated.candidates if c.document is not None
        )
        cite = [refs[c.document.id] for c in dated.candidates if c.document is not None]
        decided = AnswerArgs(short=winner.name, answer=f"{winner.name}\n\n{facts}", cite=cite)
        years = ", ".join(f"{c.name} {c.year}" for c in dated.candidates)
        edit = Edit("choice_dated", f'"{short}" became "{winner.name}": the {dated.direction} of {years}')
        return winner.name, decided, [edit]

    def _written_answer(
        self, args: AnswerArgs, short: str, step: int, *, settled: Sequence[Edit] = ()
    ) -> str:
        """The answer's text, repaired where needed (each repair recorded as an `AnswerEdited` event):
        sentences that copy the agent's instructions dropped; a degenerate repetition cut; unfinished
        text ended at its last sentence; markers for cited sources the text never marks; short answer
        first (`settled`: what settled the short answer, `settle_short` or the code's output, recorded
        with the rest)."""
        original = args.answer
        # Unfinished text ends at its last sentence whatever stopped it: the schema's length bound, a cut
        # output (`cut`), or the model itself, which under constrained decoding may close the string
        # mid-word ("…south of San F"). The short answer carries the answer whole. "<your answer>" copies
        # the format's placeholder: there is no written answer then, only the short one.
        if is_placeholder(original):
            dropped = Edit(
                "answer_dropped",
                f"the answer copies the format's placeholder: {original.strip()}",
                len(original),
            )
            text, edits = "", [dropped]
        else:
            text, joined = join_split_sentence(args.short, original, max_chars=SHORT_MAX_CHARS)
            # A hint the agent was given ("… open [1] before you answer.") is no finding to pass on.
            written = [m.content for m in self.messages if m.role == "assistant"]
            text, copied = drop_copied_sentences(text, self._instructions(), self._question, written=written)
            text, edits = repair_free_text(text, cut_off=True)
            edits[:0] = [edit for edit in (joined, copied) if edit is not None]
        edits[:0] = settled
        opened = self.sources.opened
        titles = {ref: opened[ref].title for ref in dict.fromkeys(args.cite) if ref in opened}
        text, marked = attach_markers(text, titles)
        if marked is not None:
            edits.append(marked)
        text, led = lead_with(short, text)
        if led is not None:
            edits.append(led)
        if edits:
            self.stream.emit(
                AnswerEdited(
                    run_id=self.run_id,
                    agent=self.name,
                    step=step,
                    edits=[edit.to_record() for edit in edits],
                    original=original,
                    text=text,
                )
            )
        return text

    def _fail(self, task: str, steps: int, exc: Exception) -> AgentResult:
        message = f"{type(exc).__name__}: {exc}"
        # A budget that stops the agent before it could answer is why it stopped, not a fault.
        reason = StopReason("budget", exc.budget) if isinstance(exc, BudgetExceededError) else FAILED
        self.stream.emit(
            AgentFinished(
                run_id=self.run_id,
                agent=self.name,
                answer="",
                citations=[],
                stop_reason=str(reason),
                error=message,
                steps=steps,
            )
        )
        failed = AgentResult.failure(self.name, task, steps, self.usage, self.sources, message)
        return replace(failed, stop_reason=reason)

    def _no_room_for_two_calls(self, added: Sequence[Message] = ()) -> BudgetName | None:
        """ "tokens" when what is left of the token budget cannot pay for this step's call and an answer
        after it: this step must answer, while it still can. `added`: turns the conversation would gain
        first (a rejected answer's), counted in the prompt."""
        prompt = estimate_prompt_tokens([*self.messages, *added])

        def bound(final: bool) -> int:
            return prompt + (self.max_tokens_per_call or output_token_bound(self.action_schema(final=final)))

        # The answer's bound is its own: this step's schema may not allow answering (the first step
        # must use a tool), and an answer may run longer than any tool call.
        return "tokens" if self.budget.room() < bound(final=False) + bound(final=True) else None

    def _resolve_citations(self, text: str, cite: list[int]) -> tuple[str, list[Citation]]:
        """Keep citations to opened documents only (drops are recorded) and renumber them 1..k."""
        opened = {ref: Source(ref, doc, (self.name,)) for ref, doc in self.sources.opened.items()}

        def drop_reason(ref: int) -> str:
            return "seen in results but never opened" if ref in self.sources.seen else "never seen"

        return resolve_citations(
            text,
            cite,
            opened,
            drop_reason=drop_reason,
            stream=self.stream,
            run_id=self.run_id,
            agent=self.name,
        )


def recap(question: str, opened: Mapping[int, Document]) -> str:
    """The read sentences closest to `question` (`evidence.closest_sentences`) as the last prompt shows
    them, each with its document number, in a data fence; "" when none holds a question word."""
    recalled = closest_sentences(question, opened)
    if not recalled:
        return ""
    lines = "\n".join(f"[{r.ref}] {r.sentence}" for r in recalled)
    return fence_untrusted(lines, label=render_prompt("agent_recap").strip())


def _action_option(name: str, args_schema: JsonSchema) -> JsonSchema:
    # "missing" comes first: the model says what it lacks before it picks what to do about it.
    properties = {
        "missing": {"type": "string", "maxLength": MISSING_MAX_CHARS},
        "action": {"type": "string", "enum": [name]},
        **args_schema["properties"],
    }
    return {
        "type": "object",
        "properties": properties,
        "required": ["missing", "action", *args_schema["required"]],
        "additionalProperties": False,
    }
