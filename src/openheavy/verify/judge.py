"""The LLM judge: pointwise grades against a rubric, then a pairwise round-robin of the best."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError, field_validator

from openheavy.errors import ConfigError, ModelError, ModelOutputError
from openheavy.json_output import first_json_object
from openheavy.models.base import ChatModel
from openheavy.models.recording import CallLabel, RecordingModel
from openheavy.normalize import normalize_answer
from openheavy.prompts import render_prompt
from openheavy.types import EventStream, JsonSchema, Message, Usage
from openheavy.verify.base import Sample, Score

T = TypeVar("T")


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


def _clip(text: str, limit: int) -> str:
    """Head and tail of a long text: the setup and the conclusion matter most to a judge."""
    if len(text) <= limit:
        return text
    half = limit // 2
    omitted = render_prompt("judge_omitted", count=len(text) - 2 * half).strip()
    return f"{text[:half]}\n{omitted}\n{text[-half:]}"


def _render_evidence(evidence: Sequence[dict[str, Any]], limit: int = 10) -> str:
    if not evidence:
        return render_prompt("judge_no_evidence").strip()
    lines = [_clip(json.dumps(item, ensure_ascii=False, default=str), 300) for item in evidence[:limit]]
    if len(evidence) > limit:
        lines.append(render_prompt("judge_more_evidence", count=len(evidence) - limit).strip())
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
    an error. `max_tokens` defaults to the longest verdict the schema allows (a lower limit could cut
    the verdict off inside its reason).
    """

    def __init__(
        self,
        model: ChatModel,
        *,
        seed: int = 0,
        top_k: int = 4,
        tournament: bool | None = None,
        max_tokens: int | None = None,
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
        model: RecordingModel,
        messages: list[Message],
        schema: JsonSchema,
        parse: Callable[[dict[str, Any]], T],
    ) -> T:
        """One judge call; if its output does not parse, one retry that shows the model its error."""
        error = ""
        for _attempt in range(2):
            completion = await model.complete(
                messages, json_schema=schema, max_tokens=self.max_tokens, temperature=0.0, seed=self.seed
            )
            self._usage += completion.usage
            try:
                return parse(first_json_object(completion.text))
            except (ValueError, ValidationError) as exc:
                error = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
                retry = render_prompt("judge_retry", error=error).strip()
                messages = [*messages, Message("assistant", completion.text), Message("user", retry)]
        raise ModelOutputError(
            f"the judge's reply did not match its JSON schema, even after a retry: {error}"
        )

    async def _pointwise(
        self, question: str, sample: Sample, model: RecordingModel
    ) -> tuple[int | None, str]:
        user = render_prompt(
            "judge_pointwise",
            question=question,
            work=_clip(sample.text, self.max_chars),
            evidence=_render_evidence(sample.evidence),
            answer=sample.answer,
        ).strip()
        messages = [Message("system", render_prompt("judge_system").strip()), Message("user", user)]
        try:
            verdict = await self._ask(model, messages, POINTWISE_SCHEMA, _PointVerdict.model_validate)
        except Exception as exc:  # one failed grading must not lose the others
            return None, f"judge failed: {exc}"
        return verdict.score, " ".join(verdict.reason.split())[:300]

    async def _pairwise(
        self, question: str, first: Sample, second: Sample, model: RecordingModel
    ) -> int | None:
        """Index of the winner, `first` shown as A; None if the call failed."""
        user = render_prompt(
            "judge_pairwise",
            question=question,
            work_a=_clip(first.text, self.max_chars // 2),
            answer_a=first.answer,
            work_b=_clip(second.text, self.max_chars // 2),
            answer_b=second.answer,
        ).strip()
        messages = [Message("system", render_prompt("judge_system").strip()), Message("user", user)]
        try:
            verdict = await self._ask(model, messages, PAIRWISE_SCHEMA, _PairVerdict.model_validate)
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
        judge = RecordingModel(
            self.model, stream=stream, run_id=run_id, label=CallLabel(agent="judge", purpose="judge")
        )
        async with asyncio.TaskGroup() as group:
            graded = [
                group.create_task(self._pointwise(question, sample, judge.labelled(step=step)))
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
                    group.create_task(self._pairwise(question, a, b, judge.labelled(step=len(samples) + i)))
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
