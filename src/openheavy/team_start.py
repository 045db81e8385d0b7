"""How a team of agents that share a long prompt prefix starts, so that the engine computes it once.

Heavy mode's agents begin with the same bytes: the system prompt, the question and the opening
search's results (`tools.research.Opening`), then each its own brief. Sent together, those first calls
each compute the whole prefix again: llama-server keeps a prompt's state in the slot that computed it,
and a request that arrives while that slot is busy, or in the same scheduling round as the others,
starts from scratch. Measured with four agents' first calls on llama-server (prefix ~1,540 tokens):

- all four at once: 1 of 4 reuses the prefix (only the one that lands in a slot holding it);
- one call first, then the other three a quarter of a second apart: 3 of 3 reuse it, because the
  server copies a slot's state into its RAM prompt cache (`--cache-ram`, on by default) when another
  prompt takes the slot, and later requests restore it from there;
- the same, but with the first agent's own next call sent first: 0 of 3 (its next call continues in
  its slot, which is then never copied).

So: the lead agent's first call runs alone; when it has returned, the followers' first calls go out one
at a time, `gap` seconds apart; the lead's second call waits until they have all gone. Every later call
is free. On HotpotQA heavy:4 runs the question and its opening results were ~450 uncomputed tokens per
agent, paid by every agent; this start pays them once. An engine that shares prefixes between requests
in flight (or none at all) loses under a second per run to the gaps, and the followers wait for one
call of the lead.

An agent that fails or finishes early never holds the others: `finished` releases whatever waited on it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

DEFAULT_GAP_SECONDS = 0.25


class TeamStart:
    """The order of the first calls of a team of agents whose prompts share a prefix: `lead` first,
    then `followers` one at a time (see the module's docs). Agents not named here are not held."""

    def __init__(self, lead: str, followers: Sequence[str], *, gap: float = DEFAULT_GAP_SECONDS) -> None:
        self.lead = lead
        self.followers = list(followers)
        self.gap = gap
        self._calls: Counter[str] = Counter()
        self._lead_called = asyncio.Event()  # the lead's first call returned (or the lead is done)
        self._all_sent = asyncio.Event()  # every follower's first call went out (or it is done)
        self._sent: set[str] = set()
        self._turn = asyncio.Lock()  # followers send their first calls one at a time
        self._last_sent: float | None = None
        if not self.followers:
            self._all_sent.set()

    async def before_call(self, agent: str) -> None:
        """Wait until `agent` may send its next model call."""
        index = self._calls[agent]
        self._calls[agent] += 1
        if agent == self.lead and index == 1:
            await self._all_sent.wait()
        elif agent in self.followers and index == 0:
            await self._lead_called.wait()
            async with self._turn:
                if self._last_sent is not None:
                    await asyncio.sleep(max(0.0, self._last_sent + self.gap - _now()))
                self._last_sent = _now()
                self._mark_sent(agent)

    def after_call(self, agent: str) -> None:
        """`agent`'s model call returned (or failed)."""
        if agent == self.lead and self._calls[agent] == 1:
            self._lead_called.set()

    def finished(self, agent: str) -> None:
        """`agent` stopped: nothing waits on it any more."""
        if agent == self.lead:
            self._lead_called.set()
        elif agent in self.followers:
            self._mark_sent(agent)

    def _mark_sent(self, agent: str) -> None:
        self._sent.add(agent)
        if self._all_sent.is_set() or len(self._sent) < len(self.followers):
            return
        # The lead's next call goes a gap after the last follower's, so the two are not scheduled together.
        asyncio.get_running_loop().call_later(self.gap, self._all_sent.set)


def _now() -> float:
    return asyncio.get_running_loop().time()
