"""Heavy mode: plan, fan out N research agents concurrently, compare their notes, synthesize.

`Orchestrator.plan` asks the model how many agents the question needs and what each should do;
`Orchestrator.research` runs them in one `TaskGroup` over a shared search cache (one agent failing never
loses the others' work); `Orchestrator.synthesize` compares the notes and writes one cited answer.
Citations may point only at passages some agent actually opened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from openheavy.agent import (
    ANSWER_MAX_CHARS,
    AgentResult,
    Budget,
    ResearchAgent,
    works_on_corpus,
)
from openheavy.citations import Citation, RunSources, resolve_citations
from openheavy.errors import AgentsFailedError, OpenHeavyError
from openheavy.json_output import first_json_object
from openheavy.models.base import ChatModel
from openheavy.models.recording import RecordingModel
from openheavy.prompts import fence_untrusted, load_prompt, render_prompt
from openheavy.rank import RankResult, rank
from openheavy.search.cache import CachedSearch
from openheavy.slicing import LIST_CUE, find_period, period_slices
from openheavy.tools.base import Tool
from openheavy.types import EventStream, JsonSchema, Message, Note, Usage
from openheavy.verify import Sample, Verifier

TASK_MAX_CHARS = 240
SIMPLE_MAX_AGENTS = 2


def fallback_angles() -> list[str]:
    """Distinct angles on the same question, one per line of `plan_fallback_angles.txt`: the sub-tasks
    used when the planner's output is unusable."""
    return [line.strip() for line in load_prompt("plan_fallback_angles").splitlines() if line.strip()]


class PlanOutput(BaseModel):
    kind: Literal["simple", "multi-part", "list"] = "simple"
    tasks: list[str] = Field(min_length=1)


class SynthesisOutput(BaseModel):
    agreements: str = ""
    conflicts: str = ""
    answer: str = Field(min_length=1)
    cite: list[int] = Field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    kind: str  # "simple", "multi-part", "list"
    tasks: list[str]
    origin: str  # "model", "fixed" (model, agent count given), "period" (sliced by years), "fallback"

    def to_record(self) -> dict[str, Any]:
        """The JSON form in run results."""
        return {"kind": self.kind, "tasks": self.tasks, "origin": self.origin}


@dataclass(frozen=True)
class HeavyResult:
    answer: str
    citations: list[Citation]
    plan: Plan
    agents: list[AgentResult]
    agreements: str = ""
    conflicts: str = ""
    synthesis_error: str | None = None
    usage: Usage = field(default_factory=Usage)

    @property
    def failures(self) -> list[str]:
        return [f"{a.agent}: {a.error}" for a in self.agents if a.error]


@dataclass(frozen=True)
class RankedTrajectories:
    """Research trajectories ranked by a verifier instead of synthesized."""

    plan: Plan
    ranked: RankResult
    agents: list[AgentResult]  # one per sample, in sample order

    @property
    def best(self) -> AgentResult:
        return self.agents[self.ranked.best.index]


class Orchestrator:
    """Plans a question, runs research agents concurrently and synthesizes their notes."""

    def __init__(
        self,
        model: ChatModel,
        search: CachedSearch | None,
        *,
        stream: EventStream,
        run_id: str,
        corpus: str = "",
        tools: Sequence[Tool] | None = None,
        agents: int | None = None,
        max_agents: int = 4,
        max_steps: int = 6,
        budget: Budget | None = None,
        max_tokens_per_call: int | None = None,
        temperature: float | None = 0.0,
        seed: int = 0,
        answer_max_chars: int = ANSWER_MAX_CHARS,
    ) -> None:
        if max_agents < 1:
            raise OpenHeavyError(f"--max-agents must be at least 1, got {max_agents}")
        if agents is not None and agents < 1:
            raise OpenHeavyError(f"--agents must be 'auto' or at least 1, got {agents}")
        # Planner, synthesis, agents and ranked samples all spend the one budget of the run.
        self.recorder = RecordingModel(model, stream=stream, run_id=run_id, budget=budget)
        self.model: ChatModel = self.recorder
        self.search = search
        self.stream = stream
        self.run_id = run_id
        self.corpus = corpus or (search.name if search is not None else "")
        # None: each agent's default tools (search and open). One set serves every agent of the run.
        self.tools = tools
        self.agents = agents
        self.max_agents = max(max_agents, agents or 0)
        self.max_steps = max_steps
        self.budget = self.recorder.budget or Budget.unlimited()
        self.max_tokens_per_call = max_tokens_per_call
        self.answer_max_chars = answer_max_chars
        self.temperature = temperature
        self.seed = seed
        self.usage = Usage()

    async def run(self, question: str) -> HeavyResult:
        """Plan, research and synthesize one question."""
        plan = await self.plan(question)
        results = await self.research(question, plan)
        return await self.synthesize(question, plan, results)

    # ------------------------------------------------------------------ plan
    async def plan(self, question: str) -> Plan:
        """Decide how many agents to run and give each a distinct sub-task.

        A list question over an explicit span of years is sliced by period without asking the model
        (see `openheavy.slicing`); anything else goes to the planner model."""
        sliced = self._period_plan(question)
        if sliced is not None:
            self._emit_plan(sliced, "")
            return sliced
        low, high = (self.agents, self.agents) if self.agents else (1, self.max_agents)
        count_rule = (
            render_prompt("plan_count_exact", count=low)
            if low == high
            else render_prompt("plan_count_range", low=low, high=high)
        ).strip()
        schema: JsonSchema = {
            "type": "object",
            "properties": {
                "kind": {"type": "string", "enum": ["simple", "multi-part", "list"]},
                "tasks": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 3, "maxLength": TASK_MAX_CHARS},
                    "minItems": low,
                    "maxItems": high,
                },
            },
            "required": ["kind", "tasks"],
            "additionalProperties": False,
        }
        messages = [
            Message("system", render_prompt("plan_system", agents_work=self._agents_work(), max_agents=high)),
            Message("user", render_prompt("plan_user", question=question, count_rule=count_rule)),
        ]
        plan: Plan | None = None
        problem = ""
        try:
            planner = self.recorder.labelled(agent="planner", purpose="plan")
            completion = await planner.complete(
                messages,
                json_schema=schema,
                temperature=self.temperature,
                seed=self.seed,
            )
            self._charge(completion.usage)
            parsed = PlanOutput.model_validate(first_json_object(completion.text))
            tasks = _distinct([t.strip()[:TASK_MAX_CHARS] for t in parsed.tasks if t.strip()])
            if len(tasks) < low:
                problem = f"the planner gave {len(tasks)} distinct sub-tasks, {low} needed"
            else:
                if parsed.kind == "simple" and not self.agents:
                    # The schema asks for "kind" before "tasks", so the model commits to it first;
                    # a simple question gets at most two agents however many tasks were written.
                    tasks = tasks[:SIMPLE_MAX_AGENTS]
                plan = Plan(parsed.kind, tasks[:high], "fixed" if self.agents else "model")
        except (ValueError, ValidationError, OpenHeavyError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if plan is None:
            count = self.agents or min(2, self.max_agents)
            plan = Plan("simple", [question, *fallback_angles()][:count], "fallback")
        self._emit_plan(plan, problem)
        return plan

    def _agents_work(self) -> str:
        """How the agents work, in the planner's prompt: on the corpus, or with tools alone."""
        if self.tools is None or works_on_corpus(self.tools):
            return render_prompt("plan_agents_search", corpus=self.corpus).strip()
        return render_prompt("plan_agents_no_corpus").strip()

    def _period_plan(self, question: str) -> Plan | None:
        """One agent per slice of years for a list question that names a span of years, or None.
        With a fixed agent count the span must have at least that many years to slice."""
        period = find_period(question)
        if period is None or not LIST_CUE.search(question):
            return None
        tasks = period_slices(question, period, self.agents or self.max_agents)
        if len(tasks) < max(2, self.agents or 0):
            return None
        return Plan("list", tasks, "period")

    def _emit_plan(self, plan: Plan, problem: str) -> None:
        self.stream.emit(
            Note(
                run_id=self.run_id,
                agent="planner",
                topic="plan",
                data={"kind": plan.kind, "tasks": plan.tasks, "origin": plan.origin, "problem": problem},
            )
        )

    # -------------------------------------------------------------- research
    async def research(self, question: str, plan: Plan) -> list[AgentResult]:
        """Run one agent per sub-task, all at once. Failures are returned, never raised."""
        agents = [self._agent(i, self.temperature) for i in range(len(plan.tasks))]
        tasks: list[asyncio.Task[AgentResult]] = []
        async with asyncio.TaskGroup() as group:
            for agent, task in zip(agents, plan.tasks, strict=True):
                tasks.append(group.create_task(self._run_agent(agent, question, task)))
        results = [t.result() for t in tasks]
        for result in results:
            self.usage = self.usage + result.usage
        return results

    def _agent(self, index: int, temperature: float | None) -> ResearchAgent:
        return ResearchAgent(
            self.model,
            self.search,
            stream=self.stream,
            run_id=self.run_id,
            name=f"agent-{index + 1}",
            corpus=self.corpus,
            max_steps=self.max_steps,
            budget=self.budget,
            max_tokens_per_call=self.max_tokens_per_call,
            temperature=temperature,
            seed=self.seed + index + 1,
            tools=self.tools,
            answer_max_chars=self.answer_max_chars,
        )

    async def _run_agent(self, agent: ResearchAgent, question: str, task: str) -> AgentResult:
        try:
            return await agent.run(question, task)
        except Exception as exc:  # anything unexpected: keep the other agents' work
            message = f"{type(exc).__name__}: {exc}"
            return AgentResult.failure(agent.name, task, 0, agent.usage, agent.sources, message)

    # --------------------------------------------------------------- ranking
    async def rank_trajectories(
        self,
        question: str,
        verifier: Verifier,
        *,
        tasks: list[str] | None = None,
        temperature: float = 0.7,
    ) -> RankedTrajectories:
        """Instead of synthesis: run one agent per task and return their whole trajectories ranked by
        `verifier` (answer plus the evidence read). `tasks` defaults to the planner's sub-tasks; the
        rank-tools mode passes the question N times, so the agents differ only by seed."""
        plan = Plan("simple", tasks, "fixed") if tasks else await self.plan(question)
        results: dict[int, AgentResult] = {}

        async def sampler(index: int) -> Sample:
            agent = self._agent(index, temperature)
            result = await self._run_agent(agent, question, plan.tasks[index])
            results[index] = result
            self.usage = self.usage + result.usage
            return trajectory_sample(index, result)

        ranked = await rank(
            question,
            self.model,
            n=len(plan.tasks),
            verifier=verifier,
            stream=self.stream,
            run_id=self.run_id,
            seed=self.seed,
            sampler=sampler,
        )
        return RankedTrajectories(plan, ranked, [results[i] for i in sorted(results)])

    # ------------------------------------------------------------- synthesis
    async def synthesize(self, question: str, plan: Plan, results: list[AgentResult]) -> HeavyResult:
        """Compare the agents' notes and write one answer citing only passages they read."""
        sources = RunSources.gather((r.agent, r.sources.opened.values()) for r in results)
        usable = [r for r in results if r.ok and r.answer.strip()]
        if not usable:
            # A run with no answer is a failed run (exit code, run store, eval error), never an "answer"
            # made of the failures.
            raise AgentsFailedError(_describe_failures(results))
        if len(usable) == 1 and len(results) == 1:
            # One agent: its answer is the answer; comparing notes would only cost tokens.
            only = usable[0]
            return HeavyResult(only.answer, sources.adopt(only.citations), plan, results, usage=self.usage)
        notes = [
            render_prompt(
                "synthesis_note", agent=r.agent, task=r.task, answer=sources.globalize(r.answer, r.citations)
            ).strip()
            if r.ok
            else render_prompt("synthesis_note_failed", agent=r.agent, task=r.task, error=r.error).strip()
            for r in results
        ]
        listing = (
            "\n".join(
                render_prompt(
                    "synthesis_source",
                    number=s.number,
                    title=s.document.title,
                    location=f" ({s.document.url})" if s.document.url else "",
                    excerpt=_excerpt(s.document.text),
                ).strip()
                for s in sources.by_id.values()
            )
            or render_prompt("synthesis_no_sources").strip()
        )
        numbers = sorted(sources.by_number)
        schema: JsonSchema = {
            "type": "object",
            "properties": {
                "agreements": {"type": "string", "maxLength": self.answer_max_chars // 4},
                "conflicts": {"type": "string", "maxLength": self.answer_max_chars // 4},
                # a merged list may be longer than any one agent's answer
                "answer": {"type": "string", "minLength": 1, "maxLength": self.answer_max_chars * 4 // 3},
                "cite": (
                    {"type": "array", "items": {"type": "integer", "enum": numbers}, "maxItems": 12}
                    if numbers
                    else {"type": "array", "items": {"type": "integer"}, "maxItems": 0}
                ),
            },
            "required": ["agreements", "conflicts", "answer", "cite"],
            "additionalProperties": False,
        }
        # The notes and sources carry what the agents read: data for the synthesizer, never instructions.
        fenced_notes = fence_untrusted(
            "\n\n".join(notes), label=render_prompt("synthesis_notes_label").strip()
        )
        fenced_sources = fence_untrusted(listing, label=render_prompt("synthesis_sources_label").strip())
        messages = [
            Message("system", render_prompt("synthesis_system")),
            Message(
                "user",
                render_prompt(
                    "synthesis_user", question=question, notes=fenced_notes, sources=fenced_sources
                ),
            ),
        ]
        error: str | None = None
        output: SynthesisOutput | None = None
        for attempt in (1, 2):
            try:
                synthesizer = self.recorder.labelled(agent="synthesizer", step=attempt, purpose="synthesis")
                completion = await synthesizer.complete(
                    messages,
                    json_schema=schema,
                    temperature=self.temperature,
                    seed=self.seed,
                )
                self._charge(completion.usage)
                output = SynthesisOutput.model_validate(first_json_object(completion.text))
                break
            except (ValueError, ValidationError) as exc:
                error = f"invalid synthesis output: {exc}"
            except OpenHeavyError as exc:
                error = f"{type(exc).__name__}: {exc}"
                break
        if output is None:
            # Never lose the agents' work: fall back to the best-supported agent answer.
            best = max(usable, key=lambda r: len(r.citations))
            return HeavyResult(
                best.answer,
                sources.adopt(best.citations),
                plan,
                results,
                synthesis_error=error,
                usage=self.usage,
            )
        answer, citations = resolve_citations(
            output.answer,
            output.cite,
            sources.by_number,
            drop_reason=lambda _: "no agent read this document",
            stream=self.stream,
            run_id=self.run_id,
            agent="synthesizer",
        )
        if plan.kind == "list":
            answer, citations = _merge_list_sources(answer, citations, results, sources)
        return HeavyResult(
            answer,
            citations,
            plan,
            results,
            agreements=output.agreements,
            conflicts=output.conflicts,
            usage=self.usage,
        )

    def _charge(self, usage: Usage) -> None:
        self.usage = self.usage + usage


def trajectory_sample(index: int, result: AgentResult) -> Sample:
    """An agent's trajectory as a rank sample: its answer plus the evidence it read, for the verifier."""
    evidence = "\n".join(
        f"[{c.number}] {c.title}: {_excerpt(c.source.document.text, 400)}" for c in result.citations
    )
    evidence = (
        fence_untrusted(evidence, label=render_prompt("heavy_trajectory_evidence_label").strip())
        if evidence
        else render_prompt("heavy_trajectory_no_evidence").strip()
    )
    text = render_prompt("heavy_trajectory", answer=result.answer, evidence=evidence).strip()
    return Sample(
        index=index,
        text=text,
        answer=result.answer,
        evidence=[c.to_record() for c in result.citations],
        usage=result.usage,
        error=result.error,
    )


def _describe_failures(results: list[AgentResult]) -> str:
    """Why a run whose agents all failed has no answer: each agent's error, and what to do."""
    errors = "; ".join(f"{r.agent}: {(r.error or 'no answer')[:300]}" for r in results)
    if all(r.stop_reason.kind == "budget" for r in results):
        return f"all {len(results)} agents were stopped by the budget before they could answer ({errors})"
    return (
        f"all {len(results)} agents failed, so there is no answer ({errors}) — the first error says what "
        "went wrong; fix that (often the model server) and ask again"
    )


def _merge_list_sources(
    answer: str, citations: list[Citation], results: list[AgentResult], sources: RunSources
) -> tuple[str, list[Citation]]:
    """For list questions, coverage matters: add every item an agent cited that synthesis left out."""
    cited = {c.doc_id for c in citations}
    added: list[Citation] = []
    for result in results:
        for citation in result.citations:
            source = sources.by_id.get(citation.id)
            if source and source.document.doc_id not in cited:
                cited.add(source.document.doc_id)
                added.append(Citation(len(citations) + len(added) + 1, source))
    if not added:
        return answer, citations
    items = "\n".join(f"- {c.title} [{c.number}]" for c in added)
    return render_prompt("heavy_list_merge", answer=answer, items=items).strip(), [*citations, *added]


def _excerpt(text: str, chars: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= chars else flat[:chars] + " […]"


def _distinct(tasks: list[str]) -> list[str]:
    seen: set[str] = set()
    kept = []
    for task in tasks:
        key = " ".join(task.casefold().split())
        if key not in seen:
            seen.add(key)
            kept.append(task)
    return kept


__all__ = ["HeavyResult", "Orchestrator", "Plan", "RankedTrajectories", "trajectory_sample"]
