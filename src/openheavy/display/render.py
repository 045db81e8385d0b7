"""After-the-fact rendering: the answer with its citations, the summary line and per-agent table, the
ranking, the table of past runs (`openheavy runs`) and a whole trace step by step (`openheavy trace`)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.panel import Panel
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
    tokens_in_out,
)
from openheavy.display.tables import Column, one_line_table
from openheavy.trace import RunFigures, RunRow, TraceRecord
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

__all__ = [
    "describe_edits",
    "render_agent_table",
    "render_answer",
    "render_budget_stops",
    "render_ranking",
    "render_runs",
    "render_summary",
    "render_trace",
    "repeat_outcome",
]


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
        f"tokens {tokens_in_out(figures.prompt_tokens, figures.completion_tokens)}",
        duration(figures.wall_seconds),
    ]
    if run_id:
        parts.append(f"run {run_id}")
    return " · ".join(parts)


def describe_edits(event: AnswerEdited) -> str:
    """The repairs of an answer, e.g. "repetition_cut (-912 chars), markers_added"."""
    parts = []
    for edit in event.edits:
        removed = edit.get("removed_chars") or 0
        parts.append(f"{edit.get('kind')} (-{removed:,} chars)" if removed else str(edit.get("kind")))
    return ", ".join(parts)


def repeat_outcome(event: SearchRepeated) -> str:
    """What became of a repeated search, e.g. "repeats agent-1's search: page 2 instead"."""
    who = ", ".join(event.repeat_of) or "the team"
    if event.page:
        return f"repeats {who}'s search: page {event.page} instead of {event.asked_page}"
    return f"repeats {who}'s search: not run, all its results were shown"


def render_budget_stops(
    stop_reason: str, agents: Sequence[dict[str, Any]], limits: dict[str, str]
) -> str | None:
    """One line naming each budget that stopped the run or some of its agents, with the flag that set
    it, and what it stopped, e.g. `stopped by budget: tokens (--max-tokens 500): agent-1, agent-3 ·
    steps (--max-steps 3): agent-2`; None when no budget stopped anything."""
    stopped: dict[str, list[str]] = {}
    for agent in agents:
        reason = str(agent.get("stop_reason", ""))
        if reason.startswith("budget:"):
            stopped.setdefault(reason.removeprefix("budget:"), []).append(str(agent.get("agent", "an agent")))
    if stop_reason.startswith("budget:") and not stopped:
        stopped[stop_reason.removeprefix("budget:")] = ["the run"]
    if not stopped:
        return None
    parts = [f"{name} ({limits.get(name, name)}): {', '.join(who)}" for name, who in stopped.items()]
    return "stopped by budget: " + " · ".join(parts)


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


_RUN_COLUMNS = (
    Column("run", keep=9),
    Column("started", keep=3),
    Column("mode", keep=4),
    Column("model", keep=2),
    Column("status", keep=8),
    Column("question", keep=7, flexible=True),
    Column("tokens", keep=6, justify="right"),
    Column("time", keep=5, justify="right"),
)


def render_runs(rows: Sequence[RunRow], console: Console) -> None:
    """Print a table of past runs, one line each at any width: id, status, question, tokens and wall
    time always; mode, start time and model as the width allows."""
    if not rows:
        console.print(Text("no runs yet — ask a question with `openheavy ask`"))
        return
    cells: list[list[str | Text]] = []
    for row in rows:
        figures = row.run_figures
        wall = row.finished_at - row.started_at if row.finished_at is not None else None
        cells.append(
            [
                row.run_id,
                time.strftime("%Y-%m-%d %H:%M", time.localtime(row.started_at)),
                row.mode,
                row.model,
                Text(row.status, style=_STATUS_STYLE.get(row.status, "")),
                one_line(row.question, 60),
                f"{figures.total_tokens:,}" if figures.total_tokens else "",
                duration(wall) if wall is not None else "",
            ]
        )
    console.print(one_line_table(_RUN_COLUMNS, cells, console.width))


# ---------------------------------------------------------------- full traces

_ROLE_STYLE = {"system": "magenta", "user": "blue", "assistant": "green"}


def _clip(text: str, max_chars: int | None) -> str:
    if max_chars is None or len(text) <= max_chars:
        return text
    return text[:max_chars] + f"\n… [{len(text) - max_chars:,} more characters]"


def _step_costs(events: Sequence[Event]) -> tuple[int, int, float]:
    prompt = sum(e.prompt_tokens for e in events if isinstance(e, ModelCalled))
    completion = sum(e.completion_tokens for e in events if isinstance(e, ModelCalled))
    timed = ModelCalled | SearchDone | DocumentOpened | CodeRan
    seconds = sum(e.seconds for e in events if isinstance(e, timed))
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
        self.console.rule(
            Text(f"{name} · {tokens_in_out(prompt, completion)} · {duration(seconds)}"), style="bold"
        )
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
                    Text(f"{name} · step {step} · {tokens_in_out(p, c)} · {duration(s)}"), style="dim"
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
                    grid.add_row("settings", Text(compact_json(event.settings)))
                out.print(grid)
            case AgentStarted():
                out.print(Text.assemble(("task: ", "bold"), event.task))
            case ModelCalled():
                cached = f" ({event.cached_tokens:,} cached)" if event.cached_tokens else ""
                out.print(
                    Text(
                        f"model call · {event.purpose} · {event.prompt_tokens:,} in{cached} / "
                        f"{event.completion_tokens:,} out · {duration(event.seconds)}",
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
                head = "action (planned, no model call) " if event.planned else "action "
                out.print(Text.assemble((head, "bold"), event.action, " ", compact_json(event.args)))
                if event.missing.strip():
                    out.print(Text.assemble(("missing ", "bold"), event.missing))
            case OutputRejected():
                # The rejected output itself is the model output printed just above.
                out.print(Text(f"output rejected: {event.error}", style="red"))
            case AnswerRejected():
                out.print(Text(f"answer sent back ({event.reason}): {event.message}", style="yellow"))
            case AnswerEdited():
                out.print(Text(f"answer edited: {describe_edits(event)}", style="yellow"))
                for edit in event.edits:
                    out.print(Text(f"  {edit.get('kind')}: {edit.get('detail')}"))
            case SearchDone():
                cached = " · cached" if event.cached else ""
                seconds = duration(event.seconds)
                page = f" page {event.page}" if event.page > 1 else ""
                line = f'search "{event.query}"{page} → {len(event.hits)} hits · {seconds}{cached}'
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
                            Text(one_line(str(hit.get("snippet", "")), 10_000)),
                        )
                    out.print(table)
            case SearchRepeated():
                out.print(Text(f'search "{event.query}" {repeat_outcome(event)}', style="yellow"))
            case DocumentOpened():
                cached = " · cached" if event.cached else ""
                where = event.doc.get("url") or event.doc.get("doc_id") or ""
                chars = event.doc.get("chars")
                size = f" · {chars:,} chars" if isinstance(chars, int) else ""
                out.print(
                    Text(
                        f"{'read whole in the results' if event.in_results else 'open'} [{event.ref}] "
                        f"{event.doc.get('title', '')}"
                        f"{f' — {where}' if where else ''}{size} · {duration(event.seconds)}{cached}",
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
            case CodeRan():
                unconfined = " · UNCONFINED" if event.isolation == "none" else ""
                outcome = code_outcome(event.limit, event.exit_status)
                out.print(Text(f"python → {outcome} · {duration(event.seconds)}{unconfined}", style="bold"))
                out.print(Panel(Text(_clip(event.code, self.max_chars)), title="code", title_align="left"))
                for stream, text in (("stdout", event.stdout), ("stderr", event.stderr)):
                    if text:
                        out.print(Panel(Text(_clip(text, self.max_chars)), title=stream, title_align="left"))
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
            case PlanMade():
                out.print(Text.assemble(("plan ", "bold"), describe_plan(event)))
                table = Table(show_edge=False, pad_edge=False)
                for column in ("agent", "task", "first queries"):
                    table.add_column(column, overflow="fold")
                for number, assignment in enumerate(event.assignments, start=1):
                    queries = ", ".join(f'"{q}"' for q in assignment.get("queries", []))
                    table.add_row(f"agent-{number}", Text(str(assignment.get("task", ""))), Text(queries))
                out.print(table)
                for problem in event.problems:
                    out.print(Text(f"plan check: {problem}", style="yellow"))
            case VoteTaken():
                out.print(Text.assemble(("vote ", "bold"), describe_vote(event)))
                if event.reason:
                    out.print(Text(event.reason, style="dim"))
            case ListMerged():
                out.print(Text.assemble(("list merged ", "bold"), describe_merge(event)))
                for item in event.items:
                    found_by = ", ".join(item.get("agents", []))
                    out.print(
                        Text(
                            f"- {item.get('text', '')} · {', '.join(item.get('documents', []))} · {found_by}"
                        )
                    )
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
    """A table of per-agent figures (planner and synthesizer included) with the run's totals. "queries"
    counts distinct searches: the total is the run's, not the sum (agents may share a query's pages)."""
    if not figures.per_agent:
        return
    table = Table(title="per agent", show_edge=False, pad_edge=False)
    columns = ("agent", "searches", "queries", "cache hits", "docs read", "cited", "calls", "tokens", "time")
    for column in columns:
        table.add_column(column, justify="left" if column == "agent" else "right")
    for name, agent in figures.per_agent.items():
        table.add_row(
            name,
            str(agent.searches),
            str(agent.distinct_queries),
            str(agent.search_cache_hits + agent.document_cache_hits),
            str(agent.documents_read),
            str(agent.sources_cited),
            str(agent.model_calls),
            tokens_in_out(agent.prompt_tokens, agent.completion_tokens),
            duration(agent.wall_seconds),
        )
    table.add_row(
        "total",
        str(figures.searches),
        str(figures.distinct_queries),
        str(figures.search_cache_hits + figures.document_cache_hits),
        str(figures.documents_read),
        str(figures.sources_cited),
        str(figures.model_calls),
        tokens_in_out(figures.prompt_tokens, figures.completion_tokens),
        duration(figures.wall_seconds),
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
            one_line(str(row["answer"]), 80),
            one_line(str(row["reason"]), 80),
        )
    console.print(table)


def render_trace(records: Sequence[TraceRecord], console: Console, *, max_chars: int | None = None) -> None:
    """Print a run step by step: every prompt in full (system prompts included), every model output,
    each parsed action, every search with its hits, every document opened with the text shown to the
    model, dropped citations, notes, tokens and seconds per step, and the final answer with its
    citations and figures. Agents' events are kept together. `max_chars` clips long texts."""
    _TracePrinter(console, max_chars).print(records)
