"""What every mode shares: the typed run options, what a mode works with, and what it gives back."""

from __future__ import annotations

import asyncio
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from openheavy.agent import ANSWERED, AgentResult, Budget, StopReason
from openheavy.citations import Citation
from openheavy.config import Settings
from openheavy.errors import ConfigError
from openheavy.models.base import ChatModel
from openheavy.planning import Plan
from openheavy.rank import SAMPLE_TEMPERATURE, Ranked, RankResult
from openheavy.search.base import SearchBackend
from openheavy.search.cache import CachedSearch
from openheavy.tools.base import Tool
from openheavy.tools.catalog import CORPUS_TOOLS, DEFAULT_TOOLS, check_tool_names
from openheavy.types import EventStream
from openheavy.verify import Verifier, make_verifier


@dataclass(frozen=True)
class RunOptions:
    """Per-run options; `None` means the settings' default. A bad value raises `ConfigError`."""

    max_steps: int | None = None  # actions per agent
    agents: int | None = None  # heavy, heavy-rank: None = the planner decides
    max_agents: int = 4  # heavy, heavy-rank: the most agents the planner may use
    n: int = 4  # rank: samples; rank-tools: research agents
    verifier: str = "vote"  # rank, rank-tools, heavy-rank
    reference: str | None = None  # reference answer for check verifiers
    seed: int = 0
    temperature: float | None = None
    max_tokens: int | None = None  # whole-run token budget
    max_seconds: float | None = None  # whole-run wall-time budget
    # The agents' tools, by name (tools/catalog.py): None = search only. Modes without agents take none.
    tools: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.tools is not None:
            object.__setattr__(self, "tools", tuple(self.tools))  # a list passed in stays hashable
        at_least_one = {
            "max_steps": self.max_steps,
            "agents": self.agents,
            "max_agents": self.max_agents,
            "n": self.n,
            "max_tokens": self.max_tokens,
        }
        problems = [
            f"{name} must be at least 1, got {value}"
            for name, value in at_least_one.items()
            if value is not None and value < 1
        ]
        # `not (x > 0)` also refuses nan, which compares false to everything and would disable the budget.
        if self.max_seconds is not None and not (self.max_seconds > 0 and math.isfinite(self.max_seconds)):
            problems.append(f"max_seconds must be more than 0 and finite, got {self.max_seconds}")
        if self.temperature is not None and not (self.temperature >= 0 and math.isfinite(self.temperature)):
            problems.append(f"temperature must be 0 or more, got {self.temperature}")
        if self.tools is not None:
            try:
                check_tool_names(self.tools)
            except ConfigError as exc:
                problems.append(str(exc))
        if problems:
            raise ConfigError(f"bad run options: {'; '.join(problems)}. Fix them and run again.")

    @property
    def tool_names(self) -> tuple[str, ...]:
        """The agents' tools: `tools`, or the default (search)."""
        return DEFAULT_TOOLS if self.tools is None else self.tools


@dataclass(frozen=True)
class RunContext:
    """What a mode works with: the question, its options over the settings, the model, the corpus
    (opened on first use), the run's event stream, and the tools its agents share (built from
    `options.tool_names` by the caller, which checks them before the run starts)."""

    question: str
    options: RunOptions
    settings: Settings
    model: ChatModel  # carries `budget`: every call through it is checked against it
    stream: EventStream
    run_id: str
    corpus: str
    open_corpus: Callable[[], SearchBackend]
    budget: Budget  # the run's tokens and wall time, shared by every call of the run
    tools: Sequence[Tool] = ()

    @property
    def searches_corpus(self) -> bool:
        """Whether the agents' tools work on the corpus (without, the corpus is never opened)."""
        return bool(CORPUS_TOOLS.intersection(self.options.tool_names))

    @property
    def max_steps(self) -> int:
        return self.options.max_steps or self.settings.max_steps

    @property
    def temperature(self) -> float | None:
        return self.settings.temperature if self.options.temperature is None else self.options.temperature

    @property
    def sample_temperature(self) -> float:
        return SAMPLE_TEMPERATURE if self.options.temperature is None else self.options.temperature

    def verifier(self) -> Verifier:
        return make_verifier(
            self.options.verifier, self.model, self.options.reference, seed=self.options.seed
        )

    async def search(self) -> CachedSearch | None:
        """The corpus behind a per-run cache, or None when the agents do not search it. Opening it may
        build it (pydocs, first use): off the loop."""
        if not self.searches_corpus:
            return None
        return CachedSearch(await asyncio.to_thread(self.open_corpus))

    def describe(self) -> dict[str, Any]:
        """The effective settings of this run, as recorded in `RunStarted`."""
        return {
            "max_steps": self.max_steps,
            "max_tokens": self.budget.max_tokens,
            "max_seconds": self.budget.max_seconds,
            "temperature": self.temperature,
            "agents": self.options.agents or "auto",
            "max_agents": self.options.max_agents,
            "n": self.options.n,
            "verifier": self.options.verifier,
            "seed": self.options.seed,
            "tools": list(self.options.tool_names) if self.tools else [],  # none in a mode without agents
        }


@dataclass(frozen=True)
class Outcome:
    """What a mode answered, and how."""

    answer: str
    citations: list[Citation] = field(default_factory=list)
    stop_reason: StopReason = ANSWERED
    agents: list[AgentResult] = field(default_factory=list)
    plan: Plan | None = None
    ranking: list[Ranked] | None = None
    notes: list[str] = field(default_factory=list)
    short_answer: str = ""  # the bare answer (a name, yes/no, a number) when the mode has one


class Mode(ABC):
    """One way to answer a question: a name in the registry and one `run` method.

    `runs_agents`: whether it runs research agents, which take the run's tools (and search the corpus
    when those include search); a mode without agents takes only its `sample_tools`. `default_n`: the
    N of an eval's `NAME:N` when none is given (None: the mode takes no N); `with_n` applies an N to the
    options."""

    name: ClassVar[str]
    runs_agents: ClassVar[bool] = False
    default_n: ClassVar[int | None] = None
    # The tools a mode without agents can use for its samples (rank: python, for program samples).
    sample_tools: ClassVar[frozenset[str]] = frozenset()

    def with_n(self, options: RunOptions, n: int) -> RunOptions:
        """`options` with this mode's N (its agents or samples) set to `n`."""
        raise ConfigError(f"mode {self.name} takes no N")

    def takes_tools(self, tools: Sequence[str] | None) -> tuple[str, ...] | None:
        """Of `tools` (the tools given for a run of several modes), those this mode uses: all of them
        for a mode with agents, its `sample_tools` for one without; None when none given or none used."""
        if tools is None:
            return None
        taken = tuple(t for t in tools if self.runs_agents or t in self.sample_tools)
        return taken or None

    @abstractmethod
    async def run(self, run: RunContext) -> Outcome:
        """Answer `run.question`, reporting every step on `run.stream`."""


def budget_notes(agents: list[AgentResult]) -> list[str]:
    """One note per agent that answered because a budget ran out (one stopped before it could answer
    is a failed agent, and its error says which budget stopped what)."""
    return [
        f"{a.agent}: the {'token' if a.stop_reason.budget == 'tokens' else a.stop_reason.budget} budget ran "
        "out; it answered with what it had read so far"
        for a in agents
        if a.stop_reason.kind == "budget" and a.ok
    ]


def ranked_outcome(
    ranked: RankResult, agents: list[AgentResult], citations: list[Citation], answer: str | None = None
) -> Outcome:
    """The best of a ranking as the answer (`answer`: the best sample's whole answer, where the ranking
    compared short ones), with the whole ranking and what failed (by agent name when the samples are
    agents' trajectories)."""
    failed = (
        [f"{a.agent} failed: {a.error}" for a in agents if a.error]
        if agents
        else [f"sample {f.index} failed: {f.error}" for f in ranked.failed]
    )
    notes = failed + budget_notes(agents)
    best = ranked.best.answer if answer is None else answer
    # The short answer of the best trajectory, when the samples were agents'.
    short = agents[ranked.best.index].short_answer if ranked.best.index < len(agents) else ""
    return Outcome(best, citations, agents=agents, ranking=ranked.ranking, notes=notes, short_answer=short)
