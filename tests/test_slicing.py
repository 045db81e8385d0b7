"""Period slices for list questions: found spans, even contiguous groups, no overlap, no gap."""

from __future__ import annotations

import pytest

from openheavy.slicing import LIST_CUE, find_period, period_slices


@pytest.mark.parametrize(
    ("question", "span"),
    [
        ("PEPs Barry Warsaw wrote with a Created date from 2000 to 2003, with links", (2000, 2003)),
        ("List all Informational PEPs created between 2010 and 2014.", (2010, 2014)),
        ("every PEP 2019-2023", (2019, 2023)),
        ("every PEP from 2019 – 2023", (2019, 2023)),
        ("all releases 1999 through 2001", (1999, 2001)),
        ("every PEP since 2019", None),  # an open end is not a span
        ("every PEP in 2019", None),  # one year: nothing to slice
        ("all PEPs from 2023 to 2019", None),  # reversed
        ("every item from 1900 to 2000", None),  # longer than a few agents can search year by year
        ("the numbers 3000 to 4000", None),  # not years
        ("ids 120190 to 120230", None),  # years only as whole words
        ("List every PEP 2019 and after 2020 to 2022", (2020, 2022)),  # the first valid span
    ],
)
def test_find_period(question: str, span: tuple[int, int] | None) -> None:
    period = find_period(question)
    found = (period.first, period.last) if period is not None else None
    assert found == span


def test_list_cue() -> None:
    assert LIST_CUE.search("Make a complete map of the PEPs")
    assert LIST_CUE.search("List every PEP")
    assert not LIST_CUE.search("Who wrote PEP 8 in 2001 to 2002?")


def slices(question: str, count: int) -> list[str]:
    period = find_period(question)
    assert period is not None
    return period_slices(question, period, count)


def test_each_slice_is_the_question_narrowed_to_its_years() -> None:
    question = "Map the PEPs Jo wrote with a Created date from 2000 to 2003, with links, by topic."
    assert slices(question, 4) == [
        f"Map the PEPs Jo wrote with a Created date in {year}, with links, by topic."
        for year in (2000, 2001, 2002, 2003)
    ]
    assert slices(question, 2) == [
        "Map the PEPs Jo wrote with a Created date from 2000 to 2001, with links, by topic.",
        "Map the PEPs Jo wrote with a Created date from 2002 to 2003, with links, by topic.",
    ]


@pytest.mark.parametrize(
    ("question", "count", "narrowed"),
    [
        (
            "List all PEPs created between 2010 and 2014.",
            4,
            ["from 2010 to 2011", "in 2012", "in 2013", "in 2014"],
        ),
        ("List all PEPs created between 2010 and 2014.", 2, ["from 2010 to 2012", "from 2013 to 2014"]),
        ("every PEP 2019-2020", 4, ["in 2019", "in 2020"]),
        ("all of them from 2000 to 2010", 3, ["from 2000 to 2003", "from 2004 to 2007", "from 2008 to 2010"]),
        ("all of them from 2000 to 2003", 1, ["from 2000 to 2003"]),
    ],
)
def test_slices_cover_the_span_evenly_without_overlap(question: str, count: int, narrowed: list[str]) -> None:
    period = find_period(question)
    assert period is not None
    head, tail = question[: period.start], question[period.end :]
    assert period_slices(question, period, count) == [f"{head}{words}{tail}" for words in narrowed]


def test_count_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        slices("all PEPs from 2000 to 2001", 0)
