"""What heavy mode's first searches find, with no model: for each question of a multi-hop dev set, the
seed queries its agents start from when the planner gives none (`planning.seed_queries`, four agents),
run on the local index of the eval's corpus. A gold paragraph an agent's first search lists is one it
can open at once; one no first search lists must be found by the agents' own later queries, which a
0.5B model writes badly. Printed side by side:

- "question": the question itself as one query (what one agent's opening search runs);
- "word windows": the seeds before, windows of two content words ("jaspan andrew", "andrew co",
  "co founder", "founder profit");
- "names whole": the seeds now, each holding one of the question's names whole ("Andrew Jaspan co
  founder", "Andrew Jaspan profit media", …).

    .venv/bin/python benchmarks/first_queries.py hotpotqa --limit 50
    .venv/bin/python benchmarks/first_queries.py musique --limit 30

Columns: the share of the questions' gold paragraphs that some first search lists in its top `k`
(`--k`, the search tool's page size), the share of questions with every gold paragraph listed, and the
distinct paragraphs listed per question (what the agents can choose from). The index is built in a
temporary folder from the eval's corpus (`openheavy.evals.build_corpus`), as an evaluation builds it.
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from openheavy.corpus import open_corpus
from openheavy.evals import build_corpus, dataset_corpora, load_dataset
from openheavy.evals.datasets import passage_id, resolve_data_dir
from openheavy.planning import seed_queries, word_windows

AGENTS = 4


def gold_paragraphs(dataset: str, data_dir: Path) -> dict[str, set[str]]:
    """Each question's supporting paragraphs, as the corpus ids the eval indexes them under."""
    gold: dict[str, set[str]] = {}
    if dataset == "hotpotqa":
        path = data_dir / "hotpotqa" / "hotpotqa_dev_300.jsonl"
        for line in path.read_text().splitlines():
            record = json.loads(line)
            gold[record["question_id"]] = {
                passage_id(c["title"], c["paragraph_text"]) for c in record["contexts"] if c["is_supporting"]
            }
    elif dataset == "musique":
        for record in json.loads((data_dir / "musique" / "musique_60.json").read_text()):
            paragraphs = record["paragraphs"]
            if isinstance(paragraphs, str):  # the file holds them as a Python literal
                paragraphs = ast.literal_eval(paragraphs)
            gold[record["id"]] = {
                passage_id(p["title"], p["paragraph_text"]) for p in paragraphs if p["is_supporting"]
            }
    else:
        raise SystemExit(f"no gold paragraphs for {dataset!r}: use hotpotqa or musique")
    return gold


STRATEGIES: dict[str, Callable[[str], list[str]]] = {
    "question": lambda q: [q],
    # what `spread_queries` gave four agents before: the first four of ten windows
    "word windows": lambda q: word_windows(q, 2 * AGENTS + 2)[:AGENTS],
    "names whole": lambda q: seed_queries(q, AGENTS, spare=AGENTS + 2)[:AGENTS],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=["hotpotqa", "musique"])
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--k", type=int, default=5, help="results per search (the search tool's page)")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--show", type=int, default=0, help="print the queries of the first N questions")
    args = parser.parse_args()
    data_dir = resolve_data_dir(args.data_dir)
    items = load_dataset(args.dataset, data_dir, args.limit)
    gold = gold_paragraphs(args.dataset, data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        for spec in dataset_corpora(items):
            build_corpus(spec, Path(tmp))
        index = open_corpus(dataset_corpora(items)[0].name, Path(tmp))
        rows: dict[str, list[tuple[float, bool, int]]] = {name: [] for name in STRATEGIES}
        for number, item in enumerate(items):
            wanted = gold[item.id]
            for name, strategy in STRATEGIES.items():
                queries = strategy(item.question)
                listed = {hit.doc_id for q in queries for hit in index.search_sync(q, k=args.k)}
                rows[name].append((len(wanted & listed) / len(wanted), wanted <= listed, len(listed)))
                if number < args.show:
                    print(f"{item.question[:70]!r} {name}: {queries}")
        index.close()
    print(f"\n{args.dataset}, first {len(items)} questions, top {args.k} per query, {AGENTS} agents' seeds\n")
    print("| first queries | gold paragraphs listed | questions with all listed | paragraphs listed |")
    print("|---|---|---|---|")
    for name, got in rows.items():
        share = statistics.mean(r[0] for r in got)
        whole = statistics.mean(float(r[1]) for r in got)
        listed = statistics.mean(r[2] for r in got)
        print(f"| {name} | {share:.3f} | {whole:.3f} | {listed:.1f} |")


if __name__ == "__main__":
    main()
