"""What the web search backends share: one guarded HTTP client, the page reader, backoff on 429/5xx
with a clear message when a backend gives up, and result rows into `Hit`s.

A web backend's hit ids are the result URLs, and its `open(id)` reads that URL with the page reader, so
the `open` tool reads web pages exactly as it reads local passages.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import httpcore
import httpx
from pydantic import AliasChoices, BaseModel, Field, ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from openheavy.errors import AddressRefusedError, SearchError
from openheavy.net.fetch import PageLimits, PageReader
from openheavy.net.guard import AddressGuard, guarded_client
from openheavy.types import Document, Hit

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

USER_AGENT = "Mozilla/5.0 (compatible; openheavy/0.1; research agent)"
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


class _Transient(Exception):
    """A failure worth another try: 429, 5xx, a timeout or a refused TCP connection."""

    def __init__(self, description: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class Backoff:
    """How often and how patiently a search request is retried."""

    attempts: int = 3
    base: float = 1.0
    ceiling: float = 20.0


class WebSession:
    """The guarded client and page reader that a run's web backends share (one connection pool, one
    page cache). The client is made on first use, inside the event loop that uses it."""

    def __init__(
        self,
        guard: AddressGuard,
        *,
        limits: PageLimits | None = None,
        backoff: Backoff | None = None,
        timeout: float = 20.0,
        network: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.guard = guard
        self.limits = limits or PageLimits()
        self.backoff = backoff or Backoff()
        self.timeout = timeout
        self._network = network
        self._client: httpx.AsyncClient | None = None
        self._reader: PageReader | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = guarded_client(
                self.guard, timeout=self.timeout, user_agent=USER_AGENT, inner=self._network
            )
        return self._client

    @property
    def reader(self) -> PageReader:
        if self._reader is None:
            self._reader = PageReader(self.client, self.limits)
        return self._reader

    async def open_page(self, url: str) -> Document:
        """The page at `url` as a `Document` (id = the URL asked for, url = where it was read after
        redirects). Raises `AddressRefusedError` or `PageUnreadableError`."""
        page = await self.reader.read(url)
        return Document(id=url, doc_id=url, title=page.title, url=page.url, text=page.text)

    async def request_json(
        self,
        backend: str,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        hints: Mapping[int, str] | None = None,
    ) -> Any:
        """One API request with retries on 429, 5xx and connection trouble; the decoded JSON body.

        `hints` says what to do about a status (`{403: "enable json in ..."}`); it goes into the
        `SearchError` raised when the request fails for good. Headers (API keys) never go into a message.
        """
        hints = hints or {}
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.backoff.attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            before_sleep=lambda state: _log_retry(backend, state),
            reraise=True,
        )
        where = str(httpx.URL(url).copy_with(query=None))
        try:
            async for attempt in retrying:
                with attempt:
                    response = await self._send(method, url, params=params, headers=headers, json=json)
        except _Transient as exc:
            attempts = retrying.statistics.get("attempt_number", self.backoff.attempts)
            hint = hints.get(exc.status or 0) or (
                "it is rate limiting us; wait a minute, run fewer agents at once or use another backend"
                if exc.status == 429
                else "try again later, or use another backend"
            )
            raise SearchError(
                f"{backend} at {where} gave up after {attempts} attempts ({exc}) — {hint}"
            ) from exc
        if response.status_code >= 400:
            hint = hints.get(response.status_code, "check the backend's settings")
            raise SearchError(f"{backend} at {where} answered HTTP {response.status_code} — {hint}")
        try:
            return response.json()
        except ValueError as exc:
            raise SearchError(
                f"{backend} at {where} answered with something that is not JSON — is that URL right?"
            ) from exc

    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int] | None,
        headers: Mapping[str, str] | None,
        json: Any,
    ) -> httpx.Response:
        try:
            response = await self.client.request(method, url, params=params, headers=headers, json=json)
        except AddressRefusedError:
            raise
        except (httpx.TimeoutException, httpx.ConnectError) as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise SearchError(f"request to {httpx.URL(url).host} failed: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise _Transient(
                f"HTTP {response.status_code}", response.status_code, _retry_after(response.headers)
            )
        return response

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_exponential_jitter(
            multiplier=self.backoff.base, max=self.backoff.ceiling, jitter=self.backoff.base
        )(state)
        exc = state.outcome.exception() if state.outcome is not None else None
        asked = exc.retry_after if isinstance(exc, _Transient) else None
        # Honour a server's Retry-After, but never wait longer than our own ceiling.
        return min(max(backoff, asked), self.backoff.ceiling) if asked is not None else backoff

    async def aclose(self) -> None:
        """Close the connection pool (safe to call twice)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
            self._reader = None


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date: fall back to our own backoff
        return None


def _log_retry(backend: str, state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    delay = state.next_action.sleep if state.next_action is not None else 0.0
    log.warning("%s: attempt %d failed (%s); retrying in %.1f s", backend, state.attempt_number, exc, delay)


@dataclass(frozen=True)
class WebResult:
    """One row of a search engine's answer, before it becomes a `Hit`."""

    url: str
    title: str
    snippet: str


def web_hits(results: Iterable[WebResult], k: int, source: str) -> list[Hit]:
    """The first `k` distinct http(s) results as hits, best first (score 1/rank). Markup in titles and
    snippets (engines bold the query words) is dropped."""
    hits: list[Hit] = []
    seen: set[str] = set()
    for result in results:
        url = result.url.strip()
        if not url.startswith(("http://", "https://")) or url in seen:
            continue
        seen.add(url)
        title = _plain(result.title) or url
        hits.append(Hit(url, url, title, url, _plain(result.snippet), 1.0 / (len(hits) + 1), source=source))
        if len(hits) == k:
            break
    return hits


def _plain(text: str) -> str:
    return _SPACE.sub(" ", html.unescape(_TAG.sub("", text))).strip()


def parse_answer(model: type[M], data: Any, backend: str) -> M:
    """A search API's JSON answer checked against the shape we expect, or a `SearchError` saying so."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SearchError(f"{backend} sent results in a shape openheavy does not know: {exc}") from exc


class WebBackend:
    """What every web search backend does alike: `open` reads the result's page through the session, and
    `ask_json` makes an API request and checks its answer; subclasses write `search`."""

    name: str
    session: WebSession
    hints: ClassVar[Mapping[int, str]] = {}  # what to do about an HTTP status, for `request_json`

    async def ask_json(
        self,
        answer: type[M],
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> M:
        """One API request through the session (retried, with this backend's `hints` in its errors), its
        JSON answer checked against `answer`."""
        data = await self.session.request_json(
            self.name, method, url, params=params, headers=headers, json=json, hints=self.hints
        )
        return parse_answer(answer, data, self.name)

    async def open(self, id: str) -> Document:
        """The page at URL `id`. Raises `AddressRefusedError` or `PageUnreadableError`."""
        return await self.session.open_page(id)

    async def aclose(self) -> None:
        """Close the session's connections."""
        await self.session.aclose()


class KeyedWebBackend(WebBackend):
    """A search API at one endpoint that takes an API key. The key is never shown: not in a message, a log
    line, a trace or the repr."""

    default_endpoint: ClassVar[str]
    default_name: ClassVar[str]

    def __init__(
        self, api_key: str, session: WebSession, *, endpoint: str | None = None, name: str | None = None
    ) -> None:
        self._api_key = api_key
        self.session = session
        self.endpoint = endpoint or self.default_endpoint
        self.name = name or self.default_name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(endpoint={self.endpoint!r})"


class ApiResult(BaseModel):
    """One result as the search APIs send it: the snippet is `content` (Tavily, SearXNG) or `description`
    (Brave)."""

    url: str = ""
    title: str = ""
    snippet: str = Field("", validation_alias=AliasChoices("content", "description"))


class ApiResults(BaseModel):
    """A list of `results` as the search APIs send it (Brave's sits under `web`)."""

    results: list[ApiResult] = []

    def rows(self) -> Iterator[WebResult]:
        """The results as `WebResult`s."""
        return (WebResult(r.url, r.title, r.snippet) for r in self.results)
