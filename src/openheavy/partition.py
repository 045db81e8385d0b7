"""Wide search: split the space of a list question into slices, one per agent, and check the split.

A list question ("every PEP in the Typing topic", "all papers X wrote from 2004 to 2007") is covered
best by agents that each take one slice of the space. The planner proposes a facet (year, topic,
author, status, first letter, sub-area …) and its values; nothing here knows any dataset's wording.
Code checks the proposal before any agent runs:

- values are distinct: no value repeats another or contains it word for word (overlap);
- a value names a slice, not a step of work: a few words, not a sentence ("find the PEPs");
- there are enough of them: at least two;
- numeric values (years, numbered releases) are ranges that neither overlap nor leave gaps, and they
  reach both ends of the span of numbers the question names. The span is then split evenly among the
  agents; it is split so even when the values were bad, since a numeric facet is what the planner meant.
  Numeric values with no span in the question to cover are unusable: some numbers would be missed.

More values than agents are grouped into contiguous slices. A partition that fails the check is
replaced by the caller with its fixed split: the same list question from different query angles.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from openheavy.normalize import normalize_answer

__all__ = ["FACET_MAX_CHARS", "VALUE_MAX_WORDS", "Partition", "check_partition", "group_slices", "overlaps"]

FACET_MAX_CHARS = 40
VALUE_MAX_CHARS = 40
VALUE_MAX_WORDS = 6  # "Python packaging and distribution" is a slice; a longer value is a sentence

_RANGE = re.compile(r"^\s*(\d{1,6})\s*(?:(?:-|–|—|to|through|until)\s*(\d{1,6}))?\s*$", re.IGNORECASE)
_INTEGER = re.compile(r"(?<![\d.,])\d{1,6}(?![\d.,]?\d)")


@dataclass(frozen=True)
class Partition:
    """How a list question's space is split among agents: one slice per agent.

    `origin` is "planner" (the planner's facet and values passed the check, perhaps grouped), "span"
    (numeric values repaired by splitting the span the question names) or "fallback" (no usable facet:
    the slices are query angles). `problems` says what the check found."""

    facet: str
    slices: tuple[str, ...]
    origin: Literal["planner", "span", "fallback"]
    problems: tuple[str, ...] = ()

    def to_record(self) -> dict[str, Any]:
        """The JSON form in traces and run results."""
        return {
            "facet": self.facet,
            "slices": list(self.slices),
            "origin": self.origin,
            "problems": list(self.problems),
        }


def check_partition(
    facet: str, values: Sequence[str], question: str, *, count: int
) -> tuple[Partition | None, list[str]]:
    """The planner's `facet` and `values` checked and grouped into at most `count` slices, or None when
    they are unusable. Also returns the problems found, which name every value that was dropped."""
    facet = " ".join(facet.split())[:FACET_MAX_CHARS]
    problems: list[str] = []
    ranges = [r for r in (_range(v) for v in values) if r is not None]
    if ranges and 2 * len(ranges) >= len([v for v in values if v.strip()]):
        return _numeric_partition(facet, ranges, question, count, problems)
    if not facet:
        problems.append("the planner named no facet to split the list by")
        return None, problems
    kept: list[str] = []
    for raw in values:
        value = " ".join(raw.split())
        if not value:
            continue
        if len(value.split()) > VALUE_MAX_WORDS or len(value) > VALUE_MAX_CHARS:
            problems.append(f"value {value[:VALUE_MAX_CHARS]!r} is a sentence, not a slice")
            continue
        clash = next((other for other in kept if overlaps(value, other)), None)
        if clash is not None:
            problems.append(f"value {value!r} overlaps {clash!r}")
            continue
        kept.append(value)
    if len(kept) < 2:
        problems.append(f"{len(kept)} usable value(s); a split needs at least 2")
        return None, problems
    return Partition(facet, tuple(group_slices(kept, count)), "planner", tuple(problems)), problems


def group_slices(values: Sequence[str], count: int) -> list[str]:
    """`values` in at most `count` contiguous groups, as even as possible (earlier groups take the extra
    value); a group of several values reads "a or b"."""
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    groups = min(count, len(values))
    size, extra = divmod(len(values), groups) if groups else (0, 0)
    slices = []
    start = 0
    for index in range(groups):
        end = start + size + (1 if index < extra else 0)
        slices.append(" or ".join(values[start:end]))
        start = end
    return slices


# ---------------------------------------------------------------- numeric facets


def _numeric_partition(
    facet: str, ranges: list[tuple[int, int]], question: str, count: int, problems: list[str]
) -> tuple[Partition | None, list[str]]:
    """Numeric values must tile the span the question names: no overlap, no gap, both ends reached. The
    span is then split evenly among the agents; when the values were bad but the question names a span,
    that span is split all the same (origin "span"), since it is what the planner meant."""
    span = _question_span(question, ranges)
    if span is None:
        problems.append("numeric values, but the question names no span of numbers for them to cover")
        return None, problems
    tiled = sorted(ranges)
    found: list[str] = []
    for (low, high), (next_low, next_high) in itertools.pairwise(tiled):
        if next_low <= high:
            found.append(f"values {low}-{high} and {next_low}-{next_high} overlap")
        elif next_low > high + 1:
            missing = str(high + 1) if next_low == high + 2 else f"{high + 1}-{next_low - 1}"
            found.append(f"the values leave out {missing}")
    if tiled[0][0] > span[0] or tiled[-1][1] < span[1]:
        found.append(f"the values cover {tiled[0][0]}-{tiled[-1][1]}, the question names {span[0]}-{span[1]}")
    problems.extend(found)
    slices = _split_span(span[0], span[1], count)
    return Partition(
        facet or "number", tuple(slices), "span" if found else "planner", tuple(problems)
    ), problems


def _split_span(low: int, high: int, count: int) -> list[str]:
    """The numbers low..high in at most `count` contiguous slices, as even as possible (earlier slices
    take the extra number): "2004", "2005 to 2006"."""
    total = high - low + 1
    groups = min(count, total)
    size, extra = divmod(total, groups)
    slices = []
    start = low
    for index in range(groups):
        end = start + size + (1 if index < extra else 0) - 1
        slices.append(str(start) if start == end else f"{start} to {end}")
        start = end + 1
    return slices


def _question_span(question: str, ranges: list[tuple[int, int]]) -> tuple[int, int] | None:
    """The lowest and highest number in the question written with as many digits as the values (a
    question about years 2004-2007 may also say "3 PEPs"), or None if it names fewer than two."""
    digits = {len(str(n)) for r in ranges for n in r}
    numbers = [int(n) for n in _INTEGER.findall(question) if len(n) in digits]
    if len(set(numbers)) < 2:
        return None
    return min(numbers), max(numbers)


def _range(value: str) -> tuple[int, int] | None:
    match = _RANGE.match(value)
    if match is None:
        return None
    low = int(match[1])
    high = int(match[2]) if match[2] else low
    return (low, high) if low <= high else None


def overlaps(a: str, b: str) -> bool:
    """Whether two labels name overlapping things: equal once normalized, or one holds the other word for
    word ("asyncio" and "asyncio tasks")."""
    key_a, key_b = normalize_answer(a), normalize_answer(b)
    if key_a == key_b:
        return True
    short, long = sorted((key_a, key_b), key=len)
    return bool(short) and f" {short} " in f" {long} "
