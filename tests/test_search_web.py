"""Web search backends over loopback stand-ins: SearXNG, Brave, Tavily, DuckDuckGo (a fake `ddgs`),
several at once, and choosing them by spec."""

from __future__ import annotations

import json
import logging
import sys
import types
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr

from fakes import PASSAGES, MemorySearch
from openheavy.config import Settings
from openheavy.errors import AddressRefusedError, ConfigError, DocumentNotFoundError, SearchError
from openheavy.net.guard import AddressGuard
from openheavy.search.base import close_search
from openheavy.search.brave import BraveSearch
from openheavy.search.duckduckgo import DuckDuckGoSearch
from openheavy.search.multi import MultiSearch
from openheavy.search.registry import SearchSpec, open_search, parse_search_specs
from openheavy.search.searxng import SearxngSearch
from openheavy.search.tavily import TavilySearch
from openheavy.search.web import Backoff, WebSession
from openheavy.types import Hit
from websites import FakeSearxng, JsonApi, serving

FAST = Backoff(attempts=3, base=0.01, ceiling=0.05)


def rows(query: str) -> list[dict[str, str]]:
    return [
        {"url": "https://a.test/1", "title": "First <b>result</b>", "content": "about &amp; <em>it</em>"},
        {"url": "https://a.test/1", "title": "duplicate", "content": ""},
        {"url": "javascript:alert(1)", "title": "not a page", "content": ""},
        {"url": "https://b.test/2", "title": "", "content": f"second, for {query}"},
        {"url": "https://c.test/3", "title": "Third", "content": "third"},
    ]


@pytest.fixture
async def session() -> AsyncIterator[WebSession]:
    web = WebSession(AddressGuard(["127.0.0.1"]), backoff=FAST)
    yield web
    await web.aclose()


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("BRAVE_API_KEY", raising=False)
    monkeypatch.delenv("TAVILY_API_KEY", raising=False)
    return Settings(data_dir=tmp_path / "data")


# ------------------------------------------------------------------ specs


def test_specs_parse_from_comma_lists_and_repeats() -> None:
    specs = parse_search_specs(["searxng:http://127.0.0.1:8888/, local:pydocs", "ddgs,brave", "TAVILY"])
    assert specs == [
        SearchSpec("searxng", "http://127.0.0.1:8888"),
        SearchSpec("local", "pydocs"),
        SearchSpec("ddgs"),
        SearchSpec("brave"),
        SearchSpec("tavily"),
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("google", "unknown search backend 'google' — use local:NAME, searxng:URL, ddgs, brave, tavily"),
        ("local", "needs an argument: local:NAME"),
        ("searxng", "needs an argument: searxng:URL"),
        ("searxng:127.0.0.1:8888", "not an http"),
        ("ddgs:fast", "takes no argument"),
        (" , ", "no search backend given"),
    ],
)
def test_bad_specs_say_what_to_write(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_search_specs(spec)
    assert message in str(caught.value)


async def test_open_search_builds_one_backend_or_several(settings: Settings) -> None:
    one = open_search("searxng:http://127.0.0.1:8888", settings)
    assert isinstance(one, SearxngSearch) and one.base_url == "http://127.0.0.1:8888"
    opened: list[str] = []

    def open_local(name: str) -> MemorySearch:
        opened.append(name)
        return MemorySearch(dict(PASSAGES), name=name)

    several = open_search(["searxng:http://127.0.0.1:8888,local:notes"], settings, open_local=open_local)
    assert isinstance(several, MultiSearch) and several.name == "searxng+notes" and opened == ["notes"]
    with pytest.raises(ConfigError, match="corpus opener"):
        open_search("local:notes", settings)
    await close_search(one)
    await close_search(several)


def test_api_keys_come_from_settings_or_the_environment(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="BRAVE_API_KEY"):
        open_search("brave", settings)
    with pytest.raises(ConfigError, match="TAVILY_API_KEY"):
        open_search("tavily", settings)
    monkeypatch.setenv("BRAVE_API_KEY", "brave-env-key")
    assert isinstance(open_search("brave", settings), BraveSearch)
    keyed = settings.model_copy(update={"tavily_api_key": SecretStr("tvly-config-key")})
    backend = open_search("tavily", keyed)
    assert isinstance(backend, TavilySearch)
    assert "tvly-config-key" not in repr(backend) and "tvly-config-key" not in repr(keyed)


def test_allow_hosts_come_from_a_comma_list_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENHEAVY_ALLOW_HOSTS", "127.0.0.1:8888, localhost")
    assert Settings().allow_hosts == ["127.0.0.1:8888", "localhost"]


# ------------------------------------------------------------------ SearXNG


async def test_searxng_results_become_labelled_hits(session: WebSession) -> None:
    with serving(FakeSearxng(rows)) as engine:
        hits = await SearxngSearch(engine.base_url, session).search("kestrel bridge", k=3)
    assert [h.url for h in hits] == ["https://a.test/1", "https://b.test/2", "https://c.test/3"]
    assert hits[0].title == "First result" and hits[0].snippet == "about & it"
    assert hits[1].title == "https://b.test/2"  # no title: the URL stands in
    assert {h.source for h in hits} == {"searxng"} and hits[0].id == hits[0].url
    (_, path, _), *_ = engine.requests
    assert parse_qs(urlsplit(path).query) == {"q": ["kestrel bridge"], "format": ["json"]}


async def test_searxng_without_json_says_how_to_enable_it(session: WebSession) -> None:
    engine = FakeSearxng(rows, json_enabled=False)
    with serving(engine), pytest.raises(SearchError, match=r"HTTP 403 — .*search\.formats"):
        await SearxngSearch(engine.base_url, session).search("q")


async def test_searxng_rate_limits_are_retried(session: WebSession) -> None:
    with serving(FakeSearxng(rows, limited=2)) as engine:
        hits = await SearxngSearch(engine.base_url, session).search("q")
    assert len(hits) == 3 and len(engine.requests) == 3


async def test_a_searxng_that_keeps_limiting_gives_up_with_a_clear_message(session: WebSession) -> None:
    with serving(FakeSearxng(rows, limited=100)) as engine, pytest.raises(SearchError) as caught:
        await SearxngSearch(engine.base_url, session).search("q")
    message = str(caught.value)
    assert "gave up after 3 attempts (HTTP 429)" in message and "server.limiter" in message
    assert len(engine.requests) == 3


async def test_a_local_searxng_needs_the_allow_list() -> None:
    web = WebSession(AddressGuard(), backoff=FAST)
    engine = FakeSearxng(rows)
    with serving(engine), pytest.raises(AddressRefusedError, match=f"--allow-host 127.0.0.1:{engine.port}"):
        await SearxngSearch(engine.base_url, web).search("q")
    assert engine.requests == []
    await web.aclose()


# ------------------------------------------------------------------ Brave and Tavily


def brave_answer(handler: BaseHTTPRequestHandler) -> tuple[int, Any]:
    token = handler.headers.get("X-Subscription-Token")
    if token == "flaky-secret":
        return 503, {"error": "unavailable"}
    if token != "brave-secret":
        return 401, {"error": "bad token"}
    count = int(parse_qs(urlsplit(handler.path).query)["count"][0])
    results = [
        {"url": "https://brave.test/1", "title": "R1", "description": "<strong>x</strong> y"},
        {"url": "https://brave.test/2", "title": "R2"},
    ]
    return 200, {"web": {"results": results[:count]}}


async def test_brave_sends_its_key_in_a_header_and_reads_web_results(session: WebSession) -> None:
    with serving(JsonApi(brave_answer)) as api:
        backend = BraveSearch("brave-secret", session, endpoint=api.url("/res/v1/web/search"))
        hits = await backend.search("q", k=5)
    assert [(h.title, h.snippet, h.source) for h in hits] == [("R1", "x y", "brave"), ("R2", "", "brave")]
    assert parse_qs(urlsplit(api.requests[0][1]).query) == {"q": ["q"], "count": ["5"]}


async def test_brave_keys_stay_out_of_errors_and_logs(
    session: WebSession, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(JsonApi(brave_answer)) as api, caplog.at_level(logging.DEBUG):
        endpoint = api.url("/res/v1/web/search")
        with pytest.raises(SearchError) as rejected:
            await BraveSearch("wrong-secret", session, endpoint=endpoint).search("q")
        with pytest.raises(SearchError) as flaky:
            await BraveSearch("flaky-secret", session, endpoint=endpoint).search("q")
    assert "HTTP 401" in str(rejected.value) and "BRAVE_API_KEY" in str(rejected.value)
    assert "gave up after 3 attempts (HTTP 503)" in str(flaky.value)
    assert "attempt 1 failed" in caplog.text  # the retries were logged ...
    for secret in ("wrong-secret", "flaky-secret"):  # ... without the key
        assert secret not in str(rejected.value) + str(flaky.value) + caplog.text


async def test_tavily_posts_the_query_with_a_bearer_key(session: WebSession) -> None:
    def answer(handler: BaseHTTPRequestHandler) -> tuple[int, Any]:
        if handler.headers.get("Authorization") != "Bearer tvly-secret":
            return 401, {"detail": "unauthorized"}
        return 200, {"results": [{"url": "https://t.test/a", "title": "A", "content": "alpha", "score": 0.9}]}

    with serving(JsonApi(answer)) as api:
        hits = await TavilySearch("tvly-secret", session, endpoint=api.url("/search")).search("lanterns", k=4)
    assert [(h.url, h.title, h.snippet, h.source) for h in hits] == [
        ("https://t.test/a", "A", "alpha", "tavily")
    ]
    assert json.loads(api.bodies[0]) == {"query": "lanterns", "max_results": 4, "search_depth": "basic"}
    assert api.requests[0][0] == "POST"


# ------------------------------------------------------------------ DuckDuckGo through ddgs


class FakeDDGS:
    """Stands in for `ddgs.DDGS`: answers from `script` (an exception is raised), one item a call."""

    script: ClassVar[list[Any]] = []
    calls: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def __init__(self, timeout: int | None = None) -> None:
        self.timeout = timeout

    def text(self, query: str, **kwargs: Any) -> list[dict[str, str]]:
        FakeDDGS.calls.append((query, kwargs))
        item = FakeDDGS.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return list(item)


@pytest.fixture
def fake_ddgs(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    exceptions = types.ModuleType("ddgs.exceptions")

    class DDGSException(Exception):
        pass

    class RatelimitException(DDGSException):
        pass

    class TimeoutException(DDGSException):
        pass

    exceptions.DDGSException = DDGSException  # type: ignore[attr-defined]
    exceptions.RatelimitException = RatelimitException  # type: ignore[attr-defined]
    exceptions.TimeoutException = TimeoutException  # type: ignore[attr-defined]
    module = types.ModuleType("ddgs")
    module.DDGS = FakeDDGS  # type: ignore[attr-defined]
    module.exceptions = exceptions  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ddgs", module)
    monkeypatch.setitem(sys.modules, "ddgs.exceptions", exceptions)
    FakeDDGS.script, FakeDDGS.calls = [], []
    yield module


def test_ddgs_missing_says_how_to_install_it(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ddgs", None)
    with pytest.raises(ConfigError, match=r"pip install 'openheavy\[ddgs\]'"):
        open_search("ddgs", settings)


async def test_ddgs_results_and_retries(fake_ddgs: types.ModuleType, session: WebSession) -> None:
    limited = fake_ddgs.exceptions.RatelimitException("202 Ratelimit")
    FakeDDGS.script = [limited, [{"href": "https://d.test/1", "title": "D", "body": "duck"}]]
    backend = DuckDuckGoSearch(session, min_interval=0.0)
    hits = await backend.search("verholm lanterns", k=3)
    assert [(h.url, h.title, h.snippet, h.source) for h in hits] == [
        ("https://d.test/1", "D", "duck", "ddgs")
    ]
    assert [c[1] for c in FakeDDGS.calls] == [{"max_results": 3, "backend": "duckduckgo"}] * 2
    FakeDDGS.script = [fake_ddgs.exceptions.DDGSException("No results found.")]
    assert await backend.search("nothing at all") == []


async def test_ddgs_that_keeps_limiting_says_it_is_best_effort(
    fake_ddgs: types.ModuleType, session: WebSession
) -> None:
    FakeDDGS.script = [fake_ddgs.exceptions.RatelimitException("202 Ratelimit")] * 3
    with pytest.raises(SearchError, match=r"rate limiting us .* after 3 attempts — ddgs is best effort"):
        await DuckDuckGoSearch(session, min_interval=0.0).search("q")


async def test_ddgs_requests_are_spaced_out(fake_ddgs: types.ModuleType, session: WebSession) -> None:
    import time

    FakeDDGS.script = [[], []]
    backend = DuckDuckGoSearch(session, min_interval=0.3)
    started = time.monotonic()
    await backend.search("one")
    await backend.search("two")
    assert time.monotonic() - started >= 0.3


# ------------------------------------------------------------------ several at once


class Failing:
    name = "broken"

    async def search(self, query: str, k: int = 5) -> list[Hit]:
        raise SearchError("broken is down")

    async def open(self, id: str) -> Any:
        raise AssertionError("never opened")


def web_backend(name: str, urls: list[str]) -> MemorySearch:
    """A MemorySearch whose hits carry web URLs."""
    backend = MemorySearch({u: (u, "lantern festival page") for u in urls}, name=name)

    async def search(query: str, k: int = 5) -> list[Hit]:
        return [Hit(u, u, u, u, "lantern", 1.0) for u in urls][:k]

    backend.search = search  # type: ignore[method-assign]
    return backend


async def test_several_backends_fuse_by_rank_and_route_opens_back() -> None:
    web = web_backend("searxng", ["https://x.test/a", "https://x.test/shared"])
    other = web_backend("searxng", ["https://x.test/shared", "https://x.test/b"])
    local = MemorySearch(dict(PASSAGES), name="pydocs")
    multi = MultiSearch([web, other, local])
    assert multi.name == "searxng+searxng-2+pydocs"
    hits = await multi.search("subprocess lantern", k=4)
    # The URL both web backends found ranks first; then the first places of each list, in backend order.
    # Each hit says where it came from, and its id says which backend opens it.
    assert [(h.id, h.source) for h in hits] == [
        ("searxng:https://x.test/shared", "searxng"),
        ("searxng:https://x.test/a", "searxng"),
        ("pydocs:subprocess#1", "pydocs"),
        ("searxng-2:https://x.test/b", "searxng-2"),
    ]
    document = await multi.open("pydocs:subprocess#1")
    assert document.id == "pydocs:subprocess#1" and local.opens == ["subprocess#1"]
    with pytest.raises(DocumentNotFoundError, match="no backend 'nowhere'"):
        await multi.open("nowhere:x")


async def test_one_failing_backend_does_not_fail_the_search(caplog: pytest.LogCaptureFixture) -> None:
    multi = MultiSearch([Failing(), MemorySearch(dict(PASSAGES), name="pydocs")])
    hits = await multi.search("subprocess")
    assert hits and multi.failures == ["broken: broken is down"]
    assert "broken is down" in caplog.text
    with pytest.raises(SearchError, match="every search backend failed — broken: broken is down"):
        await MultiSearch([Failing()]).search("q")
