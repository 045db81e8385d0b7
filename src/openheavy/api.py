"""The library API: `Heavy(model=..., corpus=...).run(question, mode=...)`.

One run = one event stream. `Heavy` wires the stream's sinks (JSONL trace, run store, metrics, and any
the caller adds, such as the live display), runs the chosen mode, and returns a typed `RunResult` whose
figures come from the same events. Ctrl-C or a failure still finishes the trace (status cancelled or
failed) and lets go of the embedded llama-server (the shared one stays for other processes).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openheavy.agent import ANSWERED, StopReason
from openheavy.config import Settings, load_settings
from openheavy.corpus.catalog import open_corpus
from openheavy.errors import ConfigError
from openheavy.models.base import ChatModel
from openheavy.models.budget import Budget
from openheavy.models.recording import RecordingModel
from openheavy.models.registry import resolve_model
from openheavy.modes import MODES, Mode, RunContext, RunOptions, get_mode
from openheavy.sandbox import Sandbox
from openheavy.search.base import SearchBackend
from openheavy.tools.base import Tool
from openheavy.tools.catalog import build_tools
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
from openheavy.types import Event, EventSink, EventStream, RunFinished, RunStarted

ProgressCallback = Callable[[int, int, str], None]


@dataclass(frozen=True)
class RunResult:
    """A run that finished. A run that fails or is cancelled raises instead; its trace and its row in
    the run store record the status and the error."""

    run_id: str
    question: str
    mode: str
    answer: str
    citations: list[dict[str, Any]]
    figures: RunFigures
    trace_path: Path
    stop_reason: StopReason = ANSWERED
    agents: list[dict[str, Any]] = field(default_factory=list)
    plan: dict[str, Any] | None = None
    ranking: list[dict[str, Any]] | None = None
    notes: list[str] = field(default_factory=list)
    # The bare answer (a name, yes/no, a number) that `answer` leads with, when the mode gives one: what
    # votes and exact-match graders compare.
    short_answer: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready result (what `openheavy ask --json` prints)."""
        return {
            "run_id": self.run_id,
            "question": self.question,
            "mode": self.mode,
            "answer": self.answer,
            "citations": self.citations,
            "figures": self.figures.to_dict(),
            "trace_path": str(self.trace_path),
            "stop_reason": str(self.stop_reason),
            "agents": self.agents,
            "plan": self.plan,
            "ranking": self.ranking,
            "notes": self.notes,
            "short_answer": self.short_answer,
        }


def _check_text(question: str) -> None:
    """Refuse a question that is not valid text: bytes that were not UTF-8 (Python keeps them as lone
    surrogates) would otherwise fail at the model server, which would be blamed for them."""
    try:
        question.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = question[exc.start]
        byte = f" (byte 0x{ord(char) - 0xDC00:02x})" if 0xDC80 <= ord(char) <= 0xDCFF else ""
        raise ConfigError(
            f"the question is not valid UTF-8: character {exc.start + 1}{byte} is not text — save or type "
            "it as UTF-8 (iconv -f LATIN1 -t UTF-8 converts a Latin-1 file)"
        ) from None


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
    def run(
        self,
        question: str,
        mode: str = "single",
        options: RunOptions | None = None,
        *,
        sinks: Sequence[EventSink] = (),
    ) -> RunResult:
        """Run one question synchronously (starts and stops the model server)."""

        async def once() -> RunResult:
            try:
                return await self.arun(question, mode, options, sinks=sinks)
            finally:
                await self.aclose()

        return asyncio.run(once())

    async def stream(
        self, question: str, mode: str = "single", options: RunOptions | None = None
    ) -> AsyncIterator[Event]:
        """Yield the run's events as they happen; the last one is `RunFinished`. Leaving early (closing
        the iterator, or cancelling its consumer) cancels the run, and returns only once the run has
        ended and been recorded as cancelled."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue()

        class _QueueSink(EventSink):
            def handle(self, event: Event) -> None:
                queue.put_nowait(event)

        async def produce() -> None:
            try:
                await self.arun(question, mode, options, sinks=[_QueueSink()])
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
                # wait for the run to record how it ended: a caller that frees a slot or reads the run
                # store once the stream is gone must find it over. `wait` neither raises the run's
                # error nor swallows a cancellation of the consumer itself.
                await asyncio.wait([task])
                if not task.cancelled():
                    task.exception()  # retrieved: the consumer left, the run store holds the error

    def _agent_tools(self, strategy: Mode, mode: str, options: RunOptions) -> list[Tool]:
        """The tools `options` give the agents of `strategy`, checked on this machine. A mode without
        agents takes only its `sample_tools` (rank: python); naming another is a `ConfigError`."""
        if not strategy.runs_agents:
            if options.tools is None:
                return []
            unusable = [name for name in options.tools if name not in strategy.sample_tools]
            if unusable:
                with_agents = ", ".join(name for name, m in MODES.items() if m.runs_agents)
                takes = (
                    f"it takes only {', '.join(sorted(strategy.sample_tools))}"
                    if strategy.sample_tools
                    else "it takes no tools"
                )
                raise ConfigError(
                    f"mode {mode} runs no agents, so {takes} (not {', '.join(unusable)}); "
                    f"tools for research are for {with_agents}"
                )
        return build_tools(options.tool_names, Sandbox.from_settings(self.settings))

    def _check_limits(self, strategy: Mode, options: RunOptions) -> None:
        """Refuse more concurrent agents or samples than the settings allow: each is a request in flight
        at the model server at once, and thousands of them are a mistake, never a plan."""
        agents, samples = self.settings.agent_limit, self.settings.sample_limit
        asked = {"--agents": options.agents or 0, "--max-agents": options.max_agents}
        if strategy.name == "rank-tools":
            asked["--n"] = options.n  # N research agents
        problems = [
            f"{flag} {value} is more than agent_limit {agents}"
            for flag, value in asked.items()
            if value > agents
        ]
        if options.n > samples:
            problems.append(f"--n {options.n} is more than sample_limit {samples}")
        if problems:
            raise ConfigError(
                f"{'; '.join(problems)} — each agent or sample is a request in flight at the model server; "
                "ask for fewer, or raise the limit (OPENHEAVY_AGENT_LIMIT, OPENHEAVY_SAMPLE_LIMIT or "
                "agent_limit / sample_limit in the config file) for a server with that many slots"
            )

    async def arun(
        self,
        question: str,
        mode: str = "single",
        options: RunOptions | None = None,
        *,
        sinks: Sequence[EventSink] = (),
    ) -> RunResult:
        """Run one question in `mode` (a name in `openheavy.modes.MODES`) with `options` (defaults: the
        settings'); every event goes to the trace, the run store and `sinks`."""
        strategy = get_mode(mode)
        if not question.strip():
            raise ConfigError("the question is empty")
        _check_text(question)
        options = options or RunOptions()
        self._check_limits(strategy, options)
        # Usage errors, not failed runs, so raised before the run starts: a mode that cannot take the
        # tools, a tool this machine cannot run (no bubblewrap for python), a bad model spec.
        tools = self._agent_tools(strategy, mode, options)
        self.model()
        run_id = new_run_id()
        path = trace_path(self.settings.runs_dir, run_id)
        metrics = MetricsSink()
        # The store first: a damaged one stops the run before it leaves an empty trace behind.
        store = RunStore(run_store_path(self.settings.runs_dir))
        stream = EventStream([JsonlTraceSink(path), RunStoreSink(store, path), metrics, *sinks])
        # One budget for everything the run does: every call through the run's model is checked against
        # it, whichever part of the run wraps the model for its own recording.
        budget = Budget(
            options.max_tokens or self.settings.max_tokens, options.max_seconds or self.settings.max_seconds
        )
        run = RunContext(
            question=question,
            options=options,
            settings=self.settings,
            model=RecordingModel(self.model(), stream=None, run_id=run_id, budget=budget),
            stream=stream,
            run_id=run_id,
            corpus=self.corpus_name,
            open_corpus=self.search_backend,
            budget=budget,
            tools=tools,
        )
        try:
            stream.emit(
                RunStarted(
                    run_id=run_id,
                    question=question,
                    mode=mode,
                    model=self.model_name,
                    corpus=self.corpus_name if strategy.runs_agents and run.searches_corpus else "",
                    settings=run.describe(),
                )
            )
            outcome = await strategy.run(run)
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
        citations = [c.to_record() for c in outcome.citations]
        figures = metrics.figures(citations=citations)
        stream.emit(
            RunFinished(
                run_id=run_id,
                status="ok",
                answer=outcome.answer,
                citations=citations,
                figures=figures.to_dict(),
            )
        )
        stream.close()
        return RunResult(
            run_id=run_id,
            question=question,
            mode=mode,
            answer=outcome.answer,
            citations=citations,
            figures=figures,
            trace_path=path,
            stop_reason=outcome.stop_reason,
            agents=[a.to_record() for a in outcome.agents],
            plan=outcome.plan.to_record() if outcome.plan else None,
            ranking=[r.to_record() for r in outcome.ranking] if outcome.ranking is not None else None,
            notes=outcome.notes + stream.sink_errors,
            short_answer=outcome.short_answer,
        )
