"""The queries a team of agents has issued in one run, so that no agent runs another's search again.

Agents of one heavy run share a `QueryLog`. Before a search runs, the agent *claims* a page of its query
(`claim`): a query is the same as an earlier one when its content words are (`query_key`: case,
punctuation, word order and stopwords do not count). A page already claimed, by another agent or by the
same one, is never run again: the claim moves on to the first page of that query nobody has had yet,
so a repeated query brings new results instead of the same ones. Past the last page that had results
(or past `max_pages`) the claim is `exhausted` and nothing runs.

Why the next page rather than a refusal: a small model that repeats a query usually repeats it again
when told not to, and a refusal costs it a step for nothing. The next page costs the same step and shows
documents nobody on the team has seen, and the observation still says who searched it already.

Claims are made synchronously (no await between the check and the record), so two agents that ask the
same query at the same moment get different pages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from openheavy.search.terms import query_key

__all__ = ["MAX_PAGES", "TEAM", "QueryClaim", "QueryLog"]

MAX_PAGES = 5
TEAM = "Your team"  # who ran a search every agent was shown before it started (`QueryLog.share`)


@dataclass(frozen=True)
class QueryClaim:
    """The page of a query an agent may run now."""

    query: str
    key: str
    page: int  # the page to run (1-based); the one asked for unless that one had been run
    asked_page: int
    repeat_of: tuple[str, ...] = ()  # the agents that had already run the page asked for
    exhausted: bool = False  # no page left to run: the claim runs nothing

    @property
    def moved(self) -> bool:
        """Whether the claim runs another page than the one asked for."""
        return self.page != self.asked_page or self.exhausted


@dataclass
class _Pages:
    by_page: dict[int, str] = field(default_factory=dict)  # page -> the agent that ran it
    last_page: int | None = None  # the last page with results, once a page came back short


class QueryLog:
    """The searches of one team of agents (all agents of a heavy run share one)."""

    def __init__(self, max_pages: int = MAX_PAGES) -> None:
        self.max_pages = max_pages
        self._queries: dict[str, _Pages] = {}
        self._issued: list[tuple[str, str]] = []  # (agent, query as written), in order

    def claim(self, agent: str, query: str, page: int = 1) -> QueryClaim:
        """Claim `page` of `query` for `agent`, or the first later page nobody has run."""
        key = query_key(query)
        pages = self._queries.setdefault(key, _Pages())
        repeat_of: tuple[str, ...] = ()
        chosen = page
        if page in pages.by_page:
            repeat_of = tuple(dict.fromkeys(pages.by_page[p] for p in sorted(pages.by_page)))
            chosen = page
            while chosen in pages.by_page:
                chosen += 1
        limit = self.max_pages if pages.last_page is None else min(self.max_pages, pages.last_page)
        if chosen > limit:
            return QueryClaim(query, key, chosen, page, repeat_of, exhausted=True)
        pages.by_page[chosen] = agent
        self._issued.append((agent, query))
        return QueryClaim(query, key, chosen, page, repeat_of)

    def share(self, query: str, hits: int, page_size: int) -> None:
        """Record page 1 of `query` as run for the whole team (the opening search every agent is shown
        before it starts, see `tools.research.opening_search`): an agent that searches it again gets
        page 2. It is not listed among any agent's queries (`queries_by_others`): every agent has it."""
        key = query_key(query)
        pages = self._queries.setdefault(key, _Pages())
        pages.by_page.setdefault(1, TEAM)
        self.record_results(QueryClaim(query, key, 1, 1), hits, page_size)

    def record_results(self, claim: QueryClaim, hits: int, page_size: int) -> None:
        """Note how many results the claimed page had: a short page is the query's last."""
        if hits < page_size:
            pages = self._queries[claim.key]
            last = claim.page if hits else claim.page - 1
            pages.last_page = last if pages.last_page is None else min(pages.last_page, last)

    def pages_run(self, query: str) -> list[int]:
        """The pages of `query` (by its key) that have been run, in order."""
        pages = self._queries.get(query_key(query))
        return sorted(pages.by_page) if pages else []

    def queries_by_others(self, agent: str) -> list[str]:
        """The distinct queries other agents issued, as they wrote them (first writing of each key)."""
        seen: set[str] = set()
        found = []
        for who, query in self._issued:
            key = query_key(query)
            if who != agent and key not in seen:
                seen.add(key)
                found.append(query)
        return found
