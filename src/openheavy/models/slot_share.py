"""One prompt prefix computed once on llama-server and copied into the slots that will need it.

llama-server reuses a prompt's cached prefix only inside the slot the request lands on. Heavy's agents
start together, each in its own slot, with the same system prompt, question and opening search results
(about 1,000 tokens on HotpotQA), then their own brief. Measured on a test server with the same build
and flags: after one request, three concurrent requests sharing its 905-token prefix got 905, 0 and 0
tokens from the cache; in HotpotQA-50 r10 every agent's first call reused only the system prompt (522
of ~1,480 tokens), so the question and the results were computed four times per run, and heavy's first
calls were 40% cached against 87–89% for later ones.

`share_prefix` computes the prefix once (rendered by the server's chat template, `/apply-template`, and
sent to `/completion`, which names the slot that took it: the idle slot whose cached prompt shares the
most with it, one generated token), then saves that slot's state (`POST /slots/{id}?action=save`, 3 ms
for 905 tokens) and restores it into the `copies - 1` least recently used other idle slots
(`action=restore`, 3 ms each). Requests that start with the prefix then land
on those slots, since llama-server picks the idle slot whose cached prompt shares the most with the new
one. Measured on the same test server: four concurrent requests after a copy got 905 cached tokens each.

A restored slot holds tokens and their cache together, and llama-server reuses only the part a new
prompt shares: a wrong or stale copy costs time, never a wrong answer. Anything that goes wrong (a
server without `--slot-save-path`, no idle slot, a slot taken meanwhile) leaves the run as it was: the
function returns what it managed, or None. The state file has a fixed name per source slot, so the slot
directory holds at most one file per slot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx2

from openheavy.types import Completion, Message, Usage

__all__ = ["SharedPrefix", "share_prefix"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SharedPrefix:
    """The call that computed the prefix, and the slots that hold it now (its own first)."""

    completion: Completion
    slots: tuple[int, ...]


async def share_prefix(
    root: str,
    api_key: str,
    model: str,
    messages: Sequence[Message],
    copies: int,
    *,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> SharedPrefix | None:
    """Compute `messages` once on the llama-server at `root` (no /v1) and copy the result into up to
    `copies` idle slots in all; None when it could not be computed (see the module's note). `transport`:
    for tests."""
    if copies < 2:
        return None
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx2.AsyncClient(
        timeout=120.0, trust_env=False, headers=headers, transport=transport
    ) as client:
        try:
            listed = await client.get(f"{root}/slots")
            listed.raise_for_status()
            idle = [s for s in listed.json() if not s.get("is_processing")]
            if len(idle) < 2:
                return None
            # The prompt as the chat endpoint renders it, sent to /completion, which says which slot took
            # it: llama-server gives it the idle slot whose cached prompt shares the most with it (one
            # holding the system prompt from an earlier run, usually), so that part is not computed again.
            rendered = await client.post(
                f"{root}/apply-template",
                json={"messages": [{"role": m.role, "content": m.content} for m in messages]},
            )
            rendered.raise_for_status()
            started = time.monotonic()
            reply = await client.post(
                f"{root}/completion",
                json={
                    "prompt": rendered.json()["prompt"],
                    "n_predict": 1,
                    "temperature": 0.0,
                    "cache_prompt": True,
                },
            )
            reply.raise_for_status()
            body = reply.json()
            completion = _completion(body, model, time.monotonic() - started)
            source = int(body["id_slot"])
            # Copies go to the least recently used idle slots: a slot another run's agent just left keeps
            # its own cache.
            others = sorted(
                (s for s in idle if int(s["id"]) != source), key=lambda s: int(s.get("id_task", -1))
            )
            targets = [int(s["id"]) for s in others[: copies - 1]]
            name = f"prefix-slot-{source}.bin"
            saved = await client.post(f"{root}/slots/{source}?action=save", json={"filename": name})
            if saved.status_code != 200:
                log.info("llama-server did not save slot %d (%s): no prefix copies", source, saved.text[:200])
                return SharedPrefix(completion, (source,))
            holding = [source]
            for slot in targets:
                restored = await client.post(f"{root}/slots/{slot}?action=restore", json={"filename": name})
                if restored.status_code == 200:
                    holding.append(slot)
            return SharedPrefix(completion, tuple(holding))
        except (httpx2.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.info("could not share a prompt prefix across llama-server slots: %s", exc)
            return None


def _completion(body: dict[str, Any], model: str, seconds: float) -> Completion:
    """/completion's reply as a `Completion`: `timings` count the prompt tokens computed (`prompt_n`) and
    those served from the slot's cache (`cache_n`)."""
    timings = body.get("timings") or {}
    computed, cached = int(timings.get("prompt_n", 0)), int(timings.get("cache_n", 0))
    return Completion(
        text=str(body.get("content", "")),
        usage=Usage(
            prompt_tokens=computed + cached,
            completion_tokens=int(timings.get("predicted_n", 0)),
            cached_tokens=cached,
        ),
        model=str(body.get("model", model)),
        finish_reason=str(body.get("stop_type", "")) or None,
        seconds=seconds,
    )
