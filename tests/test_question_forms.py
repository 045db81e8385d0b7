"""What a question's wording says about its answer's form, and the short-answer schema built from it."""

from __future__ import annotations

import pytest

from openheavy.question_forms import conjunct_split, conjuncts, is_yes_no, proper_names, short_answer_schema
from test_multihop import read_then_answer, run_agent


@pytest.mark.parametrize(
    ("question", "schema"),
    [
        ("Are Ranger Rick and Tennis both sports magazines?", {"type": "string", "enum": ["Yes", "No"]}),
        ("Did the two films open in the same year?", {"type": "string", "enum": ["Yes", "No"]}),
        (
            "Which novelist, J. G. Farrell or Louis Aragon, wrote The Siege of Krishnapur?",
            {"type": "string", "enum": ["J. G. Farrell", "Louis Aragon"]},
        ),
        (
            "Who was born earlier, Emma Bull or Virginia Woolf?",
            {"type": "string", "enum": ["Emma Bull", "Virginia Woolf"]},
        ),
        # a choice asked with an auxiliary is a choice, not a yes/no question
        ("Is Qwirkle or Strange Synergy a card game?", {"type": "string", "minLength": 1, "maxLength": 80}),
        ("Was it Emma Bull, or was it Virginia Woolf?", {"type": "string", "minLength": 1, "maxLength": 80}),
        (
            "Where was the director of The Quiet Field born?",
            {"type": "string", "minLength": 1, "maxLength": 80},
        ),
        (
            "How do I run a command or a script from Python?",
            {"type": "string", "minLength": 1, "maxLength": 80},
        ),
    ],
)
def test_the_short_answer_schema_follows_the_questions_form(question: str, schema: dict[str, object]) -> None:
    assert short_answer_schema(question, 80) == schema


def test_an_optional_short_answer_may_be_empty() -> None:
    assert short_answer_schema("Is it raining?", 80, optional=True)["enum"] == ["Yes", "No", ""]
    assert short_answer_schema("Who wrote it?", 80, optional=True) == {
        "type": "string",
        "minLength": 0,
        "maxLength": 80,
    }


@pytest.mark.parametrize(
    ("question", "names"),
    [
        ("Are Kestrel Review and Harbor Monthly both magazines?", ["Kestrel Review", "Harbor Monthly"]),
        ("Were both Ada Lindqvist and Tom Weir born in Oslo?", ["Ada Lindqvist", "Tom Weir"]),
        ('Are both "Blue Finch" and "Redstart" operas?', ['"Blue Finch"', '"Redstart"']),
        ("Is both Cedar Point, and Lake Vale located in Ohio?", ["Cedar Point", "Lake Vale"]),
        # a predicate that compares the two holds of the pair, not of each name alone
        ("Are Ada Lindqvist and Tom Weir both of the same nationality?", []),
        ("Were Ada Lindqvist and Tom Weir born in different years?", []),
        # not yes/no, or not two names
        ("Ada Lindqvist and Tom Weir are both what?", []),
        ("What did both Ada Lindqvist and Tom Weir write?", []),
        ("Are the novel and the film both set in Oslo?", []),
        ("Is Kestrel Review a literary magazine?", []),
    ],
)
def test_a_yes_no_question_asked_of_two_names_is_split_into_them(question: str, names: list[str]) -> None:
    assert conjuncts(question) == names


@pytest.mark.parametrize(
    ("question", "predicate"),
    [
        ("Are Kestrel Review and Harbor Monthly both sports magazines?", "sports magazines"),
        (
            "Are both Duke Energy and Affiliated Managers Group based in Massachusetts?",
            "based in Massachusetts",
        ),
        ("Were both Ada Lindqvist and Tom Weir born in Oslo?", "born in Oslo"),
        ("Are Ada Lindqvist and Tom Weir both of the same nationality?", ""),
        ("Is Kestrel Review a literary magazine?", ""),
    ],
)
def test_a_questions_names_come_with_what_it_asks_of_each(question: str, predicate: str) -> None:
    names, said = conjunct_split(question)
    assert said == predicate and names == conjuncts(question) and bool(names) == bool(predicate)


def test_yes_no_questions_open_with_an_auxiliary() -> None:
    assert is_yes_no("Are both magazines?") and is_yes_no("did it rain")
    assert not is_yes_no("Which is older?") and not is_yes_no("")


async def test_an_agent_answering_a_yes_no_question_may_only_say_yes_or_no_in_short() -> None:
    agent, model, _sink = run_agent(
        read_then_answer(short="Yes", answer="Yes: Mara Lind directed it [1].", cite=[1])
    )
    result = await agent.run("Did Mara Lind direct The Quiet Field?")
    answer_option = next(
        o for o in model.calls[2].json_schema["anyOf"] if o["properties"]["action"]["enum"] == ["answer"]
    )
    assert answer_option["properties"]["short"] == {"type": "string", "enum": ["Yes", "No"]}
    assert result.short_answer == "Yes"


@pytest.mark.parametrize(
    ("request_", "names"),
    [
        (
            "List every PEP in the Packaging topic whose status is Deferred, with its link.",
            ["PEP", "Packaging", "Deferred"],
        ),
        ("Make a map of the PEPs that Łukasz Langa authored.", ["PEPs", "Łukasz Langa"]),
        ("Name every river that flows through Vienna.", ["Vienna"]),  # "Name" opens the sentence
        (
            "List the works of Jean de La Fontaine and of Hans Christian Andersen.",
            ["Jean de La Fontaine", "Hans Christian Andersen"],
        ),
        ("List all films of 2005. Then Group them by year.", ["Group"]),  # each sentence's opener is not
        ("list every pep jane doe wrote", []),
    ],
)
def test_the_names_a_request_spells_with_capitals(request_: str, names: list[str]) -> None:
    assert proper_names(request_) == names


@pytest.mark.parametrize(
    ("question", "names"),
    [
        ("Andrew Jaspan was the co-founder of what outlet?", ["Andrew Jaspan"]),
        ("Roy Rogers and Dale Evans starred in which film?", ["Roy Rogers", "Dale Evans"]),
        ("Which Nobel laureate wrote Dubliners?", ["Nobel", "Dubliners"]),  # "Which" opens, no name
        ("The Polar Bear and Daiquiri are both examples of what?", ["Polar Bear", "Daiquiri"]),
        ("Every PEP Jo Doe wrote.", ["PEP Jo Doe"]),
        ("Paris is in which country?", []),  # one capitalized word alone may be the sentence's opener
    ],
)
def test_a_name_that_opens_the_question_counts_when_asked_for(question: str, names: list[str]) -> None:
    assert proper_names(question, opening=True) == names


def test_a_name_that_opens_a_request_is_cut_without_opening() -> None:
    assert proper_names("Andrew Jaspan was the co-founder of what outlet?") == ["Jaspan"]
