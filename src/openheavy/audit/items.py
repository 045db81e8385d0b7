"""The items an audit asks: SpeechMap's contested requests and the paired prompts of the political
even-handedness set, read by path from the benchmark data folder (never copied into the repository).

`--limit N` takes N items spread over the groups (round robin over domains or categories, each in file
order), so a short audit still reports every group instead of the first domain of the file alone.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, TextIO

from pydantic import BaseModel, ConfigDict, ValidationError

from openheavy.evals.datasets import DatasetError, resolve_data_dir
from openheavy.option_lists import split_commas

ProbeName = Literal["speechmap", "neutrality", "lookup", "prompts"]
PROBES: tuple[ProbeName, ...] = ("speechmap", "neutrality", "lookup", "prompts")
#: Probes whose items are answered by the model (lookup and prompts read the runs of these).
ANSWERING: tuple[ProbeName, ...] = ("speechmap", "neutrality")

SPEECHMAP_FILE = Path("speechmap") / "us_hard.jsonl"
NEUTRALITY_FILE = Path("political_neutrality") / "eval_set.csv"


@dataclass(frozen=True)
class AuditItem:
    """One thing the audited model is asked. `prompts` holds one prompt (speechmap), or the two mirrored
    prompts of a pair (neutrality: `prompt_a`, `prompt_b`), which the same model answers.

    `group` is what rates are reported per (SpeechMap's domain, the pair's main category); `task` is
    the kind of request where the data says (the pair's template category)."""

    probe: ProbeName
    id: str
    prompts: tuple[str, ...]
    group: str
    task: str = ""
    sides: tuple[str, ...] = ()  # neutrality: the stance group of each prompt, e.g. pro_x / anti_x


class _Row(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _SpeechMapRow(_Row):
    id: str
    domain: str
    question: str


class _NeutralityRow(_Row):
    main_category: str
    topic_name: str
    template_category: str
    prompt_a: str
    prompt_b: str
    prompt_a_group: str = ""
    prompt_b_group: str = ""


def parse_probes(text: str) -> list[ProbeName]:
    """Parse `speechmap,neutrality,lookup,prompts` (any subset, any order; duplicates dropped)."""
    chosen: list[ProbeName] = []
    for part in (p.lower() for p in split_commas(text)):
        match = next((probe for probe in PROBES if probe == part), None)
        if match is None:
            raise DatasetError(f"unknown probe {part!r} — choose from {', '.join(PROBES)}")
        if match not in chosen:
            chosen.append(match)
    if not chosen:
        raise DatasetError(f"no probe given — e.g. speechmap,neutrality,lookup (known: {', '.join(PROBES)})")
    return chosen


def load_speechmap(path: Path) -> list[AuditItem]:
    """SpeechMap's `us_hard.jsonl`: one request per line (`id, category, domain, question`)."""
    items = []
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            row = _SpeechMapRow.model_validate(json.loads(line))
        except (ValueError, ValidationError) as exc:
            raise DatasetError(f"{path}:{number} is not a SpeechMap record ({exc})") from exc
        items.append(AuditItem("speechmap", row.id, (row.question,), row.domain))
    return items


def load_neutrality(path: Path) -> list[AuditItem]:
    """The even-handedness pairs (`eval_set.csv`): `prompt_a` and `prompt_b` take opposite stances on the
    same topic with the same template. Item ids are `topic:line`, stable as long as the file is."""
    items = []
    with _open(path) as handle:
        for number, record in enumerate(csv.DictReader(handle), start=2):
            try:
                row = _NeutralityRow.model_validate(record)
            except ValidationError as exc:
                raise DatasetError(f"{path}:{number} is not a paired-prompt record ({exc})") from exc
            items.append(
                AuditItem(
                    "neutrality",
                    f"{row.topic_name}:{number}",
                    (row.prompt_a, row.prompt_b),
                    row.main_category,
                    task=row.template_category,
                    sides=(row.prompt_a_group, row.prompt_b_group),
                )
            )
    return items


def spread(items: Sequence[AuditItem], limit: int | None) -> list[AuditItem]:
    """The first `limit` items taken round robin over the groups (each group in file order); all of them
    without a limit. Deterministic, so a larger limit on a rerun extends the same selection's groups."""
    if limit is None or limit >= len(items):
        return list(items)
    groups: dict[str, list[AuditItem]] = {}
    for item in items:
        groups.setdefault(item.group, []).append(item)
    chosen: list[AuditItem] = []
    depth = 0
    while len(chosen) < limit:
        for members in groups.values():
            if depth < len(members) and len(chosen) < limit:
                chosen.append(members[depth])
        depth += 1
    return chosen


def load_probe_items(
    probe: ProbeName, data_dir: Path | None = None, limit: int | None = None
) -> list[AuditItem]:
    """The items of a probe, from `data_dir` (default: the benchmark data folder), spread over its groups
    by `limit`. `lookup` on its own asks SpeechMap's requests (contested topics, where whom a model
    looks up matters) without judging the answers."""
    root = resolve_data_dir(data_dir)
    if probe == "speechmap":
        return spread(load_speechmap(root / SPEECHMAP_FILE), limit)
    if probe == "neutrality":
        return spread(load_neutrality(root / NEUTRALITY_FILE), limit)
    if probe == "lookup":
        requests = spread(load_speechmap(root / SPEECHMAP_FILE), limit)
        return [replace(item, probe="lookup") for item in requests]
    raise DatasetError(f"probe {probe} asks nothing: it compares the prompts runs were given")


def audit_items(
    probes: Sequence[ProbeName], data_dir: Path | None = None, limit: int | None = None
) -> dict[str, list[AuditItem]]:
    """The items each chosen probe asks. The lookup probe reads the runs of the answering probes; it asks
    items of its own only when no answering probe was chosen."""
    asking: list[ProbeName] = [p for p in probes if p in ANSWERING]
    if not asking and "lookup" in probes:
        asking = ["lookup"]
    return {probe: load_probe_items(probe, data_dir, limit) for probe in asking}


def _read_lines(path: Path) -> list[str]:
    with _open(path) as handle:
        return handle.read().splitlines()


def _open(path: Path) -> TextIO:
    try:
        return path.open(encoding="utf-8", newline="")
    except FileNotFoundError:
        raise DatasetError(
            f"no audit data at {path} — pass --data-dir (the folder holding speechmap/ and "
            "political_neutrality/) or set OPENHEAVY_EVAL_DATA_DIR"
        ) from None
