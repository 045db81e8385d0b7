"""The JSONL trace of a run: one line per event, flushed as it goes; read back whole for `openheavy trace`
and normalized for snapshot tests."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from openheavy.errors import OpenHeavyError
from openheavy.private_files import open_private
from openheavy.types import EVENT_TYPES, Event, EventSink, ModelCalled

__all__ = [
    "EVENT_TYPES",
    "JsonlTraceSink",
    "TraceRecord",
    "normalized_trace",
    "read_trace",
    "trace_path",
]


def trace_path(runs_dir: Path, run_id: str) -> Path:
    """Where the JSONL trace of `run_id` lives under the runs directory (`Settings.runs_dir`)."""
    return runs_dir / f"{run_id}.jsonl"


# One encoder for every line: `json.dumps` with options builds a new encoder per call, which showed up
# in the engine benchmark. default=str: settings may hold paths; a trace line must never fail.
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


class JsonlTraceSink(EventSink):
    """Appends one JSON line per event to `path`, flushed per line so that a killed run keeps its trace."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Owner-only: a trace holds every prompt and every document the run read.
        self._file: IO[str] | None = open_private(path, "a")
        self._last_prompt: dict[str, list[dict[str, str]]] = {}

    def handle(self, event: Event) -> None:
        """Write `event.to_record()` as one line.

        An agent's prompt grows by a message or two per step, so writing every prompt whole makes a
        trace quadratic in its length. A `ModelCalled` line therefore stores only the messages after
        the part it shares with the same agent's previous prompt (`messages_prefix` = how many are
        shared); `read_trace` puts the whole prompt back.
        """
        if self._file is None:
            raise OpenHeavyError(f"trace {self.path} is already closed")
        record = event.to_record()
        if isinstance(event, ModelCalled):
            previous = self._last_prompt.get(event.agent, [])
            shared = _shared_prefix(previous, event.messages)
            self._last_prompt[event.agent] = event.messages
            if shared:
                record["messages"] = event.messages[shared:]
                record["messages_prefix"] = shared
        self._file.write(_ENCODER.encode(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file. Safe to call twice."""
        if self._file is not None:
            self._file.close()
            self._file = None


class TraceRecord(BaseModel):
    """One line of a JSONL trace. The event's own fields are kept as extra fields."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: str
    run_id: str
    agent: str = ""
    at: float

    @property
    def payload(self) -> dict[str, Any]:
        """The event's fields other than kind, run_id, agent and at."""
        return dict(self.model_extra or {})

    def to_event(self) -> Event | None:
        """The event this record was written from; None for an unknown kind or a record that does not
        fit its event class (a trace written by another version)."""
        cls = EVENT_TYPES.get(self.kind)
        if cls is None:
            return None
        values = {"run_id": self.run_id, "agent": self.agent, "at": self.at, **self.payload}
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{name: value for name, value in values.items() if name in names})
        except TypeError:  # a required field is missing
            return None


def read_trace(path: Path) -> list[TraceRecord]:
    """The records of a JSONL trace (gzip-compressed when the name ends in .gz, as eval results export
    them). A truncated last line (a run killed mid-write) is skipped."""
    try:
        if path.suffix == ".gz":
            lines = gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()
        else:
            lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise OpenHeavyError(
            f"no trace file at {path} — `openheavy runs` lists runs and their traces"
        ) from None
    except (gzip.BadGzipFile, EOFError, UnicodeDecodeError) as exc:
        raise OpenHeavyError(f"trace {path} is damaged ({exc}) — copy it again from where it came") from exc
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    records: list[TraceRecord] = []
    prompts: dict[str, list[dict[str, str]]] = {}
    for position, (number, line) in enumerate(numbered):
        try:
            record = TraceRecord.model_validate_json(line)
            if record.kind == "ModelCalled":
                record = _whole_prompt(record, prompts)
            records.append(record)
        except ValidationError as exc:
            if position == len(numbered) - 1:
                break  # the writer was killed mid-line
            raise OpenHeavyError(f"trace {path} line {number} is not a valid event record: {exc}") from exc
    return records


def _shared_prefix(previous: list[dict[str, str]], messages: list[dict[str, str]]) -> int:
    shared = 0
    for old, new in zip(previous, messages, strict=False):
        if old != new:
            break
        shared += 1
    return shared


def _whole_prompt(record: TraceRecord, prompts: dict[str, list[dict[str, str]]]) -> TraceRecord:
    """Undo the prefix sharing of `JsonlTraceSink` for one `ModelCalled` record."""
    payload = record.payload
    messages = list(payload.get("messages") or [])
    shared = payload.pop("messages_prefix", 0)
    if shared:
        messages = prompts.get(record.agent, [])[:shared] + messages
    prompts[record.agent] = messages
    payload["messages"] = messages
    return TraceRecord(kind=record.kind, run_id=record.run_id, agent=record.agent, at=record.at, **payload)


_VOLATILE_FLOATS = frozenset({"seconds", "wall_seconds"})


def normalized_trace(records: Iterable[TraceRecord]) -> list[dict[str, Any]]:
    """Records with run ids, timestamps and durations replaced by placeholders, for snapshot tests."""

    def scrub(value: Any, run_ids: set[str]) -> Any:
        if isinstance(value, dict):
            return {
                key: "<seconds>"
                if key in _VOLATILE_FLOATS and isinstance(item, float)
                else scrub(item, run_ids)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [scrub(item, run_ids) for item in value]
        if isinstance(value, str) and value in run_ids:
            return "<run>"
        return value

    materialized = list(records)
    run_ids = {record.run_id for record in materialized}
    normalized = []
    for record in materialized:
        data = record.model_dump()
        data["run_id"] = "<run>"
        data["at"] = "<at>"
        normalized.append(scrub(data, run_ids))
    return normalized
