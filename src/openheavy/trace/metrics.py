"""Run metrics: a run's figures (searches, documents read, sources cited, tokens, wall time, per agent and
per purpose) computed from its events alone. The CLI summary line, JSON output, the run store and evals
all read the same `RunFigures`, so nothing is computed twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, ClassVar, TypeVar

from openheavy.types import (
    AgentFinished,
    AgentStarted,
    AnswerEdited,
    AnswerRejected,
    DocumentOpened,
    Event,
    EventSink,
    ModelCalled,
    RunFinished,
    RunStarted,
    SearchDone,
    SearchRepeated,
)

__all__ = ["AgentFigures", "MetricsSink", "RunFigures", "TokenFigures"]

_F = TypeVar("_F")


class _TotalTokens:
    """The one definition of a figure set's total tokens. A mixin without fields, so each dataclass
    keeps its own field order (and the key order of its JSON)."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class TokenFigures(_TotalTokens):
    """Model calls and their tokens."""

    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


@dataclass(frozen=True)
class AgentFigures(_TotalTokens):
    """The figures of one agent. Cached searches and document opens count as cache hits, not as new work."""

    searches: int = 0
    search_cache_hits: int = 0
    distinct_queries: int = 0  # different searches (by `SearchDone.query_key`), any page
    repeated_queries: int = 0  # searches the team had already run, moved to a new page or not run
    documents_read: int = 0  # unique documents opened
    document_cache_hits: int = 0
    sources_cited: int = 0  # unique documents cited
    answers_rejected: int = 0  # answers sent back once (something missing, nothing read or cited)
    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    steps: int = 0
    wall_seconds: float = 0.0


@dataclass(frozen=True)
class RunFigures(_TotalTokens):
    """The figures of a run, computed by `MetricsSink` from the run's events. `distinct_queries` and
    `documents_read` (distinct passages opened) measure how widely a run's agents explored."""

    searches: int = 0
    search_cache_hits: int = 0
    distinct_queries: int = 0
    repeated_queries: int = 0
    documents_read: int = 0
    document_cache_hits: int = 0
    sources_cited: int = 0
    answers_rejected: int = 0
    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    wall_seconds: float = 0.0
    agents: int = 0
    per_agent: dict[str, AgentFigures] = field(default_factory=dict)
    # Tokens by `ModelCalled.purpose` ("action", "plan", "synthesis", ...): heavy mode's overhead.
    by_purpose: dict[str, TokenFigures] = field(default_factory=dict)
    # Repairs of answers in code by `AnswerEdited` kind ("repetition_cut", "sentence_end", ...).
    answer_edits: dict[str, int] = field(default_factory=dict)

    # The run's totals an evaluation saves per answered item and averages per mode.
    PER_ITEM: ClassVar[tuple[str, ...]] = (
        "searches",
        "distinct_queries",
        "documents_read",
        "sources_cited",
        "prompt_tokens",
        "completion_tokens",
        "wall_seconds",
        "agents",
    )

    def per_item(self) -> dict[str, float]:
        """The flat record an evaluation keeps for one answered item (`PER_ITEM`, as floats): the run's
        totals without the per-agent and per-purpose breakdowns."""
        return {name: float(getattr(self, name)) for name in self.PER_ITEM}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (what `RunFinished.figures` and the run store hold)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunFigures:
        """Figures read back from `to_dict()` output. Unknown keys are ignored, missing ones are zero,
        so figures written by older versions still load."""
        flat = _known(cls, {k: v for k, v in data.items() if k not in ("per_agent", "by_purpose")})
        return replace(
            flat,
            per_agent={
                name: _known(AgentFigures, value) for name, value in data.get("per_agent", {}).items()
            },
            by_purpose={
                name: _known(TokenFigures, value) for name, value in data.get("by_purpose", {}).items()
            },
        )


def _known(cls: type[_F], data: dict[str, Any]) -> _F:
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{key: value for key, value in data.items() if key in names})


@dataclass
class _Tally:
    """Mutable counters behind one `AgentFigures` (per agent) or the run's totals."""

    searches: int = 0
    search_cache_hits: int = 0
    query_keys: set[str] = field(default_factory=set)
    repeated_queries: int = 0
    documents: set[str] = field(default_factory=set)
    document_cache_hits: int = 0
    cited: set[str] = field(default_factory=set)
    answers_rejected: int = 0
    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    steps: int = 0
    started_at: float | None = None  # RunStarted / AgentStarted
    finished_at: float | None = None  # RunFinished / AgentFinished
    # Span of the events seen, for emitters with no start event (a heavy run's planner, synthesizer).
    first_at: float | None = None
    last_at: float | None = None

    def saw(self, event: Event) -> None:
        seconds = getattr(event, "seconds", 0.0)
        begun = event.at - seconds if isinstance(seconds, int | float) else event.at
        self.first_at = begun if self.first_at is None else min(self.first_at, begun)
        self.last_at = event.at if self.last_at is None else max(self.last_at, event.at)

    def wall_seconds(self, now: float) -> float:
        if self.started_at is not None:
            end = self.finished_at if self.finished_at is not None else now
            return max(0.0, end - self.started_at)
        if self.first_at is not None and self.last_at is not None:
            return self.last_at - self.first_at
        return 0.0

    def agent_figures(self, now: float) -> AgentFigures:
        return AgentFigures(
            searches=self.searches,
            search_cache_hits=self.search_cache_hits,
            distinct_queries=len(self.query_keys),
            repeated_queries=self.repeated_queries,
            documents_read=len(self.documents),
            document_cache_hits=self.document_cache_hits,
            sources_cited=len(self.cited),
            answers_rejected=self.answers_rejected,
            model_calls=self.model_calls,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cached_tokens=self.cached_tokens,
            steps=self.steps,
            wall_seconds=self.wall_seconds(now),
        )


def _cited_documents(citations: list[dict[str, Any]]) -> set[str]:
    # Passages (what an agent opens and cites), not whole files: four sections of one module's
    # documentation, read and cited, are four sources.
    return {str(c.get("id") or c.get("doc_id") or c.get("url") or c.get("number")) for c in citations}


class MetricsSink(EventSink):
    """Computes a run's figures from its events. `figures()` may be called at any time, also mid-run
    and from another thread (the live display redraws from rich's refresh thread)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._run = _Tally()
        self._agents: dict[str, _Tally] = {}
        self._started_agents: list[str] = []
        self._purposes: dict[str, TokenFigures] = {}
        self._edits: dict[str, int] = {}
        self._final_citations: list[dict[str, Any]] | None = None

    def _agent(self, name: str) -> _Tally:
        if name not in self._agents:
            self._agents[name] = _Tally()
        return self._agents[name]

    def handle(self, event: Event) -> None:
        """Count one event."""
        with self._lock:
            self._count(event)

    def _count(self, event: Event) -> None:
        tallies = [self._run, self._agent(event.agent)] if event.agent else [self._run]
        if event.agent:
            agent = tallies[1]
            agent.saw(event)
            step = getattr(event, "step", None)
            if isinstance(step, int):
                agent.steps = max(agent.steps, step)
        match event:
            case RunStarted():
                self._run.started_at = event.at
            case RunFinished():
                self._run.finished_at = event.at
                self._final_citations = event.citations
            case AgentStarted():
                if event.agent not in self._started_agents:
                    self._started_agents.append(event.agent)
                self._agent(event.agent).started_at = event.at
            case AgentFinished():
                tally = self._agent(event.agent)
                tally.finished_at = event.at
                tally.cited = _cited_documents(event.citations)
                tally.steps = max(tally.steps, event.steps)
            case ModelCalled():
                for tally in tallies:
                    tally.model_calls += 1
                    tally.prompt_tokens += event.prompt_tokens
                    tally.completion_tokens += event.completion_tokens
                    tally.cached_tokens += event.cached_tokens
                before = self._purposes.get(event.purpose, TokenFigures())
                self._purposes[event.purpose] = TokenFigures(
                    model_calls=before.model_calls + 1,
                    prompt_tokens=before.prompt_tokens + event.prompt_tokens,
                    completion_tokens=before.completion_tokens + event.completion_tokens,
                    cached_tokens=before.cached_tokens + event.cached_tokens,
                )
            case SearchDone():
                # Traces written before query keys were recorded: the query as written, casefolded.
                key = event.query_key or " ".join(event.query.casefold().split())
                for tally in tallies:
                    tally.query_keys.add(key)
                    if event.cached:
                        tally.search_cache_hits += 1
                    else:
                        tally.searches += 1
            case SearchRepeated():
                for tally in tallies:
                    tally.repeated_queries += 1
            case AnswerRejected():
                for tally in tallies:
                    tally.answers_rejected += 1
            case AnswerEdited():
                for edit in event.edits:
                    kind = str(edit.get("kind", ""))
                    self._edits[kind] = self._edits.get(kind, 0) + 1
            case DocumentOpened():
                doc_key = str(event.doc.get("id") or event.doc.get("doc_id") or event.ref)
                for tally in tallies:
                    tally.documents.add(doc_key)
                    if event.cached:
                        tally.document_cache_hits += 1
            case _:
                pass

    def figures(self, citations: list[dict[str, Any]] | None = None) -> RunFigures:
        """The figures so far. `citations`: the final answer's, when figures are taken just before
        `RunFinished` is emitted; by default those of `RunFinished` once seen, else every agent's."""
        with self._lock:
            return self._figures(citations, self._clock())

    def _figures(self, citations: list[dict[str, Any]] | None, now: float) -> RunFigures:
        if citations is not None:
            cited = _cited_documents(citations)
        elif self._final_citations is not None:
            cited = _cited_documents(self._final_citations)
        else:
            cited = set().union(*(tally.cited for tally in self._agents.values()))
        run = self._run
        return RunFigures(
            searches=run.searches,
            search_cache_hits=run.search_cache_hits,
            distinct_queries=len(run.query_keys),
            repeated_queries=run.repeated_queries,
            documents_read=len(run.documents),
            document_cache_hits=run.document_cache_hits,
            sources_cited=len(cited),
            answers_rejected=run.answers_rejected,
            model_calls=run.model_calls,
            prompt_tokens=run.prompt_tokens,
            completion_tokens=run.completion_tokens,
            cached_tokens=run.cached_tokens,
            wall_seconds=run.wall_seconds(now),
            agents=len(self._started_agents),
            per_agent={name: tally.agent_figures(now) for name, tally in self._agents.items()},
            by_purpose=dict(self._purposes),
            answer_edits=dict(self._edits),
        )
