"""Results folders that can be moved or published: every run is referenced by its run id, and its trace is
exported beside the results, compressed, as `traces/RUN_ID.jsonl.gz`, which `results.jsonl` and
`report.md` name by a path relative to the folder. Nothing in a results folder names a path of the
machine that made it, so `openheavy eval --report DIR` works on a copy anywhere.

`make_portable` upgrades a folder written before this (absolute trace paths): traces still on this
machine are exported, the others are recorded as not available rather than left as dead links.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from openheavy.evals.store import RESULTS_FILE, ResultRecord, read_results, rewrite_rows
from openheavy.trace import trace_path

__all__ = ["TRACES_DIR", "PortableReport", "export_trace", "exported_trace", "make_portable"]

TRACES_DIR = "traces"
_RUN_ID = re.compile(r"^[\w.-]+$")  # a run id is also a file name: nothing that could leave traces/


def _relative_trace(run_id: str) -> str:
    return f"{TRACES_DIR}/{run_id}.jsonl.gz"


def export_trace(source: Path | str | None, out_dir: Path, run_id: str) -> str | None:
    """Copy the trace at `source` into `out_dir/traces/RUN_ID.jsonl.gz` (gzip) and return that path
    relative to `out_dir`; None when there is no trace to copy (no file, or no usable run id)."""
    if source is None or not _RUN_ID.match(run_id):
        return None
    source = Path(source)
    if not source.is_file():
        return None
    relative = _relative_trace(run_id)
    target = out_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{run_id}.", suffix=".tmp")
    try:
        # mtime=0: the same trace always compresses to the same bytes, so a re-export is no diff.
        with (
            source.open("rb") as src,
            os.fdopen(fd, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as dst,
        ):
            shutil.copyfileobj(src, dst)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return relative


def exported_trace(row: ResultRecord, out_dir: Path) -> Path | None:
    """The exported trace of `row` inside `out_dir`, or None when it has none (not available)."""
    if not row.trace_path:
        return None
    relative = PurePosixPath(row.trace_path)
    if relative.is_absolute() or ".." in relative.parts:
        return None  # an old absolute path, or one that leaves the folder: never followed
    path = out_dir / relative
    return path if path.is_file() else None


@dataclass(frozen=True)
class PortableReport:
    """What `make_portable` did: traces exported now, already in the folder, and not available."""

    exported: int
    present: int
    missing: int
    rewritten: bool


def make_portable(out_dir: Path, runs_dir: Path | None = None) -> PortableReport:
    """Rewrite `out_dir/results.jsonl` so every trace is referenced inside the folder: a trace named by
    an absolute path, or found in `runs_dir` by its run id, is exported to `traces/`; one found nowhere
    becomes "not available" (no path). Idempotent; the file is replaced atomically."""
    rows = read_results(out_dir)
    exported = present = missing = 0
    upgraded: list[ResultRecord] = []
    for row in rows:
        if exported_trace(row, out_dir) is not None:
            present += 1
            upgraded.append(row)
            continue
        candidates = [Path(row.trace_path)] if row.trace_path and Path(row.trace_path).is_absolute() else []
        if runs_dir is not None and _RUN_ID.match(row.run_id):
            candidates.append(trace_path(runs_dir, row.run_id))
        relative = next(
            (r for r in (export_trace(c, out_dir, row.run_id) for c in candidates) if r is not None), None
        )
        exported += relative is not None
        missing += relative is None and bool(row.run_id)
        upgraded.append(row.model_copy(update={"trace_path": relative}))
    rewritten = upgraded != rows
    if rewritten:
        rewrite_rows(out_dir / RESULTS_FILE, upgraded)
    return PortableReport(exported, present, missing, rewritten)
