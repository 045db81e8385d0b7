"""A "yes" to a question asked of several names stands only when what was read says it of each."""

from __future__ import annotations

import pytest

from openheavy.grounding import fold, predicate_words, ungrounded_yes
from openheavy.types import Document


@pytest.mark.parametrize(
    ("word", "folded"),
    [
        ("cities", "city"),
        ("churches", "church"),
        ("magazines", "magazine"),
        ("class", "class"),
        ("genus", "genus"),
    ],
)
def test_plurals_fold_to_their_singular(word: str, folded: str) -> None:
    assert fold(word) == folded


@pytest.mark.parametrize(
    ("predicate", "words"),
    [
        ("sports magazines", ["sports", "magazines"]),
        ("based in Massachusetts", ["Massachusetts"]),  # the place is what a page states
        ("types of drinks", ["drinks"]),
        ("considered coastal cities", ["coastal", "cities"]),
        ("connected with Disney", ["Disney"]),
        ("born in 1990", ["born"]),
        ("types of them", []),
    ],
)
def test_a_predicates_words_are_those_a_page_would_state(predicate: str, words: list[str]) -> None:
    assert predicate_words(predicate) == words


def doc(title: str, text: str) -> Document:
    return Document(id=f"{title.lower()}#1", doc_id=title.lower(), title=title, url="", text=text)


def test_a_yes_is_grounded_only_when_each_names_pages_hold_the_words() -> None:
    about = {
        "Monkey Kingdom": {1: doc("Monkey Kingdom", "A 2015 nature documentary produced by Disneynature.")},
        "Ostara Films": {2: doc("Ostara Films", "Ostara Films is a studio owned by Walt Disney.")},
    }
    # a longer form of the word counts ("Disneynature"), and each name is checked on its own pages
    assert ungrounded_yes("connected with Disney", ["Monkey Kingdom", "Ostara Films"], about) is None
    # one name's pages lack a word: that name, the missing word and its pages are reported
    about["Ostara Films"] = {2: doc("Ostara Films", "Ostara Films is a studio in Lyon.")}
    found = ungrounded_yes("connected with Disney", ["Monkey Kingdom", "Ostara Films"], about)
    assert found is not None and (found.name, found.missing, found.refs) == (
        "Ostara Films",
        ("Disney",),
        (2,),
    )
    assert found.describe() == 'no passage read about Ostara Films says "Disney"'
    # nothing read about a name: its yes has nothing under it
    found = ungrounded_yes("connected with Disney", ["Monkey Kingdom", "Lumen Pictures"], about)
    assert found is not None and (found.name, found.refs) == ("Lumen Pictures", ())
    assert found.describe() == "nothing read is about Lumen Pictures"
    # a predicate with no word to look for is not checked
    assert ungrounded_yes("types of them", ["Lumen Pictures"], {}) is None


def test_short_words_must_match_whole() -> None:
    about = {"Ada": {1: doc("Ada", "Ada is an artist and painter.")}}
    assert ungrounded_yes("art", ["Ada"], about) is not None  # "art" is not "artist"
    assert ungrounded_yes("paint", ["Ada"], about) is None  # "painter" is a longer form of "paint"
