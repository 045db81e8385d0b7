"""The runs a server has in flight: the concurrency limit, and each run's events for whoever watches.

A run is an asyncio task of its own. Its events are kept while it runs and fanned out to subscribers:
the HTTP response that asked for it (its owner, whose disconnect cancels it), MCP progress, and the web
view's live panels, which may subscribe at any time and get the backlog first. When the limit is reached
a new run is refused at once (`ServerBusyError` → 429 with Retry-After) rather than queued, so a client
never waits on a slot without knowing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from openheavy.api import Heavy
from openheavy.errors import ServerBusyError
from openheavy.server.engine import EnginePool, start_run
from openheavy.server.options import ResearchRequest
from openheavy.types import Event, RunFinished, RunStarted

__all__ = ["LiveRun", "RunHub", "Subscription"]

log = logging.getLogger(__name__)


class Subscription:
    """One watcher's view of a run: every event from the start, then `None` once the run is over."""

    def __init__(self, backlog: list[Event], closed: bool) -> None:
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        for event in backlog:
            self._queue.put_nowait(event)
        if closed:
            self._queue.put_nowait(None)

    def put(self, item: Event | None) -> None:
        self._queue.put_nowait(item)

    async def next(self, within: float | None = None) -> Event | None:
        """The next event, or `None` when the run is over. Raises `TimeoutError` after `within`
        seconds of silence (the caller sends a keep-alive and asks again; nothing is lost)."""
        return await asyncio.wait_for(self._queue.get(), within)


@dataclass(eq=False)
class LiveRun:
    """A run in flight (or just ended) in this server."""

    request: ResearchRequest
    run_id: str = ""
    events: list[Event] = field(default_factory=list)
    finished: RunFinished | None = None  # the run's last event, once emitted
    error: BaseException | None = None  # raised by the run (after `finished`, or instead of starting)
    cancelled: bool = False
    task: asyncio.Task[None] | None = None
    _subscribers: list[Subscription] = field(default_factory=list)
    _closed: bool = False
    _started: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def done(self) -> bool:
        return self._closed

    def subscribe(self) -> Subscription:
        """Every event so far, then each new one as it happens."""
        subscription = Subscription(self.events, self._closed)
        if not self._closed:
            self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(subscription)

    def publish(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, RunStarted):
            self.run_id = event.run_id
            self._started.set()
        elif isinstance(event, RunFinished):
            self.finished = event
        for subscription in self._subscribers:
            subscription.put(event)

    def close(self) -> None:
        self._closed = True
        self._started.set()
        for subscription in self._subscribers:
            subscription.put(None)
        self._subscribers.clear()

    def cancel(self) -> None:
        """Stop the run (its agents' pending model calls are cancelled; the store marks it cancelled)."""
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def wait_started(self) -> None:
        """Until the run has started, or ended without starting."""
        await self._started.wait()

    async def wait(self) -> None:
        """Until the run is over, however it ends. Waiting does not cancel it."""
        if self.task is not None:
            await asyncio.wait([self.task])


class RunHub:
    """Starts runs under a concurrency limit and keeps the live ones by run id."""

    def __init__(self, pool: EnginePool, max_concurrent: int, retry_after: float = 5.0) -> None:
        self.pool = pool
        self.max_concurrent = max_concurrent
        self.retry_after = retry_after
        self._active = 0
        self._live: dict[str, LiveRun] = {}
        self._runs: set[LiveRun] = set()

    @property
    def active(self) -> int:
        """Runs holding a slot now."""
        return self._active

    def live(self, run_id: str) -> LiveRun | None:
        """The run with this id if it is in flight in this server."""
        return self._live.get(run_id)

    async def start(self, request: ResearchRequest) -> LiveRun:
        """Start a run and return once it has started (its id is known).

        Raises `ServerBusyError` when every slot is taken, and whatever the engine raises before the run
        starts (`ConfigError` for a bad option, `UnknownCorpusError`, ...).
        """
        if self._active >= self.max_concurrent:
            raise ServerBusyError(
                f"the server is running {self._active} questions, its limit (--max-concurrent "
                f"{self.max_concurrent}): retry in {self.retry_after:g} s",
                retry_after=self.retry_after,
            )
        self._active += 1  # taken before the first await, so concurrent requests cannot overshoot
        live = LiveRun(request)
        try:
            heavy = await self.pool.engine(request)
        except BaseException:
            self._active -= 1
            raise
        self._runs.add(live)
        live.task = asyncio.create_task(self._drive(live, heavy))
        try:
            await live.wait_started()
        except asyncio.CancelledError:  # the client left before the run started: nobody wants it
            live.cancel()
            raise
        if not live.run_id:
            await live.wait()
            assert live.error is not None  # the run ended without starting: it raised
            raise live.error
        return live

    async def _drive(self, live: LiveRun, heavy: Heavy) -> None:
        request = live.request
        try:
            async for event in start_run(heavy, request.question, request.mode, request.options):
                if isinstance(event, RunStarted):
                    self._live[event.run_id] = live
                live.publish(event)
        except asyncio.CancelledError:
            live.cancelled = True
            raise
        except Exception as exc:
            live.error = exc
            if live.run_id:
                log.warning("run %s failed: %s", live.run_id, exc)
        finally:
            self._active -= 1
            self._live.pop(live.run_id, None)
            self._runs.discard(live)
            live.close()

    async def aclose(self) -> None:
        """Cancel every run in flight and wait for them to record how they ended."""
        runs = list(self._runs)
        for live in runs:
            live.cancel()
        for live in runs:
            await live.wait()
