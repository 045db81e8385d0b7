"""The `Tool` protocol: a name, a description, a pydantic args model and an async call.

Tools see the run through a `ToolContext`: the shared search cache (None for an agent with no
corpus), the agent's source book, the searches its team has run, the event stream they report to, and
what each tool keeps of the agent's earlier calls to it (`tool_state`).
The JSON schema of a tool's arguments may depend on the agent's state (e.g. `open` only accepts numbers
the agent has seen), so constrained decoding can't pick a bad one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pydantic import BaseModel

from openheavy.search.cache import CachedSearch
from openheavy.search.queries import QueryLog
from openheavy.tools.sources import SourceBook
from openheavy.types import EventStream, JsonSchema


@dataclass
class ToolContext:
    run_id: str
    agent: str
    step: int
    search: CachedSearch | None
    sources: SourceBook
    stream: EventStream
    # The searches of the agent's team (shared by the agents of a heavy run; the agent's own otherwise).
    queries: QueryLog = field(default_factory=QueryLog)
    # What a tool keeps of this agent's earlier calls to it, under the tool's name (the python tool's
    # notebook of earlier runs). The agent owns the dict; the tool its entry.
    tool_state: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Observation:
    """What the model is shown after a tool call. `repeated`: the call repeated an earlier one of the
    agent's to the letter and got the same, so calling it again next would be a loop. `computed`: what
    the call computed (a program's output), which an answer's numbers must come from (see the agent's
    "uncomputed" rejection); "" for tools that compute nothing."""

    text: str
    repeated: bool = False
    computed: str = ""


class Tool(Protocol):
    name: str
    description: str
    Args: type[BaseModel]

    def args_schema(self, sources: SourceBook) -> JsonSchema:
        """The JSON schema of this tool's arguments given what the agent has seen so far."""
        ...

    def available(self, sources: SourceBook) -> bool:
        """Whether the tool can be called at all now (e.g. `open` needs something to open)."""
        ...

    async def call(self, args: BaseModel, ctx: ToolContext) -> Observation: ...


@runtime_checkable
class WrittenInFreeText(Protocol):
    """A tool whose arguments the model writes in free text after the JSON action that picks it (the
    python tool's script): the agent asks with `free_text_prompt`, with no schema and at most
    `free_text_max_tokens`, and `args_from_text` parses the reply (None: it holds none; the agent then
    asks once more with `free_text_again_prompt` in place of the first request and its reply, and takes
    what that reply gives: `last_try`)."""

    free_text_prompt: str
    free_text_again_prompt: str  # asked once, in place of the first request, when a reply held none
    free_text_max_tokens: int

    def args_from_text(self, text: str, *, last_try: bool = False) -> BaseModel | None: ...
