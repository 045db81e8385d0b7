"""The vote verifier (self-consistency), and the majority vote with its tie rules that the
self-consistency checkers share."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean

from openheavy.errors import OpenHeavyError
from openheavy.normalize import normalize_answer
from openheavy.types import EventStream, Usage
from openheavy.verify.base import Sample, Score, Verifier, _label


@dataclass(frozen=True)
class Tally:
    """Votes counted: positions grouped by equal key, the largest group first (on equal sizes, the group
    whose first member comes first). Positions whose key is None cast no vote."""

    keys: tuple[str, ...]  # one per group
    groups: tuple[tuple[int, ...], ...]

    @property
    def leader(self) -> int | None:
        """The index of the one largest group, or None when no group is larger than all others."""
        if not self.groups or (len(self.groups) > 1 and len(self.groups[1]) == len(self.groups[0])):
            return None
        return 0


def tally(keys: Sequence[str | None]) -> Tally:
    """Group positions 0..n-1 by their key: the majority count every vote in openheavy shares."""
    members: dict[str, list[int]] = {}
    for position, key in enumerate(keys):
        if key is not None:
            members.setdefault(key, []).append(position)
    ordered = sorted(members.items(), key=lambda kv: (-len(kv[1]), kv[1][0]))
    return Tally(tuple(k for k, _ in ordered), tuple(tuple(v) for _, v in ordered))


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
    """Order equally voted answer groups. Rules in turn: the group holding the greedy sample, the mean
    log-probability, the tie-breaker verifier's mean score, the earliest sample. Returns the order and
    a note naming the rule that decided.

    The greedy sample is what one call would have answered: with no majority, the vote should not do
    worse than it. A small model's judge is a weaker signal than either, and costs calls, so it
    comes after them."""
    names = " and ".join(_label(group[0].answer) for group in tied)
    note = f"tie between {names}"
    greedy = [group for group in tied if any(s.greedy for s in group)]
    if len(greedy) == 1:
        rest = sorted((g for g in tied if g is not greedy[0]), key=lambda g: min(s.index for s in g))
        index = next(s.index for s in greedy[0] if s.greedy)
        return greedy + rest, f"{note} broken by the greedy sample (#{index})"
    logprobs = [[s.mean_logprob for s in group if s.mean_logprob is not None] for group in tied]
    if all(logprobs):
        means = [fmean(values) for values in logprobs if values]
        by_logprob = _ordered_if_decisive(tied, means)
        if by_logprob is not None:
            shown = ", ".join(f"{_label(g[0].answer)} {m:.3f}" for g, m in zip(tied, means, strict=True))
            return by_logprob, f"{note} broken by mean log-prob ({shown})"
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
            by_score = _ordered_if_decisive(tied, means)
            shown = ", ".join(f"{_label(g[0].answer)} {m:.2f}" for g, m in zip(tied, means, strict=True))
            if by_score is not None:
                return by_score, f"{note} broken by {tie_breaker.name} (mean score {shown})"
            note += f" ({tie_breaker.name} undecided: {shown})"
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
    counted = tally(keys)
    groups = {
        key: [samples[position] for position in members]
        for key, members in zip(counted.keys, counted.groups, strict=True)
    }
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


class VoteVerifier:
    """Self-consistency: the answer most samples agree on wins; each sample scores its answer's vote share.

    Ties for first place are broken by the greedy sample (temperature 0) if one of the tied answers has
    it, else by the mean log-probability of each answer's samples if the backend reported them, else by
    `tie_breaker` (normally the judge) if given, else by the earliest sample. The reason says which rule
    decided.
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
