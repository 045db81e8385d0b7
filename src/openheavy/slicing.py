"""Slice a list question's space by period, without a model.

A wide question such as "every PEP X wrote from 2019 to 2023, with links" is covered best by agents that
each take a slice of the space. Small planners tend to split such a question into steps ("find",
"organize", "add links") instead, so every agent runs the same search. When the question names a span of
years, slicing it is mechanical, and heavy mode does it here: each agent gets the same question narrowed
to one contiguous group of years, so the slices cover the whole span without overlap and each keeps the
subject ("PEPs that X wrote") that its searches need. The plan is marked as such in the trace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["LIST_CUE", "Period", "find_period", "period_slices"]

#: Words that mark a question whose answer is a complete list.
LIST_CUE = re.compile(r"\b(every|all|complete|list|each)\b", re.IGNORECASE)
_YEAR = r"\b((?:19|20)\d\d)\b"
_PERIOD = re.compile(
    rf"(?:\b(?:from|between|in)\s+)?{_YEAR}\s*(?:to|and|through|until|till|[-–—])\s*{_YEAR}", re.IGNORECASE
)
MAX_SPAN = 50  # longer spans are not slices a few agents can each search year by year


@dataclass(frozen=True)
class Period:
    """A span of years named in a question, and where the words naming it stand in the text."""

    first: int
    last: int
    start: int
    end: int


def find_period(question: str) -> Period | None:
    """The first explicit span of years in `question` ("from 2004 to 2007", "between 2010 and 2014",
    "2019-2023"), or None. A span must cover at least two years."""
    for match in _PERIOD.finditer(question):
        first, last = int(match[1]), int(match[2])
        if first < last <= first + MAX_SPAN:
            return Period(first, last, match.start(), match.end())
    return None


def period_slices(question: str, period: Period, count: int) -> list[str]:
    """`question` narrowed to each of at most `count` contiguous groups of the period's years, as even
    as possible (earlier groups take the extra year). Fewer years than `count` give one per year."""
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    years = list(range(period.first, period.last + 1))
    groups = min(count, len(years))
    size, extra = divmod(len(years), groups)
    head, tail = question[: period.start], question[period.end :]
    slices = []
    start = 0
    for index in range(groups):
        end = start + size + (1 if index < extra else 0)
        group = years[start:end]
        words = f"in {group[0]}" if len(group) == 1 else f"from {group[0]} to {group[-1]}"
        slices.append(f"{head}{words}{tail}")
        start = end
    return slices
