"""Rank modes: N candidates to one question, scored by a verifier, best first. `rank` samples plain
answers, and with the python tool alternates them with programs run in the sandbox
(`program_aided.mixed_sampler`); `rank-tools` runs N research agents (differing only by seed) and
ranks their trajectories."""

from __future__ import annotations

from dataclasses import replace

from openheavy.modes.base import Mode, Outcome, RunContext, RunOptions, ranked_outcome
from openheavy.modes.heavy import research_team
from openheavy.program_aided import mixed_sampler
from openheavy.rank import Sampler, rank
from openheavy.tools.python import PythonTool


class RankMode(Mode):
    name = "rank"
    default_n = 8
    sample_tools = frozenset({"python"})

    def with_n(self, options: RunOptions, n: int) -> RunOptions:
        return replace(options, n=n)

    async def run(self, run: RunContext) -> Outcome:
        python = next((tool for tool in run.tools if isinstance(tool, PythonTool)), None)
        sampler: Sampler | None = None
        if python is not None:
            sampler = mixed_sampler(
                run.question,
                run.model,
                python.sandbox,
                stream=run.stream,
                run_id=run.run_id,
                temperature=run.sample_temperature,
                seed=run.options.seed,
                max_tokens=run.settings.answer_max_tokens,
            )
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
            sampler=sampler,
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
