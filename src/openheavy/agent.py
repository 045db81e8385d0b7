"""One research agent: the step loop, budgets and citation bookkeeping.

`ResearchAgent.run` loops `step`: ask the model for one JSON action (constrained to a schema built from
what the agent may do right now), run the tool, show the observation. It ends when the model answers or
a budget runs out, in which case the last call may only answer. Malformed output is shown back to the
model once; a second failure raises `ModelOutputError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from openheavy.citations import Citation, Source, resolve_citations
from openheavy.errors import BudgetExceededError, ModelOutputError, OpenHeavyError
from openheavy.json_output import first_json_object
from openheavy.models.base import ChatModel
from openheavy.models.budget import Budget, BudgetName, estimate_prompt_tokens
from openheavy.models.recording import CallLabel, RecordingModel, output_token_bound
from openheavy.prompts import render_prompt
from openheavy.search.cache import CachedSearch
from openheavy.tools.base import Tool, ToolContext
from openheavy.tools.research import OpenTool, SearchTool
from openheavy.tools.sources import SourceBook
from openheavy.types import (
    ActionParsed,
    AgentFinished,
    AgentStarted,
    EventStream,
    JsonSchema,
    Message,
    OutputRejected,
    Usage,
)

__all__ = ["ANSWERED", "FAILED", "AgentResult", "Budget", "BudgetName", "ResearchAgent", "StopReason"]

ANSWER_MAX_CHARS = 1500
MAX_CITES = 8


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
    answer: str = Field(min_length=1)
    cite: list[int] = Field(default_factory=list)


@dataclass(frozen=True)
class Action:
    name: str  # a tool name or "answer"
    args: BaseModel
    raw: str


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
        }


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
        # Constrained decoding stops a string at its maxLength: this bounds the answer's length and
        # cost (a small model may otherwise repeat itself until the limit).
        self.answer_max_chars = answer_max_chars
        self.temperature = temperature
        self.seed = seed
        self.sources = SourceBook()
        self._used_a_tool = False
        self.messages: list[Message] = []
        self.usage = Usage()

    # ------------------------------------------------------------------ loop
    async def run(self, question: str, task: str | None = None, *, brief: str | None = None) -> AgentResult:
        """Research `question` (or the sub-`task` of it) until an answer or a spent budget. `brief`, when
        given, is shown instead of the sub-task line: an orchestrator's instructions for this agent
        (heavy mode's task, slice and first queries)."""
        self.stream.emit(AgentStarted(run_id=self.run_id, agent=self.name, task=task or question))
        # Shared prefix first (system, question), the agent's own sub-task last: prompt caches in
        # llama.cpp / vLLM then serve the common part once for all agents of a run.
        system = self.system_prompt()
        user = render_prompt("agent_question", question=question)
        if brief:
            user += "\n" + brief
        elif task and task.strip() != question.strip():
            user += "\n" + render_prompt("agent_subtask", task=task)
        self.messages = [Message("system", system), Message("user", user)]
        step = 0
        try:
            for step in range(1, self.max_steps + 1):
                spent = self.budget.exhausted() or self._no_room_for_two_calls()
                final = step == self.max_steps or spent is not None
                action = await self.step(step, final=final)
                if action.name == "answer":
                    assert isinstance(action.args, AnswerArgs)
                    reason = StopReason("budget", spent or "steps") if final else ANSWERED
                    return self._finish(task or question, action.args, reason, step)
        except OpenHeavyError as exc:
            return self._fail(task or question, step, exc)
        raise AssertionError("unreachable: the last step can only answer")  # pragma: no cover

    @property
    def works_on_corpus(self) -> bool:
        """Whether the agent has the search tool (and so a corpus to answer from, and to cite)."""
        return works_on_corpus(self.tools.values())

    def system_prompt(self) -> str:
        """The system prompt: the agent's actions, one per tool in order, then `answer`. An agent without
        search is told there are no documents (it computes its answer, e.g. with python)."""
        actions = "\n".join(render_prompt(f"agent_action_{name}").strip() for name in self.tools)
        if self.works_on_corpus:
            return render_prompt(
                "agent_system", corpus=self.corpus, actions=actions, max_steps=self.max_steps
            )
        return render_prompt("agent_system_no_corpus", actions=actions, max_steps=self.max_steps)

    async def step(self, step: int, *, final: bool) -> Action:
        """Ask for one action, run it, and append the observation. Returns the action."""
        action = await self._next_action(step, final)
        self.stream.emit(
            ActionParsed(
                run_id=self.run_id,
                agent=self.name,
                step=step,
                action=action.name,
                args=action.args.model_dump(),
            )
        )
        if action.name == "answer":
            return action
        tool = self.tools[action.name]
        self._used_a_tool = True
        ctx = ToolContext(self.run_id, self.name, step, self.search, self.sources, self.stream)
        observation = await self.budget.bounded(
            f"{self.name}'s {action.name} at step {step}", lambda: tool.call(action.args, ctx)
        )
        last = step + 1 == self.max_steps or self.budget.exhausted() is not None
        if last:
            final_prompt = "agent_final" if self.works_on_corpus else "agent_final_no_corpus"
            text = render_prompt(final_prompt, observation=observation.text)
        else:
            text = render_prompt(
                "agent_observation", observation=observation.text, step=step, max_steps=self.max_steps
            )
        self.messages += [Message("assistant", action.raw), Message("user", text)]
        return action

    # ------------------------------------------------------------- actions
    def allowed_actions(self, final: bool) -> list[str]:
        """Actions the agent may take now: the last step may only answer, the first must use a tool
        (an agent that answers before looking, or before computing, is a direct answer in disguise;
        small models do this)."""
        if final:
            return ["answer"]
        tools = [name for name, tool in self.tools.items() if tool.available(self.sources)]
        return [*tools, "answer"] if self._used_a_tool or not tools else tools

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
                "answer": {"type": "string", "minLength": 1, "maxLength": self.answer_max_chars},
                "cite": cite,
            },
            "required": ["answer", "cite"],
        }

    async def _next_action(self, step: int, final: bool) -> Action:
        schema = self.action_schema(final)
        messages = list(self.messages)
        error = ""
        for attempt in (1, 2):
            model = self.model.labelled(step=step, purpose="answer" if final else "action")
            completion = await model.complete(
                messages,
                json_schema=schema,
                max_tokens=self.max_tokens_per_call,
                temperature=self.temperature,
                seed=self.seed,
            )
            self.usage = self.usage + completion.usage
            try:
                return self._parse(completion.text, final)
            except ValueError as exc:
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

    def _parse(self, text: str, final: bool) -> Action:
        payload = first_json_object(text)
        name = payload.pop("action", None)
        allowed = self.allowed_actions(final)
        if name not in allowed:
            raise ValueError(f'"action" must be one of {allowed}, got {name!r}')
        try:
            if name == "answer":
                return Action("answer", AnswerArgs.model_validate(payload), text)
            tool = self.tools[name]
            return Action(name, tool.Args.model_validate(payload), text)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"bad arguments for {name}: {problems}") from exc

    # ------------------------------------------------------------ results
    def _finish(self, task: str, args: AnswerArgs, stop_reason: StopReason, steps: int) -> AgentResult:
        answer, citations = self._resolve_citations(args)
        self.stream.emit(
            AgentFinished(
                run_id=self.run_id,
                agent=self.name,
                answer=answer,
                citations=[c.to_record() for c in citations],
                stop_reason=str(stop_reason),
                steps=steps,
            )
        )
        return AgentResult(self.name, task, answer, citations, stop_reason, steps, self.usage, self.sources)

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

    def _no_room_for_two_calls(self) -> BudgetName | None:
        """ "tokens" when what is left of the token budget cannot pay for this step's call and an answer
        after it: this step must answer, while it still can."""
        schema = self.action_schema(final=False)
        reply = self.max_tokens_per_call or output_token_bound(schema)
        bound = estimate_prompt_tokens(self.messages) + reply
        return "tokens" if self.budget.room() < 2 * bound else None

    def _resolve_citations(self, args: AnswerArgs) -> tuple[str, list[Citation]]:
        """Keep citations to opened documents only (drops are recorded) and renumber them 1..k."""
        opened = {ref: Source(ref, doc, (self.name,)) for ref, doc in self.sources.opened.items()}

        def drop_reason(ref: int) -> str:
            return "seen in results but never opened" if ref in self.sources.seen else "never seen"

        return resolve_citations(
            args.answer,
            args.cite,
            opened,
            drop_reason=drop_reason,
            stream=self.stream,
            run_id=self.run_id,
            agent=self.name,
        )


def _action_option(name: str, args_schema: JsonSchema) -> JsonSchema:
    properties = {"action": {"type": "string", "enum": [name]}, **args_schema["properties"]}
    return {
        "type": "object",
        "properties": properties,
        "required": ["action", *args_schema["required"]],
        "additionalProperties": False,
    }
