"""Heavy mode's vote with answers that only repeat the question set aside
(`openheavy.answer_text.echoes_question`), with no model: in recorded heavy runs, every vote over the
agents' short answers (decided by majority, by shared words or by the synthesizer) is taken again with
the current `vote_on_answers` from the answers the trace records, and the answer it would give is graded
against the gold one. The agents' work does not depend on the vote, so this is what a rerun would grade
whenever the vote decides; a vote left undecided keeps the recorded answer.

    .venv/bin/python benchmarks/echo_vote.py docs/results/hotpotqa-50-r13 docs/results/musique-30-r2

Each argument is an eval's output folder (`results.jsonl` and the `traces/` it names). Printed per
folder: heavy runs, recorded votes that held an echo, how many decisions change, and the mean F1 of
all heavy runs as recorded and revoted; then each changed decision.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from shared_words_vote import print_revotes  # a sibling script: run from benchmarks/

from openheavy.agent import ANSWERED, AgentResult
from openheavy.aggregation import vote_on_answers
from openheavy.answer_text import echoes_question
from openheavy.evals.grading import token_f1
from openheavy.tools.sources import SourceBook
from openheavy.trace import read_trace
from openheavy.types import Usage

# The votes taken over the agents' short answers (not "dates" or "conjuncts", which vote on other things).
REVOTED = frozenset({"majority", "shared words", "synthesizer"})


def answers_of(candidates: list[dict[str, Any]]) -> list[AgentResult]:
    """One result per agent of a recorded vote, with the short answer it gave (a set-aside one too)."""
    results = [
        AgentResult(
            agent, "task", c["answer"], [], ANSWERED, 1, Usage(), SourceBook(), short_answer=c["answer"]
        )
        for c in candidates
        for agent in c["agents"]
    ]
    return sorted(results, key=lambda r: r.agent)


def revote(folder: Path) -> tuple[list[str], list[str]]:
    """The table row for one eval folder, and a line per decision that changes."""
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line]
    heavy = [r for r in rows if str(r["mode"]).startswith("heavy") and not r.get("error")]
    before = after = 0.0
    echoed = changed = 0
    changes: list[str] = []
    for row in heavy:
        f1 = float(row["metrics"]["f1"])
        before += f1
        votes = [
            r.payload
            for r in read_trace(folder / row["trace_path"])
            if r.kind == "VoteTaken" and r.payload.get("decided_by") in REVOTED
        ]
        new = f1
        for vote in votes[:1]:
            results = answers_of(vote["candidates"])
            if not any(echoes_question(r.short_answer, row["question"]) for r in results):
                continue
            echoed += 1
            winner = vote_on_answers(results, row["question"]).winner
            if winner is None or winner.answer == vote["winner"]:
                continue
            changed += 1
            new = token_f1(winner.answer, row["answers"])
            changes.append(
                f"  {folder.name}: F1 {f1:.2f} -> {new:.2f}  gold {row['answers'][0]!r}: "
                f"{vote['winner'][:60]!r} ({vote['decided_by']}) -> {winner.answer[:60]!r}"
            )
        after += new
    n = max(1, len(heavy))
    table_row = [
        folder.name,
        str(len(heavy)),
        str(echoed),
        str(changed),
        f"{before / n:.3f}",
        f"{after / n:.3f}",
    ]
    return table_row, changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="eval output folders")
    args = parser.parse_args()
    header = ["eval", "heavy runs", "votes with an echo", "decisions changed", "F1 recorded", "F1 revoted"]
    print_revotes(args.folders, revote, header)


if __name__ == "__main__":
    main()
