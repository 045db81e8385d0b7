"""What heavy mode's mechanisms did in an eval folder, read from the runs' traces.

Per mode (every mode with traces; heavy modes show the plan columns):
  - the median number of distinct queries and of distinct documents opened per run (all agents);
  - how answers were merged: plan shapes, partition origins (planner / span / fallback), how votes were
    decided (majority / shared words / synthesizer / only answer / conjuncts / dates) and how many list
    merges ran;
  - the mean of each graded metric and of tokens per item, and tokens against `single` on the same items;
  - the share of prompt tokens served from the server's prompt cache (where the backend reports it);
  - for a mode with several agents on a QA task: each agent's own short answer graded by token F1 like
    the run's, as the agents' mean F1 and the mean of the best agent's F1 per item (the merge's
    ceiling: what a merge that always picked the best agent's answer would score).
With `--groups TASKS.jsonl --group-field FIELD`, metrics are also split by whether each task's record
has FIELD inside its `criteria` (for the PEP set: `created_from`, tasks with and without a year span).
Writes the table as JSON next to the printout with `--json PATH`.

    python benchmarks/heavy_report.py docs/results/hotpotqa-50
    python benchmarks/heavy_report.py docs/results/peps-wide \
        --groups ../shared/data/peps/wide_dev.jsonl --group-field created_from
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean, median
from typing import Any

from openheavy.evals.grading import token_f1
from openheavy.evals.store import latest_results, read_results
from openheavy.trace import read_trace


def run_facts(trace_path: str) -> dict[str, Any]:
    """Distinct queries and documents of one run, and its plan, vote and merge events."""
    queries: set[str] = set()
    documents: set[str] = set()
    facts: dict[str, Any] = {"shape": None, "partition": None, "vote": None, "merged": False}
    facts["prompt tokens"] = facts["cached tokens"] = 0
    answers: dict[str, str] = {}  # each agent's short answer (else its answer), by agent
    for record in read_trace(Path(trace_path)):
        payload = record.payload
        if record.kind == "AgentFinished" and record.agent.startswith("agent-"):
            answers[record.agent] = str(payload.get("short_answer") or payload.get("answer") or "")
        elif record.kind == "ModelCalled":
            facts["prompt tokens"] += int(payload.get("prompt_tokens", 0))
            facts["cached tokens"] += int(payload.get("cached_tokens", 0))
        elif record.kind == "SearchDone":
            queries.add(" ".join(str(payload.get("query", "")).casefold().split()))
        elif record.kind == "DocumentOpened":
            documents.add(str(payload.get("doc", {}).get("id", "")))
        elif record.kind == "PlanMade":
            facts["shape"] = payload.get("shape")
            partition = payload.get("partition") or {}
            facts["partition"] = partition.get("origin")
        elif record.kind == "VoteTaken":
            facts["vote"] = payload.get("decided_by")
        elif record.kind == "ListMerged":
            facts["merged"] = True
    facts["queries"] = len(queries)
    facts["documents"] = len(documents)
    facts["agents' answers"] = list(answers.values())
    return facts


def agent_scores(by_row: Sequence[tuple[Any, dict[str, Any]]]) -> dict[str, float]:
    """The agents' own answers graded by token F1, for QA runs (`row.kind == "qa"`, gold `row.answers`)
    with their `run_facts`: the mean over all agents' answers, and the mean of each run's best one (what
    a merge that always picked the best agent's answer would score); {} without runs of several agents."""
    graded = [
        [token_f1(a, row.answers) for a in facts["agents' answers"]]
        for row, facts in by_row
        if row.kind == "qa"
    ]
    graded = [scores for scores in graded if scores]
    if not graded or max(map(len, graded)) < 2:
        return {}
    return {
        "agents' mean f1": fmean(score for scores in graded for score in scores),
        "best agent's f1 (the merge's ceiling)": fmean(max(scores) for scores in graded),
    }


def task_groups(path: Path, field: str) -> dict[str, str]:
    """Item id -> "with FIELD" / "without FIELD", from a tasks file whose records have `criteria`."""
    groups = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            has = field in (record.get("criteria") or {})
            groups[str(record["id"])] = f"with {field}" if has else f"without {field}"
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="an `openheavy eval --out` folder")
    parser.add_argument("--groups", type=Path, help="a tasks .jsonl whose records carry `criteria`")
    parser.add_argument("--group-field", default="created_from")
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args()

    rows = latest_results(read_results(args.folder))
    groups = task_groups(args.groups, args.group_field) if args.groups else {}
    tokens_by = {
        (item, mode): r.figures.get("prompt_tokens", 0) + r.figures.get("completion_tokens", 0)
        for (item, mode), r in rows.items()
        if r.error is None
    }
    table: dict[str, dict[str, Any]] = {}
    per_mode: dict[str, list[Any]] = defaultdict(list)
    for (item, mode), row in sorted(rows.items()):
        if row.error is None:
            per_mode[mode].append((item, row))
    for mode, entries in per_mode.items():
        # An exported trace's path is relative to the results folder ("traces/RUN.jsonl.gz").
        traced = [(r, args.folder / r.trace_path) for _, r in entries if r.trace_path]
        by_row = [(r, run_facts(str(trace))) for r, trace in traced if trace.is_file()]
        facts = [f for _, f in by_row]
        metrics = sorted({m for _, r in entries for m in r.metrics})
        entry: dict[str, Any] = {
            "items": len(entries),
            "median distinct queries": median(f["queries"] for f in facts) if facts else None,
            "median distinct documents": median(f["documents"] for f in facts) if facts else None,
            "mean tokens": fmean(tokens_by[(i, mode)] for i, _ in entries),
        }
        prompted = sum(f["prompt tokens"] for f in facts)
        if prompted:
            # the share of prompt tokens the server served from its prompt cache (llama-server reports it)
            entry["prompt-cache share"] = sum(f["cached tokens"] for f in facts) / prompted
        single = [
            (tokens_by[(i, mode)], tokens_by[(i, "single")]) for i, _ in entries if (i, "single") in tokens_by
        ]
        if single and mode != "single":
            entry["tokens / single"] = sum(a for a, _ in single) / max(1, sum(b for _, b in single))
        for metric in metrics:
            entry[metric] = fmean(r.metrics.get(metric, 0.0) for _, r in entries)
            for group in sorted(set(groups.values())):
                chosen = [r for i, r in entries if groups.get(i) == group]
                if chosen:
                    entry[f"{metric} ({group}, {len(chosen)})"] = fmean(
                        r.metrics.get(metric, 0.0) for r in chosen
                    )
        entry.update(agent_scores(by_row))
        if any(f["shape"] for f in facts):
            entry["shapes"] = dict(Counter(f["shape"] for f in facts if f["shape"]))
            entry["partitions"] = dict(Counter(f["partition"] for f in facts if f["partition"]))
            entry["votes"] = dict(Counter(f["vote"] for f in facts if f["vote"]))
            entry["list merges"] = sum(f["merged"] for f in facts)
        table[mode] = entry

    if not table:
        raise SystemExit(f"no graded runs in {args.folder / 'results.jsonl'}")
    for mode, entry in table.items():
        print(mode)
        for key, value in entry.items():
            shown = f"{value:.3f}" if isinstance(value, float) else value
            print(f"  {key:<40} {shown}")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
