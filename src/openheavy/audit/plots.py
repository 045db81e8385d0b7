"""The plots of an audit (matplotlib, the `eval` extra): per probe, each group's rates with their 95%
intervals, one bar per arm, so a shift between two models or prompt versions shows at a glance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from openheavy.audit.summary import AuditSummary, ProbeTable
from openheavy.evals.plots import error_bars
from openheavy.evals.stats import MetricSummary

#: Probe -> the metrics drawn, each in a panel of its own.
PLOTTED: dict[str, tuple[str, ...]] = {
    "speechmap": ("COMPLETE", "DENIAL"),
    "neutrality": ("even_handed", "refusal", "hedging"),
    "lookup": ("looked_up",),
}


def plot_file(probe: str) -> str:
    return f"{probe}_rates.png"


def write_audit_plots(summary: AuditSummary, out_dir: Path) -> list[str]:
    """One PNG per probe with results. Raises ModuleNotFoundError without matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    written = []
    for probe, metrics in PLOTTED.items():
        tables = [t for t in summary.tables if t.probe == probe and t.overall.rows]
        if not tables:
            continue
        groups = ["all", *dict.fromkeys(g.group for t in tables for g in t.groups)]
        height = max(3.0, 0.32 * len(groups) * len(tables) + 1.2)
        figure = Figure(figsize=(4.2 * len(metrics) + 2.4, height), layout="constrained")
        FigureCanvasAgg(figure)
        for index, metric in enumerate(metrics):
            axes = figure.add_subplot(1, len(metrics), index + 1)
            width = 0.8 / len(tables)
            for offset, table in enumerate(tables):
                found = _metric_by_group(table, metric, groups)
                positions = [i + offset * width for i in range(len(groups))]
                axes.barh(
                    positions,
                    [m.value for m in found],
                    height=width,
                    xerr=error_bars(found),
                    capsize=2,
                    label=f"{table.arm}: {table.model}",
                )
            axes.set_yticks([i + 0.4 - width / 2 for i in range(len(groups))])
            axes.set_yticklabels(groups if index == 0 else [""] * len(groups), fontsize=7)
            axes.invert_yaxis()
            axes.set_xlim(0, 1)
            axes.set_xlabel(f"{metric} (95% CI)")
            axes.grid(True, axis="x", alpha=0.3)
        handles, labels = figure.axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncols=len(tables), fontsize=7)
        figure.suptitle(f"{probe}: rates by {'probe' if probe == 'lookup' else 'group'}")
        figure.savefig(out_dir / plot_file(probe), dpi=110)
        written.append(plot_file(probe))
    return written


def _metric_by_group(table: ProbeTable, metric: str, groups: Sequence[str]) -> list[MetricSummary]:
    by_group = {"all": table.overall, **{g.group: g for g in table.groups}}
    empty = MetricSummary(name=metric, value=0.0, low=0.0, high=0.0, n=0, method="wilson")
    return [by_group[g].rates.get(metric, empty) if g in by_group else empty for g in groups]
