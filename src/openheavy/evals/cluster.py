"""Fan an evaluation out over a Ray cluster (the optional `cluster` extra).

`RayRunner` is a `Runner` like any other, so the harness is unchanged: it still decides what runs, saves
every result as it arrives and resumes. Each Ray worker is an actor that builds its own runner once (for
the CLI a `HeavyRunner`, with its own model: a remote endpoint, or an embedded llama-server on that node)
and answers one (item, mode) at a time; the runner hands each run to the first idle worker.

Ray is used rather than a hand-written process pool because it places actors on every node of a cluster,
restarts nothing silently and ships items and results (plain dataclasses) without extra code. Workers on
other nodes need the same `data_dir` (corpora and run traces) — a shared filesystem — or corpora built
there with `openheavy index`; trace paths in the results are paths on the worker that wrote them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from openheavy.errors import ConfigError
from openheavy.evals.datasets import EvalItem
from openheavy.evals.harness import ModeSpec, Runner, RunOutcome

__all__ = ["CLUSTER_INSTALL_HINT", "RayRunner"]

CLUSTER_INSTALL_HINT = "pip install 'openheavy[cluster]'"


class _Worker:
    """A Ray actor: builds its runner on first use, then answers one run at a time."""

    def __init__(self, make_runner: Callable[[], Runner]) -> None:
        self._make_runner = make_runner
        self._runner: Runner | None = None

    async def run(self, item: EvalItem, mode: ModeSpec, seed: int) -> RunOutcome:
        if self._runner is None:
            self._runner = self._make_runner()
        return await self._runner(item, mode, seed)

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        close = getattr(runner, "aclose", None)
        if close is not None:
            await close()


class RayRunner:
    """Runs each (item, mode) on one of `workers` Ray actors.

    `make_runner` is called once inside each worker, so it must be picklable (a module-level function or
    a `functools.partial` of one). `address` is passed to `ray.init`: None starts a Ray instance on this
    machine, "auto" joins the cluster this machine belongs to, "ray://host:10001" a remote one. Give the
    harness a concurrency of at least `workers` to keep them all busy.
    """

    def __init__(
        self,
        make_runner: Callable[[], Runner],
        *,
        workers: int,
        address: str | None = None,
    ) -> None:
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, not {workers}")
        try:
            import ray
        except ImportError as exc:
            raise ConfigError(f"fanning out over Ray needs its extra — {CLUSTER_INSTALL_HINT}") from exc
        self._ray = ray
        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            except ConnectionError as exc:
                raise ConfigError(f"no Ray cluster at {address!r}: {exc}") from exc
        actor = ray.remote(num_cpus=1)(_Worker)
        # Ray's handle types do not follow the methods through `remote`, so handles are kept untyped.
        self._workers: list[Any] = [actor.remote(make_runner) for _ in range(workers)]
        self._idle: asyncio.Queue[Any] | None = None

    async def __call__(self, item: EvalItem, mode: ModeSpec, seed: int) -> RunOutcome:
        if self._idle is None:  # created on first use, inside the harness's event loop
            self._idle = asyncio.Queue()
            for worker in self._workers:
                self._idle.put_nowait(worker)
        worker = await self._idle.get()
        try:
            outcome: RunOutcome = await worker.run.remote(item, mode, seed)
            return outcome
        except self._ray.exceptions.RayTaskError as exc:
            # The run itself failed: report its own error, not Ray's wrapper with a remote traceback.
            cause = exc.cause
            raise (cause if isinstance(cause, Exception) else RuntimeError(str(exc))) from None
        except self._ray.exceptions.RayActorError as exc:
            raise RuntimeError(f"a Ray worker died during the run ({exc}); see the Ray logs") from None
        finally:
            self._idle.put_nowait(worker)

    async def aclose(self) -> None:
        """Close every worker's runner (stopping embedded servers), then the actors, then Ray if we
        started it."""
        try:
            await asyncio.gather(*(w.close.remote() for w in self._workers), return_exceptions=True)
        finally:
            for worker in self._workers:
                self._ray.kill(worker)
            self._workers = []
            if self._started_ray:
                self._ray.shutdown()
