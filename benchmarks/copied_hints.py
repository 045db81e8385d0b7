"""How many stored answers carry a sentence copied from what their agent was told, with no model: every
row of the given results folders is read with its trace, and `answer_text.drop_copied_sentences` is
applied to each agent's answer (against that agent's own system and user messages, as recorded in its
`ModelCalled` events) and to the run's final answer (against all its agents' messages). A small model
ends an answer with a hint it was shown ("The question asks about Ranger Rick too, and you have not
read about it yet: open [1] before you answer."), and heavy mode passed such a sentence on to the reader.

    .venv/bin/python benchmarks/copied_hints.py docs/results/hotpotqa-50-r12 docs/results/hotpotqa-50-r13

Printed per folder and mode: runs, final answers with a copied sentence, agents' answers and those with
one; `--show` prints each sentence found. Runs made since the agent drops such sentences show none in
agents' answers by construction; what the check still finds there is what it would miss.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from openheavy.answer_text import drop_copied_sentences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="results folders (results.jsonl, traces/)")
    parser.add_argument("--show", action="store_true", help="print each copied sentence found")
    args = parser.parse_args()
    print("| results | mode | runs | final answers with a copy | agents' answers | with a copy |")
    print("|---|---|---|---|---|---|")
    for folder in args.folders:
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for line in (folder / "results.jsonl").read_text().splitlines():
            row = json.loads(line) if line else None
            if row is None or not row.get("trace_path"):
                continue
            trace = folder / row["trace_path"]
            if not trace.is_file():
                continue
            told, wrote, answers = _agents(trace)
            count = counts[row["mode"]]
            count[0] += 1
            everyone = (
                [t for texts in told.values() for t in texts],
                [t for texts in wrote.values() for t in texts],
            )
            count[1] += _copies(row.get("answer") or "", *everyone, row["question"], "final", args.show)
            for agent, answer in answers:
                count[2] += 1
                count[3] += _copies(answer, told[agent], wrote[agent], row["question"], agent, args.show)
        for mode, (runs, finals, agents, copied) in counts.items():
            print(f"| {folder.name} | {mode} | {runs} | {finals} | {agents} | {copied} |")


def _agents(trace: Path) -> tuple[dict[str, list[str]], dict[str, list[str]], list[tuple[str, str]]]:
    """Each research agent's system and user messages, its own (assistant) messages, and the answers
    agents finished with."""
    told: dict[str, list[str]] = defaultdict(list)
    wrote: dict[str, list[str]] = defaultdict(list)
    answers: list[tuple[str, str]] = []
    with gzip.open(trace, "rt", encoding="utf-8") as lines:
        for line in lines:
            event: dict[str, Any] = json.loads(line)
            agent = str(event.get("agent") or "")
            if not agent.startswith("agent"):
                continue
            if event.get("kind") == "ModelCalled":
                told[agent] += [m["content"] for m in event["messages"] if m["role"] in ("system", "user")]
                wrote[agent] += [m["content"] for m in event["messages"] if m["role"] == "assistant"]
            elif event.get("kind") == "AgentFinished":
                answers.append((agent, event.get("answer") or ""))
    return told, wrote, [(agent, answer) for agent, answer in answers if agent in told]


def _copies(answer: str, told: list[str], wrote: list[str], question: str, who: str, show: bool) -> int:
    _, edit = drop_copied_sentences(answer, told, question, written=wrote)
    if edit is None:
        return 0
    if show:
        print(f"  {who}: {edit.detail}")
    return 1


if __name__ == "__main__":
    main()
