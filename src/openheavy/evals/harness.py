"""Run a dataset through one or more modes, grade every answer, save as it goes, and resume.

The harness does not know how a question is answered: it calls a `Runner` you inject (the CLI wraps
the core run API in one; tests pass a fake; a cluster runner can fan out through Ray behind the same
seam). Each finished (item, mode) is appended to `results.jsonl` and flushed at once, so an interrupted
evaluation loses at most the runs in flight, and a rerun skips everything already saved. Each run's trace
is exported beside the results (`evals.portable`), so the folder can be moved or published.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from openheavy.answer_text import answer_problems
from openheavy.errors import ConfigError
from openheavy.evals.datasets import EvalItem
from openheavy.evals.grading import (
    EVAL_INSTALL_HINT,
    Grade,
    failed_grade,
    grade_answer,
    judge_answer,
)
from openheavy.evals.portable import export_trace, make_portable
from openheavy.evals.report import render_report
from openheavy.evals.stats import EvalSummary
from openheavy.evals.store import (
    RESULTS_FILE,
    EvalMeta,
    JudgeRecord,
    ModeRecord,
    ResultRecord,
    ResultsWriter,
    latest_results,
    read_meta,
    read_results,
    write_meta,
)
from openheavy.models.base import ChatModel
from openheavy.modes import MODES
from openheavy.normalize import plain_number
from openheavy.option_lists import split_commas
from openheavy.prompts import render_prompt
from openheavy.tools.catalog import DEFAULT_TOOLS
from openheavy.trace import RunFigures

if TYPE_CHECKING:  # only for the annotation: importing the engine is not needed to evaluate
    from openheavy.api import RunResult


@dataclass(frozen=True)
class ModeSpec:
    """How to answer: a mode of `openheavy.modes.MODES`, with its N where it takes one (`heavy:N`: N
    agents and a synthesis, `rank:N`: N samples ranked by a verifier; alone, the mode's default N)."""

    name: str
    n: int = 1

    @property
    def label(self) -> str:
        """The canonical text form, as given on the command line and saved in results."""
        return self.name if MODES[self.name].default_n is None else f"{self.name}:{self.n}"

    def __str__(self) -> str:
        return self.label

    @classmethod
    def parse(cls, text: str) -> ModeSpec:
        """Parse `NAME` or `NAME:N` (`direct`, `heavy:4`, ...). Raises `ConfigError` with what is valid."""
        name, _, count = text.strip().lower().partition(":")
        if name not in MODES:
            valid = ", ".join(m.name if m.default_n is None else f"{m.name}:N" for m in MODES.values())
            raise ConfigError(f"unknown mode {text!r} — use {valid}")
        default = MODES[name].default_n
        if default is None:
            if count:
                raise ConfigError(f"mode {name} takes no N (got {text!r})")
            return cls(name, 1)
        if not count:
            return cls(name, default)
        if not count.isdigit() or int(count) < 1:
            raise ConfigError(f"mode {text!r}: N must be a whole number of at least 1")
        return cls(name, int(count))


def parse_modes(text: str | Sequence[str]) -> list[ModeSpec]:
    """Parse a comma-separated list (or a list of strings) of modes; duplicates are dropped."""
    modes = list(dict.fromkeys(ModeSpec.parse(part) for part in split_commas(text)))
    if not modes:
        raise ConfigError("no modes given — e.g. --modes direct,single,heavy:4,rank:8")
    return modes


@dataclass(frozen=True)
class RunOutcome:
    """What a runner returns for one (item, mode). `error` set means the run failed (graded wrong)."""

    answer: str
    citations: Sequence[Mapping[str, Any]] = ()
    run_id: str = ""
    trace_path: Path | str | None = None
    figures: RunFigures = field(default_factory=RunFigures)
    error: str | None = None
    stop_reason: str = ""  # as the core reports it: "answered", "budget:steps", ...
    short_answer: str = ""  # the bare answer the full one leads with, when the mode gives one


def outcome_from_result(result: RunResult) -> RunOutcome:
    """The `RunOutcome` of a finished core run (`Heavy.arun`), for runners built on the library API.
    A run that fails raises instead, and the harness records the exception as an errored result."""
    return RunOutcome(
        answer=result.answer,
        citations=result.citations,
        run_id=result.run_id,
        trace_path=result.trace_path,
        figures=result.figures,
        stop_reason=str(result.stop_reason),
        short_answer=result.short_answer,
    )


class Runner(Protocol):
    """Answers one item in one mode. `seed` is fixed per item, so reruns and modes are comparable.

    Exceptions are recorded as errored results; cancellation and KeyboardInterrupt stop the evaluation.
    """

    async def __call__(self, item: EvalItem, mode: ModeSpec, seed: int) -> RunOutcome: ...


def graded_text(item: EvalItem, outcome: RunOutcome) -> str:
    """What is graded. For wide (list) questions the numbered sources, with their URLs, are part of what
    a user is shown, so they count. A short-answer question (QA, math) is graded on the short answer the
    run's answer leads with when it gives one, as a reader takes the answer from that first line (the
    explanation after it would cost every QA answer its token F1 precision, and the last number of "168
    … for 2 weeks of tutoring" is 2); else on the answer text, with math's final-answer rules."""
    if item.kind in ("qa", "math") and outcome.short_answer.strip():
        return outcome.short_answer
    if item.kind != "wide" or not outcome.citations:
        return outcome.answer
    sources = "\n".join(
        f"[{c.get('number', '')}] {c.get('title', '')} — {c.get('url', '')}" for c in outcome.citations
    )
    text = render_prompt("eval_answer_with_sources", answer=outcome.answer, sources=sources)
    return text.removesuffix("\n")  # not strip(): the answer's own outer spaces are part of what is graded


def item_seed(seed: int, item_id: str) -> int:
    """The seed for one item: fixed by the run seed and the item id alone, so it does not change with
    --limit, the order of items or the mode, and every mode answers an item under the same seed."""
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def check_graders(items: Iterable[EvalItem]) -> None:
    """Fail before any run if grading these items needs an extra that is not installed."""
    needs_math_verify = any(
        item.kind == "math" and plain_number(item.answers[0]) is None for item in items if item.answers
    )
    if needs_math_verify:
        try:
            import math_verify  # noqa: F401
        except ImportError as exc:
            raise ConfigError(f"grading LaTeX math answers needs math-verify — {EVAL_INSTALL_HINT}") from exc


async def run_eval(
    items: Sequence[EvalItem],
    modes: Sequence[ModeSpec],
    runner: Runner,
    out_dir: Path,
    concurrency: int = 1,
    seed: int = 0,
    progress: bool = True,
    judge: ChatModel | None = None,
    *,
    dataset: str = "",
    retry_errors: bool = False,
    console: Console | None = None,
    tools: Sequence[str] = DEFAULT_TOOLS,
) -> EvalSummary:
    """Answer every item in every mode with `runner`, grade, save to `out_dir`, and write the report.

    Resumable: (item, mode) pairs already saved in `out_dir` are skipped (errored ones too, unless
    `retry_errors`). At most `concurrency` runs are in flight. With `judge`, QA and math answers also
    get an LLM verdict, reported separately. `tools`: the agents' tools the runner was given, recorded
    in `eval.json`. Raises `ConfigError` if `out_dir` holds another dataset's results or was made with
    another seed or other tools.
    """
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, not {concurrency}")
    if not modes:
        raise ConfigError("no modes to evaluate")
    check_graders(items)
    # File work goes to a thread so that an embedding event loop (the server) is never blocked.
    finished = await asyncio.to_thread(
        _prepare_out_dir, out_dir, items, modes, seed, dataset, retry_errors, tuple(tools)
    )
    pending = [(item, mode) for item in items for mode in modes if (item.id, mode.label) not in finished]
    total = len(items) * len(modes)

    semaphore = asyncio.Semaphore(concurrency)
    with (
        ResultsWriter(out_dir / RESULTS_FILE) as writer,
        ProgressDisplay(
            total, total - len(pending), enabled=progress, console=console, label=dataset or "eval"
        ) as display,
    ):

        async def run_pair(item: EvalItem, mode: ModeSpec) -> None:
            async with semaphore:
                record = await _evaluate(item, mode, runner, item_seed(seed, item.id), judge, out_dir)
            writer.write(record)
            display.advance(failed=record.error is not None)

        # Item-major order: an interrupted run has every mode's answer for the same first items.
        async with asyncio.TaskGroup() as group:
            for item, mode in pending:
                group.create_task(run_pair(item, mode))
    # A folder resumed from before trace export still names absolute paths: export what is here.
    await asyncio.to_thread(make_portable, out_dir)
    return await asyncio.to_thread(render_report, out_dir)


def _prepare_out_dir(
    out_dir: Path,
    items: Sequence[EvalItem],
    modes: Sequence[ModeSpec],
    seed: int,
    dataset: str,
    retry_errors: bool,
    tools: tuple[str, ...],
) -> set[tuple[str, str]]:
    """Create or update `eval.json` and return the (item id, mode) pairs that need no new run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _update_meta(out_dir, items, modes, seed, dataset, tools)
    latest = latest_results(read_results(out_dir))
    return {key for key, row in latest.items() if not (retry_errors and row.error is not None)}


def _update_meta(
    out_dir: Path,
    items: Sequence[EvalItem],
    modes: Sequence[ModeSpec],
    seed: int,
    dataset: str,
    tools: tuple[str, ...],
) -> None:
    meta = read_meta(out_dir)
    if meta is None:
        meta = EvalMeta(dataset=dataset, seed=seed, tools=list(tools))
    else:
        if dataset and meta.dataset and meta.dataset != dataset:
            raise ConfigError(
                f"{out_dir} holds results for {meta.dataset}, not {dataset} — choose another --out"
            )
        if meta.seed != seed:
            raise ConfigError(
                f"{out_dir} holds results made with seed {meta.seed} — rerun with --seed {meta.seed} "
                f"to resume, or choose another --out"
            )
        if tuple(meta.tools) != tools:
            raise ConfigError(
                f"{out_dir} holds results made with --tools {','.join(meta.tools)} — rerun with those "
                "tools to resume, or choose another --out"
            )
    # A rerun may add modes or items (a larger --limit); the report covers the union.
    labels = {mode.label for mode in meta.modes}
    new_modes = [ModeRecord(label=m.label, name=m.name, n=m.n) for m in modes if m.label not in labels]
    meta = meta.model_copy(
        update={
            "dataset": meta.dataset or dataset,
            "modes": [*meta.modes, *new_modes],
            "item_ids": list(dict.fromkeys([*meta.item_ids, *(item.id for item in items)])),
            "updated_at": time.time(),
        }
    )
    write_meta(out_dir, meta)


async def _evaluate(
    item: EvalItem, mode: ModeSpec, runner: Runner, seed: int, judge: ChatModel | None, out_dir: Path
) -> ResultRecord:
    started = time.perf_counter()
    try:
        outcome = await runner(item, mode, seed)
    except Exception as exc:  # one failed run is a wrong answer, never a lost evaluation
        outcome = RunOutcome(answer="", error=f"{type(exc).__name__}: {exc}")
    figures = outcome.figures.per_item()
    if not outcome.figures.wall_seconds:  # a runner that does not time itself is timed here
        figures["wall_seconds"] = time.perf_counter() - started

    grade: Grade
    if outcome.error is not None:
        grade = failed_grade(item.kind, outcome.error)
    else:
        grade = grade_answer(item, graded_text(item, outcome))
    verdict: JudgeRecord | None = None
    # Wide-search answers are URL lists graded exactly; a judge adds nothing there.
    if judge is not None and outcome.error is None and item.kind != "wide":
        try:
            decision = await judge_answer(judge, item.question, item.answers, outcome.answer, seed=seed)
            verdict = JudgeRecord(correct=decision.correct, reason=decision.reason)
        except Exception as exc:  # a failed judge call must not cost the finished run
            verdict = JudgeRecord(error=f"{type(exc).__name__}: {exc}")
    # Gzip off the loop; a trace that is not on this machine (a remote Ray worker's) is "not available".
    trace = await asyncio.to_thread(export_trace, outcome.trace_path, out_dir, outcome.run_id)

    return ResultRecord(
        item_id=item.id,
        mode=mode.label,
        mode_name=mode.name,
        mode_n=mode.n,
        seed=seed,
        kind=item.kind,
        question=item.question,
        answers=list(item.answers),
        answer=outcome.answer,
        short_answer=outcome.short_answer,
        citations=[dict(citation) for citation in outcome.citations],
        run_id=outcome.run_id,
        trace_path=trace,
        figures=figures,
        error=outcome.error,
        stop_reason=outcome.stop_reason,
        metrics=dict(grade.metrics),
        grade_details=dict(grade.details),
        form_problems=answer_problems(outcome.answer) if outcome.error is None else [],
        judge=verdict,
    )


class ProgressDisplay:
    """A rich progress bar with ETA on a terminal; elsewhere (CI, pipes, logs) a plain line every
    `every` items, so logs stay readable."""

    def __init__(self, total: int, done: int, *, enabled: bool, console: Console | None, label: str) -> None:
        self.total = total
        self.done = done
        self.resumed = done
        self.failed = 0
        self.enabled = enabled and total > done
        self.console = console or Console(stderr=True)
        self.label = label
        self.every = max(1, min(50, (total - done) // 10))
        self.started = time.monotonic()
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressDisplay:
        if not self.enabled:
            return self
        if self.console.is_terminal:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("errors {task.fields[failed]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, completed=self.done, failed=0)
        else:
            self.console.print(
                f"{self.label}: {self.done}/{self.total} done, {self.total - self.done} to run"
            )
        return self

    def advance(self, *, failed: bool) -> None:
        """Count one finished (item, mode)."""
        self.done += 1
        self.failed += failed
        if not self.enabled:
            return
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=1, failed=self.failed)
        elif (self.done - self.resumed) % self.every == 0 or self.done == self.total:
            self.console.print(self._line())

    def _line(self) -> str:
        elapsed = time.monotonic() - self.started
        ran = self.done - self.resumed
        eta = elapsed / ran * (self.total - self.done) if ran else 0.0
        return (
            f"{self.label}: {self.done}/{self.total} done ({self.failed} errors), "
            f"elapsed {_clock(elapsed)}, eta {_clock(eta)}"
        )

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
