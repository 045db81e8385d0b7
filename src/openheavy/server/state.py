"""What every route of one server shares: its config, engines, runs in flight and run store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import HTTPConnection

from openheavy.errors import RunNotFoundError
from openheavy.server.config import ServerConfig
from openheavy.server.engine import EnginePool
from openheavy.server.runs import RunHub
from openheavy.trace import RunRow, RunStore, TraceRecord, read_trace, run_store_path

__all__ = ["ServerState", "state_of"]


@dataclass
class ServerState:
    config: ServerConfig
    pool: EnginePool
    hub: RunHub

    @property
    def store(self) -> RunStore:
        return RunStore(run_store_path(self.pool.settings.runs_dir))

    def run(self, run_id: str) -> RunRow:
        """The stored run with exactly this id (no prefixes: ids are handed out whole). Raises
        `RunNotFoundError`."""
        row = self.store.get(run_id)
        if row.run_id != run_id:
            raise RunNotFoundError(f"no run {run_id!r} — GET /v1/runs/ID takes a whole run id")
        return row

    def trace(self, row: RunRow) -> list[TraceRecord]:
        """The run's trace records, with whole prompts; empty when the run has no trace file yet."""
        if row.trace_path is None or not Path(row.trace_path).is_file():
            return []
        return read_trace(Path(row.trace_path))

    def run_record(self, run_id: str, *, with_trace: bool = True) -> dict[str, Any]:
        """A run as JSON: its run store row, whether it is live here, and its trace records."""
        row = self.run(run_id)
        record: dict[str, Any] = {
            "run": row.model_dump(mode="json"),
            "live": self.hub.live(row.run_id) is not None,
        }
        if with_trace:
            record["trace"] = [r.model_dump(mode="json") for r in self.trace(row)]
        return record


def state_of(connection: HTTPConnection) -> ServerState:
    """The server state of the app that received `connection`."""
    state = connection.app.state.openheavy
    assert isinstance(state, ServerState)
    return state
