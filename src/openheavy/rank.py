"""Ranked generation: N samples of one question in parallel, scored by a verifier, best first.

`rank` sends one request per sample with seeds `seed + i`, which is how `n > 1` is emulated for endpoints
that lack it. Sample 0 is greedy (temperature 0): the answer one call gives, which the vote then only
overrules with a majority; the others sample at a low temperature (`SAMPLE_TEMPERATURE`). Heavy mode
reuses the same ranking for whole research trajectories by passing a `sampler`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from openheavy.errors import ConfigError, ModelError
from openheavy.models.base import ChatModel
from openheavy.models.recording import CallLabel, RecordingModel
from openheavy.prompts import fill_template, load_prompt
from openheavy.types import EventStream, Message, Note, Usage
from openheavy.verify import Sample, Verifier, extract_answer

__all__ = [
    "SAMPLE_TEMPERATURE",
    "RankResult",
    "Ranked",
    "Sampler",
    "answer_sampler",
    "extract_answer",
    "rank",
    "sample_messages",
]

# The temperature of sampled candidates (rank's samples after the greedy one, sampled research agents).
# Low, because at 0.7 the 0.5B model's samples were right less often than its greedy answer (GSM8K: 17%
# against 20-23%), which left a vote over them little to gain.
SAMPLE_TEMPERATURE = 0.4

# Produces sample `i`. Heavy mode passes one that runs a research agent and returns its trajectory.
Sampler = Callable[[int], Awaitable[Sample]]


@dataclass(frozen=True)
class Ranked:
    """A sample with its verifier score; `rank` 1 is the best."""

    sample: Sample
    score: float
    reason: str
    rank: int

    def to_record(self) -> dict[str, Any]:
        """The JSON form in run results."""
        return {
            "rank": self.rank,
            "sample": self.sample.index,
            "score": self.score,
            "reason": self.reason,
            "answer": self.sample.answer,
        }


@dataclass(frozen=True)
class RankResult:
    """The outcome of ranked generation."""

    best: Sample
    ranking: list[Ranked]  # best first; only samples that succeeded
    verifier: str
    usage: Usage  # samples and verifier together
    failed: list[Sample]  # samples whose generation failed, with their error

    @property
    def answer(self) -> str:
        return self.best.answer


def sample_messages(question: str) -> list[Message]:
    """The prompt every sample gets: identical for all N, so a prefix cache serves it once."""
    return [
        Message("system", load_prompt("rank_system").strip()),
        Message("user", fill_template(load_prompt("rank_question").strip(), question=question)),
    ]


def answer_sampler(
    question: str,
    recorder: RecordingModel,
    *,
    temperature: float,
    seed: int,
    max_tokens: int,
    greedy_index: int | None = 0,
) -> Sampler:
    """Rank's plain sampler: sample `i` is one call with the rank prompt and seed `seed + i`, its answer
    the `ANSWER:` line (`extract_answer`); sample `greedy_index` is greedy, the others at `temperature`.
    Each call is a `ModelCalled` event of agent `sample-i`."""
    messages = sample_messages(question)

    async def sample(i: int) -> Sample:
        heat = 0.0 if i == greedy_index else temperature
        completion = await recorder.labelled(agent=f"sample-{i}").complete(
            messages, max_tokens=max_tokens, temperature=heat, seed=seed + i
        )
        return Sample(
            index=i,
            text=completion.text,
            answer=extract_answer(completion.text),
            usage=completion.usage,
            mean_logprob=completion.mean_logprob,
            seed=seed + i,
            temperature=heat,
            kind="prose",
        )

    return sample


async def rank(
    question: str,
    model: ChatModel,
    *,
    n: int,
    verifier: Verifier,
    stream: EventStream,
    run_id: str,
    temperature: float = SAMPLE_TEMPERATURE,
    seed: int = 0,
    max_tokens: int = 512,
    sampler: Sampler | None = None,
    greedy_first: bool = True,
) -> RankResult:
    """Generate `n` candidate answers concurrently, score them with `verifier`, and rank them.

    Each default sample is one `model.complete` call with seed `seed + i` at `temperature`, except
    sample 0, which is greedy when `greedy_first` (`answer_sampler`); each is reported as a `ModelCalled`
    event (purpose "sample", agent `sample-i`). With `sampler`, `sampler(i)` produces sample `i` instead
    and reports its own events. A sample that fails (raises, or comes back with an `error`) is kept in
    `failed` and left out of the ranking; every sample failing raises `ModelError`. Every score is
    reported as a `Note(topic="verifier")`.
    """
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    seeded = sampler is None  # rank's own samples carry their seeds; a sampler's report their own
    if sampler is None:
        recorder = RecordingModel(model, stream=stream, run_id=run_id, label=CallLabel(purpose="sample"))
        sampler = answer_sampler(
            question,
            recorder,
            temperature=temperature,
            seed=seed,
            max_tokens=max_tokens,
            greedy_index=0 if greedy_first else None,
        )
    produce = sampler

    async def guarded(i: int) -> Sample:
        started = time.monotonic()
        try:
            sample = await produce(i)
        except Exception as exc:  # one failed sample must never lose the others
            error = f"{type(exc).__name__}: {exc}"
            stream.emit(
                Note(
                    run_id=run_id,
                    agent=f"sample-{i}",
                    topic="sample_failed",
                    data={"index": i, "error": error, "seconds": round(time.monotonic() - started, 3)},
                )
            )
            return Sample(index=i, text="", answer="", error=error, seed=seed + i if seeded else None)
        if sample.error is not None:  # failed without raising: it kept its usage (a program that failed)
            stream.emit(
                Note(
                    run_id=run_id,
                    agent=f"sample-{i}",
                    topic="sample_failed",
                    data={"index": i, "error": sample.error, "seconds": round(time.monotonic() - started, 3)},
                )
            )
        # The index is rank's bookkeeping; a sampler that numbers differently must not break it.
        return sample if sample.index == i else replace(sample, index=i)

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(guarded(i)) for i in range(n)]
    samples = [task.result() for task in tasks]
    ok = [s for s in samples if s.ok]
    failed = [s for s in samples if not s.ok]
    if not ok:
        raise ModelError(f"all {n} samples failed; first error: {failed[0].error}")

    usage_before = verifier.usage
    scores = await verifier.score(question, ok, stream=stream, run_id=run_id)
    by_index = {score.index: score for score in scores}
    if sorted(by_index) != [s.index for s in ok]:
        raise ValueError(
            f"verifier {verifier.name} scored samples {sorted(by_index)}, expected {[s.index for s in ok]}"
        )
    ordered = sorted(ok, key=lambda s: (-by_index[s.index].score, -by_index[s.index].tiebreak, s.index))
    ranking = [
        Ranked(sample=s, score=by_index[s.index].score, reason=by_index[s.index].reason, rank=position)
        for position, s in enumerate(ordered, start=1)
    ]
    for entry in ranking:
        stream.emit(
            Note(
                run_id=run_id,
                topic="verifier",
                data={
                    "verifier": verifier.name,
                    "index": entry.sample.index,
                    "rank": entry.rank,
                    "score": entry.score,
                    "reason": entry.reason,
                    "answer": entry.sample.answer,
                    "temperature": entry.sample.temperature,
                    "kind": entry.sample.kind,
                },
            )
        )

    verifier_usage = _usage_delta(verifier.usage, usage_before)
    usage = sum((s.usage for s in samples), Usage()) + verifier_usage
    return RankResult(
        best=ranking[0].sample, ranking=ranking, verifier=verifier.name, usage=usage, failed=failed
    )


def _usage_delta(after: Usage, before: Usage) -> Usage:
    return Usage(
        after.prompt_tokens - before.prompt_tokens,
        after.completion_tokens - before.completion_tokens,
        after.cached_tokens - before.cached_tokens,
    )
