"""Heavy mode: plan, fan out N research agents concurrently, and merge their answers by the answer's shape.

`Orchestrator.plan` asks the model for the answer's shape and one assignment per agent (a task and its
own first queries; for a list, a slice of a checked partition), and checks it in code
(`openheavy.planning`, `openheavy.partition`). `Orchestrator.research` runs the agents in one
`TaskGroup` over a shared search cache (one agent failing never loses the others' work); each agent's
first action is its first planned query, run without a model call (`Orchestrator._first_search`; not
for agents that check one name of a yes/no question), so the agents start apart by construction (a
small model told "search first for X" opens the top shared result in about one case of eight instead).
`Orchestrator.synthesize` merges: short answers are voted, lists are the deduplicated union of the
agents' items, long answers are synthesized (`openheavy.aggregation`). Citations may point only at
passages some agent actually opened. The plan, the vote and the merge are events in the trace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, Field, ValidationError

from openheavy.agent import (
    ANSWER_MAX_CHARS,
    SHORT_MAX_CHARS,
    AgentResult,
    Budget,
    ResearchAgent,
    team_opening,
    works_on_corpus,
)
from openheavy.aggregation import (
    AnswerVote,
    ConjunctVote,
    ListItem,
    is_choice,
    lead_sentence,
    merge_list_items,
    short_answer,
    vote_on_answers,
    vote_on_conjuncts,
)
from openheavy.answer_text import (
    Edit,
    attach_markers,
    drop_note_talk,
    lead_with,
    repair_free_text,
    settle_short,
)
from openheavy.citations import Citation, RunSources, Source, resolve_citations
from openheavy.dated_choice import choose_by_date, titled
from openheavy.errors import AgentsFailedError, BudgetExceededError, OpenHeavyError
from openheavy.item_check import MAX_DOCUMENTS, ListCheck, check_list
from openheavy.json_output import first_json_object
from openheavy.models.base import ChatModel
from openheavy.models.recording import RecordingModel
from openheavy.partition import Partition, check_partition
from openheavy.planning import (
    TASK_MAX_CHARS,
    Assignment,
    Plan,
    PlanOutput,
    conjunct_plan,
    copies_question,
    decide_shape,
    plan_schema,
    query_words,
    seed_queries,
    spread_queries,
)
from openheavy.prompts import fence_untrusted, load_prompt, render_prompt
from openheavy.question_forms import conjuncts, names_candidates, short_answer_schema
from openheavy.rank import SAMPLE_TEMPERATURE, RankResult, rank
from openheavy.search.cache import CachedSearch
from openheavy.search.local import LocalIndex
from openheavy.search.queries import QueryLog
from openheavy.tools.base import Tool
from openheavy.tools.research import Opening
from openheavy.types import (
    AnswerEdited,
    Document,
    EventStream,
    JsonSchema,
    ListMerged,
    Message,
    PlanMade,
    Usage,
    VoteTaken,
)
from openheavy.verify import Sample, Verifier

WEB_DOCUMENTS = 24  # documents a list's checks open on the web (a fetch each), not on a local index
SYNTHESIS_MAX_SOURCES = 12  # sources listed to the synthesizer, the ones the agents cited first


def fallback_angles() -> list[str]:
    """Distinct angles on the same question, one per line of `plan_fallback_angles.txt`: the sub-tasks
    used when the planner's output is unusable."""
    return [line.strip() for line in load_prompt("plan_fallback_angles").splitlines() if line.strip()]


class SynthesisOutput(BaseModel):
    agreements: str = ""
    conflicts: str = ""
    short: str = ""
    answer: str = Field(min_length=1)
    cite: list[int] = Field(default_factory=list)


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
    short_answer: str = ""  # the bare answer the answer leads with, when there is one (not for lists)

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
        max_list_documents: int = MAX_DOCUMENTS,
        opening_search: bool = True,
        planned_search: bool = True,
        share_prefix: bool = True,
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
        self.max_list_documents = max_list_documents
        self.opening_search = opening_search  # search the question once and show every agent the results
        self.planned_search = planned_search  # an agent's first action is its first planned query
        self.share_prefix = share_prefix  # the agents' common prompt computed once (`_share_opening`)
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
        """Decide the answer's shape and give each agent a distinct assignment, checked in code: its own
        first queries and, for a list question, its own slice of a checked partition. An unusable
        planner reply falls back to fixed angles. A yes/no question asked of several names gets one
        group of agents per name, with no planner call (`conjunct_plan`). The plan is reported as a
        `PlanMade` event."""
        low, high = (self.agents, self.agents) if self.agents else (1, self.max_agents)
        names = conjuncts(question)
        plan = conjunct_plan(question, names, self.agents or min(high, 2 * len(names))) if names else None
        if plan is None:
            plan = await self._planned(question, low, high)
        self.stream.emit(
            PlanMade(
                run_id=self.run_id,
                agent="planner",
                shape=plan.shape,
                assignments=[a.to_record() for a in plan.assignments],
                origin=plan.origin,
                partition=plan.partition.to_record() if plan.partition else None,
                problems=list(plan.problems),
            )
        )
        return plan

    async def _planned(self, question: str, low: int, high: int) -> Plan:
        """The planner's plan for `low`..`high` agents, checked (`_checked_plan`)."""
        count_rule = (
            render_prompt("plan_count_exact", count=low)
            if low == high
            else render_prompt("plan_count_range", low=low, high=high)
        ).strip()
        messages = [
            Message("system", render_prompt("plan_system", agents_work=self._agents_work(), max_agents=high)),
            Message("user", render_prompt("plan_user", question=question, count_rule=count_rule)),
        ]
        output: PlanOutput | None = None
        problems: list[str] = []
        try:
            planner = self.recorder.labelled(agent="planner", purpose="plan")
            completion = await planner.complete(
                messages,
                json_schema=plan_schema(low, high),
                temperature=self.temperature,
                seed=self.seed,
            )
            self._charge(completion.usage)
            output = PlanOutput.model_validate(first_json_object(completion.text))
        except (ValueError, ValidationError, OpenHeavyError) as exc:
            problems.append(f"{type(exc).__name__}: {exc}")
        return self._checked_plan(question, output, low, high, problems)

    def _agents_work(self) -> str:
        """How the agents work, in the planner's prompt: on the corpus, or with tools alone."""
        if self.tools is None or works_on_corpus(self.tools):
            return render_prompt("plan_agents_search", corpus=self.corpus).strip()
        return render_prompt("plan_agents_no_corpus").strip()

    def _checked_plan(
        self, question: str, output: PlanOutput | None, low: int, high: int, problems: list[str]
    ) -> Plan:
        proposed: list[tuple[str, list[str]]] = []
        if output is not None:
            seen: set[tuple[str, frozenset[str]]] = set()
            for proposal in output.tasks:
                task = " ".join(proposal.task.split())[:TASK_MAX_CHARS]
                # The same task is a distinct assignment only with other queries.
                key = (task.casefold(), frozenset(w for q in proposal.queries for w in query_words(q)))
                if task and key not in seen:
                    seen.add(key)
                    proposed.append((task, proposal.queries))
            if len(proposed) < low:
                problems.append(f"the planner gave {len(proposed)} distinct tasks, {low} needed")
        if output is None or len(proposed) < low:
            count = self.agents or min(2, self.max_agents)
            tasks = [question, *fallback_angles()][:count]
            queries, fixes = spread_queries([[] for _ in tasks], question)
            assignments = tuple(Assignment(t, q) for t, q in zip(tasks, queries, strict=True))
            shape, why = decide_shape(question, "long")  # the question's form still decides
            fixes += [why] if why else []
            return Plan(shape, assignments, "fallback", problems=tuple(problems + fixes))
        origin = "fixed" if self.agents else "model"
        shape, why = decide_shape(question, output.answer_shape)
        if why:
            problems.append(why)
        if shape == "list":
            return self._list_plan(question, output, proposed, high, origin, problems)
        proposed = proposed[:high]
        queries, fixes = spread_queries([q for _, q in proposed], question)
        assignments = tuple(Assignment(task, q) for (task, _), q in zip(proposed, queries, strict=True))
        return Plan(shape, assignments, origin, problems=tuple(problems + fixes))

    def _list_plan(
        self,
        question: str,
        output: PlanOutput,
        proposed: list[tuple[str, list[str]]],
        high: int,
        origin: str,
        problems: list[str],
    ) -> Plan:
        """One agent per slice of a checked partition; without a usable partition, the fixed split: the
        whole list from different query angles. With a fixed agent count above the number of slices,
        the agents left over take query angles too, which also catches items outside every slice."""
        count = self.agents or high
        partition, found = check_partition(output.facet, output.values, question, count=count)
        problems += found
        # The planner's own queries (not copies of the question), then the question's words.
        bases = [
            q
            for q in dict.fromkeys(" ".join(q.split()) for _, qs in proposed for q in qs)
            if q and not copies_question(q, question)
        ] or seed_queries(question, count)
        assignments: list[Assignment] = []
        if partition is not None:
            for index, part in enumerate(partition.slices):
                base = bases[index % len(bases)] if bases else ""
                query = base if query_words(part) <= query_words(base) else f"{base} {part}".strip()
                assignments.append(Assignment(f"{partition.facet}: {part}", (query,), part))
        else:
            partition = Partition("query angle", (), "fallback", tuple(found))
        extra = (self.agents or max(len(proposed), min(2, high))) - len(assignments)
        if extra > 0:
            # The planner's tasks not yet standing behind a slice, then the question itself.
            rest = proposed[len(assignments) :][:extra]
            rest += [(question, [])] * (extra - len(rest))
            angles, fixes = spread_queries(
                [qs for _, qs in rest], question, taken_by=[q for a in assignments for q in a.queries[:1]]
            )
            problems += fixes
            assignments += [Assignment(task, q) for (task, _), q in zip(rest, angles, strict=True)]
        return Plan("list", tuple(assignments), origin, partition, tuple(problems))

    # -------------------------------------------------------------- research
    async def research(self, question: str, plan: Plan) -> list[AgentResult]:
        """Run one agent per assignment, all at once. Failures are returned, never raised. The agents share
        one query log: none runs a search another already ran (it gets the next page instead)."""
        team = QueryLog()
        # Only agents without a name of their own to check are shown it (see below).
        wanted = any(not a.conjunct for a in plan.assignments)
        opening = await self._opening(question) if wanted else None
        agents = [self._agent(i, self._temperature_for(plan, i), team) for i in range(len(plan.assignments))]
        await self._share_opening(question, plan, agents, opening)
        tasks: list[asyncio.Task[AgentResult]] = []
        async with asyncio.TaskGroup() as group:
            for agent, assignment in zip(agents, plan.assignments, strict=True):
                brief = self._brief(question, plan, assignment)
                names = [assignment.conjunct] if assignment.conjunct else None  # its one name to check
                # An agent given one name to check starts from its own search for that name: the
                # question's results are about every name, and the 0.5B agents then judged the name
                # by another's page ("Yes" for both, where their per-name searches had found "No").
                given = None if assignment.conjunct else opening
                first = self._first_search(assignment, brief)
                task = self._task_for(question, plan, assignment)
                run = self._run_agent(agent, question, task, brief, names, given, first)
                tasks.append(group.create_task(run))
        results = [t.result() for t in tasks]
        for result in results:
            self.usage = self.usage + result.usage
        return results

    async def _share_opening(
        self, question: str, plan: Plan, agents: list[ResearchAgent], opening: Opening | None
    ) -> None:
        """The prompt every agent given the team's opening starts with (system prompt, question, opening
        results: ~1,000 tokens on HotpotQA), computed once by the model's server for all of them instead of
        once per agent, where the server can (`RecordingModel.share_prefix`; llama-server's slots). It is
        recorded as the team's "prefix" call."""
        sharing = [
            a for a, assignment in zip(agents, plan.assignments, strict=True) if not assignment.conjunct
        ]
        if not self.share_prefix or opening is None or len(sharing) < 2:
            return
        prefix = sharing[0].opening_prompt(question, opening)
        try:
            shared = await self.recorder.labelled(agent="team", purpose="prefix").share_prefix(
                prefix, len(sharing)
            )
        except BudgetExceededError:
            return  # the agents' own calls say what the budget allows
        if shared is not None:
            self._charge(shared.completion.usage)

    def _temperature_for(self, plan: Plan, index: int) -> float | None:
        """The run's temperature, except for an agent whose assignment repeats an earlier one's: it
        samples, so that it does not retrace the other's steps."""
        assignment = plan.assignments[index]
        if assignment not in plan.assignments[:index]:
            return self.temperature
        return max(self.temperature or 0.0, SAMPLE_TEMPERATURE)

    def _first_search(self, assignment: Assignment, brief: str | None) -> str | None:
        """The query an agent's first action searches, without a model call: the first of its
        assignment's queries, which its brief names. None when it has no brief, when this is off, and for
        an agent that checks one name of a yes/no question: it searches its planned query first on its own
        (the 0.5B agents did, 36 of 36 in a HotpotQA-50 run), and a first step written for it changed the
        verdicts the model wrote after it (yes/no right 3 of 10, against 6 of 10 when it wrote its own)."""
        if not brief or not self.planned_search or assignment.conjunct:
            return None
        return assignment.queries[0]

    @staticmethod
    def _task_for(question: str, plan: Plan, assignment: Assignment) -> str:
        """What this agent is to answer: the question itself for a short answer (its agents differ by
        where they search, `_brief`), else its part, its name to check or its slice (`assignment.task`).
        The planner's task for a short answer rewords the question into another one ("What was Andrew
        Jaspan's role in founding the outlet?" for "… co-founder of what outlet?"), and agents told it
        answered that ("co-founder"), also when it only stood in their planned search's "missing": on
        the default model, heavy's agents scored F1 0.39 where one agent given the question alone scored
        0.68 (HotpotQA-10 r4). The planner's task stays in the plan (`PlanMade`)."""
        if assignment.conjunct or (plan.shape != "short" and assignment.task.strip() != question.strip()):
            return assignment.task
        return question

    def _brief(self, question: str, plan: Plan, assignment: Assignment) -> str | None:
        """What this agent is told after the shared question: its part or slice (not a short answer's
        reworded question) and its first queries."""
        if not assignment.queries or not (self.tools is None or works_on_corpus(self.tools)):
            return None  # nothing to search (or nothing to search with): the plain sub-task line
        queries = ", ".join(f'"{q}"' for q in assignment.queries)
        if assignment.conjunct:
            others = ", ".join(name for name in plan.conjuncts if name != assignment.conjunct)
            brief = render_prompt(
                "heavy_brief_conjunct", name=assignment.conjunct, others=others, queries=queries
            )
        elif plan.shape == "list" and assignment.slice and plan.partition is not None:
            brief = render_prompt(
                "heavy_brief_slice", facet=plan.partition.facet, slice=assignment.slice, queries=queries
            )
        elif plan.shape == "list":
            brief = render_prompt("heavy_brief_list_angle", queries=queries)
        elif self._task_for(question, plan, assignment) == question:
            brief = render_prompt("heavy_brief_whole", queries=queries)
        else:
            brief = render_prompt("heavy_brief_part", task=assignment.task, queries=queries)
        return brief.strip()

    async def _opening(self, question: str) -> Opening | None:
        """The opening search for a team (None when it is off, or the agents do not search)."""
        if not self.opening_search:
            return None
        return await team_opening(self.search, self.tools, question, stream=self.stream, run_id=self.run_id)

    def _agent(self, index: int, temperature: float | None, queries: QueryLog | None = None) -> ResearchAgent:
        """The team's agent number `index` + 1. Only the first answers a one-thing question from the
        recap alone (`ResearchAgent._compact_final`); the others answer from their own conversations.
        Why: the recap prompt holds the question and the closest read sentences, nothing of the agent's
        own task or steps, and the agents had read much the same passages, so greedy agents wrote one
        answer as often as they were asked. On HotpotQA-50 (r16, 37 questions) the four agents gave one
        short answer 22 times (11 in r13, without the recap prompt), and heavy:4 scored as one agent
        (0.366 against 0.364). One recap answer stands beside answers from three different
        conversations, for the vote to weigh."""
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
            queries=queries,
            answer_from_recap=index == 0,
        )

    async def _run_agent(
        self,
        agent: ResearchAgent,
        question: str,
        task: str,
        brief: str | None = None,
        names: list[str] | None = None,
        opening: Opening | None = None,
        first_search: str | None = None,
    ) -> AgentResult:
        try:
            return await agent.run(
                question, task, brief=brief, names=names, opening=opening, first_search=first_search
            )
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
        temperature: float = SAMPLE_TEMPERATURE,
        greedy_first: bool = True,
    ) -> RankedTrajectories:
        """Instead of synthesis: run one agent per task and return their whole trajectories ranked by
        `verifier` (short answer plus the evidence read). `tasks` defaults to the planner's assignments;
        the rank-tools mode passes the question N times, so the agents differ only by seed. With
        `greedy_first`, agent 1 decodes greedily (what one agent alone would answer) and the others
        sample at `temperature`."""
        plan = (
            Plan("short", tuple(Assignment(t) for t in tasks), "fixed")
            if tasks
            else await self.plan(question)
        )
        results: dict[int, AgentResult] = {}
        opening = await self._opening(question)

        async def sampler(index: int) -> Sample:
            heat = 0.0 if greedy_first and index == 0 else temperature
            # Each trajectory is judged on its own evidence, so each agent keeps its own query log:
            # sharing one would hide the best results of a common query from all but the first agent.
            agent = self._agent(index, heat)
            assignment = plan.assignments[index]
            brief = self._brief(question, plan, assignment)
            first = self._first_search(assignment, brief)
            task = self._task_for(question, plan, assignment)
            result = await self._run_agent(agent, question, task, brief, opening=opening, first_search=first)
            results[index] = result
            self.usage = self.usage + result.usage
            return trajectory_sample(index, result, temperature=heat)

        ranked = await rank(
            question,
            self.model,
            n=len(plan.assignments),
            verifier=verifier,
            stream=self.stream,
            run_id=self.run_id,
            seed=self.seed,
            sampler=sampler,
        )
        return RankedTrajectories(plan, ranked, [results[i] for i in sorted(results)])

    # ------------------------------------------------------------- synthesis
    async def synthesize(self, question: str, plan: Plan, results: list[AgentResult]) -> HeavyResult:
        """Merge the agents' answers by the plan's shape: a vote for a short answer (the synthesizer
        breaks ties), the deduplicated union of items for a list, a synthesis for a long answer. The
        answer cites only passages some agent read."""
        sources = RunSources.gather((r.agent, r.sources.opened.values()) for r in results)
        usable = [r for r in results if r.ok and r.answer.strip()]
        if not usable:
            # A run with no answer is a failed run (exit code, run store, eval error), never an "answer"
            # made of the failures.
            raise AgentsFailedError(_describe_failures(results))
        if len(usable) == 1 and len(results) == 1:
            # One agent: its answer is the answer; comparing notes would only cost tokens.
            only = usable[0]
            return HeavyResult(
                only.answer,
                sources.adopt(only.citations),
                plan,
                results,
                usage=self.usage,
                short_answer=short_answer(only),
            )
        if plan.shape == "list":
            items, duplicates = merge_list_items(results, sources)
            candidates = names_candidates(question)
            if is_choice(items, candidates):
                reason = (
                    f"the question names its candidate answers ({', '.join(candidates)}) and the agents "
                    "found only those: a choice, not a list"
                )
                return await self._vote(question, plan, results, sources, reason)
            checked = await self._check_list(question, results)
            if checked is not None and checked.accepted:
                return self._checked_list_answer(plan, results, checked)
            if items:
                return self._list_answer(plan, results, sources, items, duplicates, checked)
        if plan.conjuncts:
            decided = vote_on_conjuncts(results, [a.conjunct for a in plan.assignments])
            if decided.answer:
                return self._conjunct_answer(plan, results, sources, decided)
            reason = "the checks of each name did not decide it: " + "; ".join(
                f"{c['answer']}" for c in decided.to_record()
            )
            return await self._vote(question, plan, results, sources, reason)
        if plan.shape == "short":
            return await self._vote(question, plan, results, sources, "")
        return await self._synthesis(question, plan, results, sources)

    def _conjunct_answer(
        self, plan: Plan, results: list[AgentResult], sources: RunSources, decided: ConjunctVote
    ) -> HeavyResult:
        """A yes/no question asked of several names, decided name by name: "No" with the answer of the
        agents that found no for their name, "Yes" with one answer per name (the agreeing agent that
        cites the most), each with every agreeing agent's sources."""
        by_agent = {r.agent: r for r in results}
        deciding = [v for v in decided.verdicts if v.answer == decided.answer]
        texts: list[str] = []
        cite: list[int] = []
        for verdict in deciding:
            agreeing = [by_agent[a] for a in verdict.agents]
            chosen = max(agreeing, key=lambda r: len(r.citations))
            texts.append(sources.globalize(chosen.answer, chosen.citations))
            cite += [
                sources.by_id[c.id].number for r in agreeing for c in r.citations if c.id in sources.by_id
            ]
        text = lead_with(decided.answer, "\n\n".join(texts))[0]
        answer, citations = self._resolve(text, cite, sources)
        names = " and ".join(plan.conjuncts)
        reason = f"the question asks the same of {names}: yes only if it holds for each"
        self.stream.emit(
            VoteTaken(
                run_id=self.run_id,
                candidates=decided.to_record(),
                winner=decided.answer,
                decided_by="conjuncts",
                reason=reason,
            )
        )
        return HeavyResult(answer, citations, plan, results, usage=self.usage, short_answer=decided.answer)

    async def _vote(
        self, question: str, plan: Plan, results: list[AgentResult], sources: RunSources, reason: str
    ) -> HeavyResult:
        """A short answer: the majority of the agents' short answers wins, written from the agreeing
        agent that cites the most, with every agreeing agent's sources. A tie goes to the synthesizer.
        A question that asks which of its candidates is earliest or latest is decided by their dates
        instead, when the documents about them give one (`dated_choice`)."""
        dated = await self._dated_answer(question, plan, results)
        if dated is not None:
            return dated
        vote = vote_on_answers(results, question)
        if vote.winner is None:
            heavy = await self._synthesis(question, plan, results, sources, vote=vote)
            self._emit_vote(vote, lead_sentence(heavy.answer), "synthesizer", reason)
            return heavy
        agreeing = [r for r in results if r.agent in vote.winner.agents]
        chosen = max(agreeing, key=lambda r: len(r.citations))  # max keeps the first of equals
        text = lead_with(vote.winner.answer, sources.globalize(chosen.answer, chosen.citations))[0]
        cite = [sources.by_id[c.id].number for r in agreeing for c in r.citations if c.id in sources.by_id]
        answer, citations = self._resolve(text, cite, sources)
        decided_by = "majority" if vote.voters > 1 else "only answer"
        if vote.shared:
            decided_by = "shared words"
            held = ", ".join(vote.winner.agents)
            shared = f'no answer won, but the answers of {held} all say "{vote.winner.answer}"'
            reason = f"{reason}; {shared}" if reason else shared
        self._emit_vote(vote, vote.winner.answer, decided_by, reason)
        return HeavyResult(
            answer, citations, plan, results, usage=self.usage, short_answer=vote.winner.answer
        )

    async def _dated_answer(
        self, question: str, plan: Plan, results: list[AgentResult]
    ) -> HeavyResult | None:
        """The candidate whose document's year is the earliest (latest) the question asks for, cited to
        the documents the years were read from; None when `dated_choice` does not decide it. A candidate
        no agent read about is read here, from a search result about it some agent saw (reader
        "checker")."""
        read = [doc for r in results for doc in r.sources.opened.values()]
        choice = choose_by_date(question, read)
        if choice is None:
            return None
        checked: list[Document] = []
        unread = [c.name for c in choice.candidates if c.document is None]
        if unread and self.search is not None:
            seen = [hit for r in results for hit in r.sources.seen.values()]
            for name in unread:
                hit = next((h for h in seen if titled(name, h.title)), None)
                if hit is not None:
                    try:
                        checked.append((await self.search.open(hit.id))[0])
                    except OpenHeavyError:
                        continue
            choice = choose_by_date(question, [*read, *checked])
        winner = choice.winner if choice is not None else None
        if choice is None or winner is None:
            return None
        readings = [(r.agent, r.sources.opened.values()) for r in results]
        sources = RunSources.gather([*readings, ("checker", checked)])
        numbers = [sources.by_id[c.document.id].number for c in choice.candidates if c.document is not None]
        facts = " ".join(
            f"{c.name}: {c.year} [{n}]." for c, n in zip(choice.candidates, numbers, strict=True)
        )
        answer, citations = self._resolve(f"{winner.name}\n\n{facts}", numbers, sources)
        self.stream.emit(
            VoteTaken(
                run_id=self.run_id,
                candidates=[c.to_record() for c in choice.candidates],
                winner=winner.name,
                decided_by="dates",
                reason=f"the question asks for the {choice.direction} of its candidates: the years the "
                "documents about them open with decide it",
            )
        )
        return HeavyResult(answer, citations, plan, results, usage=self.usage, short_answer=winner.name)

    def _resolve(self, text: str, cite: Sequence[int], sources: RunSources) -> tuple[str, list[Citation]]:
        """The synthesizer's answer with its markers resolved against the run's sources: a marker of a
        document no agent read is dropped (and said so in the trace)."""
        return resolve_citations(
            text,
            cite,
            sources.by_number,
            drop_reason=lambda _: "no agent read this document",
            stream=self.stream,
            run_id=self.run_id,
            agent="synthesizer",
        )

    def _emit_vote(self, vote: AnswerVote, winner: str, decided_by: str, reason: str) -> None:
        self.stream.emit(
            VoteTaken(
                run_id=self.run_id,
                candidates=vote.to_record(),
                winner=winner,
                decided_by=decided_by,
                reason=reason,
            )
        )

    async def _check_list(self, question: str, results: list[AgentResult]) -> ListCheck | None:
        """The documents that meet the list question's conditions (`item_check`); None when the agents
        had no corpus to search."""
        if self.search is None or not (self.tools is None or works_on_corpus(self.tools)):
            return None
        checker = self.recorder.labelled(agent="checker", purpose="list_conditions")
        # A local index opens a document in a millisecond; a web backend fetches a page for each.
        local = isinstance(self.search.backend, LocalIndex)
        checked = await check_list(
            checker,
            self.search,
            question,
            results,
            max_documents=self.max_list_documents if local else min(self.max_list_documents, WEB_DOCUMENTS),
            temperature=self.temperature,
            seed=self.seed,
        )
        self.usage = self.usage + checked.usage
        return checked

    def _checked_list_answer(self, plan: Plan, results: list[AgentResult], checked: ListCheck) -> HeavyResult:
        """A list answer of the documents that meet the conditions, each cited to the passage its check
        read, with the agents' items about documents that could not be checked. An agent's item resting
        only on documents that were checked and do not meet them is dropped."""
        accepted = checked.accepted
        readings = [(r.agent, r.sources.opened.values()) for r in results]
        sources = RunSources.gather([*readings, ("checker", [c.document for c in accepted if c.document])])
        decided = {c.lead.doc_id: bool(c.belongs) for c in checked.checks if c.belongs is not None}
        items = [
            ListItem(c.document.title, (sources.by_id[c.document.id].number,), c.lead.agents)
            for c in accepted
            if c.document is not None
        ]
        found, duplicates = merge_list_items(results, sources)
        dropped: list[str] = []
        for item in found:
            docs = {sources.by_number[n].document.doc_id for n in item.sources if n in sources.by_number}
            if any(decided.get(doc) for doc in docs):
                continue  # the document's own item stands for it
            if docs and all(doc in decided for doc in docs):
                dropped.append(item.text)
                continue
            items.append(item)
        return self._list_answer(plan, results, sources, items, duplicates, checked, dropped)

    def _list_answer(
        self,
        plan: Plan,
        results: list[AgentResult],
        sources: RunSources,
        items: list[ListItem],
        duplicates: int,
        checked: ListCheck | None = None,
        dropped: Sequence[str] = (),
    ) -> HeavyResult:
        """A list answer: every item found, once, each with its sources."""
        self.stream.emit(
            ListMerged(
                run_id=self.run_id,
                items=[item.to_record(sources) for item in items],
                duplicates=duplicates,
                conditions=checked.conditions.to_record() if checked else {},
                sweeps=list(checked.queries) if checked else [],
                checks=[check.to_record() for check in checked.checks] if checked else [],
                dropped=list(dropped),
                unchecked=checked.unchecked if checked else 0,
            )
        )
        lines = "\n".join(f"- {item.text} [{', '.join(map(str, item.sources))}]" for item in items)
        text = render_prompt("heavy_list_answer", count=len(items), items=lines).strip()
        answer, citations = self._resolve(text, [], sources)
        return HeavyResult(answer, citations, plan, results, usage=self.usage)

    async def _synthesis(
        self,
        question: str,
        plan: Plan,
        results: list[AgentResult],
        sources: RunSources,
        *,
        vote: AnswerVote | None = None,
    ) -> HeavyResult:
        """Compare the agents' notes and write one answer citing only passages they read. The input is
        bounded: each note is an agent's answer (itself bounded), and at most `SYNTHESIS_MAX_SOURCES`
        sources are listed, those the agents cited first."""
        usable = [r for r in results if r.ok and r.answer.strip()]
        notes = [
            render_prompt(
                "synthesis_note", agent=r.agent, task=r.task, answer=sources.globalize(r.answer, r.citations)
            ).strip()
            if r.ok
            else render_prompt("synthesis_note_failed", agent=r.agent, task=r.task, error=r.error).strip()
            for r in results
        ]
        if vote is not None and len(vote.candidates) > 1:
            shown = "; ".join(f'"{c.answer}" ({", ".join(c.agents)})' for c in vote.candidates)
            notes.append(render_prompt("synthesis_vote", candidates=shown).strip())
        listing = (
            "\n".join(
                render_prompt(
                    "synthesis_source",
                    number=s.number,
                    title=s.document.title,
                    location=f" ({s.document.url})" if s.document.url else "",
                    excerpt=_excerpt(s.document.text),
                ).strip()
                for s in _listed_sources(sources, results)
            )
            or render_prompt("synthesis_no_sources").strip()
        )
        numbers = sorted(sources.by_number)
        schema: JsonSchema = {
            "type": "object",
            "properties": {
                "agreements": {"type": "string", "maxLength": self.answer_max_chars // 4},
                "conflicts": {"type": "string", "maxLength": self.answer_max_chars // 4},
                "short": short_answer_schema(question, SHORT_MAX_CHARS, optional=True),
                # a merged list may be longer than any one agent's answer
                "answer": {"type": "string", "minLength": 1, "maxLength": self._synthesis_max_chars},
                "cite": (
                    {"type": "array", "items": {"type": "integer", "enum": numbers}, "maxItems": 12}
                    if numbers
                    else {"type": "array", "items": {"type": "integer"}, "maxItems": 0}
                ),
            },
            "required": ["agreements", "conflicts", "short", "answer", "cite"],
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
                short_answer=short_answer(best),
            )
        text = self._repaired(output.answer, attempt)
        # As an agent's: a source listed in "cite" but marked nowhere in the text gets its marker at the
        # sentence that names it (the default model's synthesis cited 3 sources and marked none).
        by_number = sources.by_number
        titles = {n: by_number[n].document.title for n in dict.fromkeys(output.cite) if n in by_number}
        marked_text, marked = attach_markers(text, titles)
        if marked is not None:
            self._record_edits(attempt, text, marked_text, [marked])
            text = marked_text
        # As an agent's (`settle_short`): a short answer that only repeats the question answers nothing
        # (the answer's text stands alone), one cut at its bound keeps its first whole clause, and one that
        # copies the synthesizer's instructions is dropped.
        told = [m.content for m in messages]
        short, settled = settle_short(output.short, question, max_chars=SHORT_MAX_CHARS, instructions=told)
        short, talk = drop_note_talk(short)
        short_edits = [edit for edit in (settled, talk) if edit is not None]
        if short_edits:
            self._record_edits(attempt, output.short, short, short_edits)
        answer, citations = self._resolve(lead_with(short, text)[0], output.cite, sources)
        return HeavyResult(
            answer,
            citations,
            plan,
            results,
            agreements=output.agreements,
            conflicts=output.conflicts,
            usage=self.usage,
            short_answer=short,
        )

    @property
    def _synthesis_max_chars(self) -> int:
        # a merged answer may be longer than any one agent's
        return self.answer_max_chars * 4 // 3

    def _repaired(self, text: str, step: int) -> str:
        """The synthesizer's text with a degenerate repetition cut and, when unfinished (by the schema's
        length bound, that cut, or the model closing it mid-sentence), ended at its last sentence; an
        `AnswerEdited` event says so."""
        repaired, edits = repair_free_text(text, cut_off=True)
        repaired, talk = drop_note_talk(repaired)
        edits += [talk] if talk is not None else []
        if edits:
            self._record_edits(step, text, repaired, edits)
        return repaired

    def _record_edits(self, step: int, original: str, text: str, edits: list[Edit]) -> None:
        self.stream.emit(
            AnswerEdited(
                run_id=self.run_id,
                agent="synthesizer",
                step=step,
                edits=[edit.to_record() for edit in edits],
                original=original,
                text=text,
            )
        )

    def _charge(self, usage: Usage) -> None:
        self.usage = self.usage + usage


def trajectory_sample(index: int, result: AgentResult, *, temperature: float | None = None) -> Sample:
    """An agent's trajectory as a rank sample: its short answer (what votes compare), and its whole
    answer plus the evidence it read (what a judge reads)."""
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
        answer=short_answer(result) if result.ok else "",
        evidence=[c.to_record() for c in result.citations],
        usage=result.usage,
        error=result.error,
        temperature=temperature,
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


def _listed_sources(sources: RunSources, results: Sequence[AgentResult]) -> list[Source]:
    """The sources shown to the synthesizer: those some agent cited first, then the others read, at most
    `SYNTHESIS_MAX_SOURCES`."""
    cited = [c.id for r in results for c in r.citations if c.id in sources.by_id]
    ordered = list(dict.fromkeys([*cited, *sources.by_id]))
    return [sources.by_id[i] for i in ordered[:SYNTHESIS_MAX_SOURCES]]


def _excerpt(text: str, chars: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= chars else flat[:chars] + " […]"


__all__ = ["HeavyResult", "Orchestrator", "Plan", "RankedTrajectories", "trajectory_sample"]
