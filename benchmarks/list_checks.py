"""Wide search's checks alone: how well the conditions a model states for a list question, checked in
code against a deep search (`openheavy.item_check.check_list`), find a wide-search dataset's items,
with no research agent at all. It measures the mechanism heavy mode's list merge rests on, apart from
what the agents add, and prints per task the conditions kept, what the checks dropped, and item
precision, recall and F1 graded as the eval grades them.

    .venv/bin/python benchmarks/list_checks.py --model local:fast
    .venv/bin/python benchmarks/list_checks.py --model local:fast --dataset my_wide_tasks.jsonl

The corpus is indexed first if it is not yet (as `openheavy eval` does).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from openheavy.config import load_settings
from openheavy.corpus.catalog import open_corpus
from openheavy.evals import build_corpus, dataset_corpora, grade_answer, load_dataset
from openheavy.item_check import check_list
from openheavy.models.registry import resolve_model
from openheavy.search.cache import CachedSearch


async def main(dataset: str, model_spec: str, data_dir: Path | None, limit: int | None) -> None:
    settings = load_settings()
    items = [item for item in load_dataset(dataset, data_dir, limit) if item.kind == "wide"]
    if not items:
        raise SystemExit(f"{dataset} has no wide-search items")
    for spec in dataset_corpora(items):
        build_corpus(spec, settings.index_dir)
    model = resolve_model(model_spec, settings)
    totals = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    print(
        f"{'task':<14} {'P':>5} {'R':>5} {'F1':>5} {'listed':>6} {'gold':>5} {'s':>5}  conditions · dropped"
    )
    try:
        for item in items:
            assert item.corpus is not None
            search = CachedSearch(open_corpus(item.corpus.name, settings.index_dir))
            started = time.monotonic()
            checked = await check_list(model, search, item.question, [])
            seconds = time.monotonic() - started
            listed = "\n".join(c.document.url for c in checked.accepted if c.document is not None)
            grade = grade_answer(item, listed)
            for name in totals:
                totals[name] += grade.metrics[name]
            c = checked.conditions
            kept = ", ".join(
                [repr(n) for n in c.names] + ([f"{c.low}-{c.high}"] if c.low is not None else [])
            )
            print(
                f"{item.id:<14} {grade.metrics['precision']:>5.2f} {grade.metrics['recall']:>5.2f} "
                f"{grade.metrics['f1']:>5.2f} {len(checked.accepted):>6} {len(item.answers):>5} "
                f"{seconds:>5.1f}  {kept or '(none)'} · {'; '.join(c.problems) or '-'}"
            )
    finally:
        close = getattr(model, "aclose", None)
        if close is not None:
            await close()
    means = "  ".join(f"{name} {value / len(items):.3f}" for name, value in totals.items())
    print(f"mean over {len(items)} tasks: {means}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="peps-wide", help="peps-wide, or a .jsonl file of wide tasks")
    parser.add_argument("--model", default="local:fast")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    asyncio.run(main(args.dataset, args.model, args.data_dir, args.limit))
