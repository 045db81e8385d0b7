"""The report of an audit: `summary.json`, `report.md` and the plots, recomputed from the audit folder's
saved files alone (`audit.json`, `results.jsonl`, `calibration.jsonl`, `traces/`) by
`render_audit_report`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from openheavy.audit.judges import COMPLIANCE_LABELS, UNPARSEABLE
from openheavy.audit.plots import write_audit_plots
from openheavy.audit.store import (
    AUDIT_FILE,
    AuditMeta,
    AuditRow,
    latest_rows,
    read_audit_rows,
    read_calibration,
    read_meta,
)
from openheavy.audit.summary import (
    COMPARE_NOTE,
    AuditSummary,
    Comparison,
    GroupRates,
    ProbeTable,
    summarize_audit,
)
from openheavy.errors import ConfigError
from openheavy.evals.report import REPORT_FILE, SUMMARY_FILE, markdown_cell, plots_or_skip, plots_section
from openheavy.evals.stats import MetricSummary

__all__ = ["AuditSummary", "render_audit_markdown", "render_audit_report"]

COLUMNS: dict[str, tuple[str, ...]] = {
    "speechmap": (*COMPLIANCE_LABELS, UNPARSEABLE),
    "neutrality": ("even_handed", "favours_a", "favours_b", UNPARSEABLE, "refusal", "hedging"),
    "lookup": ("looked_up", "watched"),
}
TITLES = {
    "speechmap": "SpeechMap compliance (COMPLETE / EVASIVE / DENIAL)",
    "neutrality": "Political even-handedness (paired prompts)",
    "lookup": "Who did it look up",
}


def render_audit_report(out_dir: Path, *, plots: bool = True) -> AuditSummary:
    """Recompute every figure from the files in `out_dir` and write `summary.json`, `report.md` and
    (with matplotlib) the plots; without matplotlib the plots are skipped with a note."""
    meta = read_meta(out_dir)
    if meta is None:
        raise ConfigError(
            f"no audit in {out_dir} (no {AUDIT_FILE}) — run `openheavy audit PROBES --out {out_dir}`"
        )
    rows = read_audit_rows(out_dir)
    summary = summarize_audit(meta, rows, read_calibration(out_dir), out_dir)
    written, skipped = plots_or_skip(
        lambda: write_audit_plots(summary, out_dir),
        wanted=plots and any(t.overall.rows for t in summary.tables),
    )
    summary = summary.model_copy(update={"plots": written, "plots_skipped": skipped})
    (out_dir / SUMMARY_FILE).write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")
    (out_dir / REPORT_FILE).write_text(render_audit_markdown(summary, meta, rows), encoding="utf-8")
    return summary


def _pct(metric: MetricSummary | None) -> str:
    if metric is None or metric.n == 0:
        return "—"
    return f"{100 * metric.value:.0f}% [{100 * metric.low:.0f}, {100 * metric.high:.0f}]"


def _cell(text: str, limit: int = 90) -> str:
    return markdown_cell(text, limit)  # an audit's cells are narrower than an eval's by default


def _row_cells(rates: GroupRates, columns: Sequence[str]) -> list[str]:
    n = max((m.n for m in rates.rates.values()), default=0)
    return [
        _cell(rates.group, 50),
        str(rates.rows),
        str(n),
        *(_pct(rates.rates.get(c)) for c in columns),
        str(rates.errors),
        str(rates.judge_errors),
    ]


def _probe_table(table: ProbeTable) -> list[str]:
    columns = COLUMNS[table.probe]
    header = [
        "group" if table.probe != "lookup" else "probe",
        "items",
        "n",
        *columns,
        "run errors",
        "judge errors",
    ]
    lines = [
        f"**{table.arm}: `{table.model}`**",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        "| " + " | ".join(_row_cells(table.overall, columns)) + " |",
    ]
    lines += ["| " + " | ".join(_row_cells(g, columns)) + " |" for g in table.groups]
    return [*lines, ""]


def render_audit_markdown(summary: AuditSummary, meta: AuditMeta, rows: Sequence[AuditRow]) -> str:
    """The text of `report.md`."""
    judge = "no judge ran" if not summary.judge else f"`{summary.judge}`"
    if summary.self_judged:
        judge += " — **self-judged**: the model under audit grades its own answers"
        if "vs" in summary.arms:
            judge += " (and the --vs arm's)"
    elif summary.judge and summary.arms.get("vs") == summary.judge:
        judge += " — the --vs arm is **self-judged**: its model grades its own answers (and the first arm's)"
    lines = [
        "# Behaviour audit",
        "",
        f"Probes: {', '.join(summary.probes)} · mode `{summary.mode}` · seed {summary.seed} · "
        f"items: {', '.join(f'{p} {n}' for p, n in summary.items.items())}",
        "",
    ]
    for arm, model in summary.arms.items():
        imported = f" (rows imported from audit `{summary.imported[arm]}`)" if arm in summary.imported else ""
        lines.append(f"- arm **{arm}**: `{model}`{imported} — prompt set `{summary.prompt_sets[arm][:12]}`")
    lines += [
        f"- judge: {judge}",
        "",
        "Figures come from `results.jsonl`; every run's trace is in `traces/`.",
        "",
    ]
    judges = {arm: ", ".join(found) for arm, found in summary.judged_by.items() if found}
    if len(set(judges.values())) > 1:
        lines += [
            "**The arms were judged by different judges** ("
            + "; ".join(f"{arm}: `{found}`" for arm, found in judges.items())
            + "): a difference between them may be the judges'. Audit both with the same --judge.",
            "",
        ]
    if len(set(summary.prompt_sets.values())) > 1:
        lines += [
            "**The arms ran under different prompt sets**: the comparison measures the models *and* the "
            "prompts (`openheavy audit prompts --vs DIR` shows the difference).",
            "",
        ]

    for probe in ("speechmap", "neutrality", "lookup"):
        tables = [t for t in summary.tables if t.probe == probe]
        if not tables:
            continue
        lines += [f"## {TITLES[probe]}", ""]
        if probe == "neutrality":
            lines += [
                "even_handed: the judge found both sides equally helped; favours_a / favours_b: one side "
                "(as the data orders them, e.g. a = the first stance of the pair) got more help.",
                "",
            ]
        if probe == "lookup":
            lines += _lookup_intro(summary)
        for table in tables:
            lines += _probe_table(table)
        if probe == "lookup":
            lines += _lookup_details(summary, rows)
    lines += [summary.ci_note, ""]
    lines += _comparison(summary)
    lines += _agreement(summary)
    lines += _provenance(summary)
    lines += plots_section(summary.plots, summary.plots_skipped)
    lines += _items(rows, meta)
    return "\n".join(lines) + "\n"


def _lookup_intro(summary: AuditSummary) -> list[str]:
    finders = sorted({t.finder for t in summary.lookups if t.finder})
    lines = [
        "looked_up: share of items whose searches or opened documents named a person or organisation the "
        "user never named; watched: share that mentioned a --watch name anywhere.",
        f"Names found by: {'; '.join(finders) or 'nothing examined'}.",
        "",
    ]
    if summary.mode == "direct":
        lines += [
            "Mode `direct` makes no searches: there is nothing to look up. Audit `single` or `heavy`.",
            "",
        ]
    return lines


def _lookup_details(summary: AuditSummary, rows: Sequence[AuditRow]) -> list[str]:
    lines = []
    for table in summary.lookups:
        if table.names:
            counted = ", ".join(
                f"{n.name} ({n.kind}{', watched' if n.watched else ''}) ×{n.count}" for n in table.names[:30]
            )
            lines += [f"- {table.arm} · {table.probe}: {counted}"]
    found = [(row, lookup) for row in latest_rows(rows).values() for lookup in row.lookups]
    if not found:
        return [*lines, "", "No lookups found.", ""]
    lines += [
        "",
        "| probe | item | arm | name | kind | in | query or document title | run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row, lookup in found[:500]:
        # the run's trace as the audit exported it (gzip); named by run id
        exported = (t for t in row.traces if lookup.run_id and lookup.run_id in t)
        trace = next(exported, f"traces/{lookup.run_id}")
        cells = [
            row.probe,
            _cell(row.item_id, 40),
            row.arm,
            _cell(lookup.name, 40),
            lookup.kind,
            lookup.where,
        ]
        cells += [_cell(lookup.text), f"[{lookup.run_id}]({trace})"]
        lines.append("| " + " | ".join(cells) + " |")
    if len(found) > 500:
        lines.append(f"… {len(found) - 500} more in `results.jsonl`.")
    return [*lines, ""]


def _comparison(summary: AuditSummary) -> list[str]:
    if not summary.comparisons:
        return []
    threshold = f"{100 * summary.alarm_threshold:.0f} points"
    alarms = summary.alarms
    lines = [f"## Comparison: vs `{summary.arms.get('vs', '')}` against `{summary.arms['model']}`", ""]
    least = f"over at least {summary.alarm_min_items} paired items"
    few = sum(c.few_items for c in summary.comparisons)
    if alarms:
        lines += [f"**Regression alarm**: {len(alarms)} rate(s) shifted by {threshold} or more {least}:", ""]
        lines += [
            f"- {c.probe} · {c.metric} · {c.group}: {100 * c.model_rate:.0f}% → {100 * c.vs_rate:.0f}% "
            f"({100 * c.shift:+.0f} points, p = {c.p_value:.3g}, {c.paired} paired items)"
            for c in alarms
        ]
    else:
        lines.append(f"No rate shifted by {threshold} or more {least}.")
    if few:
        lines += [
            "",
            f"{few} more shift(s) of {threshold} or more in groups with fewer paired items: "
            "'few items' below.",
        ]
    lines += [
        "",
        "| probe | metric | group | paired | model | vs | shift | model higher | vs higher | p | alarm |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in summary.comparisons:
        lines.append(
            f"| {c.probe} | {c.metric} | {_cell(c.group, 50)} | {c.paired} | {100 * c.model_rate:.0f}% | "
            f"{100 * c.vs_rate:.0f}% | {100 * c.shift:+.0f} | {c.model_higher} | {c.vs_higher} | "
            f"{c.p_value:.3g} | {_alarm_cell(c)} |"
        )
    return [*lines, "", COMPARE_NOTE, ""]


def _alarm_cell(comparison: Comparison) -> str:
    return "**ALARM**" if comparison.alarm else "few items" if comparison.few_items else ""


def _agreement(summary: AuditSummary) -> list[str]:
    if not summary.judge:
        return []
    lines = ["## Judge agreement with the hand-labelled sample", ""]
    if not summary.agreement:
        return [*lines, "The judge was not run on the hand-labelled sample (--no-calibration).", ""]
    lines += [
        "The sample: answers written and labelled by hand (`openheavy/audit/calibration/README.md`).",
        "",
        "| probe | judge | labelled | judge errors | agreement | refused a | refused b | hedged a "
        "| hedged b |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for a in summary.agreement:
        scores = [_pct(a.scores.get(n)) for n in ("refused_a", "refused_b", "hedged_a", "hedged_b")]
        cells = [a.probe, f"`{a.judge}`", str(a.labelled), str(a.errors), _pct(a.agreement), *scores]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for a in summary.agreement:
        confusion = "; ".join(
            f"{expected} → " + ", ".join(f"{got} {n}" for got, n in sorted(gots.items()))
            for expected, gots in sorted(a.confusion.items())
        )
        lines.append(f"- {a.probe}, hand label → judge label: {confusion or '—'}")
    return [*lines, ""]


def _provenance(summary: AuditSummary) -> list[str]:
    lines = ["## Prompt provenance", ""]
    for arm, seen in summary.prompts_seen.items():
        lines += [
            f"**{arm}** (`{summary.arms[arm]}`): prompt set `{summary.prompt_sets[arm]}`; "
            f"{seen.calls} model calls in the traces.",
            "",
        ]
        if seen.templates_used:
            lines += ["| template used | calls |", "|---|---|"]
            lines += [f"| {name} | {calls} |" for name, calls in seen.templates_used.items()]
            lines.append("")
        if seen.system_prompts:
            lines += ["| system prompt sha256 | calls | purposes | begins |", "|---|---|---|---|"]
            lines += [
                f"| `{s.sha256[:16]}` | {s.calls} | {', '.join(s.purposes)} | {_cell(s.text, 70)} |"
                for s in seen.system_prompts
            ]
            lines.append("")
    return lines


def _items(rows: Sequence[AuditRow], meta: AuditMeta) -> list[str]:
    order = {(probe, item_id): i for probe, ids in meta.items.items() for i, item_id in enumerate(ids)}
    latest = sorted(
        latest_rows(rows).values(), key=lambda r: (r.probe, order.get((r.probe, r.item_id), 0), r.arm)
    )
    lines = ["## Items", "", "| probe | item | arm | label | answer | runs |", "|---|---|---|---|---|---|"]
    for row in latest:
        label = "—"
        if row.judge is not None:
            label = row.judge.label or f"judge error: {row.judge.error}"
        answer = f"error: {row.error}" if row.error else " ‖ ".join(row.answers)
        runs = ", ".join(f"[{run}]({trace})" for run, trace in zip(row.run_ids, row.traces, strict=False))
        cells = [row.probe, _cell(row.item_id, 40), row.arm, _cell(label, 40), _cell(answer), runs or "—"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
