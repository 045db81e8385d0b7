"""The statistics of an evaluation: per-mode means of every metric with 95% confidence intervals (Wilson
for proportions, a seeded bootstrap for mean scores) and the mean figures of the runs."""

from __future__ import annotations

import math
import random
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from openheavy.answer_text import answer_problems
from openheavy.evals.grading import KIND_METRICS, METRICS, PRIMARY_METRIC
from openheavy.evals.store import EvalMeta, ModeRecord, ResultRecord, latest_results
from openheavy.trace import RunFigures

Z_95 = 1.959963984540054
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CI_NOTE = (
    "95% confidence intervals: Wilson score interval for proportions (EM, math correct, exact set, "
    f"judge); percentile bootstrap ({BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}) for means "
    "(token F1, wide-search precision / recall / F1). Errored runs count as wrong (score 0)."
)


class MetricSummary(BaseModel):
    """One metric over a mode's finished items, with its 95% confidence interval."""

    model_config = ConfigDict(frozen=True)

    name: str
    value: float
    low: float
    high: float
    n: int
    method: Literal["wilson", "bootstrap"]


class ModeSummary(BaseModel):
    """Everything the report says about one mode."""

    model_config = ConfigDict(frozen=True)

    mode: str
    name: str
    n: int  # agents (heavy) or samples (rank); 1 for direct and single
    items: int  # items asked for
    done: int  # items with a saved result (errors included)
    errors: int
    primary: str  # the metric plotted as "accuracy"
    metrics: dict[str, MetricSummary]
    judge: MetricSummary | None = None
    judge_errors: int = 0
    mean_tokens: float | None = None  # prompt + completion per question
    means: dict[str, float] = Field(
        default_factory=dict
    )  # `RunFigures.PER_ITEM` averaged over finished items
    medians: dict[str, float] = Field(default_factory=dict)  # the same figures' medians
    form_problems: dict[str, int] = Field(default_factory=dict)  # answers per problem ("repeats itself")


class EvalSummary(BaseModel):
    """`summary.json`: the per-mode summary of a results directory."""

    model_config = ConfigDict(frozen=True)

    dataset: str
    seed: int
    items: int
    out_dir: str
    modes: list[ModeSummary]
    ci_note: str = CI_NOTE
    plots: list[str] = Field(default_factory=list)
    plots_skipped: str | None = None
    generated_at: float = Field(default_factory=time.time)


def wilson_interval(successes: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for a proportion; (0, 1) when there are no observations."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At p = 0 or 1 the interval ends exactly there; rounding must not leave the estimate outside it.
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    high = 1.0 if successes >= n else min(1.0, centre + half)
    return (low, high)


def bootstrap_interval(
    values: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """The 95% percentile-bootstrap interval of a mean. Seeded, so a re-render gives the same numbers."""
    if not values:
        return (0.0, 1.0)
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    return (means[int(0.025 * (resamples - 1))], means[math.ceil(0.975 * (resamples - 1))])


def summarize_metric(name: str, values: Sequence[float]) -> MetricSummary:
    """Mean and 95% CI of one metric: Wilson for 0/1 metrics, bootstrap for scores in [0, 1]."""
    n = len(values)
    mean = sum(values) / n if n else 0.0
    if METRICS.get(name, "mean") == "proportion":
        low, high = wilson_interval(sum(values), n)
        return MetricSummary(name=name, value=mean, low=low, high=high, n=n, method="wilson")
    low, high = bootstrap_interval(values)
    return MetricSummary(name=name, value=mean, low=low, high=high, n=n, method="bootstrap")


def summarize(meta: EvalMeta, rows: Iterable[ResultRecord], out_dir: Path) -> EvalSummary:
    """The per-mode summary of the latest saved row of every (item, mode) in `meta`."""
    latest = latest_results(rows)
    modes = [_summarize_mode(mode, meta.item_ids, latest) for mode in _all_modes(meta, latest.values())]
    return EvalSummary(
        dataset=meta.dataset,
        seed=meta.seed,
        items=len(meta.item_ids),
        # As given when relative; an absolute path would name this machine's folders in a published file.
        out_dir=out_dir.name if out_dir.is_absolute() else str(out_dir),
        modes=modes,
    )


def _all_modes(meta: EvalMeta, rows: Iterable[ResultRecord]) -> list[ModeRecord]:
    modes = {mode.label: mode for mode in meta.modes}
    for row in rows:  # rows of a mode that eval.json lost are still reported, never dropped
        modes.setdefault(row.mode, ModeRecord(label=row.mode, name=row.mode_name, n=row.mode_n))
    return list(modes.values())


def _summarize_mode(
    mode: ModeRecord, item_ids: Sequence[str], latest: Mapping[tuple[str, str], ResultRecord]
) -> ModeSummary:
    ids = set(item_ids)
    done = [row for (item_id, label), row in latest.items() if label == mode.label and item_id in ids]
    kinds = Counter(row.kind for row in done)
    names = list(dict.fromkeys(name for kind in kinds for name in KIND_METRICS[kind]))
    metrics = {
        name: summarize_metric(name, [row.metrics[name] for row in done if name in row.metrics])
        for name in names
    }
    primary = PRIMARY_METRIC[kinds.most_common(1)[0][0]] if kinds else "em"
    judged = [row.judge for row in done if row.judge is not None]
    verdicts = [float(j.correct) for j in judged if j.correct is not None]
    means = {
        figure: sum(row.figures.get(figure, 0.0) for row in done) / len(done)
        for figure in RunFigures.PER_ITEM
        if done
    }
    medians = {
        figure: statistics.median(row.figures.get(figure, 0.0) for row in done)
        for figure in RunFigures.PER_ITEM
        if done
    }
    # Read again from each answer with the current checks, so that a report re-rendered after a check
    # was mended (`openheavy eval --report`) counts what the answers are, not what an older check said.
    form_problems = Counter(
        problem for row in done if row.error is None for problem in answer_problems(row.answer)
    )
    return ModeSummary(
        mode=mode.label,
        name=mode.name,
        n=mode.n,
        items=len(item_ids),
        done=len(done),
        errors=sum(row.error is not None for row in done),
        primary=primary,
        metrics=metrics,
        judge=summarize_metric("judge", verdicts) if verdicts else None,
        judge_errors=sum(j.error is not None for j in judged),
        mean_tokens=means["prompt_tokens"] + means["completion_tokens"] if done else None,
        means=means,
        medians=medians,
        form_problems=dict(form_problems),
    )


def sign_test(wins: int, losses: int) -> float:
    """The two-sided exact sign test of `wins` against `losses` (ties left out), as a p-value.

    For paired 0/1 outcomes this is McNemar's exact test on the discordant pairs: under "no difference"
    each discordant pair falls either way with probability 1/2, so the count is Binomial(n, 1/2). The
    p-value doubles the smaller tail (capped at 1). Exact in integers, so no scipy is needed.
    """
    if wins < 0 or losses < 0:
        raise ValueError(f"counts must be non-negative, got {wins} and {losses}")
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1))
    return min(1.0, 2 * tail / (1 << n))
