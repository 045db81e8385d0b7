"""A "yes" to a question asked of several names stands only when what was read says it of each; a
choice between named candidates goes to the one whose pages say what the question asks."""

from __future__ import annotations

import pytest

from openheavy.grounding import fold, grounded_choice, predicate_words, ungrounded_yes
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


NOVELISTS = (
    "Which novelist, J. G. Farrell or Louis Aragon, wrote of the political and human consequences of "
    "colonial rule?"
)


def test_a_choice_goes_to_the_candidate_whose_pages_say_what_the_question_asks() -> None:
    about = {
        "J. G. Farrell": {
            2: doc(
                "J. G. Farrell",
                "A novelist whose trilogy deals with the political and human consequences of British "
                "colonial rule.",
            )
        },
        "Louis Aragon": {
            3: doc("Louis Aragon", "A French poet and novelist, a voice of the surrealist movement.")
        },
    }
    found = grounded_choice(NOVELISTS, ["J. G. Farrell", "Louis Aragon"], about)
    assert found is not None and (found.name, found.refs) == ("J. G. Farrell", (2,))
    assert found.held == ("novelist", "political", "human", "consequences", "colonial", "rule")
    assert found.others == (("Louis Aragon", 1, (3,)),)  # "novelist" alone
    assert found.describe() == (
        'the passages read about J. G. Farrell say "novelist", "political", "human", "consequences", '
        '"colonial", "rule" [2]; those about Louis Aragon say 1 of them [3]'
    )
    # a candidate nothing was read about: no choice is made for it or against it
    assert (
        grounded_choice(NOVELISTS, ["J. G. Farrell", "Louis Aragon"], {**about, "Louis Aragon": {}}) is None
    )
    # pages that hold the words equally decide nothing
    even = {
        **about,
        "Louis Aragon": {
            3: doc("Louis Aragon", "The novelist weighed the political, human consequences of colonial rule.")
        },
    }
    assert grounded_choice(NOVELISTS, ["J. G. Farrell", "Louis Aragon"], even) is None


@pytest.mark.parametrize(
    "question",
    [
        "Which band has more constant members, Lilys or Ratatat?",
        "Who is older, Ferdi Taygan or Mahesh Bhupathi?",
        "Which film is newer, The Apple Dumpling Gang or Heavyweights?",
        "Which tennis player is from a country closer to Canada, Ken Flach or Lucie Safarova?",
        "Who was born first, Connie Willis or Margaret Landon?",
    ],
)
def test_a_comparison_is_not_decided_by_the_words_on_a_page(question: str) -> None:
    names = [n.strip(" ?") for n in question.split(", ")[-1].split(" or ")]
    about = {names[0]: {1: doc(names[0], question)}, names[1]: {2: doc(names[1], "Nothing here.")}}
    assert grounded_choice(question, names, about) is None
