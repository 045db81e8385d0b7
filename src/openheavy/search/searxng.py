"""SearXNG, a self-hosted metasearch engine: `GET {url}/search?q=...&format=json`.

An instance answers 403 to `format=json` unless `json` is in `search.formats` of its settings.yml, and
429 when its bot limiter (`server.limiter`) takes us for a bot.
"""

from __future__ import annotations

from openheavy.search.web import ApiResults, WebBackend, WebSession, web_hits
from openheavy.types import Hit

HINTS = {
    403: "this SearXNG does not serve JSON: add json to search.formats in its settings.yml"
    " (search: formats: [html, json]) and restart it",
    429: "its bot limiter refused us: set server.limiter: false in its settings.yml, or let this machine"
    " through in limiter.toml (botdetection.ip_lists.pass_ip)",
    404: "no /search there — is the URL the SearXNG base URL (e.g. http://127.0.0.1:8888)?",
}


class SearxngSearch(WebBackend):
    """Web search through a SearXNG instance at `base_url`."""

    hints = HINTS

    def __init__(self, base_url: str, session: WebSession, *, name: str = "searxng") -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.name = name

    async def search(self, query: str, k: int = 5) -> list[Hit]:
        answer = await self.ask_json(
            ApiResults,
            "GET",
            f"{self.base_url}/search",
            params={"q": query, "format": "json"},
            headers={"Accept": "application/json"},
        )
        return web_hits(answer.rows(), k, self.name)
