"""Tavily search API: `POST https://api.tavily.com/search`, key as a bearer token."""

from __future__ import annotations

from pydantic import BaseModel

from openheavy.search.web import WebBackend, WebResult, WebSession, parse_answer, web_hits
from openheavy.types import Hit

ENDPOINT = "https://api.tavily.com/search"
_KEY_HINT = "Tavily rejected the API key: check TAVILY_API_KEY (or tavily_api_key in the config file)"
HINTS = {
    401: _KEY_HINT,
    403: _KEY_HINT,
    429: "Tavily is rate limiting us; wait, or run fewer agents at once",
    432: "the key's Tavily plan is used up for now (HTTP 432)",
    433: "the key's pay-as-you-go limit is reached (HTTP 433)",
}


class _Result(BaseModel):
    url: str = ""
    title: str = ""
    content: str = ""


class _Answer(BaseModel):
    results: list[_Result] = []


class TavilySearch(WebBackend):
    """Web search through the Tavily API."""

    def __init__(
        self, api_key: str, session: WebSession, *, endpoint: str = ENDPOINT, name: str = "tavily"
    ) -> None:
        self._api_key = api_key  # never in a message, a log line or a trace
        self.session = session
        self.endpoint = endpoint
        self.name = name

    def __repr__(self) -> str:
        return f"TavilySearch(endpoint={self.endpoint!r})"

    async def search(self, query: str, k: int = 5) -> list[Hit]:
        data = await self.session.request_json(
            self.name,
            "POST",
            self.endpoint,
            headers={"Authorization": f"Bearer {self._api_key}"},
            json={"query": query, "max_results": min(k, 20), "search_depth": "basic"},
            hints=HINTS,
        )
        answer = parse_answer(_Answer, data, self.name)
        rows = (WebResult(r.url, r.title, r.content) for r in answer.results)
        return web_hits(rows, k, self.name)
