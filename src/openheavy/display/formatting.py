"""Short text for people, shared by the live view and the renderers: one-line clipping, durations,
counts, token figures, and one-line accounts of heavy mode's plan, vote and list merge."""

from __future__ import annotations

import json
from typing import Any

from openheavy.types import ListMerged, PlanMade, VoteTaken

__all__ = [
    "code_outcome",
    "compact_json",
    "describe_merge",
    "describe_plan",
    "describe_vote",
    "duration",
    "one_line",
    "plural",
    "tokens_in_out",
]


def one_line(text: str, limit: int = 160) -> str:
    """`text` on one line (white space folded), cut to `limit` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def duration(value: float) -> str:
    """Seconds as people read them: `250 ms`, `41.2 s`, `12.5 min`."""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.1f} s" if value < 600 else f"{value / 60:.1f} min"


def plural(number: int, noun: str) -> str:
    """`1 hit`, `3 hits`, `1,204 documents`."""
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"


def tokens_in_out(prompt: int, completion: int) -> str:
    """Prompt and completion tokens: `1,234 in / 210 out`."""
    return f"{prompt:,} in / {completion:,} out"


def code_outcome(limit: str | None, exit_status: int) -> str:
    """How a run of the python tool ended: `exit status 1`, `stopped by the cpu limit`."""
    return f"stopped by the {limit} limit" if limit else f"exit status {exit_status}"


def compact_json(value: Any) -> str:
    """`value` as one line of JSON, non-ASCII kept as it is; anything else as its `str`."""
    return json.dumps(value, ensure_ascii=False, default=str)


def describe_plan(event: PlanMade) -> str:
    """`list answer · 4 agents (model) · split by year: 2004 | 2005 | 2006 | 2007`."""
    text = f"{event.shape} answer · {plural(len(event.assignments), 'agent')} ({event.origin})"
    partition = event.partition or {}
    if partition.get("slices"):
        text += f" · split by {partition.get('facet', '')}: " + " | ".join(map(str, partition["slices"]))
    elif partition:
        text += " · no usable split: query angles"
    queries = [q for a in event.assignments for q in a.get("queries", [])[:1]]
    if queries:
        text += " · first queries: " + " | ".join(f'"{q}"' for q in queries)
    return text


def describe_vote(event: VoteTaken) -> str:
    """`"Louis Aragon" by majority (3 of 4 agents); also "J. G. Farrell" (1)`, and the answers set aside
    (`; set aside, only repeats the question's words: "Pitof 2004 movie" (2)`)."""
    voting = [c for c in event.candidates if not c.get("set_aside")]
    aside = [c for c in event.candidates if c.get("set_aside")]
    counts = [len(c.get("agents", [])) for c in voting]
    total = sum(counts)
    lead = counts[0] if counts else 0
    text = f'"{event.winner}" by {event.decided_by}'
    if event.decided_by == "dates":  # candidates are "name: year", read from documents, not agents' votes
        return text + ": " + ", ".join(str(c.get("answer", "")) for c in event.candidates)
    if event.decided_by == "majority":
        text += f" ({lead} of {total} agents)"
    others = [f'"{c.get("answer", "")}" ({n})' for c, n in zip(voting, counts, strict=True)]
    if len(others) > 1:
        text += "; answers: " + ", ".join(others)
    for candidate in aside:  # each says why it did not vote
        held = len(candidate.get("agents", []))
        text += f'; set aside, {candidate["set_aside"]}: "{candidate.get("answer", "")}" ({held})'
    return text


def describe_merge(event: ListMerged) -> str:
    """`12 items (3 found by more than one agent)`, and what the checks decided: `; must contain 'Jane
    Doe', a number from 2016 to 2020: 24 documents checked, 9 meet it, 13 do not, 2 unchecked; 2 items
    dropped`."""
    text = f"{plural(len(event.items), 'item')} ({event.duplicates} found by more than one agent)"
    names = [repr(name) for name in event.conditions.get("names", [])]
    if event.conditions.get("low") is not None:
        names.append(f"a number from {event.conditions['low']} to {event.conditions['high']}")
    if event.checks:
        verdicts = [check.get("belongs") for check in event.checks]
        failed = verdicts.count(None) + event.unchecked
        text += (
            f"; must contain {', '.join(names) or 'nothing'}: {plural(len(event.checks), 'document')} "
            f"checked, {verdicts.count(True)} meet it, {verdicts.count(False)} do not"
            + (f", {failed} unchecked" if failed else "")
        )
    if event.dropped:
        text += f"; {plural(len(event.dropped), 'item')} dropped"
    return text
