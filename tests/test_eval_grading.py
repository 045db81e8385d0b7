"""Grader unit tests: the tricky cases each grader must get right."""

from __future__ import annotations

import sys

import pytest

from openheavy.errors import ConfigError, ModelOutputError
from openheavy.evals.datasets import EvalItem
from openheavy.evals.grading import (
    exact_match,
    extract_urls,
    failed_grade,
    grade_answer,
    grade_math,
    grade_qa,
    grade_wide,
    judge_answer,
    normalize_url,
    token_f1,
)
from openheavy.models.scripted import ScriptedModel, Unconstrained

# ---------------------------------------------------------------- QA


def test_exact_match_ignores_articles_and_punctuation() -> None:
    assert exact_match("the Conversation.", ["The Conversation"]) == 1.0
    assert exact_match("Conversation Media", ["The Conversation"]) == 0.0


def test_aliases_take_the_best_match() -> None:
    answers = ["Los Angeles Dodgers", "Robins", "LAD", "Dodgers"]
    assert grade_qa("the Dodgers", answers).metrics == {"em": 1.0, "f1": 1.0}
    # F1 is the maximum over aliases: "Brooklyn Dodgers" shares one token with "Dodgers" (F1 2/3) and
    # with "Los Angeles Dodgers" (F1 0.4).
    assert token_f1("Brooklyn Dodgers", answers) == pytest.approx(2 / 3)


def test_token_f1_partial_credit() -> None:
    # prediction tokens: new york city; gold: new york -> P 2/3, R 1, F1 0.8
    assert token_f1("New York City", ["New York"]) == pytest.approx(0.8)
    assert token_f1("", ["New York"]) == 0.0


def test_yes_no_answers_get_no_partial_credit() -> None:
    assert token_f1("yes it is", ["yes"]) == 0.0
    assert token_f1("Yes.", ["yes"]) == 1.0


# ---------------------------------------------------------------- numbers and math


@pytest.mark.parametrize(
    ("prediction", "gold"),
    [
        ("The answer is 1,000.", "1000"),
        ("It costs $1,000", "1,000"),
        ("1000.00", "1000"),
        ("So 18 minus 3 is 15.\n#### 15", "15"),
        ("Step 1 gives 4, step 2 gives \\boxed{12}. Check: 3", "12"),  # boxed beats the last number
        ("That is 25%", "25"),
        ("0.25", "25\\%"),  # one side in percent: compare the fraction
        ("0.5", "\\frac{1}{2}"),
        ("The answer is $\\frac{1}{2}$", "0.5"),
        ("\\boxed{\\dfrac{14}{3}}", "\\frac{14}{3}"),
        ("The winner is \\boxed{\\text{Evelyn}}", "\\text{Evelyn}"),
        ("\\boxed{(3, \\frac{\\pi}{2})}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("so $x = 3\\sqrt{13}$", "3\\sqrt{13}"),
    ],
)
def test_math_equivalent_answers_are_correct(prediction: str, gold: str) -> None:
    assert grade_math(prediction, gold).metrics == {"correct": 1.0}


@pytest.mark.parametrize(
    ("prediction", "gold"),
    [
        ("The answer is 1,001.", "1000"),
        ("I first thought 160 but it is 150", "160"),  # the final number counts, not any number
        ("\\boxed{\\frac{1}{3}}", "\\frac{1}{2}"),
        ("\\boxed{0.49}", "0.5"),
        ("", "42"),
        # the last digit of a formula is not the final number
        ("\\boxed{\\frac{\\sqrt{3}}{3}}", "3"),
        ("The answer is $\\frac{1}{4}$", "4"),
        ("so it is x^2", "2"),
        ("a share of 3/4", "4"),
        ("\\boxed{8n^2 + 4n + 1}", "1"),
    ],
)
def test_math_wrong_answers_are_wrong(prediction: str, gold: str) -> None:
    assert grade_math(prediction, gold).metrics == {"correct": 0.0}


def test_plain_numbers_grade_without_math_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "math_verify", None)  # makes `import math_verify` fail
    assert grade_math("It costs $1,000.", "1000").metrics == {"correct": 1.0}
    assert grade_math("It costs $999.", "1000").metrics == {"correct": 0.0}
    with pytest.raises(ConfigError, match=r"pip install 'openheavy\[eval\]'"):
        grade_math("\\boxed{\\frac{2}{4}}", "\\frac{1}{2}")


# ---------------------------------------------------------------- URLs and wide search


@pytest.mark.parametrize(
    "variant",
    [
        "https://peps.python.org/pep-0008/",
        "http://peps.python.org/pep-0008",
        "https://PEPS.Python.org/pep-0008/#introduction",
        "https://www.python.org/dev/peps/pep-0008/",
        "https://peps.python.org/pep-8/",
        "https://peps.python.org:443/pep-0008/",
    ],
)
def test_pep_url_variants_normalize_to_one_key(variant: str) -> None:
    assert normalize_url(variant) == "peps.python.org/pep-0008"


def test_normalize_url_general_rules() -> None:
    assert normalize_url("HTTPS://WWW.Example.org/Path/?q=1#frag") == "example.org/Path?q=1"
    assert normalize_url("www.example.org/a/") == "example.org/a"
    assert normalize_url("https://example.org:8080/a") == "example.org:8080/a"


@pytest.mark.parametrize(
    "malformed",
    [
        "https://",
        "https://nodot/page",
        "https://exa_mple.com/",
        "https://example.org:99999/",
        "ftp://example.org/",
    ],
)
def test_malformed_urls_are_rejected(malformed: str) -> None:
    assert normalize_url(malformed) is None


def test_extract_urls_from_markdown_dedupes_and_skips_malformed() -> None:
    text = (
        "- [PEP 8](https://peps.python.org/pep-0008/) style\n"
        "- see <https://peps.python.org/pep-0008> again, and (https://peps.python.org/pep-0001/).\n"
        "- **https://en.wikipedia.org/wiki/Python_(programming_language)**\n"
        "- broken: https:// and https://localhost_/x and http://[::1\n"
    )
    assert extract_urls(text) == [
        "peps.python.org/pep-0008",
        "peps.python.org/pep-0001",
        "en.wikipedia.org/wiki/Python_(programming_language)",
    ]


def test_pep_numbers_count_when_asked() -> None:
    assert extract_urls("PEP 8 and PEP-20, and pep 3107") == []
    assert extract_urls("PEP 8 and PEP-20, and pep 3107", pep_numbers=True) == [
        "peps.python.org/pep-0008",
        "peps.python.org/pep-0020",
        "peps.python.org/pep-3107",
    ]


def test_grade_wide_precision_recall_f1() -> None:
    gold = ["https://peps.python.org/pep-0001/", "https://peps.python.org/pep-0008/"]
    answer = (
        "1. https://peps.python.org/pep-0001/\n"
        "2. https://peps.python.org/pep-0001 (same again)\n"
        "3. PEP 20 – The Zen of Python\n"
        "4. https://not a url\n"
    )
    grade = grade_wide(answer, gold)
    # listed: pep-0001 (twice, counted once) and pep-0020 -> P 1/2, R 1/2, F1 1/2
    assert grade.metrics == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "exact_set": 0.0}
    assert grade.details["missing"] == ["peps.python.org/pep-0008"]
    assert grade.details["extra"] == ["peps.python.org/pep-0020"]


def test_grade_wide_complete_list_and_empty_answer() -> None:
    gold = ["https://peps.python.org/pep-0001/", "https://peps.python.org/pep-0008/"]
    perfect = grade_wide("PEP 1 (https://peps.python.org/pep-0001/) and PEP 8.", gold)
    assert perfect.metrics == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "exact_set": 1.0}
    assert grade_wide("I found nothing.", gold).metrics["f1"] == 0.0


def test_grade_wide_plain_ids_match_whole_words() -> None:
    gold = ["doc-a", "https://example.org/ashby"]
    grade = grade_wide("Sources: doc-a, doc-ab and http://www.example.org/ashby/", gold)
    assert grade.metrics["recall"] == 1.0
    assert grade.metrics["precision"] == 1.0


def test_grade_answer_dispatches_by_kind() -> None:
    qa = EvalItem("q", "?", ("Ashby",), "qa")
    math = EvalItem("m", "?", ("1,600",), "math")
    assert grade_answer(qa, "ashby").metrics["em"] == 1.0
    assert grade_answer(math, "1600 pens").metrics["correct"] == 1.0
    assert failed_grade("wide", "boom").metrics == {"precision": 0, "recall": 0, "f1": 0, "exact_set": 0}


def test_citation_markers_do_not_count_against_exact_answers() -> None:
    qa = EvalItem("q", "?", ("Ashby",), "qa")
    math = EvalItem("m", "?", ("160",), "math")
    assert grade_answer(qa, "Ashby [1].").metrics == {"em": 1.0, "f1": 1.0}
    assert grade_answer(qa, "The Ashby [1][3]").metrics["em"] == 1.0
    assert grade_answer(math, "It takes 160 minutes [2].").metrics["correct"] == 1.0  # not 2
    assert grade_answer(math, "It takes 160 minutes [2, 3]").metrics["correct"] == 1.0
    # brackets that are not citation markers stay
    assert grade_answer(qa, "Ashby [citation needed]").metrics["em"] == 0.0


# ---------------------------------------------------------------- LLM judge


async def test_judge_parses_the_verdict_and_sends_the_schema() -> None:
    # a backend without constrained output wraps the verdict in a code fence
    model = ScriptedModel([Unconstrained('```json\n{"correct": true, "reason": "same team"}\n```')])
    verdict = await judge_answer(model, "Who won?", ["Los Angeles Dodgers", "Dodgers"], "The Dodgers")
    assert verdict.correct is True
    assert verdict.reason == "same team"
    messages, schema = model.calls[0].messages, model.calls[0].json_schema
    assert schema is not None and schema["required"] == ["correct", "reason"]
    assert "Los Angeles Dodgers | Dodgers" in messages[0].content
    assert "The Dodgers" in messages[0].content


async def test_judge_rejects_a_non_verdict() -> None:
    with pytest.raises(ModelOutputError, match="not a verdict"):
        await judge_answer(ScriptedModel([Unconstrained("I think so")]), "q", ["a"], "a")
