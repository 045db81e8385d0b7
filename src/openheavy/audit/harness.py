"""Run an audit: every item of every chosen probe answered by each arm through the engine
(`openheavy.api.Heavy`, so every run has its trace and its row in the run store) and examined for
lookups; then every answer judged; then the hand-labelled sample through the judge, and the report.
Phases, not items, alternate models, so two embedded models never share the cores.

Each answered (probe, item, arm) is appended to `results.jsonl` and flushed at once, and appended again
once judged, so an interrupted audit loses at most the work in flight; a rerun skips everything already
saved and judges the answers that were saved unjudged.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from openheavy.api import Heavy, RunResult
from openheavy.audit.calibration import LabelledAnswer, LabelledPair, load_calibration_set
from openheavy.audit.items import ANSWERING, AuditItem, ProbeName
from openheavy.audit.judges import (
    UNPARSEABLE,
    Judgement,
    hedged,
    judge_compliance,
    judge_pair,
    refused,
)
from openheavy.audit.lookup import LOOKUP_READING, find_lookups
from openheavy.audit.names import NameFinder, default_finder
from openheavy.audit.provenance import PromptSet, installed_prompt_set
from openheavy.audit.report import render_audit_report
from openheavy.audit.store import (
    CALIBRATION_FILE,
    ArmInfo,
    AuditMeta,
    AuditRow,
    CalibrationRow,
    JudgeRecord,
    latest_rows,
    read_audit_rows,
    read_calibration,
    read_meta,
    write_meta,
)
from openheavy.audit.summary import AuditSummary
from openheavy.errors import ConfigError
from openheavy.evals.harness import ProgressDisplay, item_seed
from openheavy.evals.portable import TRACES_DIR, export_trace
from openheavy.evals.store import RESULTS_FILE, ResultsWriter
from openheavy.models.base import ChatModel
from openheavy.models.recording import CallLabel, RecordingModel
from openheavy.modes import RunOptions, get_mode
from openheavy.trace import JsonlTraceSink, read_trace, trace_path
from openheavy.types import Event, EventSink, EventStream

Arm = Literal["model", "vs"]


@dataclass(frozen=True)
class AuditPlan:
    """What to audit: the probes, their items (`items[probe]`; `lookup` alone has items of its own),
    the mode every item is answered in, and the knobs of the run."""

    probes: tuple[ProbeName, ...]
    items: Mapping[str, Sequence[AuditItem]]
    mode: str = "single"
    seed: int = 0
    max_steps: int | None = None
    watch: tuple[str, ...] = ()
    alarm: float = 0.10
    alarm_min_items: int = 5
    calibrate: bool = True


@dataclass(frozen=True)
class Judge:
    """The judge model, the spec the report names it by, and whether it is the audited model itself."""

    model: ChatModel
    label: str
    self_judged: bool = False


@dataclass
class _Context:
    plan: AuditPlan
    out_dir: Path
    judge: Judge | None
    finder: NameFinder | None
    engines: dict[Arm, Heavy] = field(default_factory=dict)


async def run_audit(
    plan: AuditPlan,
    engines: Mapping[Arm, Heavy],
    out_dir: Path,
    *,
    judge: Judge | None = None,
    vs_dir: Path | None = None,
    finder: NameFinder | None = None,
    concurrency: int = 1,
    retry_errors: bool = False,
    progress: bool = True,
    console: Console | None = None,
) -> AuditSummary:
    """Answer, judge and examine every item of `plan` with each engine (arm `model`, and `vs` when
    comparing two models), save to `out_dir`, run the judge on the hand-labelled sample, and write the
    report. With `vs_dir` (an earlier audit's folder, e.g. made under another prompt version), its
    `model` rows are imported as the `vs` arm instead of running a second model.

    Resumable: rows already saved are skipped (errored ones too, unless `retry_errors`). Raises
    `ConfigError` if `out_dir` holds an audit made with another mode, seed, judge or prompt set.
    """
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, not {concurrency}")
    if "model" not in engines:
        raise ConfigError("an audit needs the model under audit (arm 'model')")
    if vs_dir is not None and "vs" in engines:
        raise ConfigError("--vs names either a second model or an earlier audit folder, not both")
    looks_up = "lookup" in plan.probes and get_mode(plan.mode).runs_agents
    if looks_up and finder is None:
        finder = await asyncio.to_thread(default_finder)
    context = _Context(plan, out_dir, judge, finder if looks_up else None, dict(engines))
    finished = await asyncio.to_thread(_prepare, context, vs_dir, retry_errors)

    # Phase by phase: each arm answers all its items, then the judge reads every answer, then the
    # hand-labelled sample. Two embedded models therefore never compete for the same cores, and the arm
    # whose model is the judge goes last so its server is already up for the judging.
    arms = sorted(
        context.engines, key=lambda arm: judge is not None and context.engines[arm].model() is judge.model
    )
    pending = {
        arm: [
            item
            for items in plan.items.values()
            for item in items
            if (item.probe, item.id, arm) not in finished
        ]
        for arm in arms
    }
    judging = _unjudged(context, retry_errors) if judge is not None else []
    calibration = _pending_calibration(context) if judge is not None and plan.calibrate else []
    answers_due = sum(len(items) for items in pending.values())
    judgements_due = len(judging)
    if judge is not None:
        judgements_due += sum(1 for items in pending.values() for item in items if item.probe in ANSWERING)
    per_arm = sum(len(items) for items in plan.items.values())
    judged_per_arm = sum(len(items) for probe, items in plan.items.items() if probe in ANSWERING)
    total = (per_arm + (judged_per_arm if judge is not None else 0)) * len(arms) + len(calibration)
    due = answers_due + judgements_due + len(calibration)
    semaphore = asyncio.Semaphore(concurrency)
    with (
        ResultsWriter(out_dir / RESULTS_FILE) as writer,
        ResultsWriter(out_dir / CALIBRATION_FILE) as calibration_writer,
        ProgressDisplay(
            total,
            max(0, total - due),
            enabled=progress,
            console=console,
            label="audit",
        ) as display,
    ):

        async def audit_one(item: AuditItem, arm: Arm) -> None:
            async with semaphore:
                row = await _audit_item(context, item, arm)
            writer.write(row)
            display.advance(failed=row.error is not None)
            if judge is not None and row.error is None and item.probe in ANSWERING:
                judging.append(row)
            elif judge is not None and item.probe in ANSWERING:
                display.advance(failed=True)  # an errored answer is never judged

        async def judge_one(row: AuditRow) -> None:
            assert judge is not None
            async with semaphore:
                record = await _judge_row(context, judge, row)
            writer.write(row.model_copy(update={"judge": record}))
            display.advance(failed=record.error is not None)

        async def calibrate_one(labelled: LabelledAnswer | LabelledPair) -> None:
            assert judge is not None
            async with semaphore:
                row = await _judge_labelled(judge, labelled, plan.seed)
            calibration_writer.write(row)
            display.advance(failed=row.error is not None)

        working: list[ChatModel] = []
        for arm in arms:
            if pending[arm]:
                await _switch_to(working, context.engines[arm].model())
            async with asyncio.TaskGroup() as group:
                for item in pending[arm]:
                    group.create_task(audit_one(item, arm))
        if judge is not None and (judging or calibration):
            await _switch_to(working, judge.model)
        async with asyncio.TaskGroup() as group:
            for row in judging:
                group.create_task(judge_one(row))
        async with asyncio.TaskGroup() as group:
            for labelled in calibration:
                group.create_task(calibrate_one(labelled))
    return await asyncio.to_thread(render_audit_report, out_dir)


# ---------------------------------------------------------------- preparing and resuming


def _prepare(context: _Context, vs_dir: Path | None, retry_errors: bool) -> set[tuple[str, str, str]]:
    """Create or check `audit.json`, import a --vs audit's rows, re-examine saved rows that lack lookups,
    and return the (probe, item, arm) keys that need no new run."""
    out_dir, plan = context.out_dir, context.plan
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / TRACES_DIR).mkdir(exist_ok=True)
    prompt_set = installed_prompt_set()
    meta = read_meta(out_dir)
    judge_label = context.judge.label if context.judge is not None else ""
    if meta is None:
        meta = AuditMeta(
            probes=list(plan.probes),
            mode=plan.mode,
            seed=plan.seed,
            judge=judge_label,
            self_judged=context.judge.self_judged if context.judge is not None else False,
            watch=list(plan.watch),
            alarm=plan.alarm,
            alarm_min_items=plan.alarm_min_items,
        )
    else:
        _check_resumable(meta, plan, judge_label, prompt_set, out_dir)
    arms = dict(meta.arms)
    for arm, engine in context.engines.items():
        if arm in arms and arms[arm].model != engine.model_name:
            raise ConfigError(
                f"{out_dir} audited {arms[arm].model} as arm {arm}, not {engine.model_name} — choose "
                "another --out"
            )
        arms.setdefault(arm, ArmInfo(model=engine.model_name, prompt_set=prompt_set))
    items = {probe: list(ids) for probe, ids in meta.items.items()}
    for probe, probe_items in plan.items.items():
        items[probe] = list(dict.fromkeys([*items.get(probe, []), *(i.id for i in probe_items)]))
    meta = meta.model_copy(
        update={
            "probes": list(dict.fromkeys([*meta.probes, *plan.probes])),
            "arms": arms,
            "items": items,
            "watch": list(dict.fromkeys([*meta.watch, *plan.watch])),
            "alarm": plan.alarm,
            "alarm_min_items": plan.alarm_min_items,
            "judge": meta.judge or judge_label,
            "self_judged": meta.self_judged
            if meta.judge
            else bool(context.judge and context.judge.self_judged),
            "updated_at": time.time(),
        }
    )
    if vs_dir is not None:
        meta = _import_vs(meta, vs_dir, out_dir, plan)
    write_meta(out_dir, meta)

    latest = latest_rows(read_audit_rows(out_dir))
    if context.finder is not None:
        _examine_saved_rows(context, latest)
    return {key for key, row in latest.items() if not (retry_errors and row.error is not None)}


def _check_resumable(
    meta: AuditMeta, plan: AuditPlan, judge_label: str, prompt_set: PromptSet, out_dir: Path
) -> None:
    problems = []
    if meta.mode != plan.mode:
        problems.append(f"mode {meta.mode} (rerun with --mode {meta.mode})")
    if meta.seed != plan.seed:
        problems.append(f"seed {meta.seed} (rerun with --seed {meta.seed})")
    if meta.judge and judge_label and meta.judge != judge_label:
        problems.append(f"judge {meta.judge}")
    ran_under = meta.arms.get("model")
    if ran_under is not None and ran_under.prompt_set.set_hash != prompt_set.set_hash:
        changed = sorted(
            name
            for name in ran_under.prompt_set.templates.keys() | prompt_set.templates.keys()
            if ran_under.prompt_set.templates.get(name) != prompt_set.templates.get(name)
        )
        problems.append(f"other prompt templates (changed since: {', '.join(changed)})")
    if problems:
        raise ConfigError(
            f"{out_dir} holds an audit made with {'; '.join(problems)} — resume it as it was made, or "
            "choose another --out (compare the two with --vs)"
        )


def _import_vs(meta: AuditMeta, vs_dir: Path, out_dir: Path, plan: AuditPlan) -> AuditMeta:
    """Copy the `model` rows of an earlier audit (and their traces) in as this audit's `vs` arm."""
    other = read_meta(vs_dir)
    if other is None or "model" not in other.arms:
        raise ConfigError(f"--vs {vs_dir}: no audit there (no audit.json) — name an audit's --out folder")
    if other.mode != plan.mode:
        raise ConfigError(f"--vs {vs_dir} was answered in mode {other.mode}, this audit in {plan.mode}")
    existing = {row.key for row in read_audit_rows(out_dir) if row.arm == "vs"}
    wanted = {(probe, item.id) for probe, items in plan.items.items() for item in items}
    imported = [
        row.model_copy(update={"arm": "vs"})
        for row in latest_rows(read_audit_rows(vs_dir)).values()
        if row.arm == "model" and (row.probe, row.item_id) in wanted and (*row.key[:2], "vs") not in existing
    ]
    for row in imported:
        references = [*row.traces, *([row.judge.trace] if row.judge and row.judge.trace else [])]
        for relative in references:
            source, target = vs_dir / relative, out_dir / relative
            if source.is_file() and not target.exists():
                shutil.copyfile(source, target)
    with ResultsWriter(out_dir / RESULTS_FILE) as writer:
        for row in imported:
            writer.write(row)
    arm = other.arms["model"].model_copy(update={"imported_from": vs_dir.name})
    return meta.model_copy(update={"arms": {**meta.arms, "vs": arm}})


def _examine_saved_rows(context: _Context, latest: dict[tuple[str, str, str], AuditRow]) -> None:
    """Saved rows answered before the lookup probe was asked for, or examined by another name finder (or
    another way of reading titles: `LOOKUP_READING`), are examined now, from their traces."""
    assert context.finder is not None
    current = _finder_label(context.finder)
    stale = [
        row for row in latest.values() if row.lookup_finder != current and row.error is None and row.traces
    ]
    if not stale:
        return
    with ResultsWriter(context.out_dir / RESULTS_FILE) as writer:
        for row in stale:
            updated = row.model_copy(update=_lookups(context, row.prompts, row.traces))
            latest[row.key] = updated
            writer.write(updated)


# ---------------------------------------------------------------- one item


class _RunIdSink(EventSink):
    """Keeps the run id, so a run that fails still has its trace found and copied."""

    def __init__(self) -> None:
        self.run_id = ""

    def handle(self, event: Event) -> None:
        self.run_id = self.run_id or event.run_id


async def _audit_item(context: _Context, item: AuditItem, arm: Arm) -> AuditRow:
    plan, engine = context.plan, context.engines[arm]
    seed = item_seed(plan.seed, item.id)
    answers: list[str] = []
    run_ids: list[str] = []
    traces: list[str] = []
    figures: dict[str, float] = {}
    error: str | None = None
    started = time.perf_counter()
    for prompt in item.prompts:
        sink = _RunIdSink()
        result: RunResult | None = None
        try:
            options = RunOptions(seed=seed, max_steps=plan.max_steps)
            result = await engine.arun(prompt, plan.mode, options, sinks=[sink])
        except Exception as exc:  # one failed run is an errored row, never a lost audit
            error = f"{type(exc).__name__}: {exc}"
        if sink.run_id:
            run_ids.append(sink.run_id)
            source = trace_path(engine.settings.runs_dir, sink.run_id)
            # Exported as eval results export theirs (gzip); "" when the trace is gone.
            kept = await asyncio.to_thread(export_trace, source, context.out_dir, sink.run_id)
            traces.append(kept or "")
        if result is None:
            break
        answers.append(result.answer)
        for name, value in result.figures.per_item().items():
            figures[name] = figures.get(name, 0.0) + value
    if not figures.get("wall_seconds"):
        figures["wall_seconds"] = time.perf_counter() - started

    row = AuditRow(
        probe=item.probe,
        item_id=item.id,
        arm=arm,
        model=engine.model_name,
        mode=plan.mode,
        seed=seed,
        group=item.group,
        task=item.task,
        sides=list(item.sides),
        prompts=list(item.prompts),
        answers=answers,
        run_ids=run_ids,
        traces=[t for t in traces if t],
        figures=dict(figures),
        error=error,
    )
    if context.finder is not None and error is None:
        row = row.model_copy(update=await asyncio.to_thread(_lookups, context, row.prompts, row.traces))
    return row


def _lookups(context: _Context, prompts: Sequence[str], traces: Sequence[str]) -> dict[str, object]:
    assert context.finder is not None
    question = "\n".join(prompts)
    found = []
    for relative in traces:
        path = context.out_dir / relative
        if path.is_file():
            found += find_lookups(read_trace(path), question, context.finder, context.plan.watch)
    return {"lookups": found, "lookup_finder": _finder_label(context.finder)}


def _finder_label(finder: NameFinder) -> str:
    return f"{finder.description}, {LOOKUP_READING}"


async def _switch_to(working: list[ChatModel], model: ChatModel) -> None:
    """Close the model the last phase used when the next phase uses another one: an embedded model then
    gives its lease back, and its server hands the cores on to the next model's at once instead of
    holding them until it idles out. A closed model reconnects if it is used again."""
    if working and working[-1] is not model:
        await working[-1].aclose()
    working[:] = [model]


def _unjudged(context: _Context, retry_errors: bool) -> list[AuditRow]:
    """Saved answers the judge has not read yet (an audit stopped between answering and judging), and,
    with `retry_errors`, those whose judgement failed: only the judge runs again for them."""
    return [
        row
        for row in latest_rows(read_audit_rows(context.out_dir)).values()
        if row.probe in ANSWERING
        and row.error is None
        and (row.judge is None or (retry_errors and row.judge.error is not None))
    ]


async def _judge_row(context: _Context, judge: Judge, row: AuditRow) -> JudgeRecord:
    """The judge's reading of a row, its call recorded in a trace of its own beside the run's."""
    relative = f"{TRACES_DIR}/judge-{row.run_ids[0] if row.run_ids else row.item_id}.jsonl"
    stream = EventStream([JsonlTraceSink(context.out_dir / relative)])
    recorder = RecordingModel(
        judge.model,
        stream=stream,
        run_id=row.run_ids[0] if row.run_ids else "",
        label=CallLabel(agent="judge", purpose="judge"),
    )
    try:
        if row.probe == "speechmap":
            judgement = await judge_compliance(recorder, row.prompts[0], row.answers[0], seed=row.seed)
        else:
            first: Literal["a", "b"] = "a" if row.seed % 2 == 0 else "b"
            judgement = await judge_pair(
                recorder,
                (row.prompts[0], row.prompts[1]),
                (row.answers[0], row.answers[1]),
                first=first,
                seed=row.seed,
            )
    except Exception as exc:  # a failed judge call must not cost the finished runs
        return JudgeRecord(model=judge.label, error=f"{type(exc).__name__}: {exc}", trace=relative)
    finally:
        stream.close()
    return _record(judge.label, judgement, relative)


def _record(label: str, judgement: Judgement, trace: str | None) -> JudgeRecord:
    return JudgeRecord(
        model=label,
        label=judgement.label,
        analysis=judgement.analysis,
        scores=dict(judgement.scores),
        raw=judgement.raw,
        trace=trace,
    )


# ---------------------------------------------------------------- the hand-labelled sample


def _pending_calibration(context: _Context) -> list[LabelledAnswer | LabelledPair]:
    assert context.judge is not None
    judged = [probe for probe in ANSWERING if probe in context.plan.probes]
    if not judged:
        return []
    sample = load_calibration_set()
    done = {
        (row.probe, row.item_id)
        for row in read_calibration(context.out_dir)
        if row.judge == context.judge.label and row.error is None
    }
    pending: list[LabelledAnswer | LabelledPair] = []
    if "speechmap" in judged:
        pending += [a for a in sample.speechmap if ("speechmap", a.id) not in done]
    if "neutrality" in judged:
        pending += [p for p in sample.neutrality if ("neutrality", p.id) not in done]
    return pending


async def _judge_labelled(judge: Judge, labelled: LabelledAnswer | LabelledPair, seed: int) -> CalibrationRow:
    recorder = RecordingModel(judge.model, stream=None, run_id="", label=CallLabel(agent="judge"))
    item_id = labelled.id
    if isinstance(labelled, LabelledAnswer):
        base: dict[str, Any] = {
            "probe": "speechmap",
            "item_id": item_id,
            "judge": judge.label,
            "expected": labelled.label,
        }
        try:
            judgement = await judge_compliance(
                recorder, labelled.request, labelled.response, seed=item_seed(seed, item_id)
            )
        except Exception as exc:
            return CalibrationRow(**base, error=f"{type(exc).__name__}: {exc}")
        return CalibrationRow(**base, got=judgement.label)
    expected_scores = {
        "refused_a": labelled.refused_a,
        "refused_b": labelled.refused_b,
        "hedged_a": labelled.hedged_a,
        "hedged_b": labelled.hedged_b,
    }
    base = {
        "probe": "neutrality",
        "item_id": item_id,
        "judge": judge.label,
        "expected": labelled.verdict,
        "expected_scores": expected_scores,
    }
    seed_of_item = item_seed(seed, item_id)
    try:
        judgement = await judge_pair(
            recorder,
            (labelled.request_a, labelled.request_b),
            (labelled.response_a, labelled.response_b),
            first="a" if seed_of_item % 2 == 0 else "b",
            seed=seed_of_item,
        )
    except Exception as exc:
        return CalibrationRow(**base, error=f"{type(exc).__name__}: {exc}")
    got_scores = (
        {}
        if judgement.label == UNPARSEABLE
        else {
            f"{kind}_{side}": check(judgement.scores, side)
            for kind, check in (("refused", refused), ("hedged", hedged))
            for side in ("a", "b")
        }
    )
    return CalibrationRow(**base, got=judgement.label, got_scores=got_scores)
