"""Heavy modes: a planned team of research agents, whose notes are synthesized (`heavy`) or whose
whole trajectories are ranked by a verifier (`heavy-rank`)."""

from __future__ import annotations

from dataclasses import replace

from openheavy.heavy import Orchestrator
from openheavy.modes.base import Mode, Outcome, RunContext, RunOptions, budget_notes, ranked_outcome
from openheavy.types import Note


async def research_team(run: RunContext, agents: int | None) -> Orchestrator:
    """An orchestrator for `agents` research agents (None: the planner decides) with the run's tools."""
    return Orchestrator(
        run.model,
        await run.search(),
        stream=run.stream,
        run_id=run.run_id,
        corpus=run.corpus,
        tools=run.tools,
        agents=agents,
        max_agents=run.options.max_agents,
        max_steps=run.max_steps,
        budget=run.budget,
        temperature=run.temperature,
        seed=run.options.seed,
        answer_max_chars=run.settings.answer_max_chars,
        opening_search=run.settings.opening_search,
        planned_search=run.settings.planned_search,
        share_prefix=run.settings.share_prefix,
    )


class HeavyMode(Mode):
    name = "heavy"
    runs_agents = True
    default_n = 4

    def with_n(self, options: RunOptions, n: int) -> RunOptions:
        return replace(options, agents=n, max_agents=n)

    async def run(self, run: RunContext) -> Outcome:
        orchestrator = await research_team(run, run.options.agents)
        heavy = await orchestrator.run(run.question)
        notes = budget_notes(heavy.agents) + [f"agent failed: {f}" for f in heavy.failures]
        if heavy.synthesis_error:
            notes.append(f"synthesis failed, best agent answer used: {heavy.synthesis_error}")
            run.stream.emit(Note(run_id=run.run_id, topic="warning", data={"message": notes[-1]}))
        return Outcome(
            heavy.answer,
            heavy.citations,
            agents=heavy.agents,
            plan=heavy.plan,
            notes=notes,
            short_answer=heavy.short_answer,
        )


class HeavyRankMode(HeavyMode):
    name = "heavy-rank"

    async def run(self, run: RunContext) -> Outcome:
        orchestrator = await research_team(run, run.options.agents)
        trajectories = await orchestrator.rank_trajectories(
            run.question, run.verifier(), temperature=run.sample_temperature
        )
        best = trajectories.best
        outcome = ranked_outcome(trajectories.ranked, trajectories.agents, best.citations, best.answer)
        return replace(outcome, plan=trajectories.plan)
