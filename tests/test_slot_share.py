"""A prompt prefix computed once on llama-server and copied into idle slots (`models.slot_share`), against
`httpx2.MockTransport` playing llama-server's /slots, /apply-template and /completion endpoints."""

from __future__ import annotations

import json
from typing import Any

import httpx2

from openheavy.models.slot_share import share_prefix
from openheavy.types import Message

PREFIX = [Message("system", "You are a careful research agent."), Message("user", "Where is Ostrin?")]
Seen = list[tuple[str, str, Any]]


def llama_server(
    slots: list[dict[str, Any]],
    *,
    source: int = 2,
    save: int = 200,
    restore_fails: frozenset[int] = frozenset(),
) -> tuple[httpx2.MockTransport, Seen]:
    """A llama-server whose /completion lands in slot `source` (its pick: the best cached match)."""
    seen: Seen = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content) if request.content else None
        query = f"?{request.url.query.decode()}" if request.url.query else ""
        seen.append((request.method, request.url.path + query, body))
        assert request.headers["Authorization"] == "Bearer key"
        if request.url.path == "/slots":
            return httpx2.Response(200, json=slots)
        if request.url.path == "/apply-template":
            rendered = "<system>" + body["messages"][1]["content"] + "<assistant>"
            return httpx2.Response(200, json={"prompt": rendered})
        if request.url.path == "/completion":
            timings = {"prompt_n": 383, "cache_n": 522, "predicted_n": 1}
            return httpx2.Response(200, json={"content": "I", "id_slot": source, "timings": timings})
        slot = int(request.url.path.rsplit("/", 1)[1])
        if "action=save" in query:
            return httpx2.Response(save, json={"n_saved": 905})
        if slot in restore_fails:
            return httpx2.Response(400, json={"error": {"message": "slot busy"}})
        return httpx2.Response(200, json={"n_restored": 905})

    return httpx2.MockTransport(handle), seen


SLOTS = [
    {"id": 0, "is_processing": True, "id_task": 1},
    {"id": 1, "is_processing": False, "id_task": 40},
    {"id": 2, "is_processing": False, "id_task": 7},
    {"id": 3, "is_processing": False, "id_task": -1},
    {"id": 4, "is_processing": False, "id_task": 12},
]


async def test_the_prefix_is_computed_where_the_server_puts_it_and_copied_to_the_least_recent_slots() -> None:
    transport, seen = llama_server(SLOTS, source=2)
    shared = await share_prefix("http://llama", "key", "m", PREFIX, 3, transport=transport)
    assert shared is not None
    # computed in slot 2 (the server's pick), copied to the least recently used other idle slots: 3
    # (never used), then 4; the busy slot 0 and the latest, 1, are left alone
    assert shared.slots == (2, 3, 4)
    usage = shared.completion.usage
    assert (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens) == (905, 522, 1)
    assert [(method, path) for method, path, _ in seen] == [
        ("GET", "/slots"),
        ("POST", "/apply-template"),
        ("POST", "/completion"),
        ("POST", "/slots/2?action=save"),
        ("POST", "/slots/3?action=restore"),
        ("POST", "/slots/4?action=restore"),
    ]
    assert seen[1][2] == {"messages": [{"role": m.role, "content": m.content} for m in PREFIX]}
    completion = seen[2][2]
    # the chat template's rendering, as the agents' chat requests are rendered; no slot forced on it
    assert completion["prompt"] == "<system>Where is Ostrin?<assistant>" and "id_slot" not in completion
    assert completion["n_predict"] == 1 and completion["cache_prompt"] is True
    assert seen[3][2] == seen[4][2] == seen[5][2] == {"filename": "prefix-slot-2.bin"}


async def test_a_slot_that_cannot_take_the_copy_is_left_out() -> None:
    transport, _ = llama_server(SLOTS, restore_fails=frozenset({3}))
    shared = await share_prefix("http://llama", "key", "m", PREFIX, 3, transport=transport)
    assert shared is not None and shared.slots == (2, 4)

    # a server started without --slot-save-path refuses the save: the computed prefix stays in its slot
    transport, seen = llama_server(SLOTS, save=501)
    shared = await share_prefix("http://llama", "key", "m", PREFIX, 3, transport=transport)
    assert shared is not None and shared.slots == (2,)
    assert not any("restore" in path for _, path, _ in seen)


async def test_nothing_is_computed_without_two_idle_slots_or_a_slots_endpoint() -> None:
    transport, seen = llama_server([{"id": 0, "is_processing": False, "id_task": 3}], source=0)
    assert await share_prefix("http://llama", "key", "m", PREFIX, 4, transport=transport) is None
    assert [path for _, path, _ in seen] == ["/slots"]
    assert await share_prefix("http://llama", "key", "m", PREFIX, 1, transport=transport) is None
    transport = httpx2.MockTransport(lambda request: httpx2.Response(404, json={"error": "not found"}))
    assert await share_prefix("http://llama", "key", "m", PREFIX, 4, transport=transport) is None
