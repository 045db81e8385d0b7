"""What dropping a short answer's restated lead (`answer_text.drop_restated_lead`) does to stored
evaluation runs, with no model: every QA row of the given results folders whose short answer is graded
(`evals.harness.graded_text`) is graded again with the lead dropped. Small models answer "Andrew Jaspan
was the co-founder of 'The Conversation'" where the question asked "… co-founder of what outlet?"; token
F1 counts the restated words against the answer.

    .venv/bin/python benchmarks/restated_leads.py docs/results/hotpotqa-50-r12 docs/results/musique-30-r2

Printed per folder and mode: the rows graded on a short answer, how many the change touches, mean F1 of
all rows before and after, and the touched rows themselves (`--show`). This re-grades final short
answers only: in heavy mode the agents' short answers are settled the same way before they are voted,
which a stored run cannot replay (a new run measures that).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from openheavy.answer_text import drop_restated_lead
from openheavy.evals.datasets import EvalItem
from openheavy.evals.grading import grade_answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="results folders (each with results.jsonl)")
    parser.add_argument("--show", action="store_true", help="print each touched short answer")
    args = parser.parse_args()
    print("| results | mode | rows | touched | F1 before | F1 after | change |")
    print("|---|---|---|---|---|---|---|")
    total: dict[str, list[tuple[float, float]]] = defaultdict(list)
    total_touched: dict[str, int] = defaultdict(int)
    for folder in args.folders:
        rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line]
        by_mode: dict[str, list[tuple[float, float]]] = defaultdict(list)
        touched: dict[str, int] = defaultdict(int)
        for row in rows:
            if row.get("kind") != "qa" or row.get("error"):
                continue
            short = row.get("short_answer") or ""
            graded = short if short.strip() else row.get("answer") or ""
            item = EvalItem(
                id=row["item_id"], kind="qa", question=row["question"], answers=tuple(row["answers"])
            )
            before = _f1(item, graded)
            after = before
            if short.strip():
                trimmed, edit = drop_restated_lead(short, row["question"])
                if edit is not None:
                    after = _f1(item, trimmed)
                    touched[row["mode"]] += 1
                    if args.show:
                        print(f"  {row['mode']}: {short!r} -> {trimmed!r} (gold {row['answers'][0]!r})")
            by_mode[row["mode"]].append((before, after))
        for mode, pairs in by_mode.items():
            total[mode] += pairs
            total_touched[mode] += touched[mode]
            _line(folder.name, mode, pairs, touched[mode])
    for mode, pairs in total.items():
        _line("all", mode, pairs, total_touched[mode])


def _f1(item: EvalItem, text: str) -> float:
    return grade_answer(item, text).metrics["f1"]


def _line(name: str, mode: str, pairs: list[tuple[float, float]], touched: int) -> None:
    before = statistics.mean(b for b, _ in pairs)
    after = statistics.mean(a for _, a in pairs)
    print(
        f"| {name} | {mode} | {len(pairs)} | {touched} | {before:.3f} | {after:.3f} | {after - before:+.3f} |"
    )


if __name__ == "__main__":
    main()
