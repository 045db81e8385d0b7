"""The research tools: `search` the corpus and `open` a result to read it.

What the model reads back (the observations) is written in the `tool_*` prompt templates; whatever
came from the corpus (titles, snippets, text) is fenced as untrusted data (`fence_untrusted`)."""

from __future__ import annotations

import re
import time
from collections.abc import Collection
from dataclasses import dataclass

from pydantic import BaseModel, Field, field_validator

from openheavy.errors import AddressRefusedError, FetchError, OpenHeavyError
from openheavy.prompts import fence_untrusted, render_prompt
from openheavy.search.cache import CachedSearch
from openheavy.search.queries import MAX_PAGES, QueryClaim
from openheavy.search.terms import query_key
from openheavy.tools.base import Observation, ToolContext
from openheavy.tools.sources import SourceBook
from openheavy.types import (
    Document,
    DocumentOpened,
    EventStream,
    FetchRefused,
    Hit,
    JsonSchema,
    PageUnreadable,
    SearchDone,
    SearchRepeated,
)

QUERY_MAX_CHARS = 120
TEAM_QUERIES_SHOWN = 6  # the other agents' latest queries shown after a search


# The marks the results put after a title (tool_search_hit_*.txt), which the 0.5B model now and then
# copies into its next query with the title: 4 of 86 searches in a HotpotQA-50 run (r15), such as
# "Romper Stomper (TV series) (shown whole: read)". They are no words of any document.
RESULT_MARKS = ("(already read)", "(listed above)", "(shown whole: read)")
_RESULT_MARK = re.compile("|".join(re.escape(mark) for mark in RESULT_MARKS), re.IGNORECASE)


class SearchArgs(BaseModel):
    query: str = Field(min_length=1, max_length=QUERY_MAX_CHARS)
    page: int = Field(default=1, ge=1, le=MAX_PAGES)

    @field_validator("query")
    @classmethod
    def _without_result_marks(cls, query: str) -> str:
        """The query without the results' own marks (`RESULT_MARKS`); one that is nothing else stays
        as it is (the search then says it found nothing)."""
        cleaned = " ".join(_RESULT_MARK.sub(" ", query).split())
        return cleaned or query


class OpenArgs(BaseModel):
    ref: int = Field(ge=1)


class SearchTool:
    """Keyword search over the run's corpus, a page of `k` results at a time; results get stable
    reference numbers. A search the agent's team already ran is not run again (see `search.queries`):
    the next page nobody has seen runs instead, and the observation says so."""

    name = "search"
    description = "search the documents; results are numbered [n]"
    Args: type[BaseModel] = SearchArgs

    def __init__(self, k: int = 5, snippet_chars: int = 240) -> None:
        self.k = k
        self.snippet_chars = snippet_chars

    def args_schema(self, sources: SourceBook) -> JsonSchema:
        return {
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "maxLength": QUERY_MAX_CHARS},
                "page": {"type": "integer", "minimum": 1, "maximum": MAX_PAGES},
            },
            "required": ["query"],
        }

    def available(self, sources: SourceBook) -> bool:
        return True

    async def call(self, args: BaseModel, ctx: ToolContext) -> Observation:
        assert isinstance(args, SearchArgs)
        claim = ctx.queries.claim(ctx.agent, args.query, args.page)
        if claim.moved:
            ctx.stream.emit(
                SearchRepeated(
                    run_id=ctx.run_id,
                    agent=ctx.agent,
                    step=ctx.step,
                    query=args.query,
                    query_key=claim.key,
                    asked_page=claim.asked_page,
                    page=0 if claim.exhausted else claim.page,
                    repeat_of=list(claim.repeat_of),
                )
            )
        if claim.exhausted:
            pages = ", ".join(map(str, ctx.queries.pages_run(args.query)))
            text = render_prompt("tool_search_exhausted", who=_who(claim, ctx.agent), pages=pages)
            return Observation(text.strip())
        started = time.perf_counter()
        hits, cached = await _corpus(ctx).search_page(args.query, self.k, claim.page)
        ctx.queries.record_results(claim, len(hits), self.k)
        already_seen = set(ctx.sources.seen)
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
                page=claim.page,
                query_key=claim.key,
            )
        )
        if claim.moved and not hits:  # the team has seen every result of this query
            pages = ", ".join(map(str, ctx.queries.pages_run(args.query)[:-1]))
            parts = [render_prompt("tool_search_exhausted", who=_who(claim, ctx.agent), pages=pages)]
        else:
            parts = [self.results_text(args.query, claim.page, refs, hits, ctx.sources, already_seen)]
        read_in_results(
            refs, hits, ctx.sources, ctx.stream, run_id=ctx.run_id, agent=ctx.agent, step=ctx.step
        )
        if claim.moved and hits:
            parts.append(render_prompt("tool_search_repeat", who=_who(claim, ctx.agent), page=claim.page))
        if hits and already_seen.issuperset(refs):
            parts.append(render_prompt("tool_search_nothing_new"))
        others = ctx.queries.queries_by_others(ctx.agent)[-TEAM_QUERIES_SHOWN:]
        if others:
            # Other agents' queries are model output written after reading the corpus: data, too.
            queries = "; ".join(f'"{query}"' for query in others)
            parts.append(fence_untrusted(queries, label=render_prompt("tool_search_team").strip()))
        return Observation("\n".join(part.strip() for part in parts))

    def results_text(
        self,
        query: str,
        page: int,
        refs: list[int],
        hits: list[Hit],
        sources: SourceBook,
        shown: Collection[int] = (),
    ) -> str:
        """A page of results as the model reads it: numbered, fenced as untrusted data. A result in
        `shown` (listed to this agent before) is one line, its number and title: the agent's context
        already holds its snippet, and a third of the results of heavy agents' searches on HotpotQA were
        such repeats, each carried again by every later prompt."""
        if not hits:
            if page == 1:
                return render_prompt("tool_search_empty", query=query)
            return render_prompt("tool_search_no_more", query=query, page=page)
        lines = "\n".join(
            self._hit_line(ref, hit, sources, shown) for ref, hit in zip(refs, hits, strict=True)
        )
        if page == 1:
            label = render_prompt("tool_search_results", query=query)
        else:
            first = (page - 1) * self.k + 1
            last = first + len(hits) - 1
            label = render_prompt("tool_search_results_page", query=query, page=page, first=first, last=last)
        return fence_untrusted(lines, label=label.strip())

    def _hit_line(self, ref: int, hit: Hit, sources: SourceBook, shown: Collection[int]) -> str:
        """One result: number, title, source and snippet, or the whole passage when the hit carries it
        (`Hit.text`); a result read or listed before without its snippet."""
        source = f" ({hit.source})" if hit.source else ""
        if ref in sources.opened:
            return render_prompt("tool_search_hit_read", ref=ref, title=hit.title, source=source).strip()
        if ref in shown:
            return render_prompt("tool_search_hit_shown", ref=ref, title=hit.title, source=source).strip()
        if hit.text is not None:
            return render_prompt(
                "tool_search_hit_whole", ref=ref, title=hit.title, source=source, text=hit.text
            ).strip()
        snippet = " ".join(hit.snippet.split())[: self.snippet_chars]
        return render_prompt(
            "tool_search_hit", ref=ref, title=hit.title, source=source, snippet=snippet
        ).strip()


def shown_whole(hit: Hit) -> Document | None:
    """The passage a result shows in full (`Hit.text`), as a document read; None for a snippet."""
    return None if hit.text is None else Document(hit.id, hit.doc_id, hit.title, hit.url, hit.text)


def mark_read_whole(refs: list[int], hits: list[Hit], sources: SourceBook) -> list[tuple[int, Document]]:
    """Mark the results shown whole (`Hit.text`) as opened in `sources`, so they can be cited and are
    not offered to `open`; returns those newly marked, with their documents."""
    marked = []
    for ref, hit in zip(refs, hits, strict=True):
        document = shown_whole(hit)
        if document is not None and ref not in sources.opened:
            sources.mark_opened(ref, document)
            marked.append((ref, document))
    return marked


def read_in_results(
    refs: list[int],
    hits: list[Hit],
    sources: SourceBook,
    stream: EventStream,
    *,
    run_id: str,
    agent: str,
    step: int,
) -> None:
    """Count the results shown whole as read by `agent` (`mark_read_whole`), each recorded by a
    `DocumentOpened` event with `in_results`. Call it after the results were rendered (a result read
    before is listed as such)."""
    for ref, document in mark_read_whole(refs, hits, sources):
        stream.emit(
            DocumentOpened(
                run_id=run_id,
                agent=agent,
                step=step,
                ref=ref,
                doc={
                    "id": document.id,
                    "doc_id": document.doc_id,
                    "title": document.title,
                    "url": document.url,
                    "chars": len(document.text),
                },
                text_shown=document.text,
                seconds=0.0,
                in_results=True,
            )
        )


@dataclass(frozen=True)
class Opening:
    """The opening search: the question's own words, searched once before a run's agents start, its
    results shown to every agent right after the question.

    Why: the question is the best query a small model is ever given. On the first 50 HotpotQA dev
    questions the question's words put 83 of the 100 supporting passages in the top 5, the first query
    the 0.5B model wrote 49 (it drops the names: "not-for-profit media outlet" for "Andrew Jaspan was the
    co-founder of what not-for-profit media outlet?"). The agents then search their own words.

    `text` is rendered once, so every agent's prompt holds the same bytes after the shared question (an
    engine that shares cached prefixes across requests computes them once for the team); `hits` get the
    same numbers [1]..[k] in each agent."""

    query: str
    hits: tuple[Hit, ...]
    text: str


async def opening_search(
    search: CachedSearch,
    query: str,
    tool: SearchTool,
    *,
    stream: EventStream,
    run_id: str,
) -> Opening:
    """Search `query` once for a team of agents (recorded in the trace as a search at step 0 by no
    agent; each agent given it records it in its query log, see `ResearchAgent.run`)."""
    started = time.perf_counter()
    hits, cached = await search.search_page(query, tool.k, 1)
    book = SourceBook()  # a fresh agent's numbering: every agent registers these hits first
    refs = book.register(hits)
    stream.emit(
        SearchDone(
            run_id=run_id,
            agent="",
            step=0,
            query=query,
            hits=[_hit_record(ref, hit) for ref, hit in zip(refs, hits, strict=True)],
            seconds=time.perf_counter() - started,
            cached=cached,
            query_key=query_key(query),
        )
    )
    return Opening(query, tuple(hits), tool.results_text(query, 1, refs, hits, book))


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
            if not ctx.sources.seen:
                return Observation(render_prompt("tool_open_before_search", ref=args.ref).strip())
            known = ", ".join(f"[{r}]" for r in ctx.sources.seen)
            return Observation(render_prompt("tool_open_unknown", ref=args.ref, known=known).strip())
        started = time.perf_counter()
        try:
            document, cached = await _corpus(ctx).open(hit.id)
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
        observation = render_prompt(
            "tool_open_document", ref=args.ref, title=document.title, location=location, text=shown
        )
        label = render_prompt("tool_open_label", ref=args.ref).strip()
        return Observation(fence_untrusted(observation.strip(), label=label))


def _who(claim: QueryClaim, agent: str) -> str:
    """Who had run a repeated search, as the observation names them ("You", "agent-2", "You and agent-3")."""
    names = ["You" if name == agent else name for name in claim.repeat_of]
    names.sort(key=lambda name: name != "You")
    return " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]


def _corpus(ctx: ToolContext) -> CachedSearch:
    if ctx.search is None:  # ResearchAgent refuses these tools without a corpus; this is the backstop
        raise OpenHeavyError("the search and open tools need a corpus, and this agent has none")
    return ctx.search


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
        return Observation(render_prompt("tool_open_refused", ref=ref, why=exc.why).strip())
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
    observation = render_prompt(
        "tool_open_unreadable", ref=ref, reason=exc.reason or "error", message=str(exc)
    )
    return Observation(observation.strip())


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
