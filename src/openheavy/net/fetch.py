"""Reading a web page: fetch it through the SSRF guard, within limits, and extract its text.

Limits: a page is read up to `max_bytes` (streamed; the download stops there), within `seconds` for the
whole redirect chain, through at most `max_redirects` redirects, each hop a new connection the guard
checks. Only HTML, plain text, Markdown and PDF are read. Whatever fails raises a `FetchError`:
`AddressRefusedError` from the guard, `PageUnreadableError` for everything else (timeouts, HTTP errors,
anti-bot walls, login pages, empty pages); either way the page can't be cited.

Pages are cached per `PageReader` (a run's backend): a page opened twice, or by two agents, is fetched
once, and so is a failure, so an agent that retries a refused page does not knock twice.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

import httpx

from openheavy.errors import AddressRefusedError, FetchError, PageUnreadableError
from openheavy.net.extract import (
    Extracted,
    extract_html,
    extract_pdf,
    extract_plain,
    unreadable_reason,
)

_KINDS = {
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/plain": "text",
    "text/markdown": "text",
    "text/x-markdown": "text",
    "application/pdf": "pdf",
}
_ACCEPT = "text/html,application/xhtml+xml,text/plain;q=0.9,text/markdown;q=0.9,application/pdf;q=0.8"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Walls and login forms show themselves in the first part of the markup.
_RAW_PREFIX_BYTES = 65_536


@dataclass(frozen=True)
class PageLimits:
    """How much of the web one page may cost."""

    max_bytes: int = 4_000_000
    seconds: float = 20.0
    max_redirects: int = 5


@dataclass(frozen=True)
class Page:
    """A page as read: the URL it was read from after redirects (`url`), the ones before (`redirects`,
    starting with the URL asked for), its title and main text."""

    url: str
    title: str
    text: str
    content_type: str
    redirects: tuple[str, ...] = ()
    truncated: bool = False  # the body was longer than `max_bytes`; the text is of its first part


class PageReader:
    """Reads pages with an httpx client built by `guarded_client` (so every hop is checked)."""

    def __init__(
        self, client: httpx.AsyncClient, limits: PageLimits | None = None, cache_size: int = 256
    ) -> None:
        self.client = client
        self.limits = limits or PageLimits()
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Page | FetchError] = OrderedDict()

    async def read(self, url: str) -> Page:
        """The page at `url`. Raises `AddressRefusedError` or `PageUnreadableError`."""
        found = self._cache.get(url)
        if found is None:
            try:
                found = await self._read_within_time(url)
            except FetchError as exc:
                found = exc
            self._remember(url, found)
        if isinstance(found, FetchError):
            raise found
        return found

    def _remember(self, url: str, value: Page | FetchError) -> None:
        self._cache[url] = value
        self._cache.move_to_end(url)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    async def _read_within_time(self, url: str) -> Page:
        try:
            async with asyncio.timeout(self.limits.seconds):
                return await self._follow(url)
        except TimeoutError:
            raise PageUnreadableError(
                f"{url} took longer than {self.limits.seconds:g} s to read — skipped; open another result",
                url=url,
                reason="timeout",
            ) from None

    async def _follow(self, url: str) -> Page:
        chain: list[str] = []
        current = _parse_url(url)
        for _ in range(self.limits.max_redirects + 1):
            try:
                async with self.client.stream("GET", current, headers={"Accept": _ACCEPT}) as response:
                    location = response.headers.get("location")
                    if response.status_code in _REDIRECTS and location:
                        chain.append(str(current))
                        current = _parse_url(str(current.join(location)), came_from=chain)
                        continue
                    return await self._page(response, chain)
            except AddressRefusedError as exc:
                raise _refused_at(exc, str(current), chain) from exc
            except httpx.TimeoutException as exc:
                raise PageUnreadableError(
                    f"{current} timed out ({type(exc).__name__}) — skipped; open another result",
                    url=url,
                    reason="timeout",
                ) from exc
            except httpx.HTTPError as exc:
                raise PageUnreadableError(
                    f"could not fetch {current}: {exc or type(exc).__name__}", url=url, reason="network"
                ) from exc
        raise PageUnreadableError(
            f"{url} redirected more than {self.limits.max_redirects} times — skipped",
            url=url,
            reason="too-many-redirects",
        )

    async def _page(self, response: httpx.Response, chain: list[str]) -> Page:
        url = str(response.url)
        asked = chain[0] if chain else url
        mime, _, params = response.headers.get("content-type", "").partition(";")
        mime = mime.strip().lower()
        kind = _KINDS.get(mime)
        if kind is None and mime:
            raise PageUnreadableError(
                f"{url} is {mime}, not a page openheavy reads (HTML, text, Markdown, PDF)",
                url=asked,
                reason="content-type",
            )
        body, truncated = await self._body(response)
        if kind is None:  # no content type given: sniff
            kind = "pdf" if body.startswith(b"%PDF-") else "html"
        if kind == "pdf":
            if truncated:
                raise PageUnreadableError(
                    f"{url} is a PDF larger than {self.limits.max_bytes:,} bytes — too large to read",
                    url=asked,
                    reason="too-large",
                )
            try:
                extracted = extract_pdf(body)
            except ValueError as exc:
                raise PageUnreadableError(
                    f"cannot read the PDF at {url}: {exc}", url=asked, reason="pdf"
                ) from exc
        elif kind == "text":
            extracted = extract_plain(body, _charset(params))
        else:
            # trafilatura's parsing is CPU work: off the event loop, so other agents keep going.
            extracted = await asyncio.to_thread(extract_html, body, url)
        raw = body[:_RAW_PREFIX_BYTES].decode("utf-8", errors="replace") if kind == "html" else ""
        unreadable = unreadable_reason(status=response.status_code, raw=raw, extracted=extracted, url=url)
        if unreadable is not None:
            reason, why = unreadable
            raise PageUnreadableError(f"{url} is unreadable: {why}", url=asked, reason=reason)
        return Page(
            url=url,
            title=_best_title(extracted, url),
            text=extracted.text,
            content_type=mime or kind,
            redirects=tuple(chain),
            truncated=truncated,
        )

    async def _body(self, response: httpx.Response) -> tuple[bytes, bool]:
        """Up to `max_bytes` of the (decompressed) body; True when there was more. Stops downloading at
        the cap: leaving the stream closes the connection."""
        cap = self.limits.max_bytes
        parts: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            room = cap - size
            if len(chunk) >= room:
                parts.append(chunk[:room])
                return b"".join(parts), True
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts), False


def _parse_url(url: str, came_from: list[str] | None = None) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise PageUnreadableError(f"{url!r} is not a valid URL: {exc}", url=url, reason="bad-url") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        via = f" (redirected from {came_from[-1]})" if came_from else ""
        raise PageUnreadableError(
            f"{url}{via} is not an http(s) URL — openheavy reads web pages only",
            url=came_from[0] if came_from else url,
            reason="scheme",
        )
    return parsed


def _refused_at(exc: AddressRefusedError, url: str, chain: list[str]) -> AddressRefusedError:
    """The guard's refusal, told with the URL (and the redirects that led there)."""
    via = f" (redirected from {chain[-1]})" if chain else ""
    return AddressRefusedError(
        f"{url}{via}: {exc}",
        host=exc.host,
        port=exc.port,
        address=exc.address,
        why=exc.why,
        url=url,
        chain=tuple(chain),
    )


def _charset(params: str) -> str | None:
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip("\"'") or None
    return None


def _best_title(extracted: Extracted, url: str) -> str:
    if extracted.title:
        return extracted.title
    parsed = httpx.URL(url)
    return f"{parsed.host}{parsed.path}" if parsed.path != "/" else parsed.host
