"""Heavy mode's fallback vote on shared words (`openheavy.aggregation.shared_words`), with no model: in
recorded heavy runs, every vote the synthesizer had to decide (no short answer had a majority) is taken
again from the agents' answers as the trace records them, and the answer it would give is graded
against the gold one. The agents' work does not depend on the vote, so this is what a rerun would grade
whenever the shared words decide; a vote they leave undecided keeps the synthesizer's answer.

    .venv/bin/python benchmarks/shared_words_vote.py docs/results/hotpotqa-50-r9 docs/results/musique-30-r2

Each argument is an eval's output folder (`results.jsonl` and the `traces/` it names). Printed per
folder: heavy runs, votes the synthesizer decided, how many the shared words decide, and the mean F1
of all heavy runs as recorded and with those decisions; then each changed decision.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections.abc import Callable
from pathlib import Path

from openheavy.aggregation import shared_words
from openheavy.evals.grading import token_f1


def revote(folder: Path) -> tuple[list[str], list[str]]:
    """The table row for one eval folder, and a line per decision the shared words change."""
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line]
    heavy = [r for r in rows if str(r["mode"]).startswith("heavy") and not r.get("error")]
    before = after = 0.0
    undecided = decided = 0
    changes: list[str] = []
    for row in heavy:
        f1 = row["metrics"]["f1"]
        before += f1
        with gzip.open(folder / row["trace_path"], "rt") as trace:
            events = [json.loads(line) for line in trace]
        votes = [e for e in events if e["kind"] == "VoteTaken" and e["decided_by"] == "synthesizer"]
        new = f1
        for vote in votes[:1]:
            undecided += 1
            answers = [c["answer"] for c in vote["candidates"] for _ in c["agents"]]
            shared = shared_words(answers, row["question"])
            if shared is None:
                continue
            decided += 1
            new = token_f1(shared[0], row["answers"])
            changes.append(
                f"  {folder.name}: F1 {f1:.2f} -> {new:.2f}  gold {row['answers'][0]!r}, "
                f"shared {shared[0]!r} ({len(shared[1])} of {len(answers)} answers), "
                f"synthesizer {vote['winner'][:60]!r}"
            )
        after += new
    n = max(1, len(heavy))
    row = [
        folder.name,
        str(len(heavy)),
        str(undecided),
        str(decided),
        f"{before / n:.3f}",
        f"{after / n:.3f}",
    ]
    return row, changes


def print_revotes(
    folders: list[Path], revote_folder: Callable[[Path], tuple[list[str], list[str]]], header: list[str]
) -> None:
    """The table of `revote_folder`'s rows under `header`, one per folder, then every changed decision."""
    table, changes = [header], []
    for folder in folders:
        row, changed = revote_folder(folder)
        table.append(row)
        changes += changed
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)))
    print("\n".join(["", "decisions changed:", *changes]) if changes else "\nno decision changed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="eval output folders")
    args = parser.parse_args()
    header = ["eval", "heavy runs", "synthesizer votes", "shared words decide", "F1 recorded", "F1 revoted"]
    print_revotes(args.folders, revote, header)


if __name__ == "__main__":
    main()
