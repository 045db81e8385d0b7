"""Plain data shared by every layer: messages, completions, usage, hits, documents and events.

Frozen dataclasses inside the engine; pydantic only at the boundaries (config, trace files, HTTP).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
JsonSchema = dict[str, Any]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
        )

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Completion:
    text: str
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    finish_reason: str | None = None
    seconds: float = 0.0
    # Mean log-probability of the generated tokens, when the backend reports it (used to break vote ties).
    mean_logprob: float | None = None


@dataclass(frozen=True)
class Hit:
    """One search result: a passage (chunk) of a document."""

    id: str  # chunk id, what `SearchBackend.open` takes
    doc_id: str  # the document the chunk belongs to
    title: str
    url: str  # URL or file path; may be ""
    snippet: str
    score: float
    source: str = ""  # the backend that found it ("searxng", "pydocs", ...), when a run searches several
    # The whole passage, when the backend sends it with the hit: a local index does for a passage short
    # enough to read in the results list (`search.local.WHOLE_PASSAGE_CHARS`). The results show it in
    # full and count it as read, so the agent spends no step opening it. None: only the snippet.
    text: str | None = None


@dataclass(frozen=True)
class Document:
    """A passage opened for reading."""

    id: str
    doc_id: str
    title: str
    url: str
    text: str


# ---------------------------------------------------------------- events
# Every event carries the run id, the agent that emitted it ("" for the run itself), and a timestamp.
# Sinks (JSONL trace, SQLite run store, live display, SSE) consume the same objects.


@dataclass(frozen=True, kw_only=True)
class Event:
    run_id: str
    agent: str = ""
    at: float = field(default_factory=time.time)

    @property
    def kind(self) -> str:
        return type(self).__name__

    def to_record(self) -> dict[str, Any]:
        """The event as JSON-ready data. Shallow on purpose: event fields already hold plain data, and a
        deep copy of every prompt (as `dataclasses.asdict` makes) was the engine's largest cost."""
        record = dict(self.__dict__)
        record["kind"] = self.kind
        return record


@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    question: str
    mode: str
    model: str
    corpus: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class AgentStarted(Event):
    task: str  # the agent's (sub-)task as given to it


@dataclass(frozen=True, kw_only=True)
class ModelCalled(Event):
    step: int
    purpose: str  # "action", "answer", "plan", "synthesis", "sample", "judge", ...
    messages: list[dict[str, str]]  # the full prompt, system prompt included
    json_schema: dict[str, Any] | None
    output: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    seconds: float


@dataclass(frozen=True, kw_only=True)
class ActionParsed(Event):
    step: int
    action: str
    args: dict[str, Any]
    missing: str = ""  # what the agent said it still had to find out, before choosing this action
    planned: bool = False  # run as the orchestrator planned it (a first search), not picked by the model


@dataclass(frozen=True, kw_only=True)
class AnswerRejected(Event):
    """An answer sent back once, with what to do instead: it said something was still missing
    (`reason` "missing"), nothing had been read ("nothing_read"), or it cited nothing read ("uncited")."""

    step: int
    reason: str
    message: str  # what the agent was told


@dataclass(frozen=True, kw_only=True)
class OutputRejected(Event):
    step: int
    output: str
    error: str


@dataclass(frozen=True, kw_only=True)
class SearchDone(Event):
    step: int
    query: str
    hits: list[dict[str, Any]]  # Hit records, with the reference number shown to the model
    seconds: float
    cached: bool = False
    page: int = 1  # results (page - 1) * k + 1 to page * k
    query_key: str = ""  # what the query asks for (`search.terms.query_key`): equal keys, same search


@dataclass(frozen=True, kw_only=True)
class SearchRepeated(Event):
    """A search the agent's team had already run (same `query_key` and page). It is not run again: the
    first page of that query nobody had run (`page`) runs instead, or nothing when none is left (0)."""

    step: int
    query: str
    query_key: str
    asked_page: int
    page: int
    repeat_of: list[str]  # the agents that had run this query


@dataclass(frozen=True, kw_only=True)
class DocumentOpened(Event):
    step: int
    ref: int
    doc: dict[str, Any]  # Document record without the text, plus chars
    text_shown: str
    seconds: float
    cached: bool = False
    # Read in the search results, shown there in full (`Hit.text`), rather than opened by a step.
    in_results: bool = False


@dataclass(frozen=True, kw_only=True)
class CodeRan(Event):
    """The python tool ran code in the sandbox (openheavy/sandbox.py)."""

    step: int
    code: str
    stdout: str  # as kept by the sandbox: truncated, with the truncation marked
    stderr: str
    exit_status: int  # 128 + N when signal N ended it
    limit: str | None  # "cpu", "wall", "memory", "output", "processes": the limit that ended it
    seconds: float
    isolation: str  # "bwrap", or "none" for unconfined


@dataclass(frozen=True, kw_only=True)
class FetchRefused(Event):
    """The SSRF guard refused to connect while opening result `ref`: `url` (the result itself, or a
    page it redirected to through `chain`) resolves to `address`, which is `why` ("loopback", ...)."""

    step: int
    ref: int
    url: str
    host: str
    port: int
    address: str
    why: str
    chain: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class PageUnreadable(Event):
    """Result `ref` could not be read (anti-bot wall, login page, empty, timeout, ...): not citable."""

    step: int
    ref: int
    url: str
    reason: str  # a short code: "anti-bot", "login", "empty", "timeout", "http-status", ...
    message: str


@dataclass(frozen=True, kw_only=True)
class CitationDropped(Event):
    ref: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class AnswerEdited(Event):
    """An answer's text repaired in code before it was kept: a degenerate repetition cut, text ended at
    its last sentence, citation markers added, the short answer put first. `edits` says which and why."""

    step: int
    edits: list[dict[str, Any]]  # {"kind", "detail", "removed_chars"}
    original: str  # the text as the model wrote it
    text: str  # the text kept


@dataclass(frozen=True, kw_only=True)
class AgentFinished(Event):
    answer: str
    citations: list[dict[str, Any]]
    stop_reason: str  # "answered", "budget:steps", "budget:tokens", "budget:time", "error"
    error: str | None = None
    steps: int = 0
    short_answer: str = ""  # the bare answer (a name, yes/no, a number), for votes and graders


@dataclass(frozen=True, kw_only=True)
class Note(Event):
    """Anything else worth keeping in the trace: plans, verifier scores, warnings."""

    topic: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class PlanMade(Event):
    """Heavy mode's plan, as checked in code: the answer's shape, one assignment per agent (its task, its
    first queries, and for a list its slice), the partition of a list question, where the plan came
    from ("model", "fixed": the model with a given agent count, "fallback") and what the checks fixed."""

    shape: str  # "short", "list", "long"
    assignments: list[dict[str, Any]]
    origin: str
    partition: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class VoteTaken(Event):
    """The agents' short answers, grouped by their normalized form, and what decided the final one:
    "majority", "synthesizer" (a tie, or no two agents agreeing), "only answer", or "conjuncts" (a yes/no
    question asked of several names, decided name by name: each candidate is one name and its verdict)."""

    candidates: list[dict[str, Any]]  # {"answer", "agents"}, most votes first
    winner: str
    decided_by: str
    reason: str = ""  # why a vote was taken where the plan expected another merge


@dataclass(frozen=True, kw_only=True)
class ListMerged(Event):
    """A list answer as the deduplicated union of the items every agent found, each with its evidence."""

    items: list[dict[str, Any]]  # {"text", "documents", "agents"}
    duplicates: int  # items found by more than one agent (merged into one)
    # Wide search (openheavy.item_check): the conditions every item's document must meet ({"names",
    # "low", "high", "problems"}), the deep searches for their names, each document checked, {"document",
    # "title", "agents", "belongs", "facts"[, "error"]}; the agents' items dropped because every document
    # they rest on was checked and does not belong; leads left unchecked beyond the bound.
    conditions: dict[str, Any] = field(default_factory=dict)
    sweeps: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    unchecked: int = 0


@dataclass(frozen=True, kw_only=True)
class RunFinished(Event):
    status: Literal["ok", "cancelled", "failed"]
    answer: str
    citations: list[dict[str, Any]]
    figures: dict[str, Any]
    error: str | None = None


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        RunStarted,
        AgentStarted,
        ModelCalled,
        ActionParsed,
        OutputRejected,
        AnswerRejected,
        SearchRepeated,
        SearchDone,
        DocumentOpened,
        CodeRan,
        FetchRefused,
        PageUnreadable,
        CitationDropped,
        AnswerEdited,
        AgentFinished,
        PlanMade,
        VoteTaken,
        ListMerged,
        Note,
        RunFinished,
    )
}
"""Every event class by `Event.kind`: the one list, for turning records (trace lines) back into events."""


class EventSink:
    """Receives every event of a run. Subclasses override `handle`; `close` runs once at the end."""

    def handle(self, event: Event) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        return None


class EventStream:
    """Fans one run's events out to its sinks. A failing sink must not stop the run, so it is detached."""

    def __init__(self, sinks: list[EventSink] | None = None) -> None:
        self.sinks: list[EventSink] = list(sinks or [])
        self.sink_errors: list[str] = []

    def emit(self, event: Event) -> None:
        for sink in list(self.sinks):
            try:
                sink.handle(event)
            except Exception as exc:  # a broken display must never lose the run
                self.sinks.remove(sink)
                self.sink_errors.append(f"{type(sink).__name__}: {exc}")

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
