"""A prompt prefix computed once on llama-server and copied into idle slots (`models.slot_share`), against
`httpx2.MockTransport` playing llama-server's /slots and chat endpoints."""

from __future__ import annotations

import json
from typing import Any

import httpx2

from openheavy.models.slot_share import share_prefix
from openheavy.types import Message

PREFIX = [Message("system", "You are a careful research agent."), Message("user", "Where is Ostrin?")]


def llama_server(
    slots: list[dict[str, Any]], *, save: int = 200, restore_fails: frozenset[int] = frozenset()
) -> tuple[httpx2.MockTransport, list[tuple[str, str, Any]]]:
    seen: list[tuple[str, str, Any]] = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content) if request.content else None
        seen.append(
            (
                request.method,
                str(request.url.path) + (f"?{request.url.query.decode()}" if request.url.query else ""),
                body,
            )
        )
        assert request.headers["Authorization"] == "Bearer key"
        if request.url.path == "/slots":
            return httpx2.Response(200, json=slots)
        if request.url.path == "/v1/chat/completions":
            usage = {
                "prompt_tokens": 905,
                "completion_tokens": 1,
                "prompt_tokens_details": {"cached_tokens": 522},
            }
            return httpx2.Response(
                200, json={"model": "m", "usage": usage, "choices": [{"message": {"content": "I"}}]}
            )
        slot = int(request.url.path.rsplit("/", 1)[1])
        if "action=save" in str(request.url):
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


async def test_the_prefix_is_computed_in_the_least_recently_used_idle_slot_and_copied_to_others() -> None:
    transport, seen = llama_server(SLOTS)
    shared = await share_prefix("http://llama", "key", "m", PREFIX, 3, transport=transport)
    assert shared is not None
    # idle slots, least recently used first: 3 (never used), 2, 4; the busy slot 0 and the latest, 1, kept
    assert shared.slots == (3, 2, 4)
    assert shared.completion.usage.prompt_tokens == 905 and shared.completion.usage.cached_tokens == 522
    assert [(method, path) for method, path, _ in seen] == [
        ("GET", "/slots"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/slots/3?action=save"),
        ("POST", "/slots/2?action=restore"),
        ("POST", "/slots/4?action=restore"),
    ]
    chat = seen[1][2]
    assert chat["id_slot"] == 3 and chat["max_tokens"] == 1 and chat["model"] == "m"
    assert chat["messages"] == [{"role": m.role, "content": m.content} for m in PREFIX]
    assert seen[2][2] == seen[3][2] == seen[4][2] == {"filename": "prefix-slot-3.bin"}


async def test_a_slot_that_cannot_take_the_copy_is_left_out_and_nothing_is_done_without_two_idle_slots() -> (
    None
):
    transport, _ = llama_server(SLOTS, restore_fails=frozenset({2}))
    shared = await share_prefix("http://llama", "key", "m", PREFIX, 3, transport=transport)
    assert shared is not None and shared.slots == (3, 4)

    # a server started without --slot-save-path refuses the save: the computed prefix stays in its slot
    transport, seen = llama_server(SLOTS, save=501)
    shared = await share_prefix("http://llama", "key", "m", PREFIX, 3, transport=transport)
    assert shared is not None and shared.slots == (3,)
    assert not any("restore" in path for _, path, _ in seen)

    transport, seen = llama_server([{"id": 0, "is_processing": False, "id_task": 3}])
    assert await share_prefix("http://llama", "key", "m", PREFIX, 4, transport=transport) is None
    assert [path for _, path, _ in seen] == ["/slots"]  # nothing computed for one slot
    assert await share_prefix("http://llama", "key", "m", PREFIX, 1, transport=transport) is None


async def test_a_server_without_the_slots_endpoint_leaves_the_run_as_it_was() -> None:
    transport = httpx2.MockTransport(lambda request: httpx2.Response(404, json={"error": "not found"}))
    assert await share_prefix("http://llama", "key", "m", PREFIX, 4, transport=transport) is None
