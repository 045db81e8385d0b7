"""Saved evaluation results and the report made from them: `summary.json`, `report.md` and PNG plots.

The results directory is the single source of truth: `eval.json` says what was asked for (dataset,
seed, modes, item ids) and `results.jsonl` holds one graded row per finished (item, mode), appended as
each finishes. Everything here is computed from those two files alone, so `render_report` reproduces
the report of any earlier run, finished or interrupted.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import openheavy
from openheavy.errors import ConfigError
from openheavy.evals.datasets import ItemKind
from openheavy.evals.grading import EVAL_INSTALL_HINT, KIND_METRICS, METRICS, PRIMARY_METRIC
from openheavy.trace import RunFigures

log = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"
META_FILE = "eval.json"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.md"
TOKENS_PLOT = "accuracy_vs_tokens.png"
N_PLOT = "accuracy_vs_n.png"

Z_95 = 1.959963984540054
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CI_NOTE = (
    "95% confidence intervals: Wilson score interval for proportions (EM, math correct, exact set, "
    f"judge); percentile bootstrap ({BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}) for means "
    "(token F1, wide-search precision / recall / F1). Errored runs count as wrong (score 0)."
)


# ---------------------------------------------------------------- saved records


class _Saved(BaseModel):
    # Old files must stay readable when a field is added later.
    model_config = ConfigDict(extra="ignore")


class ModeRecord(_Saved):
    """A mode as saved: its label ("heavy:4"), name ("heavy") and N (4)."""

    label: str
    name: str
    n: int


class EvalMeta(_Saved):
    """`eval.json`: what the results directory is an evaluation of."""

    dataset: str = ""
    seed: int = 0
    modes: list[ModeRecord] = Field(default_factory=list)
    item_ids: list[str] = Field(default_factory=list)
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    openheavy_version: str = openheavy.__version__


class JudgeRecord(_Saved):
    """The LLM judge's verdict on one answer, or the error that kept it from giving one."""

    correct: bool | None = None
    reason: str = ""
    error: str | None = None


class ResultRecord(_Saved):
    """One line of `results.jsonl`: a finished (item, mode) with its answer, figures and grade."""

    item_id: str
    mode: str
    mode_name: str
    mode_n: int
    seed: int
    kind: ItemKind
    question: str
    answers: list[str]
    answer: str = ""
    citations: list[dict[str, Any]] = Field(default_factory=list)
    run_id: str = ""
    trace_path: str | None = None
    figures: dict[str, float] = Field(default_factory=dict)
    error: str | None = None
    stop_reason: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    grade_details: dict[str, Any] = Field(default_factory=dict)
    judge: JudgeRecord | None = None
    finished_at: float = Field(default_factory=time.time)

    @property
    def key(self) -> tuple[str, str]:
        """(item id, mode label): what resume and the report key a result by."""
        return (self.item_id, self.mode)


def read_meta(out_dir: Path) -> EvalMeta | None:
    """The saved `eval.json` of a results directory, or None if there is none."""
    path = out_dir / META_FILE
    if not path.is_file():
        return None
    try:
        return EvalMeta.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise ConfigError(f"{path} is not an eval description ({exc.error_count()} errors)") from exc


def write_meta(out_dir: Path, meta: EvalMeta) -> None:
    """Write `eval.json` atomically, so an interrupt never leaves half a file."""
    path = out_dir / META_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(meta.model_dump_json(indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_results(out_dir: Path) -> list[ResultRecord]:
    """Every saved row of `results.jsonl`, in file order. A line cut short by a crash is skipped."""
    path = out_dir / RESULTS_FILE
    if not path.is_file():
        return []
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rows.append(ResultRecord.model_validate_json(line))
            except ValidationError:
                log.warning("%s:%d: skipping an unreadable result line (interrupted write?)", path, number)
    return rows


def latest_results(rows: Iterable[ResultRecord]) -> dict[tuple[str, str], ResultRecord]:
    """The last row per (item id, mode): a retried error is superseded by its retry."""
    return {row.key: row for row in rows}


# ---------------------------------------------------------------- summary


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
    means: dict[str, float] = Field(default_factory=dict)  # `RunFigures.PER_ITEM` averaged over finished items


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
        dataset=meta.dataset, seed=meta.seed, items=len(meta.item_ids), out_dir=str(out_dir), modes=modes
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
        figure: sum(row.figures.get(figure, 0.0) for row in done) / len(done) for figure in RunFigures.PER_ITEM if done
    }
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
    )


# ---------------------------------------------------------------- rendering


def render_report(out_dir: Path, *, plots: bool = True) -> EvalSummary:
    """Recompute the summary from the saved results in `out_dir` and write `summary.json`, `report.md`
    and (with matplotlib installed) the PNG plots. Without matplotlib the plots are skipped with a note
    in the report rather than failing, because the numbers matter more than the pictures."""
    meta = read_meta(out_dir)
    if meta is None:
        raise ConfigError(
            f"no eval results in {out_dir} (no {META_FILE}) — run `openheavy eval DATASET --out {out_dir}`"
        )
    rows = read_results(out_dir)
    summary = summarize(meta, rows, out_dir)
    written: list[str] = []
    skipped: str | None = None
    if plots and any(mode.done for mode in summary.modes):
        try:
            written = write_plots(summary, out_dir)
        except ModuleNotFoundError as exc:
            if exc.name is None or not exc.name.startswith("matplotlib"):
                raise
            skipped = f"matplotlib is not installed — {EVAL_INSTALL_HINT}"
            log.warning("plots skipped: %s", skipped)
    summary = summary.model_copy(update={"plots": written, "plots_skipped": skipped})
    (out_dir / SUMMARY_FILE).write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")
    report = render_markdown(summary, rows, out_dir, item_order=meta.item_ids)
    (out_dir / REPORT_FILE).write_text(report, encoding="utf-8")
    return summary


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _fmt_metric(metric: MetricSummary | None) -> str:
    if metric is None or metric.n == 0:
        return "—"
    return f"{metric.value:.3f} [{metric.low:.3f}, {metric.high:.3f}]"


def _cell(text: str, limit: int = 100) -> str:
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return flat.replace("|", "\\|")


def _run_link(row: ResultRecord, out_dir: Path) -> str:
    label = row.run_id or "trace"
    if not row.trace_path:
        return _cell(row.run_id) or "—"
    target = Path(row.trace_path)
    # Relative links keep working when the results directory is moved together with its traces.
    href = os.path.relpath(target, out_dir) if target.is_absolute() else row.trace_path
    return f"[{_cell(label)}]({href.replace(' ', '%20')})"


def render_markdown(
    summary: EvalSummary, rows: Iterable[ResultRecord], out_dir: Path, item_order: Sequence[str] = ()
) -> str:
    """The text of `report.md`: the per-mode table, the judge table, the plots, and every item's row
    (in `item_order`, the dataset's order, then any others by id)."""
    lines = [
        f"# Evaluation: {summary.dataset or 'dataset'}",
        "",
        f"{summary.items} items, seed {summary.seed}, results in `{RESULTS_FILE}`.",
        "",
    ]
    names = list(dict.fromkeys(name for mode in summary.modes for name in mode.metrics))
    header = [
        "mode",
        "done",
        "errors",
        *names,
        "mean tokens",
        "mean wall s",
        "searches",
        "docs read",
        "cited",
    ]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for mode in summary.modes:
        cells = [
            f"`{mode.mode}`",
            f"{mode.done}/{mode.items}",
            str(mode.errors),
            *(_fmt_metric(mode.metrics.get(name)) for name in names),
            _fmt(mode.mean_tokens, 0),
            _fmt(mode.means.get("wall_seconds"), 1),
            _fmt(mode.means.get("searches"), 1),
            _fmt(mode.means.get("documents_read"), 1),
            _fmt(mode.means.get("sources_cited"), 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", CI_NOTE, ""]
    pending = sum(mode.items - mode.done for mode in summary.modes)
    if pending:
        lines += [f"**Incomplete:** {pending} (item, mode) pairs have no result yet; rerun to resume.", ""]

    if any(mode.judge is not None or mode.judge_errors for mode in summary.modes):
        lines += [
            "## LLM judge",
            "",
            "A model's verdict, reported apart from the exact graders above.",
            "",
            "| mode | judged correct | judge errors |",
            "|---|---|---|",
        ]
        lines += [f"| `{m.mode}` | {_fmt_metric(m.judge)} | {m.judge_errors} |" for m in summary.modes]
        lines.append("")

    if summary.plots or summary.plots_skipped:
        lines += ["## Plots", ""]
        lines += [f"![{plot}]({plot})" for plot in summary.plots]
        if summary.plots_skipped:
            lines.append(f"Plots skipped: {summary.plots_skipped}")
        lines.append("")

    lines += _item_table(summary, rows, out_dir, item_order)
    return "\n".join(lines) + "\n"


def _item_table(
    summary: EvalSummary, rows: Iterable[ResultRecord], out_dir: Path, item_order: Sequence[str]
) -> list[str]:
    position = {item_id: index for index, item_id in enumerate(item_order)}
    modes = {mode.mode: index for index, mode in enumerate(summary.modes)}
    latest = sorted(
        latest_results(rows).values(),
        key=lambda row: (position.get(row.item_id, len(position)), row.item_id, modes.get(row.mode, 0)),
    )
    primary = {mode.mode: mode.primary for mode in summary.modes}
    lines = [
        "## Items",
        "",
        "| item | mode | score | answer | run |",
        "|---|---|---|---|---|",
    ]
    for row in latest:
        metric = primary.get(row.mode, "em")
        score = f"{metric} {row.metrics[metric]:.2f}" if metric in row.metrics else "—"
        answer = f"error: {row.error}" if row.error else row.answer
        cells = [_cell(row.item_id, 40), f"`{row.mode}`", score, _cell(answer), _run_link(row, out_dir)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# ---------------------------------------------------------------- plots


def _accuracy(mode: ModeSummary) -> MetricSummary | None:
    metric = mode.metrics.get(mode.primary)
    return None if metric is None or metric.n == 0 else metric


def _error_bars(metrics: Sequence[MetricSummary]) -> list[list[float]]:
    # Never negative (matplotlib refuses that), even where rounding puts an estimate a hair outside.
    return [[max(0.0, m.value - m.low) for m in metrics], [max(0.0, m.high - m.value) for m in metrics]]


def write_plots(summary: EvalSummary, out_dir: Path) -> list[str]:
    """Draw the test-time-scaling plot (accuracy vs mean tokens per question, one point per mode) and,
    when there are heavy or rank modes, accuracy vs N; both with 95% CI error bars. Returns the file
    names written.

    Raises ModuleNotFoundError without matplotlib (install `openheavy[eval]`).
    """
    # The object-oriented API with an Agg canvas: no pyplot global state and no backend switch, so
    # this is safe inside a server or a test run that already imported pyplot with another backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    points = [
        (mode, metric, mode.mean_tokens)
        for mode in summary.modes
        if (metric := _accuracy(mode)) is not None and mode.mean_tokens is not None
    ]
    if not points:
        return []
    written = []
    ylabel = f"accuracy ({points[0][0].primary}, 95% CI)"

    figure = Figure(figsize=(6.4, 4.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    xs = [tokens for _, _, tokens in points]
    axes.errorbar(
        xs, [m.value for _, m, _ in points], yerr=_error_bars([m for _, m, _ in points]), fmt="o", capsize=3
    )
    for mode, metric, tokens in points:
        axes.annotate(
            mode.mode, (tokens, metric.value), textcoords="offset points", xytext=(5, 4), fontsize=8
        )
    # Log scale shows scaling best, but only works when every mode used tokens.
    log = min(xs) > 0
    if log:
        axes.set_xscale("log")
    _pad_limits(axes, xs, log=log)
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("mean tokens per question (prompt + completion)")
    axes.set_ylabel(ylabel)
    axes.set_title(f"{summary.dataset}: accuracy vs test-time compute")
    axes.grid(True, alpha=0.3)
    figure.savefig(out_dir / TOKENS_PLOT, dpi=120)
    written.append(TOKENS_PLOT)

    families = {
        name: sorted(
            ((mode.n, metric) for mode, metric, _ in points if mode.name == name), key=lambda p: p[0]
        )
        for name in ("rank", "heavy")
    }
    families = {name: series for name, series in families.items() if series}
    if families:
        figure = Figure(figsize=(6.4, 4.4), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        for name, series in families.items():
            metrics = [m for _, m in series]
            axes.errorbar(
                [n for n, _ in series],
                [m.value for m in metrics],
                yerr=_error_bars(metrics),
                marker="o",
                capsize=3,
                label=name,
            )
        for mode, metric, _ in points:
            if mode.name in {"direct", "single"}:
                axes.axhline(metric.value, linestyle="--", linewidth=1, color="grey")
                axes.annotate(
                    mode.mode, (1, metric.value), textcoords="offset points", xytext=(2, 3), fontsize=8
                )
        ns = sorted({1, *(n for series in families.values() for n, _ in series)})
        # N usually doubles (1, 2, 4, 8, 16): a base-2 log axis spaces those evenly; ticks at the Ns run.
        axes.set_xscale("log", base=2)
        _pad_limits(axes, [float(n) for n in ns], log=True)
        axes.xaxis.set_major_locator(FixedLocator(ns))
        axes.xaxis.set_major_formatter(ScalarFormatter())
        axes.xaxis.set_minor_locator(NullLocator())
        axes.set_ylim(-0.02, 1.02)
        axes.set_xlabel("N (samples for rank, agents for heavy)")
        axes.set_ylabel(ylabel)
        axes.set_title(f"{summary.dataset}: accuracy vs N")
        axes.legend()
        axes.grid(True, alpha=0.3)
        figure.savefig(out_dir / N_PLOT, dpi=120)
        written.append(N_PLOT)
    return written


def _pad_limits(axes: Any, xs: Sequence[float], *, log: bool) -> None:
    # Set the x range explicitly: with a single point matplotlib would warn about identical limits.
    low, high = min(xs), max(xs)
    if log:
        axes.set_xlim(low / 1.4, high * 1.4)
    else:
        span = (high - low) or max(abs(high), 1.0)
        axes.set_xlim(low - 0.1 * span, high + 0.1 * span)
