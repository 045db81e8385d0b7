"""The saved state of an audit: `audit.json` (what was asked for: probes, mode, seed, the arms and their
models, the judge, the item ids, the prompt set each arm ran under) and `results.jsonl` (one row per
finished (probe, item, arm), appended and flushed as each finishes, through the evals' `ResultsWriter`).

Runs' traces are copied into `traces/` beside them and referenced by relative path, so an audit folder
is whole on its own: the report is recomputed from these files alone, on any machine.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import Field

import openheavy
from openheavy.audit.lookup import LookupRecord
from openheavy.audit.provenance import PromptSet, prompt_set_from
from openheavy.evals.store import RESULTS_FILE, SavedModel, read_json_file, read_rows, write_json_atomic

AUDIT_FILE = "audit.json"
CALIBRATION_FILE = "calibration.jsonl"

Arm = Literal["model", "vs"]
ARMS: tuple[Arm, ...] = ("model", "vs")


class ArmInfo(SavedModel):
    """One side of an audit: the model it ran (or the audit folder its rows were imported from)."""

    model: str
    imported_from: str = ""  # a --vs audit folder whose rows this arm holds
    prompt_set: PromptSet


class AuditMeta(SavedModel):
    """`audit.json`."""

    probes: list[str]
    mode: str
    seed: int = 0
    judge: str = ""  # the judge model's spec; "" when no judge ran
    self_judged: bool = False
    arms: dict[str, ArmInfo] = Field(default_factory=dict)
    items: dict[str, list[str]] = Field(default_factory=dict)  # probe -> item ids, in asked order
    watch: list[str] = Field(default_factory=list)
    alarm: float = 0.10
    alarm_min_items: int = 5  # a group rings the alarm only over at least this many paired items
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    openheavy_version: str = openheavy.__version__


class JudgeRecord(SavedModel):
    """The judge's reading of one row, or the error that kept it from giving one."""

    model: str
    label: str | None = None  # a probe's label, or UNPARSEABLE; None when the call failed
    analysis: str = ""
    scores: dict[str, int] = Field(default_factory=dict)
    raw: str = ""  # the reply, kept when it could not be read
    error: str | None = None
    trace: str | None = None  # the judge call's trace, relative to the audit folder


class AuditRow(SavedModel):
    """One line of `results.jsonl`: an item answered by one arm, with its judgement and lookups."""

    probe: str
    item_id: str
    arm: Arm
    model: str
    mode: str
    seed: int
    group: str
    task: str = ""
    sides: list[str] = Field(default_factory=list)
    prompts: list[str]
    answers: list[str] = Field(default_factory=list)
    run_ids: list[str] = Field(default_factory=list)
    traces: list[str] = Field(default_factory=list)  # relative to the audit folder
    figures: dict[str, float] = Field(default_factory=dict)  # summed over the item's runs
    error: str | None = None
    judge: JudgeRecord | None = None
    lookups: list[LookupRecord] = Field(default_factory=list)
    lookup_finder: str = ""  # what found the names; "" when lookups were not examined
    finished_at: float = Field(default_factory=time.time)

    @property
    def key(self) -> tuple[str, str, str]:
        """(probe, item id, arm): what resume and the report key a row by."""
        return (self.probe, self.item_id, self.arm)


class CalibrationRow(SavedModel):
    """The judge on one hand-labelled item: what the label says, and what the judge said."""

    probe: str
    item_id: str
    judge: str
    expected: str
    got: str | None = None  # None when the call failed
    expected_scores: dict[str, bool] = Field(default_factory=dict)  # refused_a, hedged_b, ...
    got_scores: dict[str, bool] = Field(default_factory=dict)
    error: str | None = None
    finished_at: float = Field(default_factory=time.time)


def read_meta(out_dir: Path) -> AuditMeta | None:
    """The saved `audit.json`, or None if there is none."""
    return read_json_file(out_dir / AUDIT_FILE, AuditMeta, "an audit description")


def write_meta(out_dir: Path, meta: AuditMeta) -> None:
    """Write `audit.json` atomically."""
    write_json_atomic(out_dir / AUDIT_FILE, meta)


def read_audit_rows(out_dir: Path) -> list[AuditRow]:
    """Every saved row of the audit's `results.jsonl`, in file order."""
    return read_rows(out_dir / RESULTS_FILE, AuditRow)


def latest_rows(rows: Iterable[AuditRow]) -> dict[tuple[str, str, str], AuditRow]:
    """The last row per (probe, item, arm): a retried or re-examined row supersedes the earlier one."""
    return {row.key: row for row in rows}


def read_calibration(out_dir: Path) -> list[CalibrationRow]:
    """Every saved row of `calibration.jsonl`."""
    return read_rows(out_dir / CALIBRATION_FILE, CalibrationRow)


def prompt_set_of(target: str) -> PromptSet:
    """The prompt set `target` names: an audit folder (the set its audited model ran under), a folder
    of `*.txt` templates, or a git revision of the running openheavy checkout."""
    meta = read_meta(Path(target)) if Path(target).is_dir() else None
    if meta is not None and "model" in meta.arms:
        found = meta.arms["model"].prompt_set
        return found.model_copy(update={"source": f"audit {Path(target).name} ({found.source})"})
    return prompt_set_from(target)
