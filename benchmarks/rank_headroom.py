"""How much a better verifier could gain in rank mode: per-sample accuracy, vote and "some sample right".

Reads an eval folder's `results.jsonl`, opens each rank:N run's trace (exported into the folder's
`traces/`), grades every sample's extracted answer with the same grader as the report, and prints per
mode:
  - sample accuracy: the share of all samples whose answer is right (samples that failed, such as a
    program that raised, count as wrong: they cast no vote);
  - greedy: the accuracy of the greedy sample (temperature 0; traces from before it was recorded: n/a);
  - chosen: the accuracy of the answer the verifier picked (what the report shows);
  - some sample right: the share of items where at least one sample was right (an oracle verifier).
Where the samples were of two kinds (rank with the python tool: prose and programs), a second table
gives the same per kind.

    .venv/bin/python benchmarks/rank_headroom.py docs/results/gsm8k
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from openheavy.evals import EvalItem, grade_answer
from openheavy.evals.portable import exported_trace
from openheavy.evals.store import read_results
from openheavy.trace import read_trace

PRIMARY = {"math": "correct", "qa": "em"}


@dataclass(frozen=True)
class Voted:
    answer: str  # "" for a sample that failed
    greedy: bool
    kind: str  # "prose", "program", or "" (traces from before kinds were recorded)


def sample_answers(trace: Path) -> list[Voted]:
    """Every sample of a rank run: those the verifier scored (one `Note(topic="verifier")` each) and
    those that failed (`sample_failed`), with whether each was greedy and its kind."""
    samples = []
    purposes: dict[str, str] = {}  # agent ("sample-3") -> the purpose of its call ("sample", "program")
    for record in read_trace(trace):
        payload = record.payload
        if record.kind == "ModelCalled":
            purposes[record.agent] = str(payload.get("purpose", ""))
        elif record.kind == "Note" and payload.get("topic") == "verifier":
            data = payload["data"]
            samples.append(Voted(str(data["answer"]), data.get("temperature") == 0.0, data.get("kind", "")))
        elif record.kind == "Note" and payload.get("topic") == "sample_failed":
            kind = "program" if purposes.get(record.agent) == "program" else "prose"
            samples.append(Voted("", False, kind))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="an `openheavy eval --out` folder")
    args = parser.parse_args()

    stats: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    kinds: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in read_results(args.folder):
        metric = PRIMARY.get(row.kind)
        trace = exported_trace(row, args.folder)
        if row.mode_name != "rank" or metric is None or row.error or trace is None:
            continue
        item = EvalItem(row.item_id, row.question, tuple(row.answers), row.kind)
        samples = sample_answers(trace)
        right = [bool(s.answer) and grade_answer(item, s.answer).metrics[metric] >= 1.0 for s in samples]
        mode = stats[row.mode]
        mode["items"] += 1
        mode["samples"] += len(right)
        mode["samples right"] += sum(right)
        greedy = [ok for ok, s in zip(right, samples, strict=True) if s.greedy]
        mode["greedy items"] += bool(greedy)
        mode["greedy right"] += any(greedy)
        mode["chosen right"] += row.metrics.get(metric, 0.0)
        mode["some sample right"] += any(right)
        for kind in {s.kind for s in samples if s.kind}:
            of_kind = [(ok, s) for ok, s in zip(right, samples, strict=True) if s.kind == kind]
            k = kinds[(row.mode, kind)]
            k["items"] += 1
            k["samples"] += len(of_kind)
            k["samples right"] += sum(ok for ok, _ in of_kind)
            k["failed"] += sum(not s.answer for _, s in of_kind)
            k["greedy right"] += any(ok for ok, s in of_kind if s.greedy)
            k["some sample right"] += any(ok for ok, _ in of_kind)

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
    if len({kind for _, kind in kinds}) > 1:
        print()
        print(
            f"{'mode':<10} {'kind':<8} {'items':>5} {'samples':>8} {'failed':>7} {'sample accuracy':>16} "
            f"{'greedy':>8} {'some sample right':>18}"
        )
        for (mode, kind), k in sorted(kinds.items()):
            print(
                f"{mode:<10} {kind:<8} {int(k['items']):>5} {int(k['samples']):>8} {int(k['failed']):>7} "
                f"{k['samples right'] / k['samples']:>16.3f} {k['greedy right'] / k['items']:>8.3f} "
                f"{k['some sample right'] / k['items']:>18.3f}"
            )


if __name__ == "__main__":
    main()
