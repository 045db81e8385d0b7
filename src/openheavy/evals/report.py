"""The report of an evaluation: `summary.json`, `report.md` (per-mode table, judge table, plots, every
item's row with its run id, linked to the trace exported beside it) and the plots, recomputed from the
saved results alone by `render_report`. Links are relative: the folder can be moved or published."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from openheavy.errors import ConfigError
from openheavy.evals.grading import EVAL_INSTALL_HINT
from openheavy.evals.plots import write_plots
from openheavy.evals.portable import exported_trace
from openheavy.evals.stats import CI_NOTE, EvalSummary, MetricSummary, summarize
from openheavy.evals.store import (
    META_FILE,
    RESULTS_FILE,
    ResultRecord,
    latest_results,
    read_meta,
    read_results,
)

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.md"


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
    written, skipped = plots_or_skip(
        lambda: write_plots(summary, out_dir), wanted=plots and any(mode.done for mode in summary.modes)
    )
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


def plots_section(plots: Sequence[str], skipped: str | None) -> list[str]:
    """The report's "Plots" section: each plot as an image, or why they were skipped; nothing when
    there is neither."""
    if not plots and not skipped:
        return []
    lines = ["## Plots", "", *(f"![{plot}]({plot})" for plot in plots)]
    if skipped:
        lines.append(f"Plots skipped: {skipped}")
    return [*lines, ""]


def plots_or_skip(write: Callable[[], list[str]], *, wanted: bool) -> tuple[list[str], str | None]:
    """The plots `write` makes when `wanted`, and why they were skipped (None when they were not). Without
    matplotlib they are skipped with a note rather than failing the report: the numbers matter more than
    the pictures. Any other missing module is a bug and raises."""
    if not wanted:
        return [], None
    try:
        return write(), None
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("matplotlib"):
            raise
        skipped = f"matplotlib is not installed — {EVAL_INSTALL_HINT}"
        log.warning("plots skipped: %s", skipped)
        return [], skipped


def markdown_cell(text: str, limit: int = 100) -> str:
    """`text` as one Markdown table cell: on one line, at most `limit` characters, pipes escaped."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return flat.replace("|", "\\|")


def _run_link(row: ResultRecord, out_dir: Path) -> str:
    if not row.run_id:
        return "—"
    if exported_trace(row, out_dir) is None or row.trace_path is None:
        return f"{markdown_cell(row.run_id)} (trace not available)"
    return f"[{markdown_cell(row.run_id)}]({row.trace_path.replace(' ', '%20')})"


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
        "distinct queries (median)",
        "docs read",
        "cited",
        "ends mid-sentence",
        "repeats itself",
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
            _fmt(mode.medians.get("distinct_queries"), 1),
            _fmt(mode.means.get("documents_read"), 1),
            _fmt(mode.means.get("sources_cited"), 1),
            str(mode.form_problems.get("ends mid-sentence", 0)),
            str(mode.form_problems.get("repeats itself", 0)),
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

    lines += plots_section(summary.plots, summary.plots_skipped)

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
        cells = [
            markdown_cell(row.item_id, 40),
            f"`{row.mode}`",
            score,
            markdown_cell(answer),
            _run_link(row, out_dir),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
