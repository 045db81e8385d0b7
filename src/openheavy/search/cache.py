"""A per-run cache in front of any `SearchBackend`.

Agents of one run share it, so the same query or passage is never fetched twice in a run — including
when two agents ask for it at the same moment (the second awaits the first's in-flight request).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from openheavy.search.base import SearchBackend
from openheavy.types import Document, Hit

T = TypeVar("T")


class CachedSearch:
    """Wraps a backend; `search`/`open` return `(value, cached)` so callers can report cache hits."""

    def __init__(self, backend: SearchBackend) -> None:
        self.backend = backend
        self.name = backend.name
        self._searches: dict[tuple[str, int], asyncio.Future[list[Hit]]] = {}
        self._documents: dict[str, asyncio.Future[Document]] = {}
        self.hits = 0
        self.misses = 0

    async def search(self, query: str, k: int = 5) -> tuple[list[Hit], bool]:
        key = (" ".join(query.casefold().split()), k)
        return await self._get(self._searches, key, lambda: self.backend.search(query, k))

    async def search_page(self, query: str, k: int, page: int) -> tuple[list[Hit], bool]:
        """Results `(page - 1) * k + 1` to `page * k` of `query`. Backends rank without offsets, so a page
        is a slice of the top `page * k` (one backend call, cached like any search)."""
        hits, cached = await self.search(query, k * page)
        return hits[(page - 1) * k : page * k], cached

    async def open(self, id: str) -> tuple[Document, bool]:
        return await self._get(self._documents, id, lambda: self.backend.open(id))

    async def _get(
        self,
        table: dict[Any, asyncio.Future[Any]],
        key: Any,
        fetch: Callable[[], Awaitable[T]],
    ) -> tuple[T, bool]:
        existing = table.get(key)
        if existing is not None:
            self.hits += 1
            return await asyncio.shield(existing), True
        self.misses += 1
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        table[key] = future
        try:
            value = await fetch()
        except BaseException as exc:
            # Failures are not cached: a later call may succeed.
            del table[key]
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # mark retrieved: waiters re-raise it themselves
            else:
                future.cancel()
            raise
        future.set_result(value)
        return value, False
