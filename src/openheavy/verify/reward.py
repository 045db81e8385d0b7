"""The reward-model endpoint verifier: one POST scores every answer."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import httpx

from openheavy.errors import ConfigError, ModelError, ModelOutputError, ModelUnreachableError
from openheavy.types import EventStream, Usage
from openheavy.verify.base import Sample, Score


def _score_from_item(item: object) -> float:
    """One score from a response entry: a number, `{"score": x}`, vLLM `/classify` `{"probs": [...]}` (the
    last class, by convention the positive one) or `/pooling` `{"data": [...]}` (the last value: reward
    models put the sequence reward on the last token)."""
    if isinstance(item, bool):
        raise ValueError("a score is a boolean, not a number")
    if isinstance(item, int | float):
        return float(item)
    if isinstance(item, list) and item:
        return _score_from_item(item[-1])
    if isinstance(item, dict):
        for key in ("score", "reward", "probs", "data"):
            if key in item:
                return _score_from_item(item[key])
    raise ValueError(f"cannot read a score from {json.dumps(item)[:100]}")


def _scores_from_body(body: object, count: int) -> list[float]:
    if isinstance(body, dict) and "scores" in body:
        entries = body["scores"]
    elif isinstance(body, dict) and isinstance(body.get("data"), list):
        data = body["data"]
        # OpenAI-style lists carry an index; order by it rather than trusting the array order.
        if all(isinstance(d, dict) and isinstance(d.get("index"), int) for d in data):
            data = sorted(data, key=lambda d: int(d["index"]))
        entries = data
    else:
        raise ValueError('expected {"scores": [...]} or a vLLM /pooling or /classify response')
    if not isinstance(entries, list) or len(entries) != count:
        got = len(entries) if isinstance(entries, list) else type(entries).__name__
        raise ValueError(f"expected {count} scores, got {got}")
    scores = [_score_from_item(entry) for entry in entries]
    if not all(math.isfinite(s) for s in scores):
        raise ValueError("a score is not a finite number")
    return scores


class RewardVerifier:
    """Scores from an external reward-model endpoint, one POST for all samples.

    By default the body is `{"question": ..., "answers": [...]}` and the reply `{"scores": [...]}`. A URL
    ending in `/pooling` or `/classify` is treated as vLLM's endpoint of that name: the body is
    `{"input": ["<question>\\n\\n<answer>", ...]}` (plus `"model"` when given), the reply's `data` entries
    give the scores. Transient failures (connection, timeout, 429, 5xx) are retried with backoff.
    """

    def __init__(
        self,
        url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"reward:URL needs an http(s) URL, got {url!r}")
        self.name = f"reward:{url}"
        self.url = url
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.transport = transport
        self.openai_style = parsed.path.rstrip("/").endswith(("/pooling", "/classify"))

    @property
    def usage(self) -> Usage:
        return Usage()

    def _body(self, question: str, samples: Sequence[Sample]) -> dict[str, Any]:
        if not self.openai_style:
            return {"question": question, "answers": [s.answer for s in samples]}
        body: dict[str, Any] = {"input": [f"{question}\n\n{s.answer}" for s in samples]}
        if self.model:
            body["model"] = self.model
        return body

    async def _post(self, body: dict[str, Any]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        async with httpx.AsyncClient(transport=self.transport, timeout=self.timeout) as client:
            for attempt in range(self.max_retries + 1):
                last_try = attempt == self.max_retries
                try:
                    response = await client.post(self.url, json=body, headers=headers)
                except httpx.TransportError as exc:  # connection refused or dropped, timeouts: transient
                    if last_try and isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
                        raise ModelUnreachableError(
                            f"no reward server at {self.url} ({type(exc).__name__}) — start one or "
                            "pick another --verifier"
                        ) from exc
                    if last_try:
                        raise ModelError(
                            f"reward server at {self.url} failed after {attempt + 1} tries: "
                            f"{type(exc).__name__}: {exc}"
                        ) from exc
                else:
                    transient = response.status_code == 429 or response.status_code >= 500
                    if not transient or last_try:
                        return response
                await asyncio.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises

    async def score(
        self,
        question: str,
        samples: Sequence[Sample],
        *,
        stream: EventStream | None = None,
        run_id: str = "",
    ) -> list[Score]:
        """POST every answer in one request and read one score per answer."""
        if not samples:
            return []
        response = await self._post(self._body(question, samples))
        if response.status_code >= 400:
            raise ModelError(
                f"reward server at {self.url} answered HTTP {response.status_code}: {response.text[:200]}"
            )
        try:
            values = _scores_from_body(response.json(), len(samples))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError too
            raise ModelOutputError(f"malformed reply from reward server at {self.url}: {exc}") from exc
        return [
            Score(s.index, value, f"reward model score {value:.4g}")
            for s, value in zip(samples, values, strict=True)
        ]
