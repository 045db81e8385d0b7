"""The `ChatModel` protocol every backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from openheavy.models.slot_share import SharedPrefix
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


@runtime_checkable
class PrefixSharing(Protocol):
    """A model whose server can compute a prompt prefix once for several requests that start with it
    (llama-server's slots, `models.slot_share`)."""

    async def share_prefix(self, messages: Sequence[Message], copies: int) -> SharedPrefix | None:
        """Compute `messages` once, ready for up to `copies` requests at once; None when not done."""
        ...
