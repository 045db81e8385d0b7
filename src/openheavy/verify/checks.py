"""Programmatic checkers: numeric, math equivalence, regex and a user's Python predicate."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import math
import re
import threading
from collections.abc import Callable, Sequence
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

from openheavy.errors import ConfigError
from openheavy.normalize import canonical_number, last_number, normalize_answer
from openheavy.types import EventStream, Usage
from openheavy.verify.base import Sample, Score, Verifier, _clean_answer, _label
from openheavy.verify.vote import _vote

CHECKERS = ("numeric", "math", "regex:<pattern>", "py:<module.path:function>", "py:<file.py>:<function>")
_INSTALL_HINT = "pip install 'openheavy[eval]' (math-verify) for full LaTeX equivalence"


def _load_math_verify() -> ModuleType | None:
    """math-verify, imported lazily because it is an optional extra (and pulls in sympy)."""
    try:
        return importlib.import_module("math_verify")
    except ImportError:
        return None


def _value_of_last_number(text: str) -> Decimal | None:
    number = last_number(text)
    return None if number is None else number.value


def _latex_to_arithmetic(text: str) -> str:
    """Rewrite simple LaTeX (fractions, \\cdot, ^, braces) as plain arithmetic for `_fraction_value`."""
    text = _clean_answer(text)
    text = re.sub(r"\\[dt]frac", r"\\frac", text)
    text = re.sub(r"\\(left|right|,|;|!|quad|qquad)", "", text)
    text = text.replace("\\cdot", "*").replace("\\times", "*").replace("\\div", "/")
    while True:  # innermost \frac first: its arguments then hold no braces
        rewritten = re.sub(r"\\frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"((\1)/(\2))", text)
        rewritten = re.sub(r"\\frac\s*(\d)\s*(\d)", r"((\1)/(\2))", rewritten)
        if rewritten == text:
            break
        text = rewritten
    text = text.replace("{", "(").replace("}", ")").replace("^", "**")
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)
    return text.replace("−", "-").replace("%", "/100")


def _fraction_value(text: str) -> Fraction | None:
    """Exact value of a plain arithmetic expression (numbers, + - * / **, parentheses), else None.

    Evaluated over the AST, never with eval(): the text is model output.
    """
    try:
        tree = ast.parse(_latex_to_arithmetic(text), mode="eval")
    except (SyntaxError, ValueError):
        return None

    def value(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return Fraction(repr(node.value))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            inner = value(node.operand)
            return -inner if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp):
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if isinstance(node.op, ast.Div):
                return left / right
            # Small integer powers only: 10**10**10 must not hang the run.
            if isinstance(node.op, ast.Pow) and right.denominator == 1 and abs(right) <= 64:
                return left ** int(right)
        raise ValueError("unsupported expression")

    try:
        return value(tree.body)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None


def _looks_like_math(answer: str) -> bool:
    """No word outside LaTeX commands. Words go to the plain comparison: math-verify would read "Paris"
    as the product p*a*r*i*s, and "5 km" as 5, equal to "5 miles"."""
    return re.search(r"[^\W\d_]{2,}", re.sub(r"\\[A-Za-z]+", "", answer)) is None


def _math_verify_parse(module: ModuleType, answer: str, timeout: int | None) -> list[Any]:
    # Inside $...$ math-verify reads the whole answer as LaTeX ("2^{10}" is 1024, not 2); a bare
    # answer it cannot read that way gets its own extraction as a second chance.
    parsed: list[Any] = module.parse(f"${answer.strip().strip('$')}$", parsing_timeout=timeout)
    return parsed or module.parse(answer, parsing_timeout=timeout)


def math_equal(a: str, b: str) -> bool:
    """Whether two answers are mathematically equal: `\\frac{1}{2}` == `0.5` == `1/2`.

    Uses math-verify when installed; otherwise (or when it can parse neither side) exact arithmetic on
    simple expressions, then `normalize_answer` equality.
    """
    module = _load_math_verify()
    if module is not None and _looks_like_math(a) and _looks_like_math(b):
        # math-verify's timeouts use SIGALRM, which only the main thread may set.
        timeout = 5 if threading.current_thread() is threading.main_thread() else None
        parsed_a, parsed_b = _math_verify_parse(module, a, timeout), _math_verify_parse(module, b, timeout)
        if parsed_a and parsed_b:
            return bool(module.verify(parsed_a, parsed_b, timeout_seconds=timeout))
    value_a, value_b = _fraction_value(a), _fraction_value(b)
    if value_a is not None and value_b is not None:
        return value_a == value_b
    return bool(normalize_answer(a)) and normalize_answer(a) == normalize_answer(b)


def _load_predicate(target: str) -> Callable[[str, str], object]:
    """A user's predicate from `module.path:function` or `path/to/file.py:function`."""
    location, sep, name = target.rpartition(":")
    if not sep or not location or not name:
        raise ConfigError(f"check:py needs `module.path:function` or `file.py:function`, got {target!r}")
    module: ModuleType
    if location.endswith(".py"):
        path = Path(location).expanduser()
        if not path.is_file():
            raise ConfigError(f"checker file {path} does not exist")
        spec = importlib.util.spec_from_file_location(f"openheavy_user_check_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot load {path} as a Python module")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's code: report, don't crash with its traceback
            raise ConfigError(f"checker file {path} failed to load: {type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(location)
        except ImportError as exc:
            raise ConfigError(f"cannot import checker module {location!r}: {exc}") from exc
    function = getattr(module, name, None)
    if not callable(function):
        raise ConfigError(f"{location} has no function {name!r}")
    predicate: Callable[[str, str], object] = function
    return predicate


class CheckVerifier:
    """Programmatic checkers, named after `check:`.

    - `numeric`: with a reference, 1 if the answer's number equals it (relative tolerance `rel_tol`), else
      0; without one, a vote over the parsed numbers (numeric self-consistency).
    - `math`: with a reference, 1 if mathematically equal (`math_equal`); without one, a vote over
      equivalence classes.
    - `regex:<pattern>`: 1 if `re.search` finds the pattern in the answer (anchor it for a full match).
    - `py:<module.path:function>` / `py:<file.py>:<function>`: the user's `(question, answer) -> bool |
      float` (may be async); an exception scores 0 with the error as the reason.
    """

    def __init__(
        self,
        name: str,
        *,
        reference: str | None = None,
        rel_tol: float = 1e-9,
        tie_breaker: Verifier | None = None,
    ) -> None:
        self.name = f"check:{name}"
        self.reference = reference
        self.rel_tol = rel_tol
        self.tie_breaker = tie_breaker
        self._pattern: re.Pattern[str] | None = None
        self._predicate: Callable[[str, str], object] | None = None
        self._reference_number: Decimal | None = None
        kind, _, argument = name.partition(":")
        if name == "numeric":
            if reference is not None:
                self._reference_number = _value_of_last_number(reference)
                if self._reference_number is None:
                    raise ConfigError(f"check:numeric needs a numeric reference, got {reference!r}")
        elif name == "math":
            pass
        elif kind == "regex" and argument:
            try:
                self._pattern = re.compile(argument)
            except re.error as exc:
                raise ConfigError(f"bad pattern in check:regex:{argument}: {exc}") from exc
        elif kind == "py" and argument:
            self._predicate = _load_predicate(argument)
        else:
            raise ConfigError(f"unknown checker {name!r}; valid: {', '.join('check:' + c for c in CHECKERS)}")

    @property
    def usage(self) -> Usage:
        return self.tie_breaker.usage if self.tie_breaker is not None else Usage()

    async def score(
        self,
        question: str,
        samples: Sequence[Sample],
        *,
        stream: EventStream | None = None,
        run_id: str = "",
    ) -> list[Score]:
        """Run the checker on every sample's answer."""
        if self.name == "check:numeric":
            return await self._numeric(question, samples, stream, run_id)
        if self.name == "check:math":
            return await self._math(question, samples, stream, run_id)
        if self._pattern is not None:
            return [self._regex(s, self._pattern) for s in samples]
        return [await self._python(question, s) for s in samples]

    async def _numeric(
        self, question: str, samples: Sequence[Sample], stream: EventStream | None, run_id: str
    ) -> list[Score]:
        numbers = [_value_of_last_number(s.answer) for s in samples]
        reference = self._reference_number
        if reference is None:
            keys = [None if n is None else canonical_number(str(n)) for n in numbers]
            return await _vote(
                question,
                samples,
                keys,
                missing="no number in the answer",
                tie_breaker=self.tie_breaker,
                stream=stream,
                run_id=run_id,
            )
        scores = []
        for sample, number in zip(samples, numbers, strict=True):
            if number is None:
                scores.append(Score(sample.index, 0.0, "no number in the answer"))
                continue
            equal = number == reference or math.isclose(number, reference, rel_tol=self.rel_tol)
            sign = "==" if equal else "!="
            shown = f"{canonical_number(str(number))} {sign} reference {canonical_number(str(reference))}"
            scores.append(Score(sample.index, 1.0 if equal else 0.0, shown))
        return scores

    async def _math(
        self, question: str, samples: Sequence[Sample], stream: EventStream | None, run_id: str
    ) -> list[Score]:
        fallback = "" if _load_math_verify() is not None else f" (fraction fallback; {_INSTALL_HINT})"
        if self.reference is not None:
            scores = []
            for sample in samples:
                equal = bool(sample.answer.strip()) and math_equal(self.reference, sample.answer)
                verdict = "equals" if equal else "does not equal"
                reason = f"{_label(sample.answer)} {verdict} reference {_label(self.reference)}{fallback}"
                scores.append(Score(sample.index, 1.0 if equal else 0.0, reason))
            return scores
        # Equivalence classes: each answer joins the first class whose representative it equals.
        representatives: list[str] = []
        keys: list[str | None] = []
        for sample in samples:
            if not sample.answer.strip():
                keys.append(None)
                continue
            for position, representative in enumerate(representatives):
                if math_equal(representative, sample.answer):
                    keys.append(str(position))
                    break
            else:
                representatives.append(sample.answer)
                keys.append(str(len(representatives) - 1))
        scores = await _vote(
            question,
            samples,
            keys,
            missing="no answer extracted",
            tie_breaker=self.tie_breaker,
            stream=stream,
            run_id=run_id,
        )
        return [Score(s.index, s.score, s.reason + fallback, s.tiebreak) for s in scores]

    @staticmethod
    def _regex(sample: Sample, pattern: re.Pattern[str]) -> Score:
        found = pattern.search(sample.answer) is not None
        verdict = "matches" if found else "does not match"
        return Score(sample.index, 1.0 if found else 0.0, f"answer {verdict} /{pattern.pattern}/")

    async def _python(self, question: str, sample: Sample) -> Score:
        assert self._predicate is not None
        try:
            result = self._predicate(question, sample.answer)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # the user's code failing on one answer scores that answer 0
            return Score(sample.index, 0.0, f"checker raised {type(exc).__name__}: {exc}")
        if isinstance(result, bool):
            return Score(sample.index, 1.0 if result else 0.0, f"checker returned {result}")
        if isinstance(result, int | float) and math.isfinite(result):
            return Score(sample.index, float(result), f"checker returned {result:g}")
        return Score(sample.index, 0.0, f"checker returned {result!r}, expected a bool or a finite number")
