"""The `Runner` that answers eval items with the real engine (`openheavy.api.Heavy`).

One model (one llama-server) serves every item and mode; one `Heavy` per corpus reuses it. Mode specs map onto
run options through the mode registry: `heavy:N` runs N agents, `rank:N` ranks N samples — whole agent
trajectories (`rank-tools`) when the item's agents have a corpus to search, prose and program samples
alternating when their only tool is python, plain answers otherwise. `tools` are the agents' tools (default:
search); an item with no corpus (math) runs its agents with the tools that need none (`python`), and with none
left its agent modes are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from openheavy.api import Heavy
from openheavy.config import Settings
from openheavy.errors import ConfigError
from openheavy.evals.datasets import EvalItem
from openheavy.evals.harness import ModeSpec, RunOutcome, outcome_from_result
from openheavy.models.base import ChatModel
from openheavy.modes import RunOptions, get_mode
from openheavy.tools.catalog import CORPUS_TOOLS, DEFAULT_TOOLS
from openheavy.types import EventSink


def item_tools(tools: tuple[str, ...] | None, item: EvalItem) -> tuple[str, ...]:
    """The agents' tools for `item`: `tools` (None: the default, search), less those that need a corpus
    when the item has none."""
    tools = tools or DEFAULT_TOOLS
    return tools if item.corpus is not None else tuple(t for t in tools if t not in CORPUS_TOOLS)


@dataclass
class HeavyRunner:
    model: ChatModel
    settings: Settings
    verifier: str = "vote"
    max_steps: int | None = None
    # The run budgets (max_steps, max_tokens, max_seconds) every item runs under; None: the settings'.
    budgets: RunOptions | None = None
    tools: tuple[str, ...] | None = None  # the agents' tools (tools/catalog.py); None: search
    sinks: list[EventSink] = field(default_factory=list)
    _engines: dict[str, Heavy] = field(default_factory=dict)

    def options(self, item: EvalItem, spec: ModeSpec, seed: int) -> tuple[str, RunOptions]:
        """The `Heavy.arun` mode and options for one (item, mode)."""
        tools = item_tools(self.tools, item)
        # rank ranks research agents when they have a corpus to search; with python alone, its samples
        # alternate prose and programs (modes/rank.py)
        researches = bool(CORPUS_TOOLS.intersection(tools))
        name = "rank-tools" if spec.name == "rank" and researches else spec.name
        mode = get_mode(name)
        if mode.runs_agents and not tools:
            raise ConfigError(
                f"{spec.label} needs a corpus to search, and {item.id} has none (math sets): "
                "evaluate those with direct and rank:N, or give the agents a tool that needs none "
                "(--tools python)"
            )
        budgets = self.budgets or RunOptions()
        options = RunOptions(
            seed=seed,
            max_steps=self.max_steps or budgets.max_steps,
            max_tokens=budgets.max_tokens,
            max_seconds=budgets.max_seconds,
            verifier=self.verifier,
            tools=None if tools == DEFAULT_TOOLS else mode.takes_tools(tools),
        )
        return name, options if mode.default_n is None else mode.with_n(options, spec.n)

    async def __call__(self, item: EvalItem, mode: ModeSpec, seed: int) -> RunOutcome:
        name, options = self.options(item, mode, seed)
        corpus = item.corpus.name if item.corpus is not None else self.settings.corpus
        engine = self._engines.get(corpus)
        if engine is None:
            engine = self._engines[corpus] = Heavy(self.model, corpus, settings=self.settings)
        result = await engine.arun(item.question, name, options, sinks=list(self.sinks))
        return outcome_from_result(result)

    async def aclose(self) -> None:
        await self.model.aclose()


def make_heavy_runner(
    settings: Settings,
    *,
    api_key: str | None = None,
    verifier: str = "vote",
    max_steps: int | None = None,
    budgets: RunOptions | None = None,
    tools: tuple[str, ...] | None = None,
) -> HeavyRunner:
    """A `HeavyRunner` with its own model resolved from `settings.model`. A module-level function, so
    `functools.partial` of it can be shipped to Ray workers that each build their own."""
    from openheavy.models.registry import resolve_model

    model = resolve_model(settings.model, settings, api_key=api_key)
    return HeavyRunner(model, settings, verifier=verifier, max_steps=max_steps, budgets=budgets, tools=tools)
