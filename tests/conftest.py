"""Shared fixtures. `embedded_tiny` is the real embedded model (SmolLM2-135M through llama-server): one
server per test session, shared by every test that asks for it; such tests carry `@pytest.mark.embedded`
and are skipped, with the reason, where the llama-server build or the tiny model is missing."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator

import pytest

from openheavy.config import Settings
from openheavy.errors import EmbeddedModelError, SandboxUnavailableError
from openheavy.models.embedded import EmbeddedModel
from openheavy.models.llama_server import LlamaServer, find_llama_server
from openheavy.models.processes import usable_cores
from openheavy.models.shared_server import stop_servers
from openheavy.models.weights import EMBEDDED_MODELS, ensure_weights
from openheavy.sandbox import Sandbox, SandboxLimits

TINY = EMBEDDED_MODELS["local:tiny"]


@pytest.fixture(autouse=True)
def private_core_ledger(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fake llama-servers claim cores from a ledger of their own, never from the machine's (which other
    openheavy processes on this machine use). Tests with the real model share the machine's ledger."""
    if request.node.get_closest_marker("embedded") is None:
        monkeypatch.setenv("OPENHEAVY_RUNTIME_DIR", str(tmp_path_factory.mktemp("runtime")))


@pytest.fixture(scope="session")
def embedded_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for the shared tiny server: a throwaway data dir, small slots, and half the cores: the
    servers that the CLI tests start beside it get the other half (the core ledger never hands out more
    threads than cores, and this private server keeps its threads for the whole session)."""
    return Settings(
        data_dir=tmp_path_factory.mktemp("embedded"),
        llama_slots=4,
        llama_ctx_per_slot=4096,
        llama_threads=max(1, usable_cores() // 2),
        llama_idle_timeout=30,
    )


@pytest.fixture(scope="session")
def embedded_tiny_server(embedded_settings: Settings) -> Iterator[LlamaServer]:
    """One running llama-server with the tiny model for the whole session (started on first use)."""
    try:
        find_llama_server(embedded_settings.llama_server)
        weights = ensure_weights(TINY, embedded_settings.models_dir)
    except EmbeddedModelError as exc:
        if os.environ.get("CI"):  # CI installs both (make setup): a missing model there is a failure
            pytest.fail(f"embedded model unavailable in CI: {exc}")
        pytest.skip(f"embedded model unavailable: {exc}")
    server = LlamaServer.from_settings(weights, embedded_settings, alias=TINY.alias)
    # A private loop: the server is a plain process, so it outlives this loop and serves every test's.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(server.start())
    finally:
        loop.close()
    yield server
    server.stop_now()
    # The shared servers that tests started in this data directory (directly, or through Ray workers).
    stop_servers(embedded_settings.data_dir)


@pytest.fixture
async def embedded_tiny(
    embedded_tiny_server: LlamaServer, embedded_settings: Settings
) -> AsyncIterator[EmbeddedModel]:
    """An `EmbeddedModel` on the shared tiny server (its connections are per test; the server is not)."""
    model = EmbeddedModel(TINY, embedded_settings, server=embedded_tiny_server)
    yield model
    await model.aclose()


@pytest.fixture(scope="session")
def bubblewrap() -> None:
    """Skip where the sandbox cannot isolate code here (no bubblewrap, no user namespaces); in CI,
    where `make setup` installs bubblewrap, that is a failure."""
    limits = SandboxLimits(
        cpu_seconds=1, wall_seconds=10, memory_mb=256, output_bytes=2000, processes=8, file_mb=1
    )
    try:
        Sandbox(limits).check()
    except SandboxUnavailableError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"sandbox unavailable in CI: {exc}")
        pytest.skip(f"sandbox unavailable: {exc}")
