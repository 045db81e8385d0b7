"""What every verifier shares: the `Sample`, `Score` and `Verifier` types, and how a final answer is
extracted from a model's output (comparing answers is `openheavy.normalize`'s job)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from openheavy.normalize import last_boxed, unboxed
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
    temperature: float | None = None  # 0: the greedy sample, which breaks vote ties first
    kind: str = ""  # rank's samples: "prose" (reasoning, then an ANSWER: line) or "program" (code run)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

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
        text = unboxed(text)
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
    boxed = last_boxed(text)
    if boxed is not None and boxed.strip():
        return _clean_answer(boxed)
    stated = list(_THE_ANSWER_IS.finditer(text))
    if stated:
        return _clean_answer(stated[-1][1])
    last = next((line for line in reversed(lines) if line.strip()), "")
    return _clean_answer(last)


def _label(answer: str, limit: int = 60) -> str:
    shown = answer if len(answer) <= limit else answer[: limit - 1] + "…"
    return repr(shown)
