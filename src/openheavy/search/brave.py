"""Brave Search API: `GET https://api.search.brave.com/res/v1/web/search`, key in X-Subscription-Token."""

from __future__ import annotations

from pydantic import BaseModel

from openheavy.search.web import WebBackend, WebResult, WebSession, parse_answer, web_hits
from openheavy.types import Hit

ENDPOINT = "https://api.search.brave.com/res/v1/web/search"
_KEY_HINT = "Brave rejected the API key: check BRAVE_API_KEY (or brave_api_key in the config file)"
HINTS = {
    401: _KEY_HINT,
    403: _KEY_HINT,
    422: _KEY_HINT,
    429: "the key's plan allows no more requests now (Brave's free plan: 1 per second); wait, or run fewer"
    " agents at once",
}


class _Result(BaseModel):
    url: str = ""
    title: str = ""
    description: str = ""


class _Web(BaseModel):
    results: list[_Result] = []


class _Answer(BaseModel):
    web: _Web = _Web()


class BraveSearch(WebBackend):
    """Web search through the Brave Search API."""

    def __init__(
        self, api_key: str, session: WebSession, *, endpoint: str = ENDPOINT, name: str = "brave"
    ) -> None:
        self._api_key = api_key  # never in a message, a log line or a trace
        self.session = session
        self.endpoint = endpoint
        self.name = name

    def __repr__(self) -> str:
        return f"BraveSearch(endpoint={self.endpoint!r})"

    async def search(self, query: str, k: int = 5) -> list[Hit]:
        data = await self.session.request_json(
            self.name,
            "GET",
            self.endpoint,
            params={"q": query, "count": min(k, 20)},
            headers={"Accept": "application/json", "X-Subscription-Token": self._api_key},
            hints=HINTS,
        )
        answer = parse_answer(_Answer, data, self.name)
        rows = (WebResult(r.url, r.title, r.description) for r in answer.web.results)
        return web_hits(rows, k, self.name)
