"""The research tools: `search` the corpus and `open` a result to read it."""

from __future__ import annotations

import time

from pydantic import BaseModel, Field

from openheavy.errors import AddressRefusedError, FetchError
from openheavy.tools.base import Observation, ToolContext
from openheavy.tools.sources import SourceBook
from openheavy.types import DocumentOpened, FetchRefused, Hit, JsonSchema, PageUnreadable, SearchDone

QUERY_MAX_CHARS = 120


class SearchArgs(BaseModel):
    query: str = Field(min_length=1, max_length=QUERY_MAX_CHARS)


class OpenArgs(BaseModel):
    ref: int = Field(ge=1)


class SearchTool:
    """Keyword search over the run's corpus; results get stable reference numbers."""

    name = "search"
    description = "search the documents; results are numbered [n]"
    Args: type[BaseModel] = SearchArgs

    def __init__(self, k: int = 5, snippet_chars: int = 240) -> None:
        self.k = k
        self.snippet_chars = snippet_chars

    def args_schema(self, sources: SourceBook) -> JsonSchema:
        return {
            "type": "object",
            "properties": {"query": {"type": "string", "minLength": 1, "maxLength": QUERY_MAX_CHARS}},
            "required": ["query"],
        }

    def available(self, sources: SourceBook) -> bool:
        return True

    async def call(self, args: BaseModel, ctx: ToolContext) -> Observation:
        assert isinstance(args, SearchArgs)
        started = time.perf_counter()
        hits, cached = await ctx.search.search(args.query, self.k)
        refs = ctx.sources.register(hits)
        ctx.stream.emit(
            SearchDone(
                run_id=ctx.run_id,
                agent=ctx.agent,
                step=ctx.step,
                query=args.query,
                hits=[_hit_record(ref, hit) for ref, hit in zip(refs, hits, strict=True)],
                seconds=time.perf_counter() - started,
                cached=cached,
            )
        )
        if not hits:
            return Observation(f'No results for "{args.query}". Try other keywords, or answer if done.')
        lines = [f'Results for "{args.query}":']
        for ref, hit in zip(refs, hits, strict=True):
            opened = " (already read)" if ref in ctx.sources.opened else ""
            source = f" ({hit.source})" if hit.source else ""
            snippet = " ".join(hit.snippet.split())[: self.snippet_chars]
            lines.append(f"[{ref}] {hit.title}{source}{opened}\n    {snippet}")
        return Observation("\n".join(lines))


class OpenTool:
    """Read a search result in full (up to `max_chars`)."""

    name = "open"
    description = "read result [n] in full"
    Args: type[BaseModel] = OpenArgs

    def __init__(self, max_chars: int = 1800) -> None:
        self.max_chars = max_chars

    def args_schema(self, sources: SourceBook) -> JsonSchema:
        # Only numbers the agent has seen and not yet read: constrained decoding can't pick another.
        return {
            "type": "object",
            "properties": {"ref": {"type": "integer", "enum": sources.unopened_refs()}},
            "required": ["ref"],
        }

    def available(self, sources: SourceBook) -> bool:
        return bool(sources.unopened_refs())

    async def call(self, args: BaseModel, ctx: ToolContext) -> Observation:
        assert isinstance(args, OpenArgs)
        hit = ctx.sources.seen.get(args.ref)
        if hit is None:
            known = ", ".join(f"[{r}]" for r in ctx.sources.seen) or "none yet — search first"
            return Observation(f"There is no result [{args.ref}]. Known results: {known}.")
        started = time.perf_counter()
        try:
            document, cached = await ctx.search.open(hit.id)
        except FetchError as exc:
            # A refused or unreadable web page is an observation, not the agent's end: it can't be
            # cited, and the agent reads something else.
            return _unreadable(args.ref, exc, ctx)
        ctx.sources.mark_opened(args.ref, document)
        text = document.text.strip()
        shown = text if len(text) <= self.max_chars else text[: self.max_chars] + " […]"
        ctx.stream.emit(
            DocumentOpened(
                run_id=ctx.run_id,
                agent=ctx.agent,
                step=ctx.step,
                ref=args.ref,
                doc={
                    "id": document.id,
                    "doc_id": document.doc_id,
                    "title": document.title,
                    "url": document.url,
                    "chars": len(text),
                },
                text_shown=shown,
                seconds=time.perf_counter() - started,
                cached=cached,
            )
        )
        location = f" ({document.url})" if document.url else ""
        return Observation(f"[{args.ref}] {document.title}{location}\n{shown}")


def _unreadable(ref: int, exc: FetchError, ctx: ToolContext) -> Observation:
    ctx.sources.mark_unreadable(ref, str(exc))
    if isinstance(exc, AddressRefusedError):
        ctx.stream.emit(
            FetchRefused(
                run_id=ctx.run_id,
                agent=ctx.agent,
                step=ctx.step,
                ref=ref,
                url=exc.url,
                host=exc.host,
                port=exc.port,
                address=exc.address,
                why=exc.why,
                chain=list(exc.chain),
            )
        )
        why = f"the link leads to a {exc.why} address, which openheavy does not connect to"
    else:
        ctx.stream.emit(
            PageUnreadable(
                run_id=ctx.run_id,
                agent=ctx.agent,
                step=ctx.step,
                ref=ref,
                url=exc.url,
                reason=exc.reason,
                message=str(exc),
            )
        )
        why = f"{exc.reason or 'error'}: {exc}"
    return Observation(f"[{ref}] could not be read ({why}). It can't be cited; open another result.")


def _hit_record(ref: int, hit: Hit) -> dict[str, object]:
    return {
        "ref": ref,
        "id": hit.id,
        "doc_id": hit.doc_id,
        "title": hit.title,
        "url": hit.url,
        "snippet": hit.snippet,
        "score": hit.score,
        "source": hit.source,
    }
