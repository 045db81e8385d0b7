"""Citations: the one citation type, its record form, resolution, and the run-wide source numbering.

An answer cites passages by number (`[3]`), under the numbers its writer saw: an agent's reference
numbers, or the run-wide numbers the synthesizer sees. `resolve_citations` keeps only numbers whose
passage was opened (each drop is reported as a `CitationDropped` event with its reason), renumbers the
kept ones 1..k in order of first mention, and rewrites the markers in the text. `RunSources` numbers
every passage any agent of a run opened, once, with who read it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from openheavy.types import CitationDropped, Document, EventStream


@dataclass(frozen=True)
class Source:
    """A passage that may be cited: its `number` is the one the answer's writer cites it by."""

    number: int
    document: Document
    read_by: tuple[str, ...]


@dataclass(frozen=True)
class Citation:
    """A source kept in a final answer, under its number there (1..k)."""

    number: int
    source: Source

    @property
    def ref(self) -> int:
        """The number the answer's writer cited the passage by, before renumbering."""
        return self.source.number

    @property
    def id(self) -> str:
        return self.source.document.id

    @property
    def doc_id(self) -> str:
        return self.source.document.doc_id

    @property
    def title(self) -> str:
        return self.source.document.title

    @property
    def url(self) -> str:
        return self.source.document.url

    def to_record(self) -> dict[str, Any]:
        """The JSON form used in events, traces, results and verifier evidence."""
        return {
            "number": self.number,
            "ref": self.ref,
            "id": self.id,
            "doc_id": self.doc_id,
            "title": self.title,
            "url": self.url,
            "read_by": list(self.source.read_by),
        }


def resolve_citations(
    answer: str,
    cite: Sequence[int],
    sources: Mapping[int, Source],
    *,
    drop_reason: Callable[[int], str],
    stream: EventStream,
    run_id: str,
    agent: str,
) -> tuple[str, list[Citation]]:
    """Keep the cited numbers (markers in `answer`, then `cite`) that are in `sources`, renumber them
    1..k and rewrite the markers. A number not in `sources` is dropped from the text and reported with
    `drop_reason(number)`."""
    numbers: dict[int, int] = {}
    citations: list[Citation] = []
    for ref in cited_numbers(answer) + list(cite):
        if ref in numbers:
            continue
        source = sources.get(ref)
        if source is None:
            numbers[ref] = 0
            stream.emit(CitationDropped(run_id=run_id, agent=agent, ref=str(ref), reason=drop_reason(ref)))
            continue
        numbers[ref] = len(citations) + 1
        citations.append(Citation(numbers[ref], source))
    return renumber_markers(answer, numbers), citations


@dataclass(frozen=True)
class RunSources:
    """Every passage the agents of a run opened, numbered run-wide (first reader first), with its readers."""

    by_id: dict[str, Source]

    @classmethod
    def gather(cls, readings: Iterable[tuple[str, Iterable[Document]]]) -> RunSources:
        """Number the documents each agent (`(agent name, documents it opened)`, in agent order) read."""
        readers: dict[str, list[str]] = {}
        documents: dict[str, Document] = {}
        for agent, opened in readings:
            for document in opened:
                readers.setdefault(document.id, []).append(agent)
                documents.setdefault(document.id, document)
        return cls(
            {
                doc_id: Source(number, document, tuple(readers[doc_id]))
                for number, (doc_id, document) in enumerate(documents.items(), start=1)
            }
        )

    @property
    def by_number(self) -> dict[int, Source]:
        return {source.number: source for source in self.by_id.values()}

    def globalize(self, answer: str, citations: Sequence[Citation]) -> str:
        """An agent's answer with its citation numbers rewritten to run-wide source numbers."""
        mapping = {c.number: self.by_id[c.id].number for c in citations if c.id in self.by_id}
        return renumber_markers(answer, mapping)

    def adopt(self, citations: Sequence[Citation]) -> list[Citation]:
        """An agent's citations under the same numbers, pointing at the run-wide sources (all readers)."""
        return [Citation(c.number, self.by_id[c.id]) for c in citations]


# "[3]" or "[1, 4]" in answer text
_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


def cited_numbers(text: str) -> list[int]:
    """The numbers of all citation markers in `text`, in order."""
    return [int(n) for match in _MARKER.finditer(text) for n in match.group(1).split(",")]


def replace_markers(text: str, render: Callable[[list[int]], str]) -> str:
    """Replace every citation marker (`[3]`, `[1, 4]`) with `render(numbers)`: how the server writes
    markers as markdown footnotes or as links."""
    return _MARKER.sub(lambda match: render([int(n) for n in match.group(1).split(",")]), text)


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
