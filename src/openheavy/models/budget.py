"""A run's budget of tokens and wall time, enforced on every call rather than between steps.

One `Budget` is shared by everything a run does. Before a model call it checks that the call's bound
(its prompt, estimated, plus its `max_tokens`) fits in what is left, counting what calls in flight may
still spend, and refuses the call (`BudgetExceededError`) when it does not; the call then runs with the
time left as its timeout, retries included. So concurrent agents, rank samples and verifiers together
never spend more than the budget, save for estimation error (at most one call's bound), and a model
that reports absurd usage gets no further call. `RecordingModel` applies it to every model call; tools
are bounded by `Budget.bounded` alone (they spend no tokens).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from openheavy.errors import BudgetExceededError, BudgetName
from openheavy.types import Message, Usage

__all__ = ["Budget", "BudgetName", "estimate_prompt_tokens"]

T = TypeVar("T")

# Tokens per message that chat templates add around its content (role markers, separators).
_MESSAGE_OVERHEAD = 8


def estimate_prompt_tokens(messages: Sequence[Message]) -> int:
    """An estimate of the prompt's tokens that errs high: three characters a token (English prose runs
    about four, code and JSON about three) plus the chat template's few tokens per message."""
    return sum(len(m.content) // 3 + _MESSAGE_OVERHEAD for m in messages)


@dataclass
class Budget:
    """Tokens (prompt + completion) and wall time for a whole run, shared by all its calls."""

    max_tokens: int
    max_seconds: float
    started: float = field(default_factory=time.monotonic)
    used: Usage = field(default_factory=Usage)
    reserved: int = 0  # what calls in flight may still spend

    @classmethod
    def unlimited(cls) -> Budget:
        """A budget that never refuses: for agents and orchestrators used outside a run."""
        return cls(max_tokens=2**62, max_seconds=math.inf)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining_seconds(self) -> float:
        return max(0.0, self.max_seconds - self.elapsed())

    def room(self) -> int:
        """Tokens left for new calls: the budget less what was spent and what calls in flight may spend."""
        return self.max_tokens - self.used.total - self.reserved

    def charge(self, usage: Usage) -> None:
        """Count a finished call's usage."""
        self.used = self.used + usage

    def exhausted(self) -> BudgetName | None:
        """`"tokens"` or `"time"` once that budget is spent, else None."""
        if self.used.total >= self.max_tokens:
            return "tokens"
        if self.elapsed() >= self.max_seconds:
            return "time"
        return None

    async def bounded(self, who: str, call: Callable[[], Awaitable[T]], *, tokens: int = 0) -> T:
        """Run `call` (what `who` does: "agent-1's action call at step 2") within the budget.

        Refused with `BudgetExceededError` when the time is spent or `tokens` (the call's bound) do not
        fit in `room()`; otherwise they are reserved while it runs, and it is cancelled when the time
        runs out. The caller charges what a model call actually spent (`charge`).
        """
        remaining = self.remaining_seconds()
        if remaining <= 0:
            raise BudgetExceededError(
                f"the time budget of {self.max_seconds:g} s was spent before {who} — raise --max-seconds "
                "or OPENHEAVY_MAX_SECONDS",
                budget="time",
            )
        if tokens > self.room():
            raise BudgetExceededError(
                f"the token budget of {self.max_tokens:,} has {max(self.room(), 0):,} tokens left, and {who}"
                f" may spend up to {tokens:,} (its prompt and longest reply) — raise --max-tokens or "
                "OPENHEAVY_MAX_TOKENS",
                budget="tokens",
            )
        self.reserved += tokens
        try:
            async with asyncio.timeout(remaining if math.isfinite(remaining) else None) as deadline:
                return await call()
        except TimeoutError:
            if not deadline.expired():
                raise  # the call's own timeout, not ours
            raise BudgetExceededError(
                f"the time budget of {self.max_seconds:g} s ran out during {who} — raise --max-seconds or "
                "OPENHEAVY_MAX_SECONDS",
                budget="time",
            ) from None
        finally:
            self.reserved -= tokens
