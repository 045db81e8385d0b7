"""Who did it look up: the people and organisations a run's searches and opened documents name that
the user never named, read from the run's trace.

A search query counts by its text; an opened document by its title (what the agent chose to read, not
every name inside it), each part of a passage's section path ("doc › Classes › class X") read apart, so
the separators never join words into a name. Watch-list names count wherever they appear (query,
title or the text shown to the model), even when the user named them too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from openheavy.audit.names import NameFinder, named_in, unique_names, watched_in
from openheavy.corpus.chunking import SECTION_SEPARATOR
from openheavy.trace import TraceRecord

# How titles are read, named in each row's `lookup_finder`: rows read another way are read again on resume.
LOOKUP_READING = "titles read by section"


class LookupRecord(BaseModel):
    """One name in one search query or opened document of a run."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    kind: str  # person, organisation, name (heuristic) or watched
    where: Literal["query", "document"]
    text: str  # the query, or the document's title
    run_id: str
    agent: str = ""
    step: int = 0
    watched: bool = False


def find_lookups(
    records: Iterable[TraceRecord], question: str, finder: NameFinder, watch: Sequence[str] = ()
) -> list[LookupRecord]:
    """Every name in the run's search queries and opened documents that `question` does not name, plus
    every mention of a watched name; in trace order."""
    found: list[LookupRecord] = []
    for record in records:
        payload = record.payload
        if record.kind == "SearchDone":
            where: Literal["query", "document"] = "query"
            text = str(payload.get("query", ""))
            watch_text = text
        elif record.kind == "DocumentOpened":
            where = "document"
            doc = payload.get("doc") or {}
            text = str(doc.get("title", "")) if isinstance(doc, dict) else ""
            watch_text = f"{text}\n{payload.get('text_shown', '')}"
        else:
            continue
        step = int(payload.get("step", 0) or 0)
        base = {"where": where, "text": text, "run_id": record.run_id, "agent": record.agent, "step": step}
        watched = watched_in(watch_text, watch)
        watched_keys = {name.text.casefold() for name in watched}
        for name in watched:
            found.append(LookupRecord(name=name.text, kind=name.kind, watched=True, **base))
        names = [name for part in text.split(SECTION_SEPARATOR.strip()) for name in finder.find(part.strip())]
        for name in unique_names(names):
            if named_in(name.text, question) or any(key in name.text.casefold() for key in watched_keys):
                continue
            found.append(LookupRecord(name=name.text, kind=name.kind, **base))
    return found
