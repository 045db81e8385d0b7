"""What every verifier shares: the `Sample`, `Score` and `Verifier` types, and how a final answer is
extracted from a model's output and normalized for comparison."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol, runtime_checkable

from openheavy.types import EventStream, Usage

# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class Sample:
    """One candidate: a sampled completion (rank mode) or a whole research trajectory (heavy mode).

    `text` is what the candidate wrote (its reasoning, or a rendering of its trajectory); `answer` is the
    short final answer extracted from it, which is what votes and checkers compare. A sample with an
    `error` failed and takes no part in scoring.
    """

    index: int
    text: str
    answer: str
    evidence: list[dict[str, Any]] = field(default_factory=list)  # citation records, heavy mode
    usage: Usage = field(default_factory=Usage)
    error: str | None = None
    mean_logprob: float | None = None  # breaks vote ties when the backend reports it
    seed: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Score:
    """A verifier's verdict on one sample. Higher `score` is better; scores compare within one run only.

    `tiebreak` orders samples whose scores are equal (higher first); the vote sets it when it resolves a
    tie, so the reported score can stay the honest vote share.
    """

    index: int
    score: float
    reason: str
    tiebreak: float = 0.0


@runtime_checkable
class Verifier(Protocol):
    """Scores candidate answers to one question."""

    name: str

    @property
    def usage(self) -> Usage:
        """Tokens this verifier has spent on model calls so far (zero for model-free verifiers)."""
        ...

    async def score(
        self,
        question: str,
        samples: Sequence[Sample],
        *,
        stream: EventStream | None = None,
        run_id: str = "",
    ) -> list[Score]:
        """One `Score` per sample, in the order given. Model calls are reported on `stream`."""
        ...


# ---------------------------------------------------------------- answers

_ANSWER_LINE = re.compile(r"^[\s>*_#`-]*(?:the\s+)?(?:final\s+)?answer[\s*_`]*[:：]\s*(.*)$", re.IGNORECASE)
_THE_ANSWER_IS = re.compile(
    r"the\s+(?:final\s+|correct\s+)?answer\s+is[\s:]*(.+?)(?=\.(?:\s|$)|\n|$)", re.IGNORECASE
)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


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


def _last_boxed(text: str) -> str | None:
    found = None
    for match in _BOXED.finditer(text):
        inner = _balanced_braces(text, match.end() - 1)
        if inner is not None:
            found = inner
    return found


def _clean_answer(answer: str) -> str:
    """Strip the wrapping a model puts around a final answer: markdown, math delimiters, \\boxed, a full
    stop. Inner punctuation stays (3.5, 1,000, U.S.A)."""
    text = answer.strip()
    for _ in range(4):  # wrappers nest ("**$\\boxed{7}$**."); a few passes unwrap them all
        before = text
        text = text.strip().rstrip(".,;:").strip()
        text = re.sub(r"^(\*\*|__|`+|\*|_)(.+?)\1$", r"\2", text, flags=re.DOTALL)
        text = re.sub(r"^\$\$?(.+?)\$?\$$", r"\1", text, flags=re.DOTALL)
        text = re.sub(r"^\\\((.+)\\\)$|^\\\[(.+)\\\]$", lambda m: m[1] or m[2], text, flags=re.DOTALL)
        boxed = _BOXED.match(text)
        if boxed:
            inner = _balanced_braces(text, boxed.end() - 1)
            if inner is not None and len(inner) + boxed.end() + 1 == len(text):
                text = inner
        for marker in ("**", "__", "*"):  # emphasis a label left open: "**Final answer:** 42"
            if text.count(marker) == 1 and text.startswith(marker):
                text = text[len(marker) :]
            elif text.count(marker) == 1 and text.endswith(marker):
                text = text[: -len(marker)]
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'“”":
            text = text[1:-1]
        text = text.strip('“”"')
        if text == before:
            break
    return text.strip()


def extract_answer(text: str) -> str:
    """The short final answer in a model's output.

    In order: the last `ANSWER:` line (also `Final answer:`; if the line is empty, the next non-empty
    line), else the last `\\boxed{...}` (braces balanced), else the last "the answer is X", else the last
    non-empty line. Markdown emphasis, math delimiters and a trailing full stop are stripped.
    """
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        match = _ANSWER_LINE.match(lines[i])
        if not match:
            continue
        rest = match[1].strip()
        if not _clean_answer(rest):
            rest = next((line for line in lines[i + 1 :] if line.strip()), "")
        if _clean_answer(rest):
            return _clean_answer(rest)
    boxed = _last_boxed(text)
    if boxed is not None and boxed.strip():
        return _clean_answer(boxed)
    stated = list(_THE_ANSWER_IS.finditer(text))
    if stated:
        return _clean_answer(stated[-1][1])
    last = next((line for line in reversed(lines) if line.strip()), "")
    return _clean_answer(last)


# A number token: optional sign, thousands groups or plain digits, decimals, exponent. The lookbehind keeps
# "3-5" from reading as 3 and -5, and "v2" from reading as 2.
_NUMBER = re.compile(
    r"(?<![\w.])(?:[-+](?=[\d.]))?(?:\d{1,3}(?:,\d{3})+(?!\d|,\d)|\d+|(?=\.\d))(?:\.\d+)?(?:[eE][-+]?\d+)?(?!\d)"
)
_TOKEN = re.compile(_NUMBER.pattern + r"|[^\W_]+")
_ARTICLES = frozenset({"a", "an", "the"})


def _canonical_number(token: str) -> str:
    plain = token.replace(",", "")
    try:
        value = Decimal(plain).normalize()
    except ArithmeticError:  # beyond Decimal's exponent range: compare as written
        return plain
    if value == 0:
        return "0"  # "-0" and "0.00" too
    # Fixed-point for ordinary magnitudes ("1E+3" -> "1000"); "1e999999" must not become a million digits.
    if abs(value.adjusted()) > 30:
        return str(value)
    return format(value, "f")


def parse_number(text: str) -> Decimal | None:
    """The last number in `text` ("1,000" → 1000, "-3.50" → -3.5, "$12" → 12), or None.

    The last one because final answers usually end in the result ("2^10 = 1024", "5 km").
    """
    tokens = _NUMBER.findall(text.replace("−", "-"))
    if not tokens:
        return None
    try:
        return Decimal(tokens[-1].replace(",", ""))
    except InvalidOperation:
        return None


def normalize_answer(answer: str) -> str:
    """The form answers are compared in for voting.

    Casefolded; punctuation, markdown and extra whitespace dropped; the articles a/an/the dropped unless
    nothing else is left (so a multiple-choice "A" survives); numbers canonical ("1,000" == "1000" ==
    "1000.0").
    """
    text = answer.casefold().replace("−", "-")
    # LaTeX text wrappers hold words: "\text{B}" votes with "B".
    text = re.sub(r"\\(?:text|textbf|textrm|mathrm|mathbf|operatorname)\s*\{([^{}]*)\}", r"\1", text)
    tokens = []
    for match in _TOKEN.finditer(text):
        token = match[0]
        if token[0].isdigit() or token[0] in "+-.":
            token = _canonical_number(token)
        tokens.append(token)
    content = [token for token in tokens if token not in _ARTICLES]
    if content or tokens:
        return " ".join(content or tokens)
    # Only symbols ("+", "∅"): compare them as written rather than calling every such answer equal.
    return " ".join(text.split())


def _label(answer: str, limit: int = 60) -> str:
    shown = answer if len(answer) <= limit else answer[: limit - 1] + "…"
    return repr(shown)
