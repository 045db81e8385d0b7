"""The dated choice in each agent (`ResearchAgent._dated_choice`), with no model: in recorded runs,
each agent's own reads are checked again with `dated_choice.choose_by_date`, and where it decides, its
answer is graded against the gold one in place of the agent's.

    .venv/bin/python benchmarks/dated_choice_agents.py docs/results/hotpotqa-50-r10 --mode single

Each argument is an eval's output folder (`results.jsonl` and the `traces/` it names). For single, the
agent's answer is the run's, so the F1 sum over the decided runs is what a rerun with the same reads
would score; for heavy, its own merge already decides such questions from all agents' reads (see
`heavy.HeavyOrchestrator._dated_answer`), so only single is graded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from openheavy.dated_choice import choose_by_date
from openheavy.evals.grading import token_f1
from openheavy.trace.jsonl import read_trace
from openheavy.types import Document


def regrade(folder: Path, mode: str) -> list[str]:
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line]
    runs = [r for r in rows if str(r["mode"]).startswith(mode) and not r.get("error")]
    lines, before, after, decided = [], 0.0, 0.0, 0
    for row in runs:
        read = [
            Document(p["doc"]["id"], p["doc"]["doc_id"], p["doc"]["title"], "", p["text_shown"])
            for p in (r.payload for r in read_trace(folder / row["trace_path"]) if r.kind == "DocumentOpened")
        ]
        choice = choose_by_date(row["question"], read)
        if choice is None or choice.winner is None:
            continue
        decided += 1
        old, new = row["metrics"]["f1"], token_f1(choice.winner.name, row["answers"])
        before, after = before + old, after + new
        lines.append(f"  F1 {old:.2f} -> {new:.2f}  {row['question'][:70]!r}: {choice.winner.name!r}")
    n = max(1, len(runs))
    total = sum(r["metrics"]["f1"] for r in runs)
    head = (
        f"{folder.name} ({mode}): {len(runs)} runs, {decided} decided by dates; "
        f"F1 of those {before:.2f} -> {after:.2f}; "
        f"mean F1 of all {total / n:.3f} -> {(total - before + after) / n:.3f}"
    )
    return [head, *lines]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folders", type=Path, nargs="+", help="eval output folders")
    parser.add_argument("--mode", default="single")
    args = parser.parse_args()
    for folder in args.folders:
        print("\n".join(regrade(folder, args.mode)))


if __name__ == "__main__":
    main()
