"""The live view of a running question: on a terminal one redrawn panel per agent; anywhere else (a
pipe, a log file, CI) one plain line per event with no control codes. It reads the same events and the
same `MetricsSink` figures as everything else.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from rich.console import Console, Group, RenderableType
from rich.errors import LiveError
from rich.live import Live
from rich.panel import Panel
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from openheavy.display.formatting import (
    code_outcome,
    compact_json,
    describe_merge,
    describe_plan,
    describe_vote,
    duration,
    one_line,
    plural,
    tokens_in_out,
)
from openheavy.display.render import describe_edits, render_summary, repeat_outcome
from openheavy.trace import MetricsSink, RunFigures
from openheavy.types import (
    ActionParsed,
    AgentFinished,
    AgentStarted,
    AnswerEdited,
    AnswerRejected,
    CitationDropped,
    CodeRan,
    DocumentOpened,
    Event,
    EventSink,
    FetchRefused,
    ListMerged,
    ModelCalled,
    Note,
    OutputRejected,
    PageUnreadable,
    PlanMade,
    RunFinished,
    RunStarted,
    SearchDone,
    SearchRepeated,
    VoteTaken,
)

__all__ = ["LiveDisplay", "describe_event"]

# Actions whose outcome has its own event (SearchDone, DocumentOpened, CodeRan, AgentFinished): the plain
# display prints that event instead of the bare action, so each step reads as one line.
_ACTIONS_WITH_OWN_EVENT = frozenset({"search", "open", "python", "answer"})


def _step_prefix(event: Event) -> str:
    step = getattr(event, "step", 0)
    return f" step {step}" if isinstance(step, int) and step > 0 else ""


def _missing(event: ActionParsed) -> str:
    return f' · missing: "{one_line(event.missing, 80)}"' if event.missing.strip() else ""


def describe_event(event: Event) -> str | None:
    """One plain line for `event` (no markup, no control codes), or None for an event that another
    line already covers, e.g. `[agent-1] step 2 search "subprocess timeout" → 5 hits`."""
    who = f"[{event.agent or 'run'}]{_step_prefix(event)}"
    match event:
        case RunStarted():
            return (
                f"run {event.run_id} · {event.mode} · model {event.model} · corpus {event.corpus} · "
                f'question "{one_line(event.question)}"'
            )
        case AgentStarted():
            return f"{who} started: {one_line(event.task)}"
        case ModelCalled():
            tokens = tokens_in_out(event.prompt_tokens, event.completion_tokens)
            return f"{who} model ({event.purpose}) · {tokens} · {duration(event.seconds)}"
        case ActionParsed():
            if event.planned:  # its own event (the search) follows; this line says who chose it
                query = event.args.get("query")
                what = (
                    f'"{one_line(query, 80)}"'
                    if isinstance(query, str)
                    else one_line(compact_json(event.args))
                )
                return f"{who} planned {event.action} {what} (no model call)"
            if event.action in _ACTIONS_WITH_OWN_EVENT:
                return None
            return f"{who} {event.action} {one_line(compact_json(event.args))}{_missing(event)}"
        case OutputRejected():
            return f"{who} output rejected: {one_line(event.error)}"
        case AnswerRejected():
            return f"{who} answer sent back ({event.reason}): {one_line(event.message)}"
        case AnswerEdited():
            return f"{who} answer edited: {describe_edits(event)}"
        case SearchDone():
            cached = " (cached)" if event.cached else ""
            hits = plural(len(event.hits), "hit")
            page = f" page {event.page}" if event.page > 1 else ""
            return f'{who} search "{one_line(event.query)}"{page} → {hits}{cached}'
        case SearchRepeated():
            return f'{who} search "{one_line(event.query)}" {repeat_outcome(event)}'
        case DocumentOpened():
            cached = " (cached)" if event.cached else ""
            title = one_line(str(event.doc.get("title", "")), 80)
            shown, chars = len(event.text_shown), event.doc.get("chars")
            of = f" of {chars:,}" if isinstance(chars, int) and chars > shown else ""
            if event.in_results:
                return f"{who} read [{event.ref}] {title} whole in the results · {shown:,} chars"
            return f"{who} open [{event.ref}] {title} · {shown:,}{of} chars shown{cached}"
        case CodeRan():
            return f"{who} python {one_line(event.code, 80)} → {code_outcome(event.limit, event.exit_status)}"
        case FetchRefused():
            via = f" (redirected from {event.chain[-1]})" if event.chain else ""
            where = f"{event.url}{via}"
            return (
                f"{who} open [{event.ref}] refused: {where} leads to {event.address}, a {event.why} address"
            )
        case PageUnreadable():
            return f"{who} open [{event.ref}] unreadable ({event.reason}): {one_line(event.message)}"
        case CitationDropped():
            return f"{who} citation [{event.ref}] dropped: {event.reason}"
        case AgentFinished():
            if event.error:
                return f"{who} failed after {plural(event.steps, 'step')}: {one_line(event.error)}"
            sources = plural(len(event.citations), "source")
            return f"{who} finished ({event.stop_reason}) after {plural(event.steps, 'step')} · {sources}"
        case Note():
            return f"{who} {event.topic}: {one_line(compact_json(event.data), 200)}"
        case PlanMade():
            return f"{who} plan: {describe_plan(event)}"
        case VoteTaken():
            return f"{who} vote: {describe_vote(event)}"
        case ListMerged():
            return f"{who} list merged: {describe_merge(event)}"
        case RunFinished():
            error = f": {one_line(event.error)}" if event.error else ""
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
    missing: str = ""  # what the agent said it still had to find out, at its last action
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
                view.missing = event.missing
            case OutputRejected():
                view.status = f"step {step} · output rejected, asking again"
            case AnswerRejected():
                view.status = f"step {step} · answer sent back: {event.reason}"
            case SearchDone():
                view.last_query = f'"{one_line(event.query, 60)}" → {plural(len(event.hits), "hit")}'
                view.status = f"step {step + 1} · thinking"
            case SearchRepeated():
                view.last_query = f'"{one_line(event.query, 60)}" {repeat_outcome(event)}'
            case DocumentOpened():
                view.last_document = f"[{event.ref}] {one_line(str(event.doc.get('title', '')), 50)}"
                view.status = f"step {step + 1} · thinking"
            case CodeRan():
                outcome = code_outcome(event.limit, event.exit_status)
                view.status = f"step {step + 1} · thinking (python: {outcome})"
            case FetchRefused() | PageUnreadable():
                what = "refused" if isinstance(event, FetchRefused) else f"unreadable ({event.reason})"
                view.last_document = f"[{event.ref}] {what}"
                view.status = f"step {step + 1} · thinking"
            case AgentFinished():
                view.done = True
                view.failed = bool(event.error)
                view.status = (
                    f"failed: {one_line(event.error, 80)}"
                    if event.error
                    else f"{event.stop_reason} after {plural(event.steps, 'step')}"
                )
            case Note():
                view.status = f"{event.topic}: {one_line(compact_json(event.data), 80)}"
            case PlanMade():
                view.status = f"plan: {one_line(describe_plan(event), 80)}"
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
                        (one_line(self._run.question, 200), "bold"),
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
            table.add_row("task", Text(one_line(view.task, 120)))
        if view.done:
            mark = ("✗ ", "red") if view.failed else ("✓ ", "green")
            table.add_row("now", Text.assemble(mark, view.status))
        else:
            view.spinner.update(text=Text(view.status))
            table.add_row("now", view.spinner)
        if view.missing and not view.done:
            table.add_row("missing", Text(one_line(view.missing, 120)))
        if view.last_query:
            table.add_row("query", Text(view.last_query))
        if agent is not None and (agent.documents_read or view.last_document):
            read = plural(agent.documents_read, "document")
            table.add_row("read", Text(f"{read} · last {view.last_document}"))
        if agent is not None:
            calls = plural(agent.model_calls, "call")
            table.add_row(
                "tokens", Text(f"{tokens_in_out(agent.prompt_tokens, agent.completion_tokens)} · {calls}")
            )
        border = "red" if view.failed else "green" if view.done else "cyan"
        subtitle = duration(agent.wall_seconds) if agent is not None and agent.wall_seconds else None
        return Panel(table, title=view.name, title_align="left", subtitle=subtitle, border_style=border)
