"""Event sinks, the run store and run metrics, one module each:

- `trace.jsonl`: the JSONL trace every run writes (one line per event, flushed as it goes) and reads back;
- `trace.metrics`: `MetricsSink` and `RunFigures`, a run's figures computed from its events alone;
- `trace.run_store`: `RunStore`, the SQLite record of past runs, and run ids.

The names below are re-exported so that `from openheavy.trace import X` reads the same for all of them.
"""

from openheavy.trace.jsonl import (
    EVENT_TYPES,
    JsonlTraceSink,
    TraceRecord,
    normalized_trace,
    read_trace,
    trace_path,
)
from openheavy.trace.metrics import AgentFigures, MetricsSink, RunFigures, TokenFigures
from openheavy.trace.run_store import (
    MIGRATIONS,
    RunRow,
    RunStatus,
    RunStore,
    RunStoreSink,
    new_run_id,
    run_store_path,
)

__all__ = [
    "EVENT_TYPES",
    "MIGRATIONS",
    "AgentFigures",
    "JsonlTraceSink",
    "MetricsSink",
    "RunFigures",
    "RunRow",
    "RunStatus",
    "RunStore",
    "RunStoreSink",
    "TokenFigures",
    "TraceRecord",
    "new_run_id",
    "normalized_trace",
    "read_trace",
    "run_store_path",
    "trace_path",
]
