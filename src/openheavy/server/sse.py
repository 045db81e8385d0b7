"""Server-sent events: the wire format, and a run's events with keep-alives in the silences.

A long run can be quiet for minutes (one slow model call); proxies drop a connection that says nothing,
so a comment line (`: ping`) goes out after `ping_seconds` of silence.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Final

from openheavy.server.runs import Subscription
from openheavy.types import Event

__all__ = ["PING", "SSE_HEADERS", "sse_message", "with_pings"]

PING: Final = ": ping\n\n"
SSE_HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_message(data: Any, event: str | None = None) -> str:
    """One SSE message; `data` is sent as is when a string, else as JSON (one line, so never split)."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, default=str)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {text}\n\n"


async def with_pings(subscription: Subscription, ping_seconds: float) -> AsyncIterator[Event | None]:
    """The run's events; `None` stands for a silence of `ping_seconds` (send `PING`). Ends with the run."""
    while True:
        try:
            event = await subscription.next(within=ping_seconds)
        except TimeoutError:
            yield None
            continue
        if event is None:
            return
        yield event
