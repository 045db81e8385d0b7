"""The plots of an evaluation (matplotlib, the `eval` extra): accuracy against mean tokens per question
(test-time compute) and, for heavy and rank modes, against N; both with 95% CI error bars."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openheavy.evals.stats import EvalSummary, MetricSummary, ModeSummary

TOKENS_PLOT = "accuracy_vs_tokens.png"
N_PLOT = "accuracy_vs_n.png"


def _accuracy(mode: ModeSummary) -> MetricSummary | None:
    metric = mode.metrics.get(mode.primary)
    return None if metric is None or metric.n == 0 else metric


def error_bars(metrics: Sequence[MetricSummary]) -> list[list[float]]:
    """matplotlib's `yerr`/`xerr` for `metrics`: the distances from each estimate down and up to its CI."""
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
        xs, [m.value for _, m, _ in points], yerr=error_bars([m for _, m, _ in points]), fmt="o", capsize=3
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
                yerr=error_bars(metrics),
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
