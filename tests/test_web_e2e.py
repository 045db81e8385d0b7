"""Web research end to end, without the internet: a scripted model searches a loopback SearXNG, reads
pages of the loopback fixture site through the SSRF guard, and cites their URLs; a result that
redirects to a non-allow-listed loopback port is refused, and the refusal is in the trace."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from fakes import action, allowed_actions
from openheavy.api import Heavy
from openheavy.config import Settings
from openheavy.display import describe_event, render_trace
from openheavy.models.scripted import ScriptedModel, Unconstrained
from openheavy.search.base import close_search
from openheavy.search.registry import open_search
from openheavy.trace import read_trace
from openheavy.types import CitationDropped, DocumentOpened, FetchRefused, PageUnreadable
from websites import FakeSearxng, FixtureSite, serving

QUESTION = "How long is the Kestrel Bridge, and who designed it?"
ANSWER = "The Kestrel Bridge spans 412 metres; it was designed by Mara Quill [1][2]."
SCRIPT = [
    action("search", query="Kestrel Bridge length designer"),
    action("open", ref=2),  # redirects to a loopback port that is not allow-listed
    action("open", ref=3),  # an anti-bot wall
    action("open", ref=1),
    # a backend without constrained output lets the model cite the refused page anyway
    Unconstrained(action("answer", answer=ANSWER, cite=[1, 2])),
]


@dataclass
class Web:
    site: FixtureSite
    inside: FixtureSite  # a server on another loopback port, not allow-listed
    engine: FakeSearxng

    @property
    def allow(self) -> list[str]:
        return [f"127.0.0.1:{self.engine.port}", f"127.0.0.1:{self.site.port}"]

    @property
    def spec(self) -> str:
        return f"searxng:{self.engine.base_url}"


@pytest.fixture
def web() -> Iterator[Web]:
    with serving(FixtureSite()) as site, serving(FixtureSite()) as inside:

        def results(query: str) -> list[dict[str, str]]:
            return [
                {"url": site.url("/kestrel.html"), "title": "The Kestrel Bridge", "content": "built 1931"},
                {
                    "url": site.url(f"/to/{inside.port}/kestrel.html"),
                    "title": "Kestrel Bridge (mirror)",
                    "content": "a copy of the article",
                },
                {"url": site.url("/antibot.html"), "title": "Bridges of the Aln", "content": "bridges"},
            ]

        with serving(FakeSearxng(results)) as engine:
            yield Web(site, inside, engine)


async def test_a_single_agent_answers_from_web_pages_and_cites_their_urls(web: Web, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    backend = open_search(web.spec, settings, allow_hosts=web.allow)
    model = ScriptedModel(SCRIPT)
    try:
        result = await Heavy(model, backend, settings=settings).arun(QUESTION, "single")
    finally:
        await close_search(backend)

    assert str(result.stop_reason) == "answered"
    assert result.answer == "The Kestrel Bridge spans 412 metres; it was designed by Mara Quill [1]."
    assert [(c["number"], c["url"]) for c in result.citations] == [(1, web.site.url("/kestrel.html"))]
    # the opening search (the question's words) and the agent's own
    assert result.figures.searches == 2 and result.figures.documents_read == 1

    # The trace file, read back into typed events.
    events = [record.to_event() for record in read_trace(result.trace_path)]
    (refused,) = [e for e in events if isinstance(e, FetchRefused)]
    assert refused.url == web.inside.url("/kestrel.html")
    assert refused.chain == [web.site.url(f"/to/{web.inside.port}/kestrel.html")]
    assert (refused.why, refused.address, refused.port, refused.ref) == (
        "loopback",
        "127.0.0.1",
        web.inside.port,
        2,
    )
    (wall,) = [e for e in events if isinstance(e, PageUnreadable)]
    assert (wall.ref, wall.reason, wall.url) == (3, "anti-bot", web.site.url("/antibot.html"))
    (opened,) = [e for e in events if isinstance(e, DocumentOpened)]
    assert "412 metres" in opened.text_shown and opened.doc["url"] == web.site.url("/kestrel.html")
    (dropped,) = [e for e in events if isinstance(e, CitationDropped)]
    assert dropped.ref == "2"
    lines = [describe_event(e) for e in (refused, wall)]
    assert lines[0] == (
        f"[agent-1] step 2 open [2] refused: {refused.url} (redirected from {refused.chain[0]}) leads to"
        " 127.0.0.1, a loopback address"
    )
    assert lines[1] is not None and lines[1].startswith("[agent-1] step 3 open [3] unreadable (anti-bot): ")
    shown = StringIO()
    render_trace(read_trace(result.trace_path), Console(file=shown, width=400))
    assert f"open [2] refused by the SSRF guard: {refused.chain[0]} → {refused.url}" in shown.getvalue()
    assert web.inside.requests == []  # the refused server never heard from us

    # The model was told, and `open` no longer offers the refused or walled results.
    after_refusal = model.calls[2]
    assert "[2] could not be read (the link leads to a loopback address" in after_refusal.last_user_message
    assert _open_refs(after_refusal.json_schema) == [1, 3]
    assert _open_refs(model.calls[3].json_schema) == [1]
    assert _action_enum(model.calls[4].json_schema, "answer", "cite") == [1]  # only the page read


def _action_enum(schema: dict[str, Any] | None, name: str, field: str) -> list[int]:
    """The values an action schema lets action `name`'s `field` take."""
    assert schema is not None and name in allowed_actions(schema)
    option = next(o for o in schema["anyOf"] if o["properties"]["action"]["enum"] == [name])
    spec = option["properties"][field]
    return list(spec["items"]["enum"] if spec.get("type") == "array" else spec["enum"])


def _open_refs(schema: dict[str, Any] | None) -> list[int]:
    """The refs an action schema lets `open` take."""
    return _action_enum(schema, "open", "ref")


def test_the_ask_command_searches_the_web_and_cites_pages(
    web: Web, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openheavy import api
    from openheavy.cli import app

    monkeypatch.setenv("OPENHEAVY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(api, "resolve_model", lambda *args, **kwargs: ScriptedModel(SCRIPT))
    args = ["ask", "--search", web.spec, "--allow-host", ",".join(web.allow), "--json", QUESTION]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    assert [c["url"] for c in data["citations"]] == [web.site.url("/kestrel.html")]
    kinds = [r.kind for r in read_trace(Path(data["trace_path"]))]
    assert "FetchRefused" in kinds and "PageUnreadable" in kinds


def test_without_the_allow_list_the_local_searxng_is_refused(
    web: Web, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openheavy import api
    from openheavy.cli import app

    monkeypatch.setenv("OPENHEAVY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(api, "resolve_model", lambda *args, **kwargs: ScriptedModel(SCRIPT))
    result = CliRunner().invoke(app, ["ask", "--search", web.spec, "--json", QUESTION])
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert "refused to connect to 127.0.0.1:" in message and "--allow-host 127.0.0.1:" in message
    assert f"allow it with --allow-host 127.0.0.1:{web.engine.port}" in message
    assert web.engine.requests == []
