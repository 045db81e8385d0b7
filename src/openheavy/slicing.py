"""Slice a list question's space by period, without a model.

A wide question such as "every PEP X wrote from 2019 to 2023, with links" is covered best by agents that
each take a slice of the space. Small planners tend to split such a question into steps ("find",
"organize", "add links") instead, so every agent runs the same search. When the question names a span of
years, slicing it is mechanical, and heavy mode does it here: one contiguous group of years per agent, so
the slices cover the whole span without overlap. The plan is marked as such in the trace.
"""

from __future__ import annotations

import re

__all__ = ["LIST_CUE", "find_period", "period_slices"]

#: Words that mark a question whose answer is a complete list.
LIST_CUE = re.compile(r"\b(every|all|complete|list|each)\b", re.IGNORECASE)
_YEAR = r"((?:19|20)\d\d)"
_PERIOD = re.compile(
    rf"\b(?:from|between|in)?\s*{_YEAR}\s*(?:to|and|through|until|till|[-–—])\s*{_YEAR}\b", re.IGNORECASE
)
MAX_SPAN = 50  # longer spans are not slices a few agents can each search year by year


def find_period(question: str) -> tuple[int, int] | None:
    """The first explicit span of years in `question` ("from 2004 to 2007", "between 2010 and 2014",
    "2019-2023") as (first, last), or None. A span must cover at least two years."""
    for match in _PERIOD.finditer(question):
        first, last = int(match[1]), int(match[2])
        if first < last <= first + MAX_SPAN:
            return first, last
    return None


def period_slices(first: int, last: int, count: int) -> list[str]:
    """Sub-tasks that split the years `first`..`last` into at most `count` contiguous groups, as even
    as possible (earlier groups take the extra year). Fewer years than `count` give one per year."""
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    years = list(range(first, last + 1))
    groups = min(count, len(years))
    size, extra = divmod(len(years), groups)
    tasks = []
    start = 0
    for index in range(groups):
        end = start + size + (1 if index < extra else 0)
        tasks.append(_task(years[start:end]))
        start = end
    return tasks


def _task(years: list[int]) -> str:
    if len(years) == 1:
        return (
            f"Cover the year {years[0]} only: find every match dated {years[0]}, "
            f"and put {years[0]} in your search queries."
        )
    span = f"{years[0]}–{years[-1]}"
    listed = ", ".join(str(y) for y in years[:-1]) + f" or {years[-1]}"
    return (
        f"Cover {span} only: find every match dated {listed}, "
        "and put one of those years in each search query."
    )
