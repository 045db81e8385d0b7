"""Plan checks: distinct first queries per agent, seed queries from the question's words, the answer's
shape, and the candidates a question names itself."""

from __future__ import annotations

import pytest

from openheavy.planning import (
    copies_question,
    decide_shape,
    invents_names,
    near_duplicate,
    query_words,
    seed_queries,
    spread_queries,
)
from openheavy.question_forms import names_candidates

QUESTION = (
    "Make a complete map of the PEPs that Jo Doe authored or co-authored from 2004 to 2007, with links."
)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("subprocess timeout", "Subprocess timeouts", True),  # case and plural
        ("Doe PEPs", "PEPs by Doe", True),  # stopwords do not count
        ("subprocess timeout", "subprocess run timeout", True),  # one inside the other
        ("Jo Doe PEP 2004", "Jo Doe PEP 2005", False),  # another slice
        ("shlex split", "subprocess timeout", False),
        ("", "subprocess", False),
    ],
)
def test_near_duplicate_queries(a: str, b: str, same: bool) -> None:
    assert near_duplicate(query_words(a), query_words(b)) is same


def test_a_query_that_copies_a_long_question_is_a_copy() -> None:
    assert copies_question(QUESTION, QUESTION)
    assert copies_question("complete map PEPs Jo Doe authored co-authored 2004 2007 links", QUESTION)
    assert not copies_question("Jo Doe PEP", QUESTION)
    assert not copies_question("shlex", "What is shlex?")  # a short question's words are the keywords


def test_seed_queries_hold_a_name_whole_with_numbers_first_and_differ() -> None:
    seeds = seed_queries(QUESTION, 4)
    assert seeds[:2] == ["PEPs 2004 2007", "Jo Doe 2004 2007"]  # each name takes its turn
    assert len(seeds) == 4
    assert all(not near_duplicate(query_words(a), query_words(b)) for a in seeds for b in seeds if a != b)
    assert seed_queries("What is shlex?", 4) == ["shlex"]
    assert seed_queries("?", 3) == []


@pytest.mark.parametrize(
    ("question", "seeds"),
    [
        # a name that opens the question is whole, and every query holds it (it was "jaspan andrew",
        # "andrew co", "co founder", "founder profit": pages about no part of the question)
        (
            "Andrew Jaspan was the co-founder of what not-for-profit media outlet?",
            [
                "Andrew Jaspan co founder",
                "Andrew Jaspan profit media",
                "Andrew Jaspan outlet",
                "co founder profit media",
            ],
        ),
        # two names: each gets its own agents, with single words when pairs would run out
        (
            "What occupation was shared by David Yates and Pietro Germi?",
            [
                "David Yates occupation",
                "Pietro Germi occupation",
                "David Yates shared",
                "Pietro Germi shared",
            ],
        ),
        # no names: windows of the question's words, as before
        ("How do I run a subprocess with a timeout?", ["run subprocess", "subprocess timeout"]),
    ],
)
def test_seed_queries_keep_the_questions_names_in_every_query(question: str, seeds: list[str]) -> None:
    assert seed_queries(question, 4) == seeds


def test_a_planner_query_that_names_what_the_question_does_not_is_dropped() -> None:
    question = "What year did Roy Rogers and his third wife star in a film directed by Frank McDonald?"
    assert invents_names("What year did Roy Rogers star in 'A Beautiful Mind'?", question)
    assert invents_names("Frank McDonald films 1945", question)  # a year the planner guessed
    assert not invents_names("Roy Rogers third wife", question)
    assert not invents_names("Frank McDonald director filmography", question)  # new words, no new names
    spread, problems = spread_queries([["Roy Rogers 'The Godfather'"], ["Frank McDonald films"]], question)
    assert spread[1] == ("Frank McDonald films",)
    assert spread[0] and "Godfather" not in spread[0][0] and "Roy Rogers" in spread[0][0]
    assert problems[0] == "agent-1: query \"Roy Rogers 'The Godfather'\" names what the question does not"
    assert problems[1].startswith("agent-1: starts from 'Roy Rogers ")


def test_spread_queries_drops_repeats_and_copies_and_gives_seeds_instead() -> None:
    spread, problems = spread_queries(
        [["Jo Doe PEPs", "Doe PEP"], ["PEPs by Jo Doe"], [QUESTION], ["2004 peps"]], QUESTION
    )
    assert spread[0] == ("Jo Doe PEPs",)  # its own second query repeated its first
    assert spread[3] == ("2004 peps",)
    assert spread[1] and spread[2] and spread[1] != spread[2]
    assert all(
        not near_duplicate(query_words(a[0]), query_words(b[0])) for a in spread for b in spread if a is not b
    )
    assert problems[0] == "agent-2: query 'PEPs by Jo Doe' repeats agent-1's search"
    assert problems[1].startswith("agent-3: query 'Make a complete map") and problems[1].endswith(
        "copies the question"
    )
    # seeds come after every agent's own queries, so a seed never takes agent-4's "2004 peps"
    assert problems[2].startswith("agent-2: starts from ")
    assert problems[3].startswith("agent-3: starts from ")


def test_spread_queries_respects_queries_taken_by_earlier_agents() -> None:
    spread, problems = spread_queries([["Jo Doe PEP"]], QUESTION, taken_by=["PEPs Jo Doe", "2004"])
    assert spread[0] and spread[0][0] != "Jo Doe PEP"
    assert problems[0] == "agent-3: query 'Jo Doe PEP' repeats agent-1's search"


@pytest.mark.parametrize(
    ("question", "proposed", "shape"),
    [
        ("Are Vanessa and Aida both operas?", "list", "short"),
        ("Did Jo Doe write PEP 8?", "list", "short"),
        ("List every PEP Jo Doe wrote.", "list", "list"),
        ("Is shlex in the standard library?", "short", "short"),
        ("Can I give subprocess.run a timeout?", "long", "short"),  # "Yes", then the explanation
        ("What is the difference between deep and shallow copy?", "long", "long"),
        ("How do I run a subprocess with a timeout and capture its output?", "list", "long"),
        ("Why does copy.copy share nested lists?", "list", "long"),
        ("What is the difference between shallow and deep copy, and when does it matter?", "list", "long"),
        # an explanation voted as a short answer loses its second half (the default model's planner)
        ("What is the difference between shallow and deep copy, and when does it matter?", "short", "long"),
        ("Why does copy.copy share nested lists?", "short", "long"),
        ("How old is the Quill Gazette?", "short", "short"),  # a quantity, not an explanation
        ("How many PEPs did Jo Doe write?", "list", "list"),  # a count: not an explanation
        ("Which PEPs did Jo Doe write?", "list", "list"),
        # one name, date, place or number: short, whatever the planner said, unless it said list
        ("Who founded the Quill Gazette?", "long", "short"),
        ("What film did Mara Lind direct in 2004?", "list", "short"),  # a list of years for one film
        ("How many PEPs did Jo Doe write?", "long", "short"),
        ("In which town did Nora Vell grow up?", "long", "short"),
        ("How many acts does Vanessa have?", "long", "short"),
        ("What year did the Quill Gazette close?", "long", "short"),
        ("The Quill Gazette was sold to a publisher in what city?", "long", "short"),
        ("Which PEPs did Jo Doe write?", "long", "long"),  # several things
        ("Who are all the authors of PEP 8?", "long", "long"),
        ("What does shlex.quote do?", "long", "long"),  # "what" may ask for an explanation
        ("When should I use copy.deepcopy and why?", "long", "long"),
    ],
)
def test_decide_shape(question: str, proposed: str, shape: str) -> None:
    assert decide_shape(question, proposed)[0] == shape  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("question", "candidates"),
    [
        (
            "Which novelist, J. G. Farrell or Louis Aragon, wrote The Siege of Krishnapur?",
            ["J. G. Farrell", "Louis Aragon"],
        ),
        (
            "Which magazine was started first, Arthur's Magazine or First for Women?",
            ["Arthur's Magazine", "First for Women"],
        ),
        ("Which is older: Paris, Rome, or Athens?", ["Paris", "Rome", "Athens"]),
        ('Which film came first, "Up" or "Cars"?', ['"Up"', '"Cars"']),
        ("Which PEPs are Deferred or Withdrawn?", []),  # criteria, not candidates
        (QUESTION, []),  # "authored or co-authored"
        ("Which is faster, a list or a tuple?", []),  # not names
    ],
)
def test_names_candidates(question: str, candidates: list[str]) -> None:
    assert names_candidates(question) == candidates
