"""The grounding of a "yes" alone (`openheavy.grounding`), with no model: on every HotpotQA question
that asks the same thing of several names ("Are A and B both …?"), would a "yes" pass the check if the
agent had read all the question's paragraphs? For a question whose answer is yes, a veto is the
check's cost (a right "yes" turned into "no"); for one whose answer is no, a veto is what the check
catches. Printed separately for the first 50 questions (the dev slice the mechanism was built on) and
the rest, which it was not looked at on.

    .venv/bin/python benchmarks/yes_grounding.py ../shared/data/hotpotqa/hotpotqa_dev_300.jsonl

The second table is the same for a choice between the candidates a question names ("Which novelist, A or
B, wrote …?", `grounding.grounded_choice`): how often the words of the question's paragraphs pick a
candidate, and whether it is the gold answer (token F1 ≥ 0.5, or the name inside the gold: the gold may
be a longer form of the name, or a sentence that names it); a comparison ("Who is older …") is left
to the model and counted apart.

The file is the HotpotQA dev set as `../shared/data` holds it (one JSON object per line, with
`question_text`, `answers_objects` and `contexts`).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from openheavy.evals.grading import token_f1
from openheavy.grounding import compares, grounded_choice, ungrounded_yes
from openheavy.normalize import normalize_answer
from openheavy.question_forms import conjunct_split, names_candidates
from openheavy.tools.sources import SourceBook
from openheavy.types import Document


def outcome(record: dict) -> tuple[str, str] | None:
    """("yes"/"no" gold, "kept"/"vetoed") for a question of several names, None for any other."""
    names, predicate = conjunct_split(record["question_text"])
    gold = record["answers_objects"][0]["spans"][0].strip().casefold()
    if not names or gold not in ("yes", "no"):
        return None
    book = read_all(record)
    found = ungrounded_yes(predicate, names, {name: book.about(name) for name in names})
    return gold, "kept" if found is None else "vetoed"


def read_all(record: dict) -> SourceBook:
    """A source book that has opened every paragraph of the question."""
    book = SourceBook()
    for ref, context in enumerate(record["contexts"], 1):
        doc_id = f"{record['question_id']}-{context['id']}"
        book.mark_opened(ref, Document(doc_id, doc_id, context["title"], "", context["paragraph_text"]))
    return book


def choice_outcome(record: dict) -> str | None:
    """ "right"/"wrong"/"undecided" for a question that names candidates, "comparison" when it compares
    them (no choice by the words of a page), None for any other question."""
    question = record["question_text"]
    candidates = names_candidates(question)
    if len(candidates) < 2:
        return None
    book = read_all(record)
    found = grounded_choice(question, candidates, {name: book.about(name) for name in candidates})
    if compares(question, candidates):
        return "comparison"
    if found is None:
        return "undecided"
    gold = [span for answer in record["answers_objects"] for span in answer["spans"]]
    named = normalize_answer(found.name)
    right = token_f1(found.name, gold) >= 0.5 or any(named in normalize_answer(span) for span in gold)
    return "right" if right else "wrong"


def main(path: Path) -> None:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    slices = {"first 50": records[:50], f"other {len(records) - 50}": records[50:]}
    print(
        f"{'slice':<10} {'questions':>9} {'yes kept':>9} {'yes vetoed':>11} {'no vetoed':>10} {'no kept':>8}"
    )
    for label, chunk in slices.items():
        counts = Counter(o for o in map(outcome, chunk) if o is not None)
        print(
            f"{label:<10} {sum(counts.values()):>9} {counts['yes', 'kept']:>9} {counts['yes', 'vetoed']:>11} "
            f"{counts['no', 'vetoed']:>10} {counts['no', 'kept']:>8}"
        )
    print(f"\n{'slice':<10} {'choices':>7} {'right':>6} {'wrong':>6} {'undecided':>10} {'comparisons':>12}")
    for label, chunk in slices.items():
        counts = Counter(o for o in map(choice_outcome, chunk) if o is not None)
        print(
            f"{label:<10} {sum(counts.values()):>7} {counts['right']:>6} {counts['wrong']:>6} "
            f"{counts['undecided']:>10} {counts['comparison']:>12}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "dataset", type=Path, help="HotpotQA dev JSONL (question_text, answers_objects, contexts)"
    )
    main(parser.parse_args().dataset)
