"""The OpenAI-compatible API over a real loopback socket, driven by the official `openai` client and by
raw HTTP where the wire format itself is the point. Every run uses the scripted research team."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest

from openheavy.config import ModelProfile, Settings
from openheavy.modes import MODES
from openheavy.server.config import ServerConfig
from openheavy.trace import RunStore, run_store_path
from server_support import AGENT_ANSWER, ANSWER, LiveServer, Team

QUESTION = "How do I run a subprocess with a timeout and capture its output?"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(tmp_path / "data") as live:
        yield live


def client_for(server: LiveServer, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=30)


def store_of(server: LiveServer) -> RunStore:
    return RunStore(run_store_path(server.settings.runs_dir))


def sse_lines(response: httpx2.Response) -> list[str]:
    return [line for line in response.text.splitlines() if line]


def test_heavy_answer_with_footnotes_usage_and_the_run_it_came_from(server: LiveServer) -> None:
    response = client_for(server).chat.completions.create(
        model="heavy", messages=[{"role": "user", "content": QUESTION}], extra_body={"agents": 2}
    )
    content = response.choices[0].message.content or ""
    assert content.startswith(ANSWER.replace("[1]", "[^1]"))
    assert "\n\n[^1]: subprocess — run" in content
    extension = (response.model_extra or {})["openheavy"]
    run_id = extension["run_id"]
    assert response.id == f"chatcmpl-{run_id}" and extension["status"] == "ok"
    assert extension["citations"][0]["id"] == "subprocess#1"
    row = store_of(server).get(run_id)
    assert row.status == "ok" and row.mode == "heavy" and row.question == QUESTION
    assert response.usage is not None
    assert response.usage.prompt_tokens == row.figures["prompt_tokens"] > 0
    assert response.usage.completion_tokens == row.figures["completion_tokens"] > 0
    assert row.figures["agents"] == 2 and extension["figures"]["agents"] == 2

    record = httpx2.get(f"{server.url}/v1/runs/{run_id}", timeout=10).json()
    assert record["run"]["run_id"] == run_id and record["live"] is False
    kinds = [r["kind"] for r in record["trace"]]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished"
    prompts = [r for r in record["trace"] if r["kind"] == "ModelCalled"]
    assert all(p["messages"][0]["role"] == "system" for p in prompts)  # whole prompts, not prefix-shared


@pytest.mark.parametrize(("mode", "extra"), [("rank-tools", {"n": 3}), ("heavy-rank", {"agents": 3})])
def test_ranked_modes_are_models_and_take_their_options(
    server: LiveServer, mode: str, extra: dict[str, int]
) -> None:
    response = client_for(server).chat.completions.create(
        model=mode, messages=[{"role": "user", "content": QUESTION}], extra_body=extra | {"verifier": "vote"}
    )
    # the best research agent's answer, ranked rather than synthesized
    assert (response.choices[0].message.content or "").startswith(AGENT_ANSWER.replace("[1]", "[^1]"))
    (row,) = store_of(server).list()
    assert row.mode == mode and row.status == "ok" and row.figures["agents"] == 3
    assert "lead researcher" not in str([call.messages[0].content for call in server.model.calls])


def test_the_old_rank_flags_are_refused_by_name(server: LiveServer) -> None:
    with pytest.raises(openai.UnprocessableEntityError, match="rank_with_tools"):
        client_for(server).chat.completions.create(
            model="rank",
            messages=[{"role": "user", "content": QUESTION}],
            extra_body={"rank_with_tools": True},
        )


def test_streaming_sends_progress_as_reasoning_then_the_answer_then_usage(server: LiveServer) -> None:
    stream = client_for(server).chat.completions.create(
        model="single",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    reasoning = [c.choices[0].delta.model_extra or {} for c in chunks if c.choices]
    progress = [d["reasoning_content"] for d in reasoning if "reasoning_content" in d]
    assert any('search "subprocess timeout"' in line for line in progress)
    assert all(d.get("reasoning") == d["reasoning_content"] for d in reasoning if "reasoning_content" in d)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content.startswith(AGENT_ANSWER.replace("[1]", "[^1]"))
    first_content = next(i for i, c in enumerate(chunks) if c.choices and c.choices[0].delta.content)
    last_progress = max(
        i for i, c in enumerate(chunks) if c.choices and (c.choices[0].delta.model_extra or {})
    )
    assert last_progress < first_content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    final = chunks[-1]
    assert final.choices == [] and final.usage is not None and final.usage.total_tokens > 0
    run_id = (chunks[0].model_extra or {})["openheavy"]["run_id"]
    row = store_of(server).get(run_id)
    assert final.usage.prompt_tokens == row.figures["prompt_tokens"]


def test_stream_ends_with_done_and_usage_only_when_asked(server: LiveServer) -> None:
    body = {"model": "direct", "messages": [{"role": "user", "content": "hi?"}], "stream": True}
    response = httpx2.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)
    assert response.headers["content-type"].startswith("text/event-stream")
    lines = sse_lines(response)
    assert lines[-1] == "data: [DONE]"
    payloads = [json.loads(line[6:]) for line in lines[:-1] if line.startswith("data: ")]
    assert all(p["choices"] for p in payloads) and all("usage" not in p for p in payloads)


def test_silence_is_filled_with_pings(tmp_path: Path) -> None:
    config = ServerConfig(ping_seconds=0.05)
    with LiveServer(tmp_path / "data", Team(latency=0.3), config=config) as server:
        body = {"model": "direct", "messages": [{"role": "user", "content": "hi?"}], "stream": True}
        response = httpx2.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)
    lines = sse_lines(response)
    assert ": ping" in lines
    assert lines.index(": ping") < next(i for i, line in enumerate(lines) if '"content": "Use' in line)


def test_earlier_turns_go_with_the_question_as_context(server: LiveServer) -> None:
    client_for(server).chat.completions.create(
        model="direct",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "I use Python 3.12."},
            {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": [{"type": "text", "text": QUESTION}]},
        ],
    )
    (row,) = store_of(server).list()
    assert row.question.startswith(QUESTION + "\n\n")
    assert "system: Be brief.\nuser: I use Python 3.12.\nassistant: Noted." in row.question
    assert "assistant: Noted." in server.model.calls[0].last_user_message  # the model saw it too


def test_models_lists_every_mode_on_every_backend(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", profiles={"vllm": ModelProfile(base_url="http://gpu:8000/v1")}
    )
    with LiveServer(tmp_path / "data", settings=settings) as server:
        ids = [m.id for m in client_for(server).models.list().data]
    assert ids[:6] == ["heavy", "direct", "single", "heavy-rank", "rank", "rank-tools"]
    assert set(ids[:6]) == set(MODES)  # every mode in the engine's registry is served
    assert ids[6:] == [f"{mode}:vllm" for mode in ids[:6]]


@pytest.mark.parametrize(
    ("extra", "status", "says"),
    [
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
            400,
            "cannot honour",
        ),
        ({"tool_choice": "required"}, 400, "cannot honour `tools`"),
        ({"response_format": {"type": "json_object"}}, 400, "cannot honour response_format"),
        ({"model": "turbo"}, 404, "not served"),
        ({"model": "heavy:nowhere"}, 404, "not served"),
        ({"agents": 500}, 422, "agents"),
        ({"verifier": "check:py:os:system"}, 422, "verifier"),
        ({"agent": 2}, 422, "openheavy's options: agents"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, 422, "no user message"),
        ({"messages": [{"role": "user", "content": "   "}]}, 422, "empty"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            400,
            "text only",
        ),
        ({"corpus": "no-such-corpus", "model": "single"}, 400, "no corpus named 'no-such-corpus'"),
        ({"corpus": "../etc", "model": "single"}, 400, "invalid corpus name"),
    ],
)
def test_requests_that_cannot_be_honoured_get_clear_errors(
    server: LiveServer, extra: dict[str, object], status: int, says: str
) -> None:
    body: dict[str, object] = {"model": "heavy", "messages": [{"role": "user", "content": QUESTION}], **extra}
    response = httpx2.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == status, response.text
    assert says in response.json()["error"]["message"]
    assert store_of(server).list() == []  # refused before any run started


def test_the_openai_client_raises_typed_errors(server: LiveServer) -> None:
    client = client_for(server)
    with pytest.raises(openai.BadRequestError, match="tools"):
        client.chat.completions.create(
            model="heavy",
            messages=[{"role": "user", "content": QUESTION}],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        )
    with pytest.raises(openai.NotFoundError, match="not served"):
        client.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": QUESTION}])
    with pytest.raises(openai.UnprocessableEntityError, match="less than or equal to 32"):
        client.chat.completions.create(
            model="rank", messages=[{"role": "user", "content": QUESTION}], extra_body={"n": 1000}
        )


def test_size_limits_give_413_and_422(tmp_path: Path) -> None:
    config = ServerConfig(max_body_bytes=2_000, max_question_chars=100)
    with LiveServer(tmp_path / "data", config=config) as server:
        url = f"{server.url}/v1/chat/completions"
        huge = {"model": "direct", "messages": [{"role": "user", "content": "x" * 5_000}]}
        response = httpx2.post(url, json=huge, timeout=10)
        assert response.status_code == 413 and "limit is 2,000 bytes" in response.json()["error"]["message"]

        def chunked() -> Iterator[bytes]:
            yield json.dumps(huge).encode()

        response = httpx2.post(
            url, content=chunked(), headers={"content-type": "application/json"}, timeout=10
        )
        assert response.status_code == 413

        long = {"model": "direct", "messages": [{"role": "user", "content": "y" * 150}]}
        response = httpx2.post(url, json=long, timeout=10)
        assert response.status_code == 422
        assert "150 characters; the limit is 100" in response.json()["error"]["message"]
        assert store_of(server).list() == []


def test_a_failed_run_is_a_500_that_the_client_does_not_retry(tmp_path: Path) -> None:
    with LiveServer(tmp_path / "data", Team(fail=True)) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=2, timeout=30)
        with pytest.raises(openai.InternalServerError, match="backend exploded") as raised:
            client.chat.completions.create(model="direct", messages=[{"role": "user", "content": "hi?"}])
        (row,) = store_of(server).list()  # one run: the SDK did not retry (x-should-retry: false)
    assert row.status == "failed" and row.run_id in str(raised.value)


def test_a_failed_streamed_run_ends_with_an_error_event(tmp_path: Path) -> None:
    with LiveServer(tmp_path / "data", Team(fail=True)) as server:
        stream = client_for(server).chat.completions.create(
            model="direct", messages=[{"role": "user", "content": "hi?"}], stream=True
        )
        with pytest.raises(openai.APIError, match="backend exploded"):
            list(stream)


def test_runs_endpoint_refuses_unknown_and_partial_ids(server: LiveServer) -> None:
    client_for(server).chat.completions.create(model="direct", messages=[{"role": "user", "content": "hi?"}])
    (row,) = store_of(server).list()
    assert httpx2.get(f"{server.url}/v1/runs/{row.run_id}", timeout=10).status_code == 200
    for unknown in (row.run_id[:8], "nope"):
        response = httpx2.get(f"{server.url}/v1/runs/{unknown}", timeout=10)
        assert response.status_code == 404 and "no run" in response.json()["error"]["message"]


def test_the_readme_openai_example_runs(server: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    (example,) = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "base_url=" in b]
    exec(compile(example.replace("http://127.0.0.1:8000", server.url), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert ANSWER.replace("[1]", "[^1]") in printed  # the heavy answer with its footnote
    assert 'search "subprocess timeout"' in printed and AGENT_ANSWER.replace("[1]", "[^1]") in printed
    assert len(store_of(server).list()) == 2
