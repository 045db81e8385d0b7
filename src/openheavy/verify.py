"""Verifiers: score N candidate answers to one question so the best can be picked.

A verifier sees `Sample`s — plain sampled completions in rank mode, whole research trajectories in heavy
mode — and returns one `Score` per sample. Four kinds, chosen by a spec string (`make_verifier`):

- `vote`: self-consistency, the majority over normalized final answers;
- `judge`: a model grades each answer against a rubric, then (N > 2) a pairwise round-robin of the best;
- `check:NAME`: programmatic checkers (numeric, math, regex, a user's Python predicate);
- `reward:URL`: an external reward-model endpoint.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import importlib.util
import inspect
import itertools
import json
import math
import random
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from statistics import fmean
from types import ModuleType
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlparse

import httpx
from pydantic import BaseModel, ValidationError, field_validator

from openheavy.errors import ConfigError, ModelError, ModelOutputError, ModelUnreachableError, OpenHeavyError
from openheavy.models.base import ChatModel
from openheavy.prompts import load_prompt
from openheavy.types import Completion, EventStream, JsonSchema, Message, ModelCalled, Usage

__all__ = [
    "CHECKERS",
    "CheckVerifier",
    "JudgeVerifier",
    "RewardVerifier",
    "Sample",
    "Score",
    "Verifier",
    "VoteVerifier",
    "extract_answer",
    "make_verifier",
    "math_equal",
    "normalize_answer",
    "parse_number",
]

T = TypeVar("T")


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


# ---------------------------------------------------------------- shared helpers


def _fill(template: str, **values: str) -> str:
    """Put values into a prompt template's {placeholders} in one pass, so a `{...}` inside a value (LaTeX,
    JSON) is never itself substituted; other braces in the template stay as written."""
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m[1], m[0]), template)


def _label(answer: str, limit: int = 60) -> str:
    shown = answer if len(answer) <= limit else answer[: limit - 1] + "…"
    return repr(shown)


def _emit_model_called(
    stream: EventStream | None,
    run_id: str,
    *,
    agent: str,
    step: int,
    purpose: str,
    messages: Sequence[Message],
    json_schema: JsonSchema | None,
    completion: Completion,
) -> None:
    if stream is None:
        return
    stream.emit(
        ModelCalled(
            run_id=run_id,
            agent=agent,
            step=step,
            purpose=purpose,
            messages=[asdict(m) for m in messages],
            json_schema=json_schema,
            output=completion.text,
            prompt_tokens=completion.usage.prompt_tokens,
            completion_tokens=completion.usage.completion_tokens,
            cached_tokens=completion.usage.cached_tokens,
            seconds=completion.seconds,
        )
    )


def _ordered_if_decisive(groups: list[list[Sample]], values: list[float]) -> list[list[Sample]] | None:
    """Groups sorted by value (best first, earliest sample on equal values), or None if the best value is
    shared — then this rule did not decide and the next one must."""
    ranked = sorted(zip(groups, values, strict=True), key=lambda gv: (-gv[1], min(s.index for s in gv[0])))
    if len(ranked) > 1 and math.isclose(ranked[0][1], ranked[1][1]):
        return None
    return [group for group, _ in ranked]


async def _break_tie(
    question: str,
    tied: list[list[Sample]],
    tie_breaker: Verifier | None,
    stream: EventStream | None,
    run_id: str,
) -> tuple[list[list[Sample]], str]:
    """Order equally voted answer groups. Rules in turn: the tie-breaker verifier's mean score, the mean
    log-probability, the earliest sample. Returns the order and a note naming the rule that decided."""
    names = " and ".join(_label(group[0].answer) for group in tied)
    note = f"tie between {names}"
    if tie_breaker is not None:
        try:
            scores = await tie_breaker.score(
                question, [s for group in tied for s in group], stream=stream, run_id=run_id
            )
        except OpenHeavyError as exc:
            note += f" ({tie_breaker.name} failed: {exc})"
        else:
            by_index = {score.index: score.score for score in scores}
            means = [fmean(by_index.get(s.index, 0.0) for s in group) for group in tied]
            order = _ordered_if_decisive(tied, means)
            shown = ", ".join(f"{_label(g[0].answer)} {m:.2f}" for g, m in zip(tied, means, strict=True))
            if order is not None:
                return order, f"{note} broken by {tie_breaker.name} (mean score {shown})"
            note += f" ({tie_breaker.name} undecided: {shown})"
    logprobs = [[s.mean_logprob for s in group if s.mean_logprob is not None] for group in tied]
    if all(logprobs):
        means = [fmean(values) for values in logprobs if values]
        order = _ordered_if_decisive(tied, means)
        if order is not None:
            shown = ", ".join(f"{_label(g[0].answer)} {m:.3f}" for g, m in zip(tied, means, strict=True))
            return order, f"{note} broken by mean log-prob ({shown})"
    order = sorted(tied, key=lambda group: min(s.index for s in group))
    return order, f"{note} broken by earliest sample (#{min(s.index for s in order[0])})"


async def _vote(
    question: str,
    samples: Sequence[Sample],
    keys: Sequence[str | None],
    *,
    missing: str,
    tie_breaker: Verifier | None,
    stream: EventStream | None,
    run_id: str,
) -> list[Score]:
    """Majority vote: each sample scores the share of samples whose key equals its own. A None key (no
    answer, no number) scores 0 and never wins. A tie for first place goes to `_break_tie`."""
    groups: dict[str, list[Sample]] = {}
    for sample, key in zip(samples, keys, strict=True):
        if key is not None:
            groups.setdefault(key, []).append(sample)
    total = len(samples)
    top = max((len(group) for group in groups.values()), default=0)
    tied = [group for group in groups.values() if len(group) == top]
    tiebreak: dict[int, float] = {}
    tie_note = ""
    if len(tied) > 1:
        order, tie_note = await _break_tie(question, tied, tie_breaker, stream, run_id)
        for position, group in enumerate(order):
            for sample in group:
                tiebreak[sample.index] = float(len(order) - position)
    scores = []
    for sample, key in zip(samples, keys, strict=True):
        if key is None:
            scores.append(Score(sample.index, 0.0, missing))
            continue
        group = groups[key]
        reason = f"{len(group)}/{total} samples agree on {_label(group[0].answer)}"
        if tie_note and len(group) == top:
            reason += f"; {tie_note}"
        scores.append(Score(sample.index, len(group) / total, reason, tiebreak.get(sample.index, 0.0)))
    return scores


# ---------------------------------------------------------------- vote


class VoteVerifier:
    """Self-consistency: the answer most samples agree on wins; each sample scores its answer's vote share.

    Ties for first place are broken by `tie_breaker` (normally the judge) if given, else by the mean
    log-probability of each answer's samples if the backend reported them, else by the earliest sample.
    The reason says which rule decided.
    """

    def __init__(self, *, tie_breaker: Verifier | None = None) -> None:
        self.name = "vote"
        self.tie_breaker = tie_breaker

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
        """Vote shares over `normalize_answer` forms of the samples' answers."""
        keys = [normalize_answer(s.answer) or None for s in samples]
        return await _vote(
            question,
            samples,
            keys,
            missing="no answer extracted",
            tie_breaker=self.tie_breaker,
            stream=stream,
            run_id=run_id,
        )


# ---------------------------------------------------------------- judge

# `reason` comes before the verdict on purpose: constrained decoding emits properties in schema order, so
# the judge writes its justification first and scores after it, not the other way round.
POINTWISE_SCHEMA: JsonSchema = {
    "type": "object",
    "properties": {
        "reason": {"type": "string", "maxLength": 300},
        "score": {"type": "integer", "minimum": 1, "maximum": 10},
    },
    "required": ["reason", "score"],
    "additionalProperties": False,
}
PAIRWISE_SCHEMA: JsonSchema = {
    "type": "object",
    "properties": {
        "reason": {"type": "string", "maxLength": 300},
        "winner": {"type": "string", "enum": ["A", "B"]},
    },
    "required": ["reason", "winner"],
    "additionalProperties": False,
}


class _PointVerdict(BaseModel):
    score: int
    reason: str

    @field_validator("score")
    @classmethod
    def _in_range(cls, value: int) -> int:
        if not 1 <= value <= 10:
            raise ValueError("score must be an integer from 1 to 10")
        return value


class _PairVerdict(BaseModel):
    winner: Literal["A", "B"]
    reason: str

    @field_validator("winner", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value


def _json_object(text: str) -> dict[str, Any]:
    """The JSON object in a model's reply. Lenient about code fences and chatter around it, because
    backends without constrained output wrap JSON in prose."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("no JSON object in the reply")
    value = json.loads(text[start : end + 1])
    if not isinstance(value, dict):
        raise ValueError("the reply is not a JSON object")
    return value


def _clip(text: str, limit: int) -> str:
    """Head and tail of a long text: the setup and the conclusion matter most to a judge."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[… {len(text) - 2 * half} characters omitted …]\n{text[-half:]}"


def _render_evidence(evidence: Sequence[dict[str, Any]], limit: int = 10) -> str:
    if not evidence:
        return "(none)"
    lines = [_clip(json.dumps(item, ensure_ascii=False, default=str), 300) for item in evidence[:limit]]
    if len(evidence) > limit:
        lines.append(f"(and {len(evidence) - limit} more)")
    return "\n".join(f"- {line}" for line in lines)


class JudgeVerifier:
    """A model grades the answers (LLM-as-a-judge).

    1. Pointwise: each answer gets 1–10 against the rubric in `judge_system.txt`, as constrained JSON
       `{"reason": str, "score": int}`.
    2. Tournament (by default when N > 2): the `top_k` answers by pointwise score play a round-robin of
       pairwise comparisons, `{"reason": str, "winner": "A"|"B"}`. Which answer is shown as A is drawn from
       a `seed`ed RNG per pair to counter position bias. Two answers that normalize equal don't play
       (a draw, half a win each): the judge compares answers, and equal answers cannot beat each other.

    Final score in [0, 1]: without a tournament, `points / 10`. With one, `0.5 * points / 10 +
    0.5 * win_rate`; answers outside the top-k count as having lost every game (win rate 0), which keeps
    every finalist at or above every non-finalist. A judge call whose output stays invalid after one
    corrective retry, or whose model fails, scores 0 for that answer; the judge failing on every answer is
    an error.
    """

    def __init__(
        self,
        model: ChatModel,
        *,
        seed: int = 0,
        top_k: int = 4,
        tournament: bool | None = None,
        max_tokens: int = 256,
        max_chars: int = 6000,
    ) -> None:
        if top_k < 2:
            raise ConfigError(f"the judge's tournament needs top_k >= 2, got {top_k}")
        self.name = "judge"
        self.model = model
        self.seed = seed
        self.top_k = top_k
        self.tournament = tournament
        self.max_tokens = max_tokens
        self.max_chars = max_chars
        self._usage = Usage()

    @property
    def usage(self) -> Usage:
        return self._usage

    async def _ask(
        self,
        messages: list[Message],
        schema: JsonSchema,
        parse: Callable[[dict[str, Any]], T],
        *,
        step: int,
        stream: EventStream | None,
        run_id: str,
    ) -> T:
        """One judge call; if its output does not parse, one retry that shows the model its error."""
        error = ""
        for _attempt in range(2):
            completion = await self.model.complete(
                messages, json_schema=schema, max_tokens=self.max_tokens, temperature=0.0, seed=self.seed
            )
            self._usage += completion.usage
            _emit_model_called(
                stream,
                run_id,
                agent="judge",
                step=step,
                purpose="judge",
                messages=messages,
                json_schema=schema,
                completion=completion,
            )
            try:
                return parse(_json_object(completion.text))
            except (ValueError, ValidationError) as exc:
                error = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
                retry = _fill(load_prompt("judge_retry").strip(), error=error)
                messages = [*messages, Message("assistant", completion.text), Message("user", retry)]
        raise ModelOutputError(
            f"the judge's reply did not match its JSON schema, even after a retry: {error}"
        )

    async def _pointwise(
        self, question: str, sample: Sample, step: int, stream: EventStream | None, run_id: str
    ) -> tuple[int | None, str]:
        user = _fill(
            load_prompt("judge_pointwise").strip(),
            question=question,
            work=_clip(sample.text, self.max_chars),
            evidence=_render_evidence(sample.evidence),
            answer=sample.answer,
        )
        messages = [Message("system", load_prompt("judge_system").strip()), Message("user", user)]
        try:
            verdict = await self._ask(
                messages,
                POINTWISE_SCHEMA,
                _PointVerdict.model_validate,
                step=step,
                stream=stream,
                run_id=run_id,
            )
        except Exception as exc:  # one failed grading must not lose the others
            return None, f"judge failed: {exc}"
        return verdict.score, " ".join(verdict.reason.split())[:300]

    async def _pairwise(
        self,
        question: str,
        first: Sample,
        second: Sample,
        step: int,
        stream: EventStream | None,
        run_id: str,
    ) -> int | None:
        """Index of the winner, `first` shown as A; None if the call failed."""
        user = _fill(
            load_prompt("judge_pairwise").strip(),
            question=question,
            work_a=_clip(first.text, self.max_chars // 2),
            answer_a=first.answer,
            work_b=_clip(second.text, self.max_chars // 2),
            answer_b=second.answer,
        )
        messages = [Message("system", load_prompt("judge_system").strip()), Message("user", user)]
        try:
            verdict = await self._ask(
                messages,
                PAIRWISE_SCHEMA,
                _PairVerdict.model_validate,
                step=step,
                stream=stream,
                run_id=run_id,
            )
        except Exception:  # a lost game is not worth losing the ranking over
            return None
        return first.index if verdict.winner == "A" else second.index

    async def score(
        self,
        question: str,
        samples: Sequence[Sample],
        *,
        stream: EventStream | None = None,
        run_id: str = "",
    ) -> list[Score]:
        """Pointwise grades for every sample, plus a pairwise round-robin of the top-k when enabled."""
        samples = list(samples)
        if not samples:
            return []
        async with asyncio.TaskGroup() as group:
            graded = [
                group.create_task(self._pointwise(question, sample, step, stream, run_id))
                for step, sample in enumerate(samples)
            ]
        points = {s.index: task.result() for s, task in zip(samples, graded, strict=True)}
        if all(value is None for value, _ in points.values()):
            first_error = next(iter(points.values()))[1]
            raise ModelError(f"the judge model failed on every answer; first: {first_error}")

        play = self.tournament if self.tournament is not None else len(samples) > 2
        graded_ok = [s for s in samples if points[s.index][0] is not None]
        finalists = sorted(graded_ok, key=lambda s: (-(points[s.index][0] or 0), s.index))[: self.top_k]
        wins: dict[int, float] = {s.index: 0.0 for s in finalists}
        games: dict[int, int] = {s.index: 0 for s in finalists}
        if play and len(finalists) >= 2:
            rng = random.Random(self.seed)
            games_to_play: list[tuple[Sample, Sample]] = []
            for a, b in itertools.combinations(finalists, 2):
                swap = (
                    rng.random() < 0.5
                )  # drawn for every pair, so the order of one pair never shifts another
                if normalize_answer(a.answer) == normalize_answer(b.answer):
                    for s in (a, b):
                        wins[s.index] += 0.5
                        games[s.index] += 1
                    continue
                games_to_play.append((b, a) if swap else (a, b))
            async with asyncio.TaskGroup() as group:
                played = [
                    group.create_task(self._pairwise(question, a, b, len(samples) + i, stream, run_id))
                    for i, (a, b) in enumerate(games_to_play)
                ]
            for (a, b), task in zip(games_to_play, played, strict=True):
                winner = task.result()
                if winner is None:
                    continue
                wins[winner] += 1.0
                games[a.index] += 1
                games[b.index] += 1
        else:
            play = False

        scores = []
        for sample in samples:
            value, reason = points[sample.index]
            if value is None:
                scores.append(Score(sample.index, 0.0, reason))
                continue
            pointwise = value / 10
            text = f"judge {value}/10: {reason}"
            if not play:
                scores.append(Score(sample.index, pointwise, text))
            elif games.get(sample.index):
                win_rate = wins[sample.index] / games[sample.index]
                text += f"; won {wins[sample.index]:g}/{games[sample.index]} pairwise"
                scores.append(Score(sample.index, 0.5 * pointwise + 0.5 * win_rate, text))
            elif sample.index in games:  # a finalist whose every game failed: count it as even
                scores.append(Score(sample.index, 0.5 * pointwise + 0.25, text + "; pairwise games failed"))
            else:
                text += f"; not in the top {self.top_k} for pairwise"
                scores.append(Score(sample.index, 0.5 * pointwise, text))
        return scores


# ---------------------------------------------------------------- programmatic checks

CHECKERS = ("numeric", "math", "regex:<pattern>", "py:<module.path:function>", "py:<file.py>:<function>")
_INSTALL_HINT = "pip install 'openheavy[eval]' (math-verify) for full LaTeX equivalence"


def _load_math_verify() -> ModuleType | None:
    """math-verify, imported lazily because it is an optional extra (and pulls in sympy)."""
    try:
        return importlib.import_module("math_verify")
    except ImportError:
        return None


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
                self._reference_number = parse_number(reference)
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
        numbers = [parse_number(s.answer) for s in samples]
        reference = self._reference_number
        if reference is None:
            keys = [None if n is None else _canonical_number(str(n)) for n in numbers]
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
            shown = f"{_canonical_number(str(number))} {sign} reference {_canonical_number(str(reference))}"
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


# ---------------------------------------------------------------- reward model endpoint


def _score_from_item(item: object) -> float:
    """One score from a response entry: a number, `{"score": x}`, vLLM `/classify` `{"probs": [...]}` (the
    last class, by convention the positive one) or `/pooling` `{"data": [...]}` (the last value: reward
    models put the sequence reward on the last token)."""
    if isinstance(item, bool):
        raise ValueError("a score is a boolean, not a number")
    if isinstance(item, int | float):
        return float(item)
    if isinstance(item, list) and item:
        return _score_from_item(item[-1])
    if isinstance(item, dict):
        for key in ("score", "reward", "probs", "data"):
            if key in item:
                return _score_from_item(item[key])
    raise ValueError(f"cannot read a score from {json.dumps(item)[:100]}")


def _scores_from_body(body: object, count: int) -> list[float]:
    if isinstance(body, dict) and "scores" in body:
        entries = body["scores"]
    elif isinstance(body, dict) and isinstance(body.get("data"), list):
        data = body["data"]
        # OpenAI-style lists carry an index; order by it rather than trusting the array order.
        if all(isinstance(d, dict) and isinstance(d.get("index"), int) for d in data):
            data = sorted(data, key=lambda d: int(d["index"]))
        entries = data
    else:
        raise ValueError('expected {"scores": [...]} or a vLLM /pooling or /classify response')
    if not isinstance(entries, list) or len(entries) != count:
        got = len(entries) if isinstance(entries, list) else type(entries).__name__
        raise ValueError(f"expected {count} scores, got {got}")
    scores = [_score_from_item(entry) for entry in entries]
    if not all(math.isfinite(s) for s in scores):
        raise ValueError("a score is not a finite number")
    return scores


class RewardVerifier:
    """Scores from an external reward-model endpoint, one POST for all samples.

    By default the body is `{"question": ..., "answers": [...]}` and the reply `{"scores": [...]}`. A URL
    ending in `/pooling` or `/classify` is treated as vLLM's endpoint of that name: the body is
    `{"input": ["<question>\\n\\n<answer>", ...]}` (plus `"model"` when given), the reply's `data` entries
    give the scores. Transient failures (connection, timeout, 429, 5xx) are retried with backoff.
    """

    def __init__(
        self,
        url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"reward:URL needs an http(s) URL, got {url!r}")
        self.name = f"reward:{url}"
        self.url = url
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.transport = transport
        self.openai_style = parsed.path.rstrip("/").endswith(("/pooling", "/classify"))

    @property
    def usage(self) -> Usage:
        return Usage()

    def _body(self, question: str, samples: Sequence[Sample]) -> dict[str, Any]:
        if not self.openai_style:
            return {"question": question, "answers": [s.answer for s in samples]}
        body: dict[str, Any] = {"input": [f"{question}\n\n{s.answer}" for s in samples]}
        if self.model:
            body["model"] = self.model
        return body

    async def _post(self, body: dict[str, Any]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        async with httpx.AsyncClient(transport=self.transport, timeout=self.timeout) as client:
            for attempt in range(self.max_retries + 1):
                last_try = attempt == self.max_retries
                try:
                    response = await client.post(self.url, json=body, headers=headers)
                except httpx.TransportError as exc:  # connection refused or dropped, timeouts: transient
                    if last_try and isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
                        raise ModelUnreachableError(
                            f"no reward server at {self.url} ({type(exc).__name__}) — start one or "
                            "pick another --verifier"
                        ) from exc
                    if last_try:
                        raise ModelError(
                            f"reward server at {self.url} failed after {attempt + 1} tries: "
                            f"{type(exc).__name__}: {exc}"
                        ) from exc
                else:
                    transient = response.status_code == 429 or response.status_code >= 500
                    if not transient or last_try:
                        return response
                await asyncio.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises

    async def score(
        self,
        question: str,
        samples: Sequence[Sample],
        *,
        stream: EventStream | None = None,
        run_id: str = "",
    ) -> list[Score]:
        """POST every answer in one request and read one score per answer."""
        if not samples:
            return []
        response = await self._post(self._body(question, samples))
        if response.status_code >= 400:
            raise ModelError(
                f"reward server at {self.url} answered HTTP {response.status_code}: {response.text[:200]}"
            )
        try:
            values = _scores_from_body(response.json(), len(samples))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError too
            raise ModelOutputError(f"malformed reply from reward server at {self.url}: {exc}") from exc
        return [
            Score(s.index, value, f"reward model score {value:.4g}")
            for s, value in zip(samples, values, strict=True)
        ]


# ---------------------------------------------------------------- spec parsing

VERIFIER_SPECS = "vote, judge, check:NAME (" + ", ".join(CHECKERS) + "), reward:URL"


def make_verifier(
    spec: str, model: ChatModel | None, reference: str | None = None, *, seed: int = 0
) -> Verifier:
    """The verifier a `--verifier` spec names: `vote`, `judge`, `check:NAME` or `reward:URL`.

    With a model, `vote` and the self-consistency checkers break ties with the judge (extra model calls
    only when there is a tie). `judge` needs a model. `reference` is the expected answer for the
    `check:numeric` and `check:math` checkers.
    """
    spec = spec.strip()
    kind, _, argument = spec.partition(":")
    judge = JudgeVerifier(model, seed=seed) if model is not None else None
    if spec == "vote":
        return VoteVerifier(tie_breaker=judge)
    if spec == "judge":
        if judge is None:
            raise ConfigError("--verifier judge needs a model to act as the judge")
        return judge
    if kind == "check":
        if not argument:
            raise ConfigError(f"--verifier check:NAME needs a checker name; valid: {', '.join(CHECKERS)}")
        return CheckVerifier(argument, reference=reference, tie_breaker=judge)
    if kind == "reward":
        return RewardVerifier(argument)
    raise ConfigError(f"unknown verifier {spec!r}; valid: {VERIFIER_SPECS}")
