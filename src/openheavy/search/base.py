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
