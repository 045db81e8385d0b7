"""Brave Search API: `GET https://api.search.brave.com/res/v1/web/search`, key in X-Subscription-Token."""

from __future__ import annotations

from pydantic import BaseModel

from openheavy.search.web import ApiResults, KeyedWebBackend, web_hits
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


class _Answer(BaseModel):
    web: ApiResults = ApiResults()


class BraveSearch(KeyedWebBackend):
    """Web search through the Brave Search API."""

    default_endpoint = ENDPOINT
    default_name = "brave"
    hints = HINTS

    async def search(self, query: str, k: int = 5) -> list[Hit]:
        answer = await self.ask_json(
            _Answer,
            "GET",
            self.endpoint,
            params={"q": query, "count": min(k, 20)},
            headers={"Accept": "application/json", "X-Subscription-Token": self._api_key},
        )
        return web_hits(answer.web.rows(), k, self.name)
