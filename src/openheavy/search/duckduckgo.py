"""DuckDuckGo through the `ddgs` package (no key, an optional extra: `pip install 'openheavy[ddgs]'`).

Best effort: `ddgs` reads DuckDuckGo's HTML result pages, which is unofficial and rate limited. Calls
are spaced out (`min_interval`), retried with backoff when DuckDuckGo says "too many requests", and a
clear `SearchError` says so when it keeps refusing. For dependable search, run a SearXNG or use an API.

`ddgs` makes its own requests, to DuckDuckGo only (`DDGS_BACKEND`), not through the SSRF guard; the pages
it finds are opened through the guard like any other result.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from openheavy.errors import ConfigError, SearchError
from openheavy.search.web import Backoff, WebBackend, WebResult, WebSession, web_hits
from openheavy.types import Hit

INSTALL_HINT = "--search ddgs needs the ddgs package: pip install 'openheavy[ddgs]' (or pip install ddgs)"
# Which of ddgs's engines to ask: DuckDuckGo alone, so that the privacy note can say where queries go.
DDGS_BACKEND = "duckduckgo"
_NO_RESULTS = "no results found"


class DuckDuckGoSearch(WebBackend):
    """Web search through DuckDuckGo (`ddgs`), one request at a time, at least `min_interval` apart."""

    def __init__(
        self, session: WebSession, *, name: str = "ddgs", min_interval: float = 1.5, timeout: int = 10
    ) -> None:
        try:
            module = importlib.import_module("ddgs")
            self._exceptions = importlib.import_module("ddgs.exceptions")
        except ImportError as exc:
            raise ConfigError(INSTALL_HINT) from exc
        self._client: Any = module.DDGS(timeout=timeout)
        self.session = session
        self.name = name
        self.min_interval = min_interval
        self._lock = asyncio.Lock()
        self._last = float("-inf")

    async def search(self, query: str, k: int = 5) -> list[Hit]:
        backoff = self.session.backoff
        retrying = AsyncRetrying(
            stop=stop_after_attempt(backoff.attempts),
            wait=wait_exponential_jitter(
                multiplier=max(backoff.base, self.min_interval), max=backoff.ceiling
            ),
            retry=retry_if_exception(self._transient),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    rows = await self._text(query, k)
        except self._exceptions.DDGSException as exc:
            raise self._failure(exc, retrying.statistics.get("attempt_number", 1), backoff) from exc
        results = (
            WebResult(str(r.get("href", "")), str(r.get("title", "")), str(r.get("body", ""))) for r in rows
        )
        return web_hits(results, k, self.name)

    async def _text(self, query: str, k: int) -> list[dict[str, Any]]:
        async with self._lock:  # one request at a time, spaced out: DuckDuckGo limits bursts
            wait = self._last + self.min_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                rows: list[dict[str, Any]] = await asyncio.to_thread(
                    self._client.text, query, max_results=k, backend=DDGS_BACKEND
                )
            except self._exceptions.DDGSException as exc:
                if _NO_RESULTS in str(exc).casefold():
                    return []
                raise
            finally:
                self._last = time.monotonic()
        return rows

    def _transient(self, exc: BaseException) -> bool:
        return isinstance(exc, self._exceptions.RatelimitException | self._exceptions.TimeoutException)

    def _failure(self, exc: Exception, attempts: int, backoff: Backoff) -> SearchError:
        if isinstance(exc, self._exceptions.RatelimitException):
            return SearchError(
                f"DuckDuckGo (ddgs) is rate limiting us and still refused after {attempts} attempts — ddgs is"
                " best effort and unofficial: wait a few minutes, run fewer agents, or use --search"
                " searxng:URL, brave or tavily"
            )
        if isinstance(exc, self._exceptions.TimeoutException):
            return SearchError(
                f"DuckDuckGo (ddgs) timed out {attempts} times — try again later, or another backend"
            )
        return SearchError(f"DuckDuckGo (ddgs) failed: {exc}")
