"""Several search backends at once: the web through SearXNG and a local corpus, say.

Each backend is asked for `k` results concurrently; the lists are fused by reciprocal rank (a result
high in two lists beats one high in one; scores of different engines are not comparable, ranks are), the
same URL found twice counts once, and each hit carries its backend's label as `source`. Hit ids are
prefixed with the label (`searxng:https://...`, `pydocs:subprocess#3`), so `open` goes back to the
backend that found it. One backend failing does not fail the search while another answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace

from openheavy.errors import DocumentNotFoundError, SearchError
from openheavy.search.base import SearchBackend, close_search
from openheavy.types import Document, Hit

log = logging.getLogger(__name__)

# The usual constant of reciprocal rank fusion (Cormack et al. 2009): ranks 1 and 2 differ little, so one
# engine's first place does not drown another's.
RRF_K = 60


class MultiSearch:
    """One `SearchBackend` over several; `name` joins their labels with "+"."""

    def __init__(self, backends: Sequence[SearchBackend]) -> None:
        if not backends:
            raise SearchError("MultiSearch needs at least one backend")
        self.backends: dict[str, SearchBackend] = {}
        for backend in backends:
            label = backend.name.replace(":", "-")
            number = 2
            while label in self.backends:
                label = f"{backend.name}-{number}"
                number += 1
            self.backends[label] = backend
        self.name = "+".join(self.backends)
        self.failures: list[str] = []  # the last search's failed backends, "label: message"

    async def search(self, query: str, k: int = 5) -> list[Hit]:
        labels = list(self.backends)
        answers = await asyncio.gather(
            *(self.backends[label].search(query, k) for label in labels), return_exceptions=True
        )
        self.failures = []
        scored: dict[str, tuple[float, int, Hit]] = {}  # dedup key -> (score, first position, hit)
        position = 0
        for label, answer in zip(labels, answers, strict=True):
            if isinstance(answer, BaseException):
                if not isinstance(answer, Exception):
                    raise answer  # cancellation and the like are not a backend's failure
                self.failures.append(f"{label}: {answer}")
                continue
            for rank, hit in enumerate(answer, start=1):
                key = hit.url if hit.url.startswith(("http://", "https://")) else f"{label}:{hit.id}"
                score = 1.0 / (RRF_K + rank)
                if key in scored:
                    before, first, kept = scored[key]
                    scored[key] = (before + score, first, kept)
                    continue
                labelled = replace(hit, id=f"{label}:{hit.id}", source=hit.source or label)
                scored[key] = (score, position, labelled)
                position += 1
        if self.failures and len(self.failures) == len(labels):
            raise SearchError("every search backend failed — " + "; ".join(self.failures))
        for failure in self.failures:
            log.warning("search backend failed, results come from the others: %s", failure)
        ranked = sorted(scored.values(), key=lambda entry: (-entry[0], entry[1]))
        return [replace(hit, score=score) for score, _, hit in ranked[:k]]

    async def open(self, id: str) -> Document:
        label, _, inner = id.partition(":")
        backend = self.backends.get(label)
        if backend is None or not inner:
            raise DocumentNotFoundError(f"no backend {label!r} for id {id!r} (backends: {self.name})")
        document = await backend.open(inner)
        return replace(document, id=id)

    async def aclose(self) -> None:
        """Close every backend."""
        for backend in self.backends.values():
            await close_search(backend)
