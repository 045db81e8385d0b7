"""The `SearchBackend` protocol every search engine implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from openheavy.types import Document, Hit


@runtime_checkable
class SearchBackend(Protocol):
    """A searchable corpus of passages."""

    name: str

    async def search(self, query: str, k: int = 5) -> list[Hit]:
        """Best `k` passages for `query`, best first. An empty list when nothing matches."""
        ...

    async def open(self, id: str) -> Document:
        """The passage with this id (as given in `Hit.id`). Raises `DocumentNotFoundError`."""
        ...


async def close_search(backend: SearchBackend) -> None:
    """Release what a backend holds: `aclose()` for those with connections (web), else `close()`
    (a local index's SQLite handles), else nothing."""
    aclose = getattr(backend, "aclose", None)
    if aclose is not None:
        await aclose()
        return
    close = getattr(backend, "close", None)
    if close is not None:
        close()
