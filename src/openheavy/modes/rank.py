"""Rank modes: N candidates to one question, scored by a verifier, best first. `rank` samples plain
answers; `rank-tools` runs N research agents (differing only by seed) and ranks their trajectories."""

from __future__ import annotations

from dataclasses import replace

from openheavy.modes.base import Mode, Outcome, RunContext, RunOptions, ranked_outcome
from openheavy.modes.heavy import research_team
from openheavy.rank import rank


class RankMode(Mode):
    name = "rank"
    default_n = 8

    def with_n(self, options: RunOptions, n: int) -> RunOptions:
        return replace(options, n=n)

    async def run(self, run: RunContext) -> Outcome:
        ranked = await rank(
            run.question,
            run.model,
            n=run.options.n,
            verifier=run.verifier(),
            stream=run.stream,
            run_id=run.run_id,
            temperature=run.sample_temperature,
            seed=run.options.seed,
            max_tokens=run.settings.answer_max_tokens,
        )
        return ranked_outcome(ranked, [], [])


class RankToolsMode(RankMode):
    name = "rank-tools"
    runs_agents = True

    async def run(self, run: RunContext) -> Outcome:
        orchestrator = await research_team(run, run.options.n)
        trajectories = await orchestrator.rank_trajectories(
            run.question,
            run.verifier(),
            tasks=[run.question] * run.options.n,
            temperature=run.sample_temperature,
        )
        best = trajectories.best
        return ranked_outcome(trajectories.ranked, trajectories.agents, best.citations, best.answer)
