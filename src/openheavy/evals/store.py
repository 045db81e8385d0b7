"""The saved results of an evaluation: `eval.json` (what was asked for: dataset, seed, tools, modes,
item ids) and `results.jsonl` (one graded row per finished (item, mode), appended and flushed as each
finishes).

The results directory is the single source of truth: the summary, report and plots are computed from
these two files alone, so any earlier run, finished or interrupted, can be reported again.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import openheavy
from openheavy.errors import ConfigError
from openheavy.evals.datasets import ItemKind
from openheavy.tools.catalog import DEFAULT_TOOLS

log = logging.getLogger(__name__)

Row = TypeVar("Row", bound=BaseModel)
Model = TypeVar("Model", bound=BaseModel)

RESULTS_FILE = "results.jsonl"
META_FILE = "eval.json"


class SavedModel(BaseModel):
    """What results folders save (evals, audits): fields a later version added are ignored, so old files
    stay readable and new ones open in an older openheavy."""

    model_config = ConfigDict(extra="ignore")


class ModeRecord(SavedModel):
    """A mode as saved: its label ("heavy:4"), name ("heavy") and N (4)."""

    label: str
    name: str
    n: int


class EvalMeta(SavedModel):
    """`eval.json`: what the results directory is an evaluation of."""

    dataset: str = ""
    seed: int = 0
    # The agents' tools (tools/catalog.py); files from before the option have the default.
    tools: list[str] = Field(default_factory=lambda: list(DEFAULT_TOOLS))
    modes: list[ModeRecord] = Field(default_factory=list)
    item_ids: list[str] = Field(default_factory=list)
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    openheavy_version: str = openheavy.__version__


class JudgeRecord(SavedModel):
    """The LLM judge's verdict on one answer, or the error that kept it from giving one."""

    correct: bool | None = None
    reason: str = ""
    error: str | None = None


class ResultRecord(SavedModel):
    """One line of `results.jsonl`: a finished (item, mode) with its answer, figures and grade."""

    item_id: str
    mode: str
    mode_name: str
    mode_n: int
    seed: int
    kind: ItemKind
    question: str
    answers: list[str]
    answer: str = ""
    short_answer: str = ""  # the bare answer the full one leads with, when the mode gives one
    citations: list[dict[str, Any]] = Field(default_factory=list)
    run_id: str = ""
    # The exported trace, relative to the results folder (`traces/RUN_ID.jsonl.gz`); None: not available.
    # Folders written before traces were exported hold absolute paths here until `make_portable` runs.
    trace_path: str | None = None
    figures: dict[str, float] = Field(default_factory=dict)
    error: str | None = None
    stop_reason: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    grade_details: dict[str, Any] = Field(default_factory=dict)
    # What is wrong with the answer's form (`answer_text.answer_problems`): "ends mid-sentence", ...
    form_problems: list[str] = Field(default_factory=list)
    judge: JudgeRecord | None = None
    finished_at: float = Field(default_factory=time.time)

    @property
    def key(self) -> tuple[str, str]:
        """(item id, mode label): what resume and the report key a result by."""
        return (self.item_id, self.mode)


def read_meta(out_dir: Path) -> EvalMeta | None:
    """The saved `eval.json` of a results directory, or None if there is none."""
    return read_json_file(out_dir / META_FILE, EvalMeta, "an eval description")


def read_json_file(path: Path, model: type[Model], what: str) -> Model | None:
    """The JSON file at `path` as `model`, or None if there is none; a `ConfigError` saying that `path` is
    not `what` ("an eval description") when it does not fit."""
    if not path.is_file():
        return None
    try:
        return model.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise ConfigError(f"{path} is not {what} ({exc.error_count()} errors)") from exc


def write_meta(out_dir: Path, meta: EvalMeta) -> None:
    """Write `eval.json` atomically, so an interrupt never leaves half a file."""
    write_json_atomic(out_dir / META_FILE, meta)


def write_json_atomic(path: Path, model: BaseModel) -> None:
    """Write `model` as indented JSON to `path` through a temporary file, so an interrupt never leaves
    half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(model.model_dump_json(indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def rewrite_rows(path: Path, rows: Iterable[BaseModel]) -> None:
    """Replace a JSONL results file with `rows` through a temporary file (an upgrade of its rows, never
    an append: `ResultsWriter` does those), so an interrupt leaves the old file or the new, whole."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.writelines(row.model_dump_json() + "\n" for row in rows)
    os.replace(tmp, path)


def read_results(out_dir: Path) -> list[ResultRecord]:
    """Every saved row of `results.jsonl`, in file order. A line cut short by a crash is skipped."""
    return read_rows(out_dir / RESULTS_FILE, ResultRecord)


def read_rows(path: Path, row_type: type[Row]) -> list[Row]:
    """Every row of a JSONL results file that `ResultsWriter` appends to, as `row_type`, in file order.
    A missing file has no rows; a line cut short by a crash is skipped with a warning."""
    if not path.is_file():
        return []
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rows.append(row_type.model_validate_json(line))
            except ValidationError:
                log.warning("%s:%d: skipping an unreadable result line (interrupted write?)", path, number)
    return rows


def latest_results(rows: Iterable[ResultRecord]) -> dict[tuple[str, str], ResultRecord]:
    """The last row per (item id, mode): a retried error is superseded by its retry."""
    return {row.key: row for row in rows}


class ResultsWriter:
    """Appends result rows (any pydantic model: `ResultRecord` here, audit rows elsewhere) to a JSONL
    file such as `results.jsonl`, flushing each one as soon as it is written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def __enter__(self) -> ResultsWriter:
        # A crash mid-write can leave a last line without its newline; start on a fresh line so the
        # next row is not glued onto the broken one.
        needs_newline = False
        if self.path.is_file() and self.path.stat().st_size:
            with self.path.open("rb") as existing:
                existing.seek(-1, 2)
                needs_newline = existing.read(1) != b"\n"
        self._file = self.path.open("a", encoding="utf-8")
        if needs_newline:
            self._file.write("\n")
        return self

    def write(self, record: BaseModel) -> None:
        """Append one row and flush it."""
        assert self._file is not None, "write() outside the with block"
        self._file.write(record.model_dump_json() + "\n")
        self._file.flush()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._file is not None:
            self._file.close()
