"""The `ChatModel` protocol every backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from openheavy.types import Completion, JsonSchema, Message


@runtime_checkable
class ChatModel(Protocol):
    """A chat model behind any backend. One request, one completion."""

    name: str

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        json_schema: JsonSchema | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> Completion:
        """Return one completion. With `json_schema`, the output is constrained to that schema
        where the backend supports it."""
        ...

    async def aclose(self) -> None:
        """Release connections and, for embedded models, stop the server."""
        ...
