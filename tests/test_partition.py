"""Wide-search partitions: the planner's facet and values checked for overlap, size and coverage, numeric
spans split evenly, and unusable proposals refused (the caller then splits by query angles)."""

from __future__ import annotations

import pytest

from openheavy.partition import check_partition, group_slices, overlaps

SPAN_QUESTION = "Make a complete map of the PEPs that Jo Doe authored with a Created date from 2004 to 2007."


def test_numeric_values_that_tile_the_questions_span_are_split_among_the_agents() -> None:
    partition, problems = check_partition("year", ["2004", "2005", "2006", "2007"], SPAN_QUESTION, count=4)
    assert partition is not None and problems == []
    assert (partition.facet, partition.slices, partition.origin) == (
        "year",
        ("2004", "2005", "2006", "2007"),
        "planner",
    )
    fewer, _ = check_partition("year", ["2004-2005", "2006 to 2007"], SPAN_QUESTION, count=3)
    assert fewer is not None and fewer.slices == ("2004 to 2005", "2006", "2007")


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        (["2004", "2006", "2007"], "the values leave out 2005"),
        (["2004-2005", "2005-2007"], "values 2004-2005 and 2005-2007 overlap"),
        (["2004", "2005"], "the values cover 2004-2005, the question names 2004-2007"),
    ],
)
def test_bad_numeric_values_are_replaced_by_an_even_split_of_the_span(
    values: list[str], problem: str
) -> None:
    partition, problems = check_partition("year", values, SPAN_QUESTION, count=2)
    assert partition is not None and partition.origin == "span"
    assert partition.slices == ("2004 to 2005", "2006 to 2007")
    assert problem in problems


def test_numeric_values_with_no_span_in_the_question_are_unusable() -> None:
    # Years picked for a question that names none would miss every other year.
    partition, problems = check_partition(
        "year", ["2010", "2011", "2012"], "List every PEP in the Packaging topic that is Deferred.", count=3
    )
    assert partition is None
    assert problems == ["numeric values, but the question names no span of numbers for them to cover"]


def test_other_numbers_in_the_question_do_not_count_as_its_span() -> None:
    question = "Which 3 PEPs did Jo Doe write from 2004 to 2005?"
    partition, _ = check_partition("year", ["2004", "2005"], question, count=4)
    assert partition is not None and partition.slices == ("2004", "2005")


def test_named_values_are_kept_distinct_and_short() -> None:
    partition, problems = check_partition(
        "status",
        [
            "Final",
            "final",
            "Final accepted",
            "Draft",
            "the ones that are still being discussed on the list",
            "Withdrawn",
        ],
        "List every PEP in the Typing topic.",
        count=4,
    )
    assert partition is not None and partition.slices == ("Final", "Draft", "Withdrawn")
    assert problems == [
        "value 'final' overlaps 'Final'",
        "value 'Final accepted' overlaps 'Final'",
        "value 'the ones that are still being discussed ' is a sentence, not a slice",
    ]


def test_more_values_than_agents_are_grouped_into_contiguous_slices() -> None:
    partition, _ = check_partition("first letter", list("ABCDE"), "List every module.", count=2)
    assert partition is not None and partition.slices == ("A or B or C", "D or E")


@pytest.mark.parametrize(
    ("facet", "values", "problem"),
    [
        ("", ["Final", "Draft"], "the planner named no facet to split the list by"),
        ("status", ["Final"], "1 usable value(s); a split needs at least 2"),
        ("status", ["Final", "FINAL"], "1 usable value(s); a split needs at least 2"),
    ],
)
def test_unusable_partitions_are_refused(facet: str, values: list[str], problem: str) -> None:
    partition, problems = check_partition(facet, values, "List every PEP.", count=4)
    assert partition is None and problem in problems


def test_group_slices_and_overlaps() -> None:
    assert group_slices(["a", "b", "c"], 5) == ["a", "b", "c"]
    assert group_slices(["a", "b", "c"], 2) == ["a or b", "c"]
    with pytest.raises(ValueError, match="at least 1"):
        group_slices(["a"], 0)
    assert overlaps("asyncio", "asyncio tasks") and overlaps("The Typing", "typing")
    assert not overlaps("Final", "Finalized") and not overlaps("Final", "Draft")
