"""The agent's source book: what it has seen and read, under the numbers the model uses.

Numbers (`[3]`) are what small models handle best. A number is assigned the first time a passage shows
up in search results and never changes within a run, so the same passage found by two searches keeps
one number. Only passages the agent opened may be cited.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from openheavy.types import Document, Hit


@dataclass(frozen=True)
class Citation:
    number: int  # the number in the final answer (1..k)
    ref: int  # the agent's reference number
    id: str  # passage id
    doc_id: str
    title: str
    url: str

    def to_record(self) -> dict[str, object]:
        return {
            "number": self.number,
            "ref": self.ref,
            "id": self.id,
            "doc_id": self.doc_id,
            "title": self.title,
            "url": self.url,
        }


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


# "[3]" or "[1, 4]" in answer text
_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


def cited_numbers(text: str) -> list[int]:
    """The numbers of all citation markers in `text`, in order."""
    return [int(n) for match in _MARKER.finditer(text) for n in match.group(1).split(",")]


def renumber_markers(text: str, mapping: dict[int, int]) -> str:
    """Rewrite citation markers through `mapping`; numbers missing from it (or mapped to 0) vanish."""

    def rewrite(match: re.Match[str]) -> str:
        kept = [mapping.get(int(n), 0) for n in match.group(1).split(",")]
        kept = [n for n in kept if n]
        return "[" + ", ".join(map(str, kept)) + "]" if kept else ""

    rewritten = _MARKER.sub(rewrite, text)
    # a removed marker leaves "word  ." or "word ,": tidy the spacing it leaves behind
    rewritten = re.sub(r"[ \t]+([.,;:!?])", r"\1", rewritten)
    return re.sub(r"[ \t]{2,}", " ", rewritten).strip()
