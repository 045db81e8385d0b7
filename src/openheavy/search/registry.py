"""Choosing search backends by spec: `--search SPEC[,SPEC]`, the one place backends are registered.

    local:NAME     a local corpus (SQLite FTS5; `--corpus NAME` is the shorthand)
    searxng:URL    a SearXNG instance (self-hosted; JSON output enabled)
    ddgs           DuckDuckGo through the `ddgs` package (no key; best effort, rate limited)
    brave          the Brave Search API (BRAVE_API_KEY)
    tavily         the Tavily API (TAVILY_API_KEY)

Nothing is contacted until a search is made, and only the backends named are ever contacted. Several
specs make a `MultiSearch`. Web backends share one `WebSession`: one guarded connection pool, one page
cache.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpcore
import httpx
from pydantic import SecretStr

from openheavy.config import Settings
from openheavy.errors import ConfigError
from openheavy.net.fetch import PageLimits
from openheavy.net.guard import AddressGuard, Resolver
from openheavy.option_lists import split_commas
from openheavy.search.base import SearchBackend
from openheavy.search.brave import BraveSearch
from openheavy.search.duckduckgo import DuckDuckGoSearch
from openheavy.search.multi import MultiSearch
from openheavy.search.searxng import SearxngSearch
from openheavy.search.tavily import TavilySearch
from openheavy.search.web import WebSession

OpenLocal = Callable[[str], SearchBackend]
"""Opens local corpus NAME (the CLI passes `corpus.catalog.open_corpus`, which builds pydocs)."""


@dataclass(frozen=True)
class SearchSpec:
    """One parsed spec: its kind and its argument (a corpus name, a URL, or "")."""

    kind: str
    value: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}" if self.value else self.kind


def _key(secret: SecretStr | None, env: str) -> str | None:
    """An API key from the settings (config file, OPENHEAVY_* variable), else from `env`."""
    return (secret.get_secret_value() if secret else None) or os.environ.get(env) or None


def _searxng(spec: SearchSpec, session: WebSession, settings: Settings) -> SearchBackend:
    return SearxngSearch(spec.value, session)


def _ddgs(spec: SearchSpec, session: WebSession, settings: Settings) -> SearchBackend:
    return DuckDuckGoSearch(session)


def _brave(spec: SearchSpec, session: WebSession, settings: Settings) -> SearchBackend:
    key = _key(settings.brave_api_key, "BRAVE_API_KEY")
    if key is None:
        raise ConfigError(
            "--search brave needs an API key: set BRAVE_API_KEY, or brave_api_key in the config file"
            " (free plan at brave.com/search/api)"
        )
    return BraveSearch(key, session)


def _tavily(spec: SearchSpec, session: WebSession, settings: Settings) -> SearchBackend:
    key = _key(settings.tavily_api_key, "TAVILY_API_KEY")
    if key is None:
        raise ConfigError(
            "--search tavily needs an API key: set TAVILY_API_KEY, or tavily_api_key in the config file"
        )
    return TavilySearch(key, session)


WEB_BACKENDS: dict[str, Callable[[SearchSpec, WebSession, Settings], SearchBackend]] = {
    "searxng": _searxng,
    "ddgs": _ddgs,
    "brave": _brave,
    "tavily": _tavily,
}
"""Web backends by spec kind. A new backend is one file and one line here."""

KINDS = ("local", *WEB_BACKENDS)
_NEEDS_VALUE = {
    "local": "local:NAME, e.g. local:pydocs",
    "searxng": "searxng:URL, e.g. searxng:http://127.0.0.1:8888",
}


def parse_search_specs(values: str | Iterable[str]) -> list[SearchSpec]:
    """Specs from `--search` values, each possibly a comma-separated list. Raises `ConfigError`."""
    specs: list[SearchSpec] = []
    for item in split_commas(values):
        kind, _, value = item.partition(":")
        kind, value = kind.strip().lower(), value.strip()
        if kind not in KINDS:
            raise ConfigError(
                f"unknown search backend {item!r} — use {', '.join(_describe(k) for k in KINDS)}"
            )
        if kind in _NEEDS_VALUE and not value:
            raise ConfigError(f"--search {kind} needs an argument: {_NEEDS_VALUE[kind]}")
        if kind not in _NEEDS_VALUE and value:
            raise ConfigError(f"--search {kind} takes no argument (got {item!r})")
        if kind == "searxng":
            value = _check_url(value)
        specs.append(SearchSpec(kind, value))
    if not specs:
        raise ConfigError("no search backend given — e.g. --search local:pydocs or --search searxng:URL")
    return specs


def _describe(kind: str) -> str:
    return _NEEDS_VALUE[kind].split(",")[0] if kind in _NEEDS_VALUE else kind


def _check_url(value: str) -> str:
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"searxng:{value} — {exc}; write searxng:http://HOST:PORT") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"searxng:{value} is not an http(s) URL — write searxng:http://HOST:PORT")
    return value.rstrip("/")


def open_search(
    specs: str | Iterable[str],
    settings: Settings,
    *,
    open_local: OpenLocal | None = None,
    allow_hosts: Iterable[str] = (),
    resolver: Resolver | None = None,
    network: httpcore.AsyncNetworkBackend | None = None,
) -> SearchBackend:
    """The backend for `specs`: one backend, or a `MultiSearch` over several. Close it with
    `search.base.close_search`.

    The SSRF guard allows `settings.allow_hosts` plus `allow_hosts`. `open_local` opens `local:NAME`
    specs (required when there is one). `resolver` and `network` replace the system resolver and
    the socket layer under the guard (tests). Raises `ConfigError` for a bad spec or a missing key.
    """
    parsed = parse_search_specs(specs)
    guard = AddressGuard([*settings.allow_hosts, *allow_hosts], resolver=resolver)
    session = WebSession(
        guard,
        limits=PageLimits(max_bytes=settings.page_max_bytes, seconds=settings.page_seconds),
        network=network,
    )
    backends: list[SearchBackend] = []
    try:
        for spec in parsed:
            if spec.kind == "local":
                if open_local is None:
                    raise ConfigError("local:NAME specs need a corpus opener (open_local)")
                backends.append(open_local(spec.value))
            else:
                backends.append(WEB_BACKENDS[spec.kind](spec, session, settings))
    except BaseException:
        for backend in backends:  # local indexes opened before the bad spec; web ones hold nothing yet
            close = getattr(backend, "close", None)
            if close is not None:
                close()
        raise
    return backends[0] if len(backends) == 1 else MultiSearch(backends)
