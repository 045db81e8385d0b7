"""What a person sees: the live display of a running question, and the renderers behind the CLI's
`trace`, `runs` and answer output.

On a terminal the live display redraws one panel per agent; anywhere else (a pipe, a log file, CI) it
prints one plain line per event with no control codes. Both read the same events and the same
`MetricsSink` figures as everything else.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.errors import LiveError
from rich.live import Live
from rich.panel import Panel
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from openheavy.trace import MetricsSink, RunFigures, RunRow, TraceRecord
from openheavy.types import (
    ActionParsed,
    AgentFinished,
    AgentStarted,
    CitationDropped,
    DocumentOpened,
    Event,
    EventSink,
    FetchRefused,
    ModelCalled,
    Note,
    OutputRejected,
    PageUnreadable,
    RunFinished,
    RunStarted,
    SearchDone,
)

__all__ = [
    "LiveDisplay",
    "describe_event",
    "render_answer",
    "render_runs",
    "render_summary",
    "render_trace",
]

# Actions whose outcome has its own event (SearchDone, DocumentOpened, AgentFinished): the plain display
# prints that event instead of the bare action, so each step reads as one line.
_ACTIONS_WITH_OWN_EVENT = frozenset({"search", "open", "answer"})


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _seconds(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.1f} s" if value < 600 else f"{value / 60:.1f} min"


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"


def _tokens(prompt: int, completion: int) -> str:
    return f"{prompt:,} in / {completion:,} out"


def _step_prefix(event: Event) -> str:
    step = getattr(event, "step", 0)
    return f" step {step}" if isinstance(step, int) and step > 0 else ""


def _compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def describe_event(event: Event) -> str | None:
    """One plain line for `event` (no markup, no control codes), or None for an event that another
    line already covers, e.g. `[agent-1] step 2 search "subprocess timeout" → 5 hits`."""
    who = f"[{event.agent or 'run'}]{_step_prefix(event)}"
    match event:
        case RunStarted():
            return (
                f"run {event.run_id} · {event.mode} · model {event.model} · corpus {event.corpus} · "
                f'question "{_one_line(event.question)}"'
            )
        case AgentStarted():
            return f"{who} started: {_one_line(event.task)}"
        case ModelCalled():
            tokens = _tokens(event.prompt_tokens, event.completion_tokens)
            return f"{who} model ({event.purpose}) · {tokens} · {_seconds(event.seconds)}"
        case ActionParsed():
            if event.action in _ACTIONS_WITH_OWN_EVENT:
                return None
            return f"{who} {event.action} {_one_line(_compact_json(event.args))}"
        case OutputRejected():
            return f"{who} output rejected: {_one_line(event.error)}"
        case SearchDone():
            cached = " (cached)" if event.cached else ""
            hits = _count(len(event.hits), "hit")
            return f'{who} search "{_one_line(event.query)}" → {hits}{cached}'
        case DocumentOpened():
            cached = " (cached)" if event.cached else ""
            title = _one_line(str(event.doc.get("title", "")), 80)
            shown, chars = len(event.text_shown), event.doc.get("chars")
            of = f" of {chars:,}" if isinstance(chars, int) and chars > shown else ""
            return f"{who} open [{event.ref}] {title} · {shown:,}{of} chars shown{cached}"
        case FetchRefused():
            via = f" (redirected from {event.chain[-1]})" if event.chain else ""
            where = f"{event.url}{via}"
            return (
                f"{who} open [{event.ref}] refused: {where} leads to {event.address}, a {event.why} address"
            )
        case PageUnreadable():
            return f"{who} open [{event.ref}] unreadable ({event.reason}): {_one_line(event.message)}"
        case CitationDropped():
            return f"{who} citation [{event.ref}] dropped: {event.reason}"
        case AgentFinished():
            if event.error:
                return f"{who} failed after {_count(event.steps, 'step')}: {_one_line(event.error)}"
            sources = _count(len(event.citations), "source")
            return f"{who} finished ({event.stop_reason}) after {_count(event.steps, 'step')} · {sources}"
        case Note():
            return f"{who} {event.topic}: {_one_line(_compact_json(event.data), 200)}"
        case RunFinished():
            error = f": {_one_line(event.error)}" if event.error else ""
            return f"run {event.run_id} {event.status}{error}"
        case _:
            return f"{who} {event.kind}"


# ---------------------------------------------------------------- live display


@dataclass
class _AgentView:
    """What the live display shows of one agent."""

    name: str
    task: str = ""
    status: str = "starting"
    last_query: str = ""
    last_document: str = ""
    started: bool = False  # saw AgentStarted
    done: bool = False
    failed: bool = False
    spinner: Spinner = field(default_factory=lambda: Spinner("dots"))


class LiveDisplay(EventSink):
    """Shows a run as it happens: on a terminal a redrawn panel per agent (task, step and current action,
    last query, documents read, tokens); otherwise one plain line per event, with no control codes.

    `metrics`: a `MetricsSink` that is already on the same stream, to read figures from; without one the
    display keeps its own. `live`: force the panel display on or off (default: on for a terminal).
    `quiet`: show nothing.
    """

    def __init__(
        self,
        console: Console,
        *,
        quiet: bool = False,
        live: bool | None = None,
        metrics: MetricsSink | None = None,
        refresh_per_second: float = 8.0,
    ) -> None:
        self.console = console
        self.quiet = quiet
        self.live = (console.is_terminal and not console.is_dumb_terminal) if live is None else live
        self._own_metrics = metrics is None
        self.metrics = metrics if metrics is not None else MetricsSink()
        self._refresh_per_second = refresh_per_second
        self._lock = threading.Lock()  # rich redraws from its own thread while events arrive
        self._live: Live | None = None
        self._run: RunStarted | None = None
        self._finished: RunFinished | None = None
        self._agents: dict[str, _AgentView] = {}
        self._waiting = Spinner("dots")

    def handle(self, event: Event) -> None:
        """Update the display with one event."""
        if self._own_metrics:
            self.metrics.handle(event)
        if self.quiet:
            return
        if not self.live:
            self._print_line(event)
            return
        with self._lock:
            self._update(event)
        if self._live is None and not isinstance(event, RunFinished):
            live = Live(
                console=self.console,
                get_renderable=self._render,
                refresh_per_second=self._refresh_per_second,
                transient=False,
            )
            try:
                live.start()
            except LiveError:  # rich < 14 allows one live display per console: fall back to lines
                self.live = False
                self._print_line(event)
                return
            self._live = live
        if self._live is not None:
            self._live.refresh()
            if isinstance(event, RunFinished):
                self._stop()

    def close(self) -> None:
        """Stop redrawing; the last frame stays on screen."""
        self._stop()

    def _print_line(self, event: Event) -> None:
        line = describe_event(event)
        if line is not None:
            self.console.print(Text(line), soft_wrap=True, highlight=False)

    def _stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _view(self, agent: str) -> _AgentView:
        if agent not in self._agents:
            self._agents[agent] = _AgentView(agent)
        return self._agents[agent]

    def _update(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._run = event
            return
        if isinstance(event, RunFinished):
            self._finished = event
            for view in self._agents.values():
                view.done = True
            return
        if not event.agent:
            return
        view = self._view(event.agent)
        step = getattr(event, "step", 0)
        match event:
            case AgentStarted():
                view.task = event.task
                view.started = True
                view.status = "step 1 · thinking"
            case ModelCalled():
                view.status = f"step {step} · {event.purpose}" if step else event.purpose
            case ActionParsed():
                view.status = f"step {step} · {event.action}"
            case OutputRejected():
                view.status = f"step {step} · output rejected, asking again"
            case SearchDone():
                view.last_query = f'"{_one_line(event.query, 60)}" → {_count(len(event.hits), "hit")}'
                view.status = f"step {step + 1} · thinking"
            case DocumentOpened():
                view.last_document = f"[{event.ref}] {_one_line(str(event.doc.get('title', '')), 50)}"
                view.status = f"step {step + 1} · thinking"
            case FetchRefused() | PageUnreadable():
                what = "refused" if isinstance(event, FetchRefused) else f"unreadable ({event.reason})"
                view.last_document = f"[{event.ref}] {what}"
                view.status = f"step {step + 1} · thinking"
            case AgentFinished():
                view.done = True
                view.failed = bool(event.error)
                view.status = (
                    f"failed: {_one_line(event.error, 80)}"
                    if event.error
                    else f"{event.stop_reason} after {_count(event.steps, 'step')}"
                )
            case Note():
                view.status = f"{event.topic}: {_one_line(_compact_json(event.data), 80)}"
            case _:
                pass
        if not view.started:
            # A stage with no AgentStarted (a heavy run's planner or synthesizer) is one model call at a
            # time; each of its events means the call is over.
            view.done = True

    def _render(self) -> RenderableType:
        with self._lock:
            figures = self.metrics.figures()
            parts: list[RenderableType] = []
            if self._run is not None:
                parts.append(
                    Text.assemble(
                        ("question ", "dim"),
                        (_one_line(self._run.question, 200), "bold"),
                        (f"  ·  {self._run.mode} · {self._run.model} · {self._run.corpus}", "dim"),
                    )
                )
            panels = [self._panel(view, figures) for view in self._agents.values()]
            if panels:
                per_row = max(1, min(len(panels), self.console.width // 46))
                grid = Table.grid(expand=True, padding=(0, 1))
                for _ in range(per_row):
                    grid.add_column(ratio=1)
                for start in range(0, len(panels), per_row):
                    row: list[RenderableType] = list(panels[start : start + per_row])
                    grid.add_row(*row, *([""] * (per_row - len(row))))
                parts.append(grid)
            summary = render_summary(figures, self._run.run_id if self._run else "")
            if self._finished is not None:
                parts.append(Text(f"{self._finished.status} · {summary}", style="dim"))
            elif all(view.done for view in self._agents.values()):
                # Between stages (planning, synthesis) no panel is busy: show that the run still is.
                self._waiting.update(text=Text(summary, style="dim"))
                parts.append(self._waiting)
            else:
                parts.append(Text(summary, style="dim"))
            return Group(*parts)

    def _panel(self, view: _AgentView, figures: RunFigures) -> Panel:
        agent = figures.per_agent.get(view.name)
        table = Table.grid(padding=(0, 1))
        table.add_column(style="dim", no_wrap=True)
        table.add_column()
        if view.task:
            table.add_row("task", Text(_one_line(view.task, 120)))
        if view.done:
            mark = ("✗ ", "red") if view.failed else ("✓ ", "green")
            table.add_row("now", Text.assemble(mark, view.status))
        else:
            view.spinner.update(text=Text(view.status))
            table.add_row("now", view.spinner)
        if view.last_query:
            table.add_row("query", Text(view.last_query))
        if agent is not None and (agent.documents_read or view.last_document):
            read = _count(agent.documents_read, "document")
            table.add_row("read", Text(f"{read} · last {view.last_document}"))
        if agent is not None:
            calls = _count(agent.model_calls, "call")
            table.add_row(
                "tokens", Text(f"{_tokens(agent.prompt_tokens, agent.completion_tokens)} · {calls}")
            )
        border = "red" if view.failed else "green" if view.done else "cyan"
        subtitle = _seconds(agent.wall_seconds) if agent is not None and agent.wall_seconds else None
        return Panel(table, title=view.name, title_align="left", subtitle=subtitle, border_style=border)


# ---------------------------------------------------------------- summaries and answers


def render_summary(figures: RunFigures, run_id: str) -> str:
    """The one-line summary of a run, e.g. `searches 3 · documents read 2 · sources cited 2 ·
    tokens 1,234 in / 210 out · 41.2 s · run 20261129-071502-a3f9`."""
    parts = []
    if figures.agents > 1:
        parts.append(f"agents {figures.agents}")
    cached = f" (+{figures.search_cache_hits} cached)" if figures.search_cache_hits else ""
    parts += [
        f"searches {figures.searches}{cached}",
        f"documents read {figures.documents_read}",
        f"sources cited {figures.sources_cited}",
        f"tokens {_tokens(figures.prompt_tokens, figures.completion_tokens)}",
        _seconds(figures.wall_seconds),
    ]
    if run_id:
        parts.append(f"run {run_id}")
    return " · ".join(parts)


def render_answer(answer: str, citations: Sequence[dict[str, Any]], console: Console) -> None:
    """Print an answer followed by its numbered citations: `[1] title — url or path`."""
    console.print(Text(answer.strip() or "(no answer)"))
    if citations:
        console.print()
    for position, citation in enumerate(citations, start=1):
        console.print(_citation_line(citation, position))


def _citation_line(citation: dict[str, Any], position: int) -> Text:
    number = citation.get("number", position)
    where = citation.get("url") or citation.get("doc_id") or citation.get("id") or ""
    line = Text.assemble((f"[{number}] ", "bold"), str(citation.get("title", "")))
    if where:
        line.append(f" — {where}", style="dim")
    return line


# ---------------------------------------------------------------- past runs

_STATUS_STYLE = {"ok": "green", "running": "cyan", "cancelled": "yellow", "failed": "red"}


def render_runs(rows: Sequence[RunRow], console: Console) -> None:
    """Print a table of past runs: id, start time, mode, model, status, question, tokens, wall time."""
    if not rows:
        console.print(Text("no runs yet — ask a question with `openheavy ask`"))
        return
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("run", no_wrap=True)
    table.add_column("started", no_wrap=True)
    table.add_column("mode")
    table.add_column("model", overflow="fold")
    table.add_column("status")
    table.add_column("question", ratio=1)
    table.add_column("tokens", justify="right")
    table.add_column("time", justify="right")
    for row in rows:
        figures = row.run_figures
        wall = row.finished_at - row.started_at if row.finished_at is not None else None
        table.add_row(
            row.run_id,
            time.strftime("%Y-%m-%d %H:%M", time.localtime(row.started_at)),
            row.mode,
            row.model,
            Text(row.status, style=_STATUS_STYLE.get(row.status, "")),
            Text(_one_line(row.question, 60)),
            f"{figures.total_tokens:,}" if figures.total_tokens else "",
            _seconds(wall) if wall is not None else "",
        )
    console.print(table)


# ---------------------------------------------------------------- full traces

_ROLE_STYLE = {"system": "magenta", "user": "blue", "assistant": "green"}


def _clip(text: str, max_chars: int | None) -> str:
    if max_chars is None or len(text) <= max_chars:
        return text
    return text[:max_chars] + f"\n… [{len(text) - max_chars:,} more characters]"


def _step_costs(events: Sequence[Event]) -> tuple[int, int, float]:
    prompt = sum(e.prompt_tokens for e in events if isinstance(e, ModelCalled))
    completion = sum(e.completion_tokens for e in events if isinstance(e, ModelCalled))
    seconds = sum(e.seconds for e in events if isinstance(e, ModelCalled | SearchDone | DocumentOpened))
    return prompt, completion, seconds


class _TracePrinter:
    """Prints one run's events; agents' events are kept together in the order the agents started."""

    def __init__(self, console: Console, max_chars: int | None) -> None:
        self.console = console
        self.max_chars = max_chars

    def print(self, records: Sequence[TraceRecord]) -> None:
        sequence: list[TraceRecord | str] = []
        groups: dict[str, list[TraceRecord]] = {}
        for record in records:
            if not record.agent:
                sequence.append(record)
            elif record.agent in groups:
                groups[record.agent].append(record)
            else:
                groups[record.agent] = [record]
                sequence.append(record.agent)
        for item in sequence:
            if isinstance(item, str):
                self.agent(item, groups[item])
            else:
                self.record(item)

    def agent(self, name: str, records: list[TraceRecord]) -> None:
        events = [e for e in (r.to_event() for r in records) if e is not None]
        prompt, completion, seconds = _step_costs(events)
        self.console.print()
        self.console.rule(Text(f"{name} · {_tokens(prompt, completion)} · {_seconds(seconds)}"), style="bold")
        step: int | None = None
        for record in records:
            event = record.to_event()
            this_step = getattr(event, "step", None)
            if isinstance(this_step, int) and this_step > 0 and this_step != step:
                step = this_step
                same = [e for e in events if getattr(e, "step", None) == step]
                p, c, s = _step_costs(same)
                self.console.print()
                self.console.rule(
                    Text(f"{name} · step {step} · {_tokens(p, c)} · {_seconds(s)}"), style="dim"
                )
            self.record(record, event)

    def record(self, record: TraceRecord, event: Event | None = None) -> None:
        event = event or record.to_event()
        out = self.console
        match event:
            case RunStarted():
                out.rule(Text(f"run {event.run_id}"), style="bold")
                grid = Table.grid(padding=(0, 2))
                grid.add_column(style="dim")
                grid.add_column()
                grid.add_row("question", Text(event.question))
                grid.add_row("mode", event.mode)
                grid.add_row("model", Text(event.model))
                grid.add_row("corpus", Text(event.corpus))
                grid.add_row("started", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(event.at)))
                if event.settings:
                    grid.add_row("settings", Text(_compact_json(event.settings)))
                out.print(grid)
            case AgentStarted():
                out.print(Text.assemble(("task: ", "bold"), event.task))
            case ModelCalled():
                cached = f" ({event.cached_tokens:,} cached)" if event.cached_tokens else ""
                out.print(
                    Text(
                        f"model call · {event.purpose} · {event.prompt_tokens:,} in{cached} / "
                        f"{event.completion_tokens:,} out · {_seconds(event.seconds)}",
                        style="bold",
                    )
                )
                for number, message in enumerate(event.messages, start=1):
                    role = message.get("role", "?")
                    out.print(
                        Panel(
                            Text(_clip(message.get("content", ""), self.max_chars)),
                            title=f"{role} · message {number}/{len(event.messages)}",
                            title_align="left",
                            border_style=_ROLE_STYLE.get(role, "white"),
                        )
                    )
                if event.json_schema is not None:
                    schema = _clip(json.dumps(event.json_schema, indent=2), self.max_chars)
                    out.print(
                        Panel(Text(schema), title="output constrained to JSON schema", title_align="left")
                    )
                out.print(Panel(Text(event.output), title="model output", title_align="left", style="bold"))
            case ActionParsed():
                out.print(Text.assemble(("action ", "bold"), event.action, " ", _compact_json(event.args)))
            case OutputRejected():
                # The rejected output itself is the model output printed just above.
                out.print(Text(f"output rejected: {event.error}", style="red"))
            case SearchDone():
                cached = " · cached" if event.cached else ""
                seconds = _seconds(event.seconds)
                line = f'search "{event.query}" → {len(event.hits)} hits · {seconds}{cached}'
                out.print(Text(line, style="bold"))
                if event.hits:
                    table = Table(show_edge=False, pad_edge=False)
                    table.add_column("ref", justify="right", no_wrap=True)
                    table.add_column("title", overflow="fold")
                    table.add_column("url", overflow="fold")
                    table.add_column("score", justify="right")
                    table.add_column("snippet", ratio=1)
                    for number, hit in enumerate(event.hits, start=1):
                        score = hit.get("score")
                        table.add_row(
                            f"[{hit.get('ref', number)}]",
                            Text(str(hit.get("title", ""))),
                            Text(str(hit.get("url", ""))),
                            f"{score:.2f}" if isinstance(score, int | float) else "",
                            Text(_one_line(str(hit.get("snippet", "")), 10_000)),
                        )
                    out.print(table)
            case DocumentOpened():
                cached = " · cached" if event.cached else ""
                where = event.doc.get("url") or event.doc.get("doc_id") or ""
                chars = event.doc.get("chars")
                size = f" · {chars:,} chars" if isinstance(chars, int) else ""
                out.print(
                    Text(
                        f"open [{event.ref}] {event.doc.get('title', '')}"
                        f"{f' — {where}' if where else ''}{size} · {_seconds(event.seconds)}{cached}",
                        style="bold",
                    )
                )
                out.print(
                    Panel(
                        Text(_clip(event.text_shown, self.max_chars)),
                        title="text shown to the model",
                        title_align="left",
                    )
                )
            case FetchRefused():
                chain = "".join(f"{url} → " for url in event.chain)
                out.print(
                    Text(
                        f"open [{event.ref}] refused by the SSRF guard: {chain}{event.url} — {event.host} is"
                        f" {event.address}, a {event.why} address",
                        style="red",
                    )
                )
            case PageUnreadable():
                out.print(
                    Text(f"open [{event.ref}] unreadable ({event.reason}): {event.message}", style="yellow")
                )
            case CitationDropped():
                out.print(Text(f"citation [{event.ref}] dropped: {event.reason}", style="yellow"))
            case Note():
                out.print(Text.assemble(("note ", "bold"), f"{event.topic}: "))
                out.print(Text(json.dumps(event.data, indent=2, ensure_ascii=False, default=str)))
            case AgentFinished():
                title = f"answer of {event.agent} · {event.stop_reason} · {event.steps} steps"
                out.print(Panel(Text(event.answer or "(no answer)"), title=title, title_align="left"))
                for position, citation in enumerate(event.citations, start=1):
                    out.print(_citation_line(citation, position))
                if event.error:
                    out.print(Text(f"error: {event.error}", style="red"))
            case RunFinished():
                self.finish(event)
            case _:
                out.print(
                    Panel(
                        Text(json.dumps(record.model_dump(), indent=2, ensure_ascii=False, default=str)),
                        title=f"{record.kind} (not a known event)",
                        title_align="left",
                    )
                )

    def finish(self, event: RunFinished) -> None:
        out = self.console
        out.print()
        out.rule(Text(f"final answer · {event.status}"), style="bold")
        render_answer(event.answer, event.citations, out)
        if event.error:
            out.print(Text(f"error: {event.error}", style="red"))
        figures = RunFigures.from_dict(event.figures)
        out.print()
        out.print(Text(render_summary(figures, event.run_id)))
        render_agent_table(figures, out)
        if figures.by_purpose:
            table = Table(title="tokens by purpose", show_edge=False, pad_edge=False)
            for column in ("purpose", "calls", "prompt", "completion", "cached"):
                table.add_column(column, justify="left" if column == "purpose" else "right")
            for purpose, tokens in figures.by_purpose.items():
                table.add_row(
                    purpose,
                    str(tokens.model_calls),
                    f"{tokens.prompt_tokens:,}",
                    f"{tokens.completion_tokens:,}",
                    f"{tokens.cached_tokens:,}",
                )
            out.print(table)


def render_agent_table(figures: RunFigures, console: Console) -> None:
    """A table of per-agent figures (planner and synthesizer included) with the run's totals."""
    if not figures.per_agent:
        return
    table = Table(title="per agent", show_edge=False, pad_edge=False)
    for column in ("agent", "searches", "cache hits", "docs read", "cited", "calls", "tokens", "time"):
        table.add_column(column, justify="left" if column == "agent" else "right")
    for name, agent in figures.per_agent.items():
        table.add_row(
            name,
            str(agent.searches),
            str(agent.search_cache_hits + agent.document_cache_hits),
            str(agent.documents_read),
            str(agent.sources_cited),
            str(agent.model_calls),
            _tokens(agent.prompt_tokens, agent.completion_tokens),
            _seconds(agent.wall_seconds),
        )
    table.add_row(
        "total",
        str(figures.searches),
        str(figures.search_cache_hits + figures.document_cache_hits),
        str(figures.documents_read),
        str(figures.sources_cited),
        str(figures.model_calls),
        _tokens(figures.prompt_tokens, figures.completion_tokens),
        _seconds(figures.wall_seconds),
        style="bold",
    )
    console.print(table)


def render_ranking(ranking: Sequence[dict[str, Any]], console: Console) -> None:
    """The ranked answers of rank mode (or heavy --rank): rank, sample, score, verifier's reason."""
    table = Table(title="ranking", show_edge=False, pad_edge=False)
    for column in ("rank", "sample", "score", "answer", "reason"):
        table.add_column(column, justify="right" if column in ("rank", "sample", "score") else "left")
    for row in ranking:
        table.add_row(
            str(row["rank"]),
            str(row["sample"]),
            f"{row['score']:.3f}",
            _one_line(str(row["answer"]), 80),
            _one_line(str(row["reason"]), 80),
        )
    console.print(table)


def render_trace(records: Sequence[TraceRecord], console: Console, *, max_chars: int | None = None) -> None:
    """Print a run step by step: every prompt in full (system prompts included), every model output,
    each parsed action, every search with its hits, every document opened with the text shown to the
    model, dropped citations, notes, tokens and seconds per step, and the final answer with its
    citations and figures. Agents' events are kept together. `max_chars` clips long texts."""
    _TracePrinter(console, max_chars).print(records)
