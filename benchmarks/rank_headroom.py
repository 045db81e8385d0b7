"""How much a better verifier could gain in rank mode: per-sample accuracy, vote and "some sample right".

Reads an eval folder's `results.jsonl`, opens each rank:N run's trace, grades every sample's extracted
answer with the same grader as the report, and prints per mode:
  - sample accuracy: the share of all samples whose answer is right;
  - chosen: the accuracy of the answer the verifier picked (what the report shows);
  - some sample right: the share of items where at least one sample was right (an oracle verifier).

    .venv/bin/python benchmarks/rank_headroom.py docs/results/gsm8k
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from openheavy.evals import EvalItem, grade_answer
from openheavy.evals.store import read_results

PRIMARY = {"math": "correct", "qa": "em"}


def sample_answers(trace_path: str) -> list[str]:
    """The answers of all samples, as the verifier saw them (one `Note(topic="verifier")` each)."""
    answers = []
    with open(trace_path, encoding="utf-8") as lines:
        for line in lines:
            event = json.loads(line)
            if event.get("kind") == "Note" and event.get("topic") == "verifier":
                answers.append(str(event["data"]["answer"]))
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="an `openheavy eval --out` folder")
    args = parser.parse_args()

    stats: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in read_results(args.folder):
        metric = PRIMARY.get(row.kind)
        if row.mode_name != "rank" or metric is None or row.error or not row.trace_path:
            continue
        item = EvalItem(row.item_id, row.question, tuple(row.answers), row.kind)
        answers = sample_answers(row.trace_path)
        right = [grade_answer(item, answer).metrics[metric] >= 1.0 for answer in answers]
        mode = stats[row.mode]
        mode["items"] += 1
        mode["samples"] += len(right)
        mode["samples right"] += sum(right)
        mode["chosen right"] += row.metrics.get(metric, 0.0)
        mode["some sample right"] += any(right)

    if not stats:
        raise SystemExit(f"no graded rank:N runs with traces in {args.folder / 'results.jsonl'}")
    print(f"{'mode':<10} {'items':>5} {'sample accuracy':>16} {'chosen':>8} {'some sample right':>18}")
    for mode, s in sorted(stats.items()):
        print(
            f"{mode:<10} {int(s['items']):>5} {s['samples right'] / s['samples']:>16.3f} "
            f"{s['chosen right'] / s['items']:>8.3f} {s['some sample right'] / s['items']:>18.3f}"
        )


if __name__ == "__main__":
    main()
