"""The MCP server: `research`, `search` and `get_run` as tools, over stdio (`openheavy mcp`) and over
streamable HTTP at `/mcp` under `openheavy serve`, with the official `mcp` SDK (2.x, `MCPServer`).

Both transports share one tool set bound to a `RunHub`, so MCP runs count against the same concurrency
limit and show up live in the web view. A research call reports each step of the run as an MCP progress
notification (and one at least every `ping_seconds` of silence), so clients that time out on silence
keep waiting. Over stdio, stdout carries protocol messages only: logs go to stderr.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

import openheavy
from openheavy.config import Settings
from openheavy.display import describe_event
from openheavy.errors import OpenHeavyError
from openheavy.models.base import ChatModel
from openheavy.search.base import SearchBackend
from openheavy.server.citations import answer_markdown
from openheavy.server.config import ServerConfig
from openheavy.server.engine import EnginePool, search_passages
from openheavy.server.options import (
    MAX_AGENTS,
    MAX_SAMPLES,
    ModeName,
    ResearchOptions,
    ResearchRequest,
    ServedVerifier,
)
from openheavy.server.runs import RunHub
from openheavy.server.sse import with_pings
from openheavy.server.state import ServerState

__all__ = ["ResearchAnswer", "build_mcp_server", "run_stdio"]

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "openheavy researches questions with several tool-using agents over a document corpus and returns a "
    "concise answer whose [n] markers cite the passages the agents read. Use `research` for a question "
    "(mode heavy: planner + parallel agents + synthesis; heavy-rank: the same agents' answers ranked; "
    "single: one agent; rank: best of n samples; rank-tools: best of n research agents; direct: the "
    "model alone), `search` to look passages up yourself, and `get_run` to read a run's "
    "record and trace."
)


class ResearchAnswer(BaseModel):
    """What `research` returns."""

    answer: str = Field(description="The answer; [n] markers cite `citations`, footnotes at the end.")
    citations: list[dict[str, Any]] = Field(description="number, title, url and passage id of each source")
    run_id: str = Field(description="The run's id: `get_run` or `openheavy trace RUN_ID` shows every step")
    status: str
    mode: str
    figures: dict[str, Any] = Field(description="searches, documents read, tokens, wall seconds ...")


class Passage(BaseModel):
    """One search hit."""

    id: str
    title: str
    url: str
    snippet: str
    score: float


def _refuse(exc: OpenHeavyError) -> ToolError:
    return ToolError(str(exc))


def build_mcp_server(state: ServerState) -> MCPServer[Any]:
    """An `MCPServer` whose tools run on `state`'s engines, under its concurrency limit."""
    server: MCPServer[Any] = MCPServer(
        "openheavy", instructions=INSTRUCTIONS, version=openheavy.__version__, log_level="WARNING"
    )

    @server.tool()
    async def research(
        question: Annotated[str, Field(min_length=1, description="The question to research.")],
        ctx: Context,
        mode: ModeName = "heavy",
        agents: Annotated[
            int | None, Field(ge=1, le=MAX_AGENTS, description="heavy, heavy-rank: agents")
        ] = None,
        n: Annotated[
            int | None, Field(ge=1, le=MAX_SAMPLES, description="rank: samples; rank-tools: agents")
        ] = None,
        verifier: ServedVerifier | None = None,
        corpus: Annotated[str | None, Field(max_length=64, description="Corpus to search.")] = None,
    ) -> ResearchAnswer:
        """Research a question with openheavy and return a cited answer and the run's id."""
        if len(question) > state.config.max_question_chars:
            limit = state.config.max_question_chars
            raise ToolError(f"the question is {len(question):,} characters; the limit is {limit:,}")
        options = ResearchOptions(agents=agents, n=n, verifier=verifier, corpus=corpus)
        try:
            live = await state.hub.start(ResearchRequest(question, mode, "", options))
        except OpenHeavyError as exc:
            raise _refuse(exc) from None
        subscription = live.subscribe()
        progress, message = 0, f"run {live.run_id} started"
        try:
            async for event in with_pings(subscription, state.config.ping_seconds):
                if event is not None:
                    message = describe_event(event) or message
                    progress += 1
                await ctx.report_progress(progress, None, message)
            await live.wait()
        finally:
            live.unsubscribe(subscription)
            live.cancel()  # a no-op once the run is over; stops it when the client cancelled the call
        finished = live.finished
        if finished is None or finished.status != "ok":
            error = (finished.error if finished is not None else None) or str(live.error or "cancelled")
            raise ToolError(f"run {live.run_id} did not answer: {error} — get_run shows its trace")
        return ResearchAnswer(
            answer=answer_markdown(finished.answer, finished.citations),
            citations=finished.citations,
            run_id=live.run_id,
            status=finished.status,
            mode=mode,
            figures=finished.figures,
        )

    @server.tool()
    async def search(
        query: Annotated[str, Field(min_length=1, max_length=2000, description="What to look for.")],
        corpus: Annotated[
            str | None, Field(max_length=64, description="Corpus (default: the server's).")
        ] = None,
        k: Annotated[int, Field(ge=1, le=50, description="How many passages.")] = 5,
    ) -> list[Passage]:
        """Search a corpus and return the best passages (id, title, url, snippet, score)."""
        try:
            heavy = await state.pool.search_engine(corpus)
            hits = await search_passages(heavy, query, k)
        except OpenHeavyError as exc:
            raise _refuse(exc) from None
        return [Passage(id=h.id, title=h.title, url=h.url, snippet=h.snippet, score=h.score) for h in hits]

    @server.tool()
    async def get_run(
        id: Annotated[str, Field(min_length=1, max_length=64, description="A run id from `research`.")],
        trace: Annotated[
            bool, Field(description="Include every trace record (prompts, hits, pages).")
        ] = False,
    ) -> dict[str, Any]:
        """A run's record (question, mode, status, answer, citations, figures) and, with trace, its trace."""
        try:
            return state.run_record(id, with_trace=trace)
        except OpenHeavyError as exc:
            raise _refuse(exc) from None

    return server


async def run_stdio(
    settings: Settings,
    model: str | ChatModel | None = None,
    corpus: str | SearchBackend | None = None,
    config: ServerConfig | None = None,
) -> None:
    """Serve the MCP tools over stdin/stdout until the client closes the connection."""
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    config = config or ServerConfig()
    pool = EnginePool(settings, model, corpus)
    hub = RunHub(pool, config.max_concurrent, config.retry_after)
    server = build_mcp_server(ServerState(config, pool, hub))
    try:
        await server.run_stdio_async()
    finally:
        await hub.aclose()
        await pool.aclose()
