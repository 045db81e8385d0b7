"""Tavily search API: `POST https://api.tavily.com/search`, key as a bearer token."""

from __future__ import annotations

from openheavy.search.web import ApiResults, KeyedWebBackend, web_hits
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


class TavilySearch(KeyedWebBackend):
    """Web search through the Tavily API."""

    default_endpoint = ENDPOINT
    default_name = "tavily"
    hints = HINTS

    async def search(self, query: str, k: int = 5) -> list[Hit]:
        answer = await self.ask_json(
            ApiResults,
            "POST",
            self.endpoint,
            headers={"Authorization": f"Bearer {self._api_key}"},
            json={"query": query, "max_results": min(k, 20), "search_depth": "basic"},
        )
        return web_hits(answer.rows(), k, self.name)
