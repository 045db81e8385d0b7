"""Answer normalization and number parsing, shared by the verifiers and the eval graders."""

from __future__ import annotations

from decimal import Decimal

import pytest

from openheavy.normalize import (
    Number,
    last_boxed,
    last_number,
    normalize_answer,
    numbers_equal,
    plain_number,
    squad_normalize,
    unboxed,
)


def value(number: Number | None) -> Decimal | None:
    return None if number is None else number.value


# ---------------------------------------------------------------- the engine's comparison form


@pytest.mark.parametrize(
    ("variants"),
    [
        ["1,000", "1000", "1000.0", " 1000 ", "1e3"],
        ["The Eiffel Tower.", "eiffel tower", "  Eiffel   TOWER!"],
        ["A", "(A)", "a.", "\\text{A}"],  # a multiple-choice letter survives article stripping
        ["-0.50", "-0.5"],
        ["0", "0.00", "-0"],
    ],
)
def test_normalize_answer_equates_variants(variants: list[str]) -> None:
    assert len({normalize_answer(v) for v in variants}) == 1


def test_normalize_answer_keeps_differences() -> None:
    assert normalize_answer("1,2") != normalize_answer("12")
    assert normalize_answer("1000") != normalize_answer("100")
    assert normalize_answer("+") == "+"  # symbols only: compared as written, not all equal to ""
    assert normalize_answer("1e99999999") == "1e99999999"  # no million-digit expansion


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1,000", Decimal(1000)), ("$12.50", Decimal("12.50")), ("2^10 = 1024", Decimal(1024)), ("x=-3", -3)],
)
def test_last_number_takes_the_last_number(text: str, expected: Decimal) -> None:
    assert value(last_number(text)) == expected


def test_last_number_without_a_number() -> None:
    assert last_number("no idea") is None


# ---------------------------------------------------------------- SQuAD


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Conversation", "conversation"),
        ("  an   Apple, a day! ", "apple day"),
        ("U.S.A.", "usa"),
        ("Theatre of the Absurd", "theatre of absurd"),  # "the" inside a word ("Theatre") is kept
        ("Hello—world", "hello—world"),  # SQuAD only strips ASCII punctuation
    ],
)
def test_squad_normalize_drops_articles_punctuation_and_case(text: str, normalized: str) -> None:
    assert squad_normalize(text) == normalized


# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,000", 1000.0),
        ("$1,000", 1000.0),
        ("1000.00", 1000.0),
        ("1,450,000", 1_450_000.0),
        ("50%", 50.0),
        ("-3.5", -3.5),
        ("-$5", -5.0),
        (".5", 0.5),
        ("12.", 12.0),
        ("1,2", None),  # not a thousands group: a list
        ("3x", None),
        ("\\frac{1}{2}", None),
    ],
)
def test_plain_number_forms(text: str, expected: float | None) -> None:
    assert value(plain_number(text)) == expected


def test_last_number_reads_the_final_number() -> None:
    assert value(last_number("She pays 3 times $1,200, so $3,600 in total.")) == 3600.0
    assert value(last_number("the list 1,2,3")) == 3.0
    assert value(last_number("5-3 leaves 2")) == 2.0
    assert last_number("no digits here") is None
    assert last_number("it is \\frac{1}{4}") is None


def test_last_boxed_balances_braces() -> None:
    assert last_boxed("\\boxed{1} then \\boxed{\\frac{a}{b}} end") == "\\frac{a}{b}"
    assert last_boxed("\\boxed{unclosed") is None
    assert last_boxed("nothing") is None


# ---------------------------------------------------------------- what the one grammar fixed
# The verifiers and the graders each had a number parser; these cases read differently in one of them.


def test_a_number_inside_a_formula_is_not_the_answer() -> None:
    # The verifiers read "3/4" as 4, so "3/4" and "5/4" voted together.
    for formula in ("3/4", "3 / 4", "x^2", "2^{10}", "\\frac{1}{4}"):
        assert last_number(formula) is None, formula


def test_a_sign_must_touch_its_number() -> None:
    # The graders read "3 - 5" as -5.
    assert value(last_number("3 - 5")) == 5
    assert value(last_number("x=-3")) == -3
    assert value(plain_number("$-5")) == -5


def test_a_currency_sign_keeps_the_minus() -> None:
    # The vote normalization dropped the minus of "-$5" and counted it with "$5".
    assert normalize_answer("-$5") == normalize_answer("-5") != normalize_answer("$5")


def test_an_exponent_is_part_of_the_number() -> None:
    # The graders read "1e3" as 1.
    assert value(plain_number("1e3")) == 1000
    assert value(last_number("about 2.5e-3")) == Decimal("0.0025")


def test_percent_is_a_flag_and_equals_its_fraction() -> None:
    half = plain_number("50%")
    assert half == Number(Decimal(50), percent=True)
    assert numbers_equal(half, Number(Decimal("0.5"), percent=False))
    assert not numbers_equal(half, Number(Decimal(50) / 100 + 1, percent=False))
    assert numbers_equal(Number(Decimal("1000.0000001"), False), Number(Decimal(1000), False))


def test_boxes_and_text_wrappers() -> None:
    assert last_boxed("\\boxed {7}") == "7"  # the graders wanted no space after \boxed
    assert last_boxed("\\boxed{12} then \\boxed{3") == "12"  # an unclosed last box is skipped
    assert unboxed("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert unboxed("\\boxed{1} and \\boxed{2}") == "\\boxed{1} and \\boxed{2}"
    assert normalize_answer("\\mbox{B}") == normalize_answer("\\textbf{B}") == "b"
