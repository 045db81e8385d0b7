"""Comma-separated option values: one splitter for every flag and config value that takes a list."""

from __future__ import annotations

from openheavy.option_lists import split_commas


def test_split_commas_strips_items_and_drops_blanks_in_order() -> None:
    assert split_commas(" search, python ,,  ,search") == ["search", "python", "search"]


def test_split_commas_joins_the_values_of_a_repeated_option() -> None:
    assert split_commas(["local:a,ddgs", " brave "]) == ["local:a", "ddgs", "brave"]


def test_split_commas_of_nothing_is_empty() -> None:
    assert split_commas(None) == []
    assert split_commas("") == []
    assert split_commas(" , ") == []
