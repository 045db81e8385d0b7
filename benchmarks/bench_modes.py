"""The four modes on the embedded model, over pydocs: tokens, wall time, overhead and prompt-cache hits.

For each fixed question, runs direct, single, heavy (planner decides, at most 4 agents) and rank
(4 samples, vote) with one model server shared by all runs, then prints one row per (question, mode):
tokens in/out, wall seconds, searches, documents read, sources cited; for heavy the share of tokens
spent by the planner and the synthesis; for every mode the share of prompt tokens llama-server served
from its prompt cache.

    python benchmarks/bench_modes.py [--model local] [--modes direct,single,heavy,rank]
        [--out bench-modes.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from openheavy.api import Heavy
from openheavy.config import load_settings
from openheavy.modes import RunOptions

QUESTIONS = [
    "How do I run a subprocess with a timeout and capture its output?",
    "How can I parse command-line options with optional and positional arguments?",
    "What is the difference between a shallow copy and a deep copy?",
]
MODES: list[tuple[str, RunOptions]] = [
    ("direct", RunOptions()),
    ("single", RunOptions()),
    ("heavy", RunOptions(max_agents=4)),
    ("rank", RunOptions(n=4, verifier="vote")),
]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", default="local")
    parser.add_argument("--corpus", default="pydocs")
    parser.add_argument("--modes", default=",".join(m for m, _ in MODES), help="a subset, comma-separated")
    parser.add_argument("--out", type=Path, default=Path("bench-modes.json"))
    args = parser.parse_args()
    chosen = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(chosen) - {m for m, _ in MODES})
    if unknown or not chosen:
        parser.error(f"unknown modes {unknown}; choose from {', '.join(m for m, _ in MODES)}")
    modes = [(m, o) for m, o in MODES if m in chosen]
    settings = load_settings(model=args.model, corpus=args.corpus)
    rows = []
    started = time.perf_counter()
    async with Heavy(settings=settings) as heavy:
        for qi, question in enumerate(QUESTIONS, start=1):
            for mode, options in modes:
                result = await heavy.arun(question, mode, options)
                f = result.figures
                overhead = sum(
                    p.total_tokens for name, p in f.by_purpose.items() if name in ("plan", "synthesis")
                )
                row = {
                    "question": qi,
                    "mode": mode,
                    "prompt_tokens": f.prompt_tokens,
                    "completion_tokens": f.completion_tokens,
                    "wall_s": round(f.wall_seconds, 1),
                    "searches": f.searches,
                    "documents_read": f.documents_read,
                    "sources_cited": f.sources_cited,
                    "agents": f.agents,
                    "overhead_share": round(overhead / f.total_tokens, 3) if f.total_tokens else 0.0,
                    "cache_hit_share": round(f.cached_tokens / f.prompt_tokens, 3)
                    if f.prompt_tokens
                    else 0.0,
                    "run_id": result.run_id,
                    "answer": result.answer,
                }
                rows.append(row)
                print(
                    f"Q{qi} {mode:<7} tokens {f.prompt_tokens:>6,} in / {f.completion_tokens:>5,} out · "
                    f"{f.wall_seconds:6.1f} s · searches {f.searches} · read {f.documents_read} · "
                    f"cited {f.sources_cited} · agents {f.agents} · plan+synthesis "
                    f"{row['overhead_share']:.0%} · cache hits {row['cache_hit_share']:.0%}",
                    flush=True,
                )
    print(f"\n{'mode':<8}{'tokens in':>11}{'out':>8}{'wall s':>9}{'plan+synth':>12}{'cache hits':>12}")
    for mode, _ in modes:
        mine = [r for r in rows if r["mode"] == mode]
        prompt = sum(r["prompt_tokens"] for r in mine) / len(mine)
        completion = sum(r["completion_tokens"] for r in mine) / len(mine)
        wall = sum(r["wall_s"] for r in mine) / len(mine)
        overhead = sum(r["overhead_share"] for r in mine) / len(mine)
        cache = sum(r["cache_hit_share"] for r in mine) / len(mine)
        print(f"{mode:<8}{prompt:>11,.0f}{completion:>8,.0f}{wall:>9.1f}{overhead:>12.0%}{cache:>12.0%}")
    print(f"total {time.perf_counter() - started:.0f} s, model {args.model}; per-question means above")
    args.out.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    asyncio.run(main())
