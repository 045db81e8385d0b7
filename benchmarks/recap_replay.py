"""The recap before an agent's last answer (`openheavy.evidence.closest_sentences`), replayed on
recorded runs: every agent call that had to answer (the last step's prompt) is sent again to the model,
once as recorded and once with the read sentences closest to the question restated before the
instruction to answer, and each short answer is graded against the gold one.

    .venv/bin/python benchmarks/recap_replay.py docs/results/hotpotqa-50-r10 --mode single --model local:fast

The research is held fixed (the same prompt up to the last instruction, the same pages read), so the
difference is the recap's alone. Both variants are sent now, on the same server, so the model's
nondeterminism across batches falls on both alike. Printed: calls replayed, the mean short-answer F1
of each variant, how many went wrong -> right and right -> wrong, and each changed answer.

Runs recorded with the recap (r11 on) are replayed with its order changed instead: `--variant
closest-first` shows the closest sentence first rather than last, `--variant closest-only` that sentence
alone; repeat `--variant` to compare several against the same recorded calls:

    .venv/bin/python benchmarks/recap_replay.py docs/results/hotpotqa-50-r13 --mode single \
        --variant closest-first --variant closest-only

`--variant compact` sends the last call as the agent now writes it for a question that asks for one
thing (`ResearchAgent._compact_final`: the system prompt, the question and the recap alone):

    .venv/bin/python benchmarks/recap_replay.py docs/results/hotpotqa-50-r15 --mode single --variant compact
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from pathlib import Path
from typing import Any

from openheavy.agent import recap
from openheavy.config import load_settings
from openheavy.evals.grading import token_f1
from openheavy.json_output import first_json_object
from openheavy.models.registry import resolve_model
from openheavy.prompts import render_prompt
from openheavy.question_forms import asks_for_one_thing
from openheavy.trace.jsonl import read_trace
from openheavy.types import Document, Message

# Where the last step's instruction starts in the prompt (`agent_final`); the recap goes before it.
_FINAL_LINE = "You have no actions left."
_RECORDED_LABEL = (
    "Of everything you read, the sentences that share the most words with the question, the closest last"
)
# A recorded recap: its label (`agent_recap`, which ends "the closest last"), then the fenced lines.
_RECAP = re.compile(
    r"(?P<label>Of everything you read, the sentences that share the most words with the question, the "
    r"closest last[^\n]*\n)<(?P<tag>data-[0-9a-f]+)>\n(?P<lines>.*?)\n</(?P=tag)>",
    re.S,
)


_SHORT = re.compile(r'"short"\s*:\s*"(?P<short>[^"]*)')


def final_calls(folder: Path, mode: str) -> list[dict[str, Any]]:
    """Each recorded agent call that had to answer, with its messages, schema, the pages that agent
    read, the question and the gold answers."""
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line]
    calls = []
    for row in rows:
        if not str(row["mode"]).startswith(mode) or row.get("error"):
            continue
        records = read_trace(folder / row["trace_path"])
        opened: dict[str, dict[int, Document]] = {}
        for record in records:
            payload = record.payload
            if record.kind == "DocumentOpened":
                doc = payload["doc"]
                opened.setdefault(record.agent, {})[payload["ref"]] = Document(
                    doc["id"], doc["doc_id"], doc["title"], doc.get("url", ""), payload["text_shown"]
                )
            elif record.kind == "ModelCalled" and payload.get("purpose") == "answer":
                messages = payload["messages"]
                if not messages or _FINAL_LINE not in messages[-1]["content"]:
                    continue
                calls.append(
                    {
                        "question": row["question"],
                        "gold": row["answers"],
                        "agent": record.agent,
                        "messages": messages,
                        "schema": json.loads(payload["json_schema"])
                        if isinstance(payload["json_schema"], str)
                        else payload["json_schema"],
                        "opened": dict(opened.get(record.agent, {})),
                    }
                )
    return calls


def with_recap(call: dict[str, Any]) -> list[Message] | None:
    """The call's messages with the recap inserted before the last instruction, as the agent now
    writes it (`ResearchAgent._recap`); None when no read sentence holds a question word."""
    restated = recap(call["question"], call["opened"])
    if not restated:
        return None
    messages = [Message(m["role"], m["content"]) for m in call["messages"]]
    last = messages[-1].content
    at = last.index(_FINAL_LINE)
    messages[-1] = Message("user", f"{last[:at].rstrip()}\n\n{restated}\n\n{last[at:]}")
    return messages


def _reordered(call: dict[str, Any], keep: int | None, label: str) -> list[Message] | None:
    """The call's messages with the recap its last prompt holds (closest last, as recorded) shown closest
    first, only its `keep` closest sentences when given, labelled `label` instead of the recorded label's
    opening. None when the prompt holds no recap."""
    messages = [Message(m["role"], m["content"]) for m in call["messages"]]
    last = messages[-1].content
    found = _RECAP.search(last)
    if found is None:
        return None
    lines = list(reversed(found["lines"].split("\n")))[:keep]
    tag = found["tag"]
    said = found["label"].replace(_RECORDED_LABEL, label)
    block = f"{said}<{tag}>\n" + "\n".join(lines) + f"\n</{tag}>"
    messages[-1] = Message("user", last[: found.start()] + block + last[found.end() :])
    return messages


def closest_first(call: dict[str, Any]) -> list[Message] | None:
    """A recorded recap shown the other way round: the closest sentence first."""
    return _reordered(call, None, _RECORDED_LABEL.replace("the closest last", "the closest first"))


def closest_only(call: dict[str, Any]) -> list[Message] | None:
    """A recorded recap cut to its closest sentence."""
    return _reordered(
        call, 1, "Of everything you read, the sentence that shares the most words with the question"
    )


def short_of(text: str) -> str:
    """The reply's "short" field; from a reply cut at its token bound, the field's text as far as it got
    (the agent salvages such a reply the same way)."""
    try:
        found = first_json_object(text)
    except ValueError:
        cut = _SHORT.search(text)
        return cut["short"] if cut else ""
    return str(found.get("short", "")) if isinstance(found, dict) else ""


def compact(call: dict[str, Any]) -> list[Message] | None:
    """The last call as `ResearchAgent._compact_final` writes it for a question that asks for one
    thing: the system prompt, the question and the recap, without the conversation. None for other
    questions (they keep the whole conversation) and when no read sentence holds a question word."""
    question = call["question"]
    restated = recap(question, call["opened"]) if asks_for_one_thing(question) else ""
    if not restated:
        return None
    text = render_prompt("agent_final_compact", question=question, recap=restated)
    return [Message("system", call["messages"][0]["content"]), Message("user", text)]


VARIANTS = {
    "recap": with_recap,
    "closest-first": closest_first,
    "closest-only": closest_only,
    "compact": compact,
}


async def replay(folder: Path, mode: str, spec: str, limit: int | None, variants: list[str]) -> None:
    """Send each last-step call as recorded and as each of `variants` changes it; print the F1s."""
    calls = final_calls(folder, mode)[:limit]
    model = resolve_model(spec, load_settings())
    totals = dict.fromkeys(["recorded", *variants], 0.0)
    counts = {v: {"changed": 0, "better": 0, "worse": 0} for v in variants}
    changes: list[str] = []

    async def short(messages: list[Message], call: dict[str, Any]) -> str:
        completion = await model.complete(messages, json_schema=call["schema"], temperature=0.0)
        return short_of(completion.text)

    try:
        for number, call in enumerate(calls, start=1):
            old = await short([Message(m["role"], m["content"]) for m in call["messages"]], call)
            f_old = token_f1(old, call["gold"])
            totals["recorded"] += f_old
            line = [f"{number}/{len(calls)}  F1 recorded {f_old:.2f}"]
            for variant in variants:
                changed = VARIANTS[variant](call)
                new = old if changed is None else await short(changed, call)
                f_new = token_f1(new, call["gold"])
                totals[variant] += f_new
                tally = counts[variant]
                tally["changed"] += changed is not None
                tally["better"] += f_new > f_old
                tally["worse"] += f_new < f_old
                line.append(f"{variant} {f_new:.2f}")
                if f_new != f_old:
                    changes.append(
                        f"  {variant}: F1 {f_old:.2f} -> {f_new:.2f}  gold {call['gold'][0]!r}: "
                        f"{old!r} -> {new!r}"
                    )
            print(", ".join(line), flush=True)
    finally:
        await model.aclose()
    n = max(1, len(calls))
    print(f"\n{folder.name} ({mode}): {len(calls)} last-step calls")
    print(f"mean short-answer F1: as recorded {totals['recorded'] / n:.3f}")
    for variant in variants:
        tally = counts[variant]
        print(
            f"  {variant}: {totals[variant] / n:.3f} ({tally['changed']} prompts changed; "
            f"better {tally['better']}, worse {tally['worse']})"
        )
    print("\n".join(changes))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="an eval's output folder (results.jsonl, traces/)")
    parser.add_argument("--mode", default="single", help="replay the runs of this mode (prefix match)")
    parser.add_argument("--model", default="local:fast")
    parser.add_argument("--limit", type=int, default=None, help="replay at most this many calls")
    parser.add_argument(
        "--variant",
        action="append",
        choices=sorted(VARIANTS),
        help="recap (the default): add the recap to prompts recorded without one; closest-first: show "
        "a recorded recap with its closest sentence first instead of last; closest-only: only that "
        "sentence; compact: the last call as the agent now sends it for a question that asks for one "
        "thing (the question and the recap alone). Repeat to compare several against the same recorded "
        "calls",
    )
    args = parser.parse_args()
    asyncio.run(replay(args.folder, args.mode, args.model, args.limit, args.variant or ["recap"]))


if __name__ == "__main__":
    main()
