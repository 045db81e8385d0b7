"""Prompt-cache share of recorded runs, by kind of call: how much of each kind of prompt the server
served from its cache. Shows where a run computes prompts again, e.g. heavy's agents' first calls,
which share the team's common prompt (`models.slot_share`).

    .venv/bin/python benchmarks/cache_by_call.py docs/results/hotpotqa-50-r10 /tmp/prefix-on --mode heavy

Each argument is an eval's output folder (`results.jsonl` and the `traces/` it names). Printed per
folder: the prompt tokens computed per run (those the cache did not serve), then prompt tokens and the
cached share of all calls, of the team's prefix calls, of each agent's first call, and of the agents'
later calls.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from openheavy.trace.jsonl import read_trace


def shares(folder: Path, mode: str) -> list[str]:
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line]
    kinds = {"all": [0, 0], "prefix": [0, 0], "agents' first": [0, 0], "agents' later": [0, 0]}
    runs = 0
    for row in rows:
        if not str(row["mode"]).startswith(mode) or row.get("error"):
            continue
        runs += 1
        seen: set[str] = set()
        for record in read_trace(folder / row["trace_path"]):
            if record.kind != "ModelCalled":
                continue
            call = record.payload
            tokens = (call["prompt_tokens"], call["cached_tokens"])
            kind = None
            if call["purpose"] == "prefix":
                kind = "prefix"
            elif record.agent.startswith("agent-"):
                kind = "agents' later" if record.agent in seen else "agents' first"
                seen.add(record.agent)
            for name in ("all", kind):
                if name is not None:
                    kinds[name][0] += tokens[0]
                    kinds[name][1] += tokens[1]
    prompt, cached = kinds["all"]
    computed = f"{(prompt - cached) / runs:,.0f}" if runs else "-"
    lines = [f"{folder.name} ({mode}, {runs} runs): prompt tokens computed (not cached) per run {computed}"]
    for name, (prompt, cached) in kinds.items():
        share = f"{cached / prompt:.1%}" if prompt else "-"
        lines.append(f"  {name:<14} prompt tokens {prompt:>9,}  cached {cached:>9,}  share {share}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folders", type=Path, nargs="+", help="eval output folders")
    parser.add_argument("--mode", default="heavy", help="runs of this mode (prefix match)")
    args = parser.parse_args()
    for folder in args.folders:
        print("\n".join(shares(folder, args.mode)))


if __name__ == "__main__":
    main()
