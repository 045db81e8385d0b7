"""The web view at `/`: the runs, a run's plan, live agent panels, answer with citations, and full trace.

Server-rendered with Jinja2 (autoescaping on: traces hold documents and model output, which are
untrusted) plus one small script for the live panels, which sets text only through `textContent`. Pages
are sent with a Content-Security-Policy that allows scripts from this server alone, so even markup that
slipped through could not run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from openheavy.display import describe_event, render_summary
from openheavy.errors import OpenHeavyError, RunNotFoundError, ServerBusyError
from openheavy.server.citations import answer_html, link_target
from openheavy.server.options import MODE_NAMES, ResearchRequest, parse_model_field
from openheavy.server.security import SESSION_COOKIE, key_matches, session_token
from openheavy.server.sse import PING, SSE_HEADERS, sse_message, with_pings
from openheavy.server.state import ServerState, state_of
from openheavy.trace import RunFigures, RunRow, TraceRecord

__all__ = ["PAGE_HEADERS", "router"]

router = APIRouter()

_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes Chromium send `Origin: null` on posts
}


def _page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _TEMPLATES.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def _error_page(title: str, message: str, status: int) -> HTMLResponse:
    return _page("error.html", status, title=title, message=message)


def _clock(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _run_facts(row: RunRow) -> dict[str, Any]:
    figures = row.run_figures
    wall = row.finished_at - row.started_at if row.finished_at is not None else None
    return {
        "run_id": row.run_id,
        "question": row.question,
        "mode": row.mode,
        "model": row.model,
        "corpus": row.corpus,
        "status": row.status,
        "error": row.error,
        "started": _clock(row.started_at),
        "tokens": f"{figures.total_tokens:,}" if figures.total_tokens else "",
        "time": f"{wall:.1f} s" if wall is not None else "",
    }


def _record_view(record: TraceRecord) -> dict[str, Any]:
    event = record.to_event()
    line = describe_event(event) if event is not None else None
    return {
        **record.payload,
        "kind": record.kind,
        "agent": record.agent,
        "line": line or "",
        "raw": record.model_dump(mode="json"),
    }


def _groups(records: list[TraceRecord]) -> list[dict[str, Any]]:
    """The run's own events first, then each agent's (planner, agents, synthesizer) in order of appearance."""
    groups: dict[str, list[dict[str, Any]]] = {"run": []}
    for record in records:
        groups.setdefault(record.agent or "run", []).append(_record_view(record))
    return [{"name": name, "records": views} for name, views in groups.items() if views]


def _plan(records: list[TraceRecord]) -> dict[str, Any] | None:
    for record in records:
        if record.kind == "PlanMade":
            assignments = record.payload.get("assignments") or []
            return {
                "shape": str(record.payload.get("shape", "")),
                "origin": str(record.payload.get("origin", "")),
                "tasks": [str(a.get("task", "")) for a in assignments if isinstance(a, dict)],
            }
    return None


def _agents(records: list[TraceRecord]) -> list[dict[str, Any]]:
    tasks = {r.agent: r.payload.get("task", "") for r in records if r.kind == "AgentStarted"}
    return [
        {
            "agent": r.agent,
            "task": tasks.get(r.agent, ""),
            "answer": r.payload.get("answer", ""),
            "stop_reason": r.payload.get("stop_reason", ""),
            "steps": r.payload.get("steps", 0),
            "error": r.payload.get("error"),
        }
        for r in records
        if r.kind == "AgentFinished"
    ]


def _citation_views(citations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    views = []
    for position, citation in enumerate(citations, start=1):
        where = str(citation.get("url") or citation.get("doc_id") or citation.get("id") or "")
        views.append(
            {
                "number": int(citation.get("number", position)),
                "title": str(citation.get("title") or citation.get("id") or where),
                "link": link_target(str(citation.get("url") or "")),
                "where": where,
            }
        )
    return views


@router.get("/", response_class=HTMLResponse)
async def runs_page(request: Request) -> HTMLResponse:
    """The most recent runs, newest first, and a form to ask a question."""
    state = state_of(request)
    rows = state.store.list(limit=200)
    return _page(
        "runs.html",
        runs=[_run_facts(row) for row in rows],
        modes=MODE_NAMES,
        max_question_chars=state.config.max_question_chars,
    )


@router.post("/runs", response_model=None)
async def ask(request: Request) -> Response:
    """Start a run from the form on `/` and show its page (the run goes on if the page is closed)."""
    state = state_of(request)
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    question = (form.get("question") or [""])[0].strip()
    mode_name = (form.get("mode") or ["heavy"])[0]
    if not question:
        return _error_page("Nothing to run", "The question is empty.", 422)
    if len(question) > state.config.max_question_chars:
        return _error_page(
            "Question too long", f"The limit is {state.config.max_question_chars:,} characters.", 422
        )
    try:
        mode, backend = parse_model_field(mode_name, state.pool.backends)
        live = await state.hub.start(ResearchRequest(question, mode, backend))
    except ServerBusyError as exc:
        return _error_page("Busy", str(exc), 429)
    except OpenHeavyError as exc:
        return _error_page("Cannot run this", str(exc), 400)
    return RedirectResponse(f"/runs/{live.run_id}", status_code=303)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_page(run_id: str, request: Request) -> HTMLResponse:
    """One run: facts, plan, live panels while it runs here, answer with citations, and its trace."""
    state = state_of(request)
    try:
        row = state.run(run_id)
        records = state.trace(row)
    except RunNotFoundError as exc:
        return _error_page("No such run", str(exc), 404)
    except OpenHeavyError as exc:
        return _error_page("Cannot read this run", str(exc), 500)
    live = row.status == "running" and state.hub.live(row.run_id) is not None
    finished = row.status != "running"
    summary = render_summary(RunFigures.from_dict(row.figures), "") if row.status == "ok" else None
    return _page(
        "run.html",
        run=_run_facts(row),
        plan=_plan(records),
        live_url=f"/runs/{row.run_id}/events" if live else None,
        answer=answer_html(row.answer, row.citations) if finished and row.answer else None,
        citations=_citation_views(row.citations),
        summary=summary,
        agents=_agents(records),
        groups=_groups(records),
    )


@router.get("/runs/{run_id}/events")
async def run_events(run_id: str, request: Request) -> StreamingResponse:
    """The live panels' feed: `line` messages `{agent, kind, text}`, then one `done` `{status}`."""
    state = state_of(request)
    return StreamingResponse(_live_lines(state, run_id), media_type="text/event-stream", headers=SSE_HEADERS)


async def _live_lines(state: ServerState, run_id: str) -> Any:
    live = state.hub.live(run_id)
    if live is None:  # over, or running in another process: the page shows what the store has
        try:
            stored: str = state.run(run_id).status
        except OpenHeavyError:
            stored = "unknown"
        yield sse_message({"status": stored}, "done")
        return
    subscription = live.subscribe()
    try:
        async for event in with_pings(subscription, state.config.ping_seconds):
            if event is None:
                yield PING
                continue
            if not event.agent:  # the run's own events: its status shows at the top of the page
                continue
            text = describe_event(event)
            if text:
                yield sse_message({"agent": event.agent, "kind": event.kind, "text": text}, "line")
        await live.wait()
        status = (
            live.finished.status
            if live.finished is not None
            else ("cancelled" if live.cancelled else "failed")
        )
        yield sse_message({"status": status}, "done")
    finally:
        live.unsubscribe(subscription)  # a watcher leaving never stops the run


def _safe_next(target: str) -> str:
    """Only a path on this server: never an open redirect to another site."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


@router.get("/login", response_class=HTMLResponse, response_model=None)
async def login_form(request: Request, next: str = "/") -> Response:
    """The key form, for browsers (API clients send `Authorization: Bearer KEY`)."""
    if state_of(request).config.api_key is None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _page("login.html", next=_safe_next(next), wrong=False)


@router.post("/login", response_model=None)
async def login(request: Request) -> Response:
    """Check the key and set the session cookie (an HMAC of the key, HttpOnly, SameSite=Strict)."""
    key = state_of(request).config.api_key
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    target = _safe_next((form.get("next") or ["/"])[0])
    if key is None:
        return RedirectResponse(target, status_code=303)
    if not key_matches((form.get("key") or [""])[0], key):
        return _page("login.html", 401, next=target, wrong=True)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, session_token(key), httponly=True, samesite="strict", path="/")
    return response
