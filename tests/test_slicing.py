"""Period slices for list questions: found spans, even contiguous groups, no overlap, no gap."""

from __future__ import annotations

import re

import pytest

from openheavy.slicing import LIST_CUE, find_period, period_slices


@pytest.mark.parametrize(
    ("question", "period"),
    [
        ("PEPs Barry Warsaw wrote with a Created date from 2000 to 2003, with links", (2000, 2003)),
        ("List all Informational PEPs created between 2010 and 2014.", (2010, 2014)),
        ("every PEP from 2019-2023", (2019, 2023)),
        ("every PEP from 2019 – 2023", (2019, 2023)),
        ("all releases 1999 through 2001", (1999, 2001)),
        ("every PEP since 2019", None),  # an open end is not a span
        ("every PEP in 2019", None),  # one year: nothing to slice
        ("all PEPs from 2023 to 2019", None),  # reversed
        ("every item from 1900 to 2000", None),  # longer than a few agents can search year by year
        ("the numbers 3000 to 4000", None),  # not years
        ("List every PEP 2019 and after 2020 to 2022", (2020, 2022)),  # the first valid span
    ],
)
def test_find_period(question: str, period: tuple[int, int] | None) -> None:
    assert find_period(question) == period


def test_list_cue() -> None:
    assert LIST_CUE.search("Make a complete map of the PEPs")
    assert LIST_CUE.search("List every PEP")
    assert not LIST_CUE.search("Who wrote PEP 8 in 2001 to 2002?")


def years_of(task: str) -> list[int]:
    return sorted({int(y) for y in re.findall(r"\b(?:19|20)\d\d\b", task)})


@pytest.mark.parametrize(
    ("first", "last", "count", "groups"),
    [
        (2000, 2003, 4, [[2000], [2001], [2002], [2003]]),
        (2010, 2014, 4, [[2010, 2011], [2012], [2013], [2014]]),
        (2010, 2014, 2, [[2010, 2011, 2012], [2013, 2014]]),
        (2019, 2020, 4, [[2019], [2020]]),
        (2000, 2010, 3, [[2000, 2001, 2002, 2003], [2004, 2005, 2006, 2007], [2008, 2009, 2010]]),
        (2000, 2003, 1, [[2000, 2001, 2002, 2003]]),
    ],
)
def test_slices_cover_the_span_without_overlap(
    first: int, last: int, count: int, groups: list[list[int]]
) -> None:
    tasks = period_slices(first, last, count)
    assert [years_of(task) for task in tasks] == groups


def test_slice_text_tells_the_agent_to_search_by_year() -> None:
    double, single = period_slices(2012, 2014, 2)
    assert single == (
        "Cover the year 2014 only: find every match dated 2014, and put 2014 in your search queries."
    )
    assert double.startswith("Cover 2012–2013 only: find every match dated 2012 or 2013")
    with pytest.raises(ValueError, match="at least 1"):
        period_slices(2000, 2001, 0)
