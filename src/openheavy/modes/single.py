"""Single mode: one research agent searches, reads (or computes, with the python tool) and answers
with citations."""

from __future__ import annotations

from openheavy.agent import ResearchAgent
from openheavy.errors import OpenHeavyError
from openheavy.modes.base import Mode, Outcome, RunContext, budget_notes


class SingleMode(Mode):
    name = "single"
    runs_agents = True

    async def run(self, run: RunContext) -> Outcome:
        agent = ResearchAgent(
            run.model,
            await run.search(),
            stream=run.stream,
            run_id=run.run_id,
            corpus=run.corpus,
            max_steps=run.max_steps,
            budget=run.budget,
            temperature=run.temperature,
            seed=run.options.seed,
            tools=run.tools,
            answer_max_chars=run.settings.answer_max_chars,
        )
        opening = await agent.search_for_team(run.question) if run.settings.opening_search else None
        result = await agent.run(run.question, opening=opening)
        if result.error:
            raise OpenHeavyError(f"the agent failed: {result.error}")
        return Outcome(
            result.answer,
            result.citations,
            result.stop_reason,
            [result],
            notes=budget_notes([result]),
            short_answer=result.short_answer,
        )
