"""Every call from the server into the engine, in one place.

`start_run` is the only function that starts a run; `EnginePool` the only place that builds `Heavy`
objects (one model per backend, shared by one `Heavy` per corpus, as the eval runner does);
`search_passages` the only direct search. When the engine's API changes, this module changes and the
rest of the server does not.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from openheavy.api import Heavy
from openheavy.config import Settings
from openheavy.corpus.catalog import validate_name
from openheavy.models.base import ChatModel
from openheavy.models.registry import resolve_model
from openheavy.modes import MODES, RunOptions
from openheavy.search.base import SearchBackend
from openheavy.server.options import MODE_NAMES, ResearchOptions, ResearchRequest
from openheavy.types import Event, Hit

__all__ = ["EnginePool", "ServedModel", "search_passages", "start_run"]


def start_run(heavy: Heavy, question: str, mode: str, options: ResearchOptions) -> AsyncIterator[Event]:
    """The run's events as they happen: `RunStarted` first, `RunFinished` last, then the run's error
    (if it failed) is raised. Closing the iterator early cancels the run, which the run store records
    as cancelled."""
    return heavy.stream(question, mode, _run_options(options))


def _run_options(options: ResearchOptions) -> RunOptions:
    """`ResearchOptions` as the engine's `RunOptions`; an option the client left out keeps the engine's
    default."""
    values: dict[str, Any] = {
        "agents": options.agents,
        "max_agents": options.max_agents,
        "n": options.n,
        "verifier": options.verifier,
        "max_steps": options.max_steps,
        "max_tokens": options.budget_tokens,
        "max_seconds": options.budget_seconds,
        "seed": options.seed,
        "temperature": options.temperature,
    }
    return RunOptions(**{name: value for name, value in values.items() if value is not None})


async def search_passages(heavy: Heavy, query: str, k: int) -> list[Hit]:
    """The best `k` passages of the engine's corpus for `query`."""
    backend = await asyncio.to_thread(heavy.search_backend)  # opening may build pydocs: off the loop
    return await backend.search(query, k)


@dataclass(frozen=True)
class ServedModel:
    """One entry of `/v1/models`: a mode on a backend."""

    id: str  # what clients send as `model`: "heavy" or "heavy:PROFILE"
    mode: str
    backend: str


class EnginePool:
    """The engines a server runs questions on.

    `model` is the default backend (a spec or a `ChatModel`, as for `Heavy`); every profile in the
    settings is a further backend, named `MODE:PROFILE` by clients. `corpus` is the default corpus (a
    name or a `SearchBackend`); a request may name another built corpus.
    """

    def __init__(
        self,
        settings: Settings,
        model: str | ChatModel | None = None,
        corpus: str | SearchBackend | None = None,
    ) -> None:
        self.settings = settings
        self._default_model = model if model is not None else settings.model
        self._default_corpus = corpus if corpus is not None else settings.corpus
        self._models: dict[str, ChatModel] = {}
        self._engines: dict[tuple[str, str], Heavy] = {}
        self._lock = asyncio.Lock()

    @property
    def default_backend(self) -> str:
        model = self._default_model
        return model if isinstance(model, str) else model.name

    @property
    def default_corpus(self) -> str:
        corpus = self._default_corpus
        return corpus if isinstance(corpus, str) else corpus.name

    @property
    def backends(self) -> list[str]:
        """Backend names, the default first."""
        default = self.default_backend
        return [default, *(name for name in sorted(self.settings.profiles) if name != default)]

    def served_models(self) -> list[ServedModel]:
        """Every mode on every backend: the default backend's under the bare mode name."""
        served = [ServedModel(mode, mode, self.default_backend) for mode in MODE_NAMES]
        for backend in self.backends[1:]:
            served += [ServedModel(f"{mode}:{backend}", mode, backend) for mode in MODE_NAMES]
        return served

    def _model(self, backend: str) -> ChatModel:
        if backend not in self._models:
            if backend == self.default_backend and not isinstance(self._default_model, str):
                self._models[backend] = self._default_model
            else:
                self._models[backend] = resolve_model(backend, self.settings)
        return self._models[backend]

    async def engine(self, request: ResearchRequest) -> Heavy:
        """The engine for `request`'s backend and corpus. A corpus the run will search is opened now,
        so that a missing one is refused before the run starts."""
        backend = request.backend or self.default_backend
        name = request.options.corpus
        corpus: str | SearchBackend
        if name is None or name == self.default_corpus:
            corpus, name = self._default_corpus, self.default_corpus
        else:
            corpus = validate_name(name)
        key = (backend, name)
        async with self._lock:
            heavy = self._engines.get(key)
            if heavy is None:
                heavy = Heavy(self._model(backend), corpus, settings=self.settings)
                self._engines[key] = heavy
        if MODES[request.mode].runs_agents:
            await asyncio.to_thread(heavy.search_backend)
        return heavy

    async def search_engine(self, corpus: str | None) -> Heavy:
        """An engine whose corpus is `corpus` (default: the server's), for searches alone."""
        return await self.engine(ResearchRequest("", "single", options=ResearchOptions(corpus=corpus)))

    async def aclose(self) -> None:
        """Close every engine's corpus and every model the pool resolved (stopping embedded servers)."""
        for heavy in self._engines.values():
            await heavy.aclose()
        self._engines.clear()
        for backend, model in self._models.items():
            if backend == self.default_backend and not isinstance(self._default_model, str):
                continue  # the caller's model: the caller closes it
            await model.aclose()
        self._models.clear()
