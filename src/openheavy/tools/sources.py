"""The agent's source book: what it has seen and read, under the numbers the model uses.

Numbers (`[3]`) are what small models handle best. A number is assigned the first time a passage shows
up in search results and never changes within a run, so the same passage found by two searches keeps
one number. Only passages the agent opened may be cited (`openheavy.citations` resolves an answer's
citations against `opened`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from openheavy.search.terms import query_words
from openheavy.types import Document, Hit

# How much of a passage's text counts, with its title, as what it is about.
_OPENING_CHARS = 300


@dataclass
class SourceBook:
    seen: dict[int, Hit] = field(default_factory=dict)
    opened: dict[int, Document] = field(default_factory=dict)
    unreadable: dict[int, str] = field(default_factory=dict)  # ref -> why (refused, anti-bot wall, ...)
    _ref_by_id: dict[str, int] = field(default_factory=dict)

    def register(self, hits: list[Hit]) -> list[int]:
        """Give each hit its reference number (reusing numbers of passages already seen)."""
        refs = []
        for hit in hits:
            ref = self._ref_by_id.get(hit.id)
            if ref is None:
                ref = len(self._ref_by_id) + 1
                self._ref_by_id[hit.id] = ref
                self.seen[ref] = hit
            refs.append(ref)
        return refs

    def mark_opened(self, ref: int, document: Document) -> None:
        self.opened[ref] = document

    def mark_unreadable(self, ref: int, why: str) -> None:
        """Record that `ref` could not be read: it is not offered to `open` again and can't be cited."""
        self.unreadable[ref] = why

    def unopened_refs(self) -> list[int]:
        return [ref for ref in self.seen if ref not in self.opened and ref not in self.unreadable]

    def closest_unopened(self, question: str) -> int | None:
        """The unread result that shares the most content words with `question` (a title word counts
        twice: titles name what a page is about), the first seen among equals; None when there is none or
        none shares a word. Small models open whichever result was listed last; this one is the lead."""
        asked = query_words(question)

        def score(ref: int) -> int:
            hit = self.seen[ref]
            return 2 * len(asked & query_words(hit.title)) + len(asked & query_words(hit.snippet))

        scored = [(score(ref), -ref) for ref in self.unopened_refs()]
        if not scored or max(scored)[0] == 0:
            return None
        return -max(scored)[1]

    def about(self, name: str) -> dict[int, Document]:
        """The opened passages about `name`: the name's words are all in the title or the opening."""
        words = query_words(name)
        if not words:
            return {}
        return {
            ref: d
            for ref, d in self.opened.items()
            if words <= query_words(f"{d.title} {d.text[:_OPENING_CHARS]}")
        }

    def unread_name(self, names: Sequence[str]) -> tuple[str, int | None] | None:
        """The first of `names` (the things a question asks about) that no opened passage is about
        (`about`), with the unread result whose title names it (None when no result seen does); None when
        every name has been read about."""
        for name in names:
            words = query_words(name)
            if not words or self.about(name):
                continue
            titled = [ref for ref in self.unopened_refs() if words <= query_words(self.seen[ref].title)]
            return name, titled[0] if titled else None
        return None
