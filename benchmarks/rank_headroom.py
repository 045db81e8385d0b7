"""How much a better verifier could gain in rank mode: per-sample accuracy, vote and "some sample right".

Reads an eval folder's `results.jsonl`, opens each rank:N run's trace, grades every sample's extracted
answer with the same grader as the report, and prints per mode:
  - sample accuracy: the share of all samples whose answer is right;
  - greedy: the accuracy of the greedy sample (temperature 0; traces from before it was recorded: n/a);
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


def sample_answers(trace_path: str) -> list[tuple[str, bool]]:
    """The answers of all samples, as the verifier saw them (one `Note(topic="verifier")` each), and
    whether each was the greedy sample."""
    answers = []
    with open(trace_path, encoding="utf-8") as lines:
        for line in lines:
            event = json.loads(line)
            if event.get("kind") == "Note" and event.get("topic") == "verifier":
                data = event["data"]
                answers.append((str(data["answer"]), data.get("temperature") == 0.0))
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
        right = [grade_answer(item, answer).metrics[metric] >= 1.0 for answer, _ in answers]
        mode = stats[row.mode]
        mode["items"] += 1
        mode["samples"] += len(right)
        mode["samples right"] += sum(right)
        greedy = [ok for ok, (_, is_greedy) in zip(right, answers, strict=True) if is_greedy]
        mode["greedy items"] += bool(greedy)
        mode["greedy right"] += any(greedy)
        mode["chosen right"] += row.metrics.get(metric, 0.0)
        mode["some sample right"] += any(right)

    if not stats:
        raise SystemExit(f"no graded rank:N runs with traces in {args.folder / 'results.jsonl'}")
    header = f"{'mode':<10} {'items':>5} {'sample accuracy':>16} {'greedy':>8} {'chosen':>8}"
    print(f"{header} {'some sample right':>18}")
    for mode, s in sorted(stats.items()):
        greedy = f"{s['greedy right'] / s['greedy items']:.3f}" if s["greedy items"] else "n/a"
        print(
            f"{mode:<10} {int(s['items']):>5} {s['samples right'] / s['samples']:>16.3f} {greedy:>8} "
            f"{s['chosen right'] / s['items']:>8.3f} {s['some sample right'] / s['items']:>18.3f}"
        )


if __name__ == "__main__":
    main()
