"""How answers are compared: the one home of answer normalization and number parsing.

Verifiers compare samples with each other (votes, checkers, the judge's draws); eval graders compare an
answer with gold answers. Both read numbers with the one grammar here. There are two normalizations
because the metrics differ: `normalize_answer` is the engine's comparison form, `squad_normalize` is
SQuAD v1.1's, which exact match and token F1 must use to be comparable with published figures.
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass
from decimal import Decimal

# ---------------------------------------------------------------- numbers

# A number as people write it: "1,000", "$1,000", "-3.5", "1000.00", "50%", ".5", "1e3", "-$5". A
# thousands group needs exactly three digits, so the list "1,2,3" stays three numbers; a sign must touch
# the number, so "3 - 5" holds no -5; the look-behind keeps "5-3" from reading as -3 and "v2" as 2.
_NUMBER_PATTERN = (
    r"(?<![\w.])(?P<sign>[-+−])?(?:\\?\$\s?(?P<sign2>[-−])?)?"
    r"(?P<mantissa>\d{1,3}(?:,\d{3})+(?!\d|,\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?P<exponent>[eE][-+]?\d+)?(?!\d)(?P<percent>\s?\\?%)?"
)
_NUMBER = re.compile(_NUMBER_PATTERN)
# A number inside a formula is not a final answer: the 3 of "\frac{\sqrt{3}}{3}", the 2 of "x^2", the 4
# of "3/4".
_FORMULA_EDGES = frozenset("{}^_/")


@dataclass(frozen=True)
class Number:
    """A number read from text: its exact value, and whether it was written as a percentage."""

    value: Decimal
    percent: bool


def _written(match: re.Match[str]) -> str:
    """The number of `match` as Decimal reads it: sign, digits without thousands separators, exponent."""
    negative = (match["sign"] in ("-", "−")) != bool(match["sign2"])
    return ("-" if negative else "") + match["mantissa"].replace(",", "") + (match["exponent"] or "")


def _number(match: re.Match[str]) -> Number:
    return Number(Decimal(_written(match)), bool(match["percent"]))


def plain_number(text: str) -> Number | None:
    """The number `text` is, if it is exactly one ("1,000", "$1,000", "1000.00", "50%", "12."), else
    None. A percent sign is kept as a flag, not applied: "50%" has the value 50."""
    match = _NUMBER.fullmatch(text.strip().removesuffix("."))
    return None if match is None else _number(match)


def last_number(text: str) -> Number | None:
    """The last number in `text` (final answers end in their result: "2^10 = 1024", "5 km"); None when
    there is none, or when the last one is part of a formula ("\\frac{1}{4}", "x^2", "3/4")."""
    matches = list(_NUMBER.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    before = text[: last.start()].rstrip()[-1:]  # "3 / 4" is as much a formula as "3/4"
    after = text[last.end() : last.end() + 1]
    if before in _FORMULA_EDGES or after in _FORMULA_EDGES:
        return None
    return _number(last)


def numbers_in(text: str) -> list[Number]:
    """Every number written in `text`, in order ("x = 7", "total: 1,250.5" -> 7, 1250.5)."""
    return [_number(match) for match in _NUMBER.finditer(text)]


def last_number_plain(text: str) -> str | None:
    """The last number written in `text`, written plainly ("104.0" gives "104", "1,250.50" gives "1250.5",
    "15%" stays "15%"); None when there is none."""
    numbers = numbers_in(text)
    if not numbers:
        return None
    last = numbers[-1]
    return format(last.value.normalize(), "f") + ("%" if last.percent else "")


def numbers_equal(a: Number, b: Number) -> bool:
    """Equal up to rounding; "50%" also equals 0.5 (when exactly one side is written as a percentage)."""
    if math.isclose(a.value, b.value, rel_tol=1e-6, abs_tol=1e-9):
        return True
    if a.percent != b.percent:
        scaled_a = a.value / 100 if a.percent else a.value
        scaled_b = b.value / 100 if b.percent else b.value
        return math.isclose(scaled_a, scaled_b, rel_tol=1e-6, abs_tol=1e-9)
    return False


def canonical_number(written: str) -> str:
    """One spelling per value: "1,000", "1000.0" and "1E+3" are all "1000"; "-0" is "0"."""
    plain = written.replace(",", "")
    try:
        value = Decimal(plain).normalize()
    except ArithmeticError:  # beyond Decimal's exponent range: compare as written
        return plain
    if value == 0:
        return "0"
    # Fixed-point for ordinary magnitudes; "1e999999" must not become a million digits.
    if abs(value.adjusted()) > 30:
        return str(value)
    return format(value, "f")


# ---------------------------------------------------------------- LaTeX wrappers

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_TEXT_WRAPPERS = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")


def _balanced_braces(text: str, open_at: int) -> str | None:
    """The text between the brace at `open_at` and its matching close, or None if unbalanced."""
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    return None


def last_boxed(text: str) -> str | None:
    r"""The content of the last `\boxed{...}` (or `\fbox{...}`) in `text` with balanced braces, or None."""
    found = None
    for match in _BOXED.finditer(text):
        inner = _balanced_braces(text, match.end() - 1)
        if inner is not None:
            found = inner
    return found


def unboxed(text: str) -> str:
    r"""`text` without a `\boxed{...}` that wraps all of it; any other text as it is."""
    boxed = _BOXED.match(text)
    if boxed:
        inner = _balanced_braces(text, boxed.end() - 1)
        if inner is not None and len(inner) + boxed.end() + 1 == len(text):
            return inner
    return text


def strip_text_wrappers(text: str) -> str:
    r"""LaTeX text wrappers replaced by the words they hold: `\text{B}` is `B`."""
    return _TEXT_WRAPPERS.sub(r"\1", text)


# ---------------------------------------------------------------- normalization

_TOKEN = re.compile(_NUMBER_PATTERN + r"|[^\W_]+")
_ARTICLE_WORDS = frozenset({"a", "an", "the"})


def normalize_answer(answer: str) -> str:
    """The form in which the engine compares answers (votes, checkers, the judge's draws).

    Casefolded; punctuation, markdown and extra whitespace dropped; the articles a/an/the dropped unless
    nothing else is left (so a multiple-choice "A" survives); numbers canonical ("1,000" == "1000" ==
    "1000.0"; a currency or percent sign is dropped).
    """
    text = strip_text_wrappers(answer.casefold().replace("−", "-"))
    matches = _TOKEN.finditer(text)
    tokens = [canonical_number(_written(match)) if match["mantissa"] else match[0] for match in matches]
    content = [token for token in tokens if token not in _ARTICLE_WORDS]
    if content or tokens:
        return " ".join(content or tokens)
    # Only symbols ("+", "∅"): compare them as written rather than calling every such answer equal.
    return " ".join(text.split())


_SQUAD_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def squad_normalize(text: str) -> str:
    """SQuAD v1.1 normalization, as its official script does it: lower case, drop ASCII punctuation and
    the articles a/an/the, squash spaces. Exact match and token F1 are defined on this form."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _SQUAD_ARTICLES.sub(" ", text)
    return " ".join(text.split())
