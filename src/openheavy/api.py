"""The library API: `Heavy(model=..., corpus=...).run(question, mode=...)`.

One run = one event stream. `Heavy` wires the stream's sinks (JSONL trace, run store, metrics, and any
the caller adds, such as the live display), runs the chosen mode, and returns a typed `RunResult` whose
figures come from the same events. Ctrl-C or a failure still finishes the trace (status cancelled or
failed) and stops an embedded llama-server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from openheavy.agent import AgentResult, Budget, ResearchAgent
from openheavy.config import Settings, load_settings
from openheavy.corpus.catalog import open_corpus
from openheavy.direct import answer_directly
from openheavy.errors import ConfigError, OpenHeavyError
from openheavy.heavy import Orchestrator, Plan
from openheavy.models.base import ChatModel
from openheavy.models.registry import resolve_model
from openheavy.rank import RankResult, rank
from openheavy.search.base import SearchBackend
from openheavy.search.cache import CachedSearch
from openheavy.trace import (
    JsonlTraceSink,
    MetricsSink,
    RunFigures,
    RunStore,
    RunStoreSink,
    new_run_id,
    run_store_path,
    trace_path,
)
from openheavy.types import Event, EventSink, EventStream, Note, RunFinished, RunStarted
from openheavy.verify import make_verifier

Mode = Literal["direct", "single", "heavy", "rank"]
MODES: tuple[str, ...] = ("direct", "single", "heavy", "rank")
ProgressCallback = Callable[[int, int, str], None]


@dataclass(frozen=True)
class RunOptions:
    """Per-run options; `None` means the settings' default."""

    max_steps: int | None = None
    agents: int | None = None  # heavy: None = the planner decides
    max_agents: int = 4
    heavy_rank: bool = False  # heavy: rank the agents' trajectories instead of synthesizing
    n: int = 4  # rank: samples
    verifier: str = "vote"
    tools: bool = False  # rank: each sample is a research agent
    reference: str | None = None  # rank: reference answer for check verifiers
    seed: int = 0
    temperature: float | None = None
    max_tokens: int | None = None  # whole-run token budget
    max_seconds: float | None = None  # whole-run wall-time budget


@dataclass(frozen=True)
class RunResult:
    run_id: str
    question: str
    mode: str
    status: str  # "ok", "cancelled", "failed"
    answer: str
    citations: list[dict[str, Any]]
    figures: RunFigures
    trace_path: Path
    stop_reason: str = "answered"
    error: str | None = None
    agents: list[dict[str, Any]] = field(default_factory=list)
    plan: dict[str, Any] | None = None
    ranking: list[dict[str, Any]] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready result (what `openheavy ask --json` prints)."""
        return {
            "run_id": self.run_id,
            "question": self.question,
            "mode": self.mode,
            "status": self.status,
            "answer": self.answer,
            "citations": self.citations,
            "figures": self.figures.to_dict(),
            "trace_path": str(self.trace_path),
            "stop_reason": self.stop_reason,
            "error": self.error,
            "agents": self.agents,
            "plan": self.plan,
            "ranking": self.ranking,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class _Outcome:
    answer: str
    citations: list[dict[str, Any]]
    stop_reason: str = "answered"
    agents: list[dict[str, Any]] = field(default_factory=list)
    plan: dict[str, Any] | None = None
    ranking: list[dict[str, Any]] | None = None
    notes: list[str] = field(default_factory=list)


class Heavy:
    """Runs questions in any mode against one model and one corpus.

    `model` is a spec (`local`, `local:fast`, `local:tiny`, an OpenAI-compatible URL, a profile name)
    or a `ChatModel`; `corpus` a corpus name or a `SearchBackend`. Use `async with Heavy(...)` (or
    `await heavy.aclose()`) to reuse one model server across runs; `run()` is the one-shot sync form.
    """

    def __init__(
        self,
        model: str | ChatModel | None = None,
        corpus: str | SearchBackend | None = None,
        *,
        settings: Settings | None = None,
        api_key: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self._model_spec = model if model is not None else self.settings.model
        self._corpus_spec = corpus if corpus is not None else self.settings.corpus
        self._api_key = api_key
        self._progress = progress
        self._model: ChatModel | None = None if isinstance(model, str) or model is None else model
        self._owns_model = self._model is None
        self._search: SearchBackend | None = None if isinstance(corpus, str) or corpus is None else corpus
        self._owns_search = self._search is None

    # ------------------------------------------------------------- lifecycle
    @property
    def model_name(self) -> str:
        return self._model_spec if isinstance(self._model_spec, str) else self._model_spec.name

    @property
    def corpus_name(self) -> str:
        return self._corpus_spec if isinstance(self._corpus_spec, str) else self._corpus_spec.name

    def model(self) -> ChatModel:
        if self._model is None:
            assert isinstance(self._model_spec, str)
            self._model = resolve_model(self._model_spec, self.settings, api_key=self._api_key)
        return self._model

    def search_backend(self) -> SearchBackend:
        if self._search is None:
            assert isinstance(self._corpus_spec, str)
            self._search = open_corpus(self._corpus_spec, self.settings.index_dir, progress=self._progress)
        return self._search

    async def aclose(self) -> None:
        """Stop the model server if this object started it."""
        if self._model is not None and self._owns_model:
            await self._model.aclose()
            self._model = None
        if self._search is not None and self._owns_search:
            close = getattr(self._search, "close", None)
            if close is not None:
                close()
            self._search = None

    async def __aenter__(self) -> Heavy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ runs
    def run(self, question: str, mode: str = "single", **options: Any) -> RunResult:
        """Run one question synchronously (starts and stops the model server)."""

        async def once() -> RunResult:
            try:
                return await self.arun(question, mode, **options)
            finally:
                await self.aclose()

        return asyncio.run(once())

    async def stream(self, question: str, mode: str = "single", **options: Any) -> AsyncIterator[Event]:
        """Yield the run's events as they happen; the last one is `RunFinished`."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue()

        class _QueueSink(EventSink):
            def handle(self, event: Event) -> None:
                queue.put_nowait(event)

        async def produce() -> None:
            try:
                await self.arun(question, mode, sinks=[_QueueSink()], **options)
            finally:
                queue.put_nowait(None)

        task = asyncio.create_task(produce())
        try:
            while (event := await queue.get()) is not None:
                yield event
            await task  # re-raise the run's error, if any
        finally:
            if not task.done():
                task.cancel()

    async def arun(
        self,
        question: str,
        mode: str = "single",
        *,
        sinks: Sequence[EventSink] = (),
        **options: Any,
    ) -> RunResult:
        """Run one question in `mode`; every event goes to the trace, the run store and `sinks`."""
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        if not question.strip():
            raise ConfigError("the question is empty")
        try:
            opts = RunOptions(**options)
        except TypeError as exc:
            known = ", ".join(RunOptions.__dataclass_fields__)
            raise ConfigError(f"bad run option ({exc}); known options: {known}") from None
        self.model()  # a bad model spec is a usage error, not a failed run: raise before the run starts
        run_id = new_run_id()
        path = trace_path(self.settings.runs_dir, run_id)
        metrics = MetricsSink()
        stream = EventStream(
            [
                JsonlTraceSink(path),
                RunStoreSink(RunStore(run_store_path(self.settings.runs_dir)), path),
                metrics,
                *sinks,
            ]
        )
        uses_corpus = mode in ("single", "heavy") or (mode == "rank" and opts.tools)
        corpus = self.corpus_name if uses_corpus else ""
        try:
            stream.emit(
                RunStarted(
                    run_id=run_id,
                    question=question,
                    mode=mode,
                    model=self.model_name,
                    corpus=corpus,
                    settings=self._describe(opts),
                )
            )
            outcome = await self._execute(question, mode, opts, stream, run_id)
        except (asyncio.CancelledError, KeyboardInterrupt):
            stream.emit(
                RunFinished(
                    run_id=run_id,
                    status="cancelled",
                    answer="",
                    citations=[],
                    figures=metrics.figures().to_dict(),
                    error="cancelled by the user",
                )
            )
            stream.close()
            raise
        except Exception as exc:
            stream.emit(
                RunFinished(
                    run_id=run_id,
                    status="failed",
                    answer="",
                    citations=[],
                    figures=metrics.figures().to_dict(),
                    error=f"{type(exc).__name__}: {exc}",
                )
            )
            stream.close()
            raise
        figures = metrics.figures(citations=outcome.citations)
        stream.emit(
            RunFinished(
                run_id=run_id,
                status="ok",
                answer=outcome.answer,
                citations=outcome.citations,
                figures=figures.to_dict(),
            )
        )
        stream.close()
        return RunResult(
            run_id=run_id,
            question=question,
            mode=mode,
            status="ok",
            answer=outcome.answer,
            citations=outcome.citations,
            figures=figures,
            trace_path=path,
            stop_reason=outcome.stop_reason,
            agents=outcome.agents,
            plan=outcome.plan,
            ranking=outcome.ranking,
            notes=outcome.notes + stream.sink_errors,
        )

    def _describe(self, opts: RunOptions) -> dict[str, Any]:
        s = self.settings
        return {
            "max_steps": opts.max_steps or s.max_steps,
            "max_tokens": opts.max_tokens or s.max_tokens,
            "max_seconds": opts.max_seconds or s.max_seconds,
            "temperature": s.temperature if opts.temperature is None else opts.temperature,
            "agents": opts.agents or "auto",
            "max_agents": opts.max_agents,
            "n": opts.n,
            "verifier": opts.verifier,
            "tools": opts.tools,
            "heavy_rank": opts.heavy_rank,
            "seed": opts.seed,
        }

    async def _execute(
        self, question: str, mode: str, opts: RunOptions, stream: EventStream, run_id: str
    ) -> _Outcome:
        s = self.settings
        model = self.model()
        temperature = s.temperature if opts.temperature is None else opts.temperature
        budget = Budget(opts.max_tokens or s.max_tokens, opts.max_seconds or s.max_seconds)
        max_steps = opts.max_steps or s.max_steps
        if mode == "direct":
            completion = await answer_directly(
                question,
                model,
                stream=stream,
                run_id=run_id,
                max_tokens=s.answer_max_tokens,
                temperature=temperature,
                seed=opts.seed,
            )
            return _Outcome(completion.text.strip(), [])
        if mode == "rank" and not opts.tools:
            ranked = await rank(
                question,
                model,
                n=opts.n,
                verifier=make_verifier(opts.verifier, model, opts.reference, seed=opts.seed),
                stream=stream,
                run_id=run_id,
                temperature=0.7 if opts.temperature is None else opts.temperature,
                seed=opts.seed,
                max_tokens=s.answer_max_tokens,
            )
            return _ranked_outcome(ranked, [])
        # Opening a corpus may build it (pydocs, first use): off the event loop.
        search = CachedSearch(await asyncio.to_thread(self.search_backend))
        if mode == "single":
            agent = ResearchAgent(
                model,
                search,
                stream=stream,
                run_id=run_id,
                corpus=self.corpus_name,
                max_steps=max_steps,
                budget=budget,
                temperature=temperature,
                seed=opts.seed,
                answer_max_chars=s.answer_max_chars,
            )
            result = await agent.run(question)
            if result.error:
                raise OpenHeavyError(f"the agent failed: {result.error}")
            return _Outcome(
                result.answer,
                [c.to_record() for c in result.citations],
                result.stop_reason,
                [_agent_summary(result)],
                notes=_budget_notes([result]),
            )
        # heavy, and rank --tools: N research agents on the same question, differing only by seed
        orchestrator = Orchestrator(
            model,
            search,
            stream=stream,
            run_id=run_id,
            corpus=self.corpus_name,
            agents=opts.agents if mode == "heavy" else opts.n,
            max_agents=opts.max_agents,
            max_steps=max_steps,
            budget=budget,
            temperature=temperature,
            seed=opts.seed,
            answer_max_chars=s.answer_max_chars,
        )
        if mode == "rank" or opts.heavy_rank:
            verifier = make_verifier(opts.verifier, model, opts.reference, seed=opts.seed)
            plan, ranked, agents = await orchestrator.rank_trajectories(
                question,
                verifier,
                tasks=[question] * opts.n if mode == "rank" else None,
                temperature=0.7 if opts.temperature is None else opts.temperature,
            )
            outcome = _ranked_outcome(ranked, agents)
            if mode == "rank":
                return outcome
            return replace(outcome, plan=_plan_record(plan))
        heavy = await orchestrator.run(question)
        notes = _budget_notes(heavy.agents) + [f"agent failed: {f}" for f in heavy.failures]
        if heavy.synthesis_error:
            notes.append(f"synthesis failed, best agent answer used: {heavy.synthesis_error}")
            stream.emit(Note(run_id=run_id, topic="warning", data={"message": notes[-1]}))
        return _Outcome(
            heavy.answer,
            [c.to_record() for c in heavy.citations],
            "answered",
            [_agent_summary(a) for a in heavy.agents],
            plan=_plan_record(heavy.plan),
            notes=notes,
        )


def _plan_record(plan: Plan) -> dict[str, Any]:
    return {"kind": plan.kind, "tasks": plan.tasks, "origin": plan.origin}


def _ranked_outcome(ranked: RankResult, agents: list[AgentResult]) -> _Outcome:
    ranking = [
        {
            "rank": r.rank,
            "sample": r.sample.index,
            "score": r.score,
            "reason": r.reason,
            "answer": r.sample.answer,
        }
        for r in ranked.ranking
    ]
    notes = [f"sample {f.index} failed: {f.error}" for f in ranked.failed]
    notes += _budget_notes(agents)
    return _Outcome(
        ranked.best.answer,
        list(ranked.best.evidence),
        agents=[_agent_summary(a) for a in agents],
        ranking=ranking,
        notes=notes,
    )


def _agent_summary(result: AgentResult) -> dict[str, Any]:
    return {
        "agent": result.agent,
        "task": result.task,
        "answer": result.answer,
        "citations": [c.to_record() for c in result.citations],
        "stop_reason": result.stop_reason,
        "steps": result.steps,
        "documents_read": [d.id for d in result.sources.opened.values()],
        "error": result.error,
    }


def _budget_notes(results: list[AgentResult]) -> list[str]:
    notes = []
    for result in results:
        if result.stop_reason.startswith("budget:"):
            which = result.stop_reason.split(":", 1)[1]
            notes.append(
                f"{result.agent}: the {which} budget ran out; it answered with what it had read so far"
            )
    return notes
