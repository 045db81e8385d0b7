"""Direct mode: one model call, no tools. The baseline every other mode is compared to."""

from __future__ import annotations

from openheavy.direct import answer_directly
from openheavy.modes.base import Mode, Outcome, RunContext


class DirectMode(Mode):
    name = "direct"

    async def run(self, run: RunContext) -> Outcome:
        completion = await answer_directly(
            run.question,
            run.model,
            stream=run.stream,
            run_id=run.run_id,
            max_tokens=run.settings.answer_max_tokens,
            temperature=run.temperature,
            seed=run.options.seed,
        )
        return Outcome(completion.text.strip())
