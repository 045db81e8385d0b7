"""What `openheavy audit` does, apart from parsing its flags: resolve the models (sharing one model
between roles that name the same spec, so one embedded server serves the audited model and its judge),
run the audit, and diff prompt sets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from openheavy.api import Heavy
from openheavy.audit.harness import Arm, AuditPlan, Judge, run_audit
from openheavy.audit.items import ProbeName, audit_items
from openheavy.audit.provenance import PromptDiff, diff_prompt_sets, installed_prompt_set, render_prompt_diff
from openheavy.audit.store import AUDIT_FILE, prompt_set_of
from openheavy.audit.summary import AuditSummary
from openheavy.config import Settings
from openheavy.errors import ConfigError
from openheavy.models.base import ChatModel
from openheavy.models.registry import resolve_model
from openheavy.modes import get_mode
from openheavy.option_lists import split_commas

PROMPT_DIFF_FILE = "prompts-diff.md"


@dataclass(frozen=True)
class AuditRequest:
    """The flags of one `openheavy audit` run."""

    probes: tuple[ProbeName, ...]
    out_dir: Path
    model: str
    vs: str | None = None
    mode: str = "single"
    limit: int | None = None
    judge: str | None = None
    corpus: str | None = None
    watch: tuple[str, ...] = ()
    alarm: float = 0.10
    alarm_min_items: int = 5
    seed: int = 0
    max_steps: int | None = None
    concurrency: int = 1
    data_dir: Path | None = None
    retry_errors: bool = False
    calibrate: bool = True


def is_audit_folder(target: str) -> bool:
    """Whether `target` is the folder of an earlier audit (it has an `audit.json`)."""
    return (Path(target) / AUDIT_FILE).is_file()


async def audit_command(
    request: AuditRequest, settings: Settings, *, api_key: str | None = None, console: Console | None = None
) -> AuditSummary:
    """Run the audit `request` describes and write its report. Models are resolved once per distinct spec
    and closed at the end; the judge defaults to the audited model (self-judged)."""
    get_mode(request.mode)  # a bad mode is a usage error before any model starts
    if not 0 < request.alarm < 1:
        raise ConfigError(f"--alarm is a rate shift between 0 and 1 (0.1 = 10 points), not {request.alarm}")
    if request.alarm_min_items < 1:
        raise ConfigError(
            f"--alarm-min-items is a number of paired items, at least 1, not {request.alarm_min_items}"
        )
    answering = [p for p in request.probes if p != "prompts"]
    if not answering:
        raise ConfigError(
            "name a probe to run (speechmap, neutrality, lookup); `prompts` alone diffs prompt sets"
        )
    items = audit_items(answering, request.data_dir, request.limit)
    vs_dir = Path(request.vs) if request.vs is not None and is_audit_folder(request.vs) else None
    models: dict[str, ChatModel] = {}

    def model_for(spec: str) -> ChatModel:
        if spec not in models:
            models[spec] = resolve_model(spec, settings, api_key=api_key)
        return models[spec]

    corpus = request.corpus or settings.corpus
    engines: dict[Arm, Heavy] = {"model": Heavy(model_for(request.model), corpus, settings=settings)}
    if request.vs is not None and vs_dir is None:
        engines["vs"] = Heavy(model_for(request.vs), corpus, settings=settings)
    judges = any(p in ("speechmap", "neutrality") for p in answering)
    judge_spec = request.judge or request.model
    judge = (
        Judge(model_for(judge_spec), judge_spec, self_judged=judge_spec == request.model) if judges else None
    )
    plan = AuditPlan(
        probes=tuple(request.probes),
        items=items,
        mode=request.mode,
        seed=request.seed,
        max_steps=request.max_steps,
        watch=request.watch,
        alarm=request.alarm,
        alarm_min_items=request.alarm_min_items,
        calibrate=request.calibrate,
    )
    try:
        summary = await run_audit(
            plan,
            engines,
            request.out_dir,
            judge=judge,
            vs_dir=vs_dir,
            concurrency=request.concurrency,
            retry_errors=request.retry_errors,
            console=console,
        )
    finally:
        for engine in engines.values():
            await engine.aclose()
        for model in models.values():
            await model.aclose()
    if vs_dir is not None:
        write_prompt_diff(str(request.out_dir), str(vs_dir), request.out_dir)
    return summary


def prompt_diff(ours: str | None, theirs: str) -> PromptDiff:
    """The diff of prompt set `theirs` (an audit folder, a prompts folder or a git revision) against
    `ours` (the same kinds; None: the installed openheavy's)."""
    mine = installed_prompt_set() if ours is None else prompt_set_of(ours)
    return diff_prompt_sets(mine, prompt_set_of(theirs))


def write_prompt_diff(ours: str | None, theirs: str, out_dir: Path | None) -> str:
    """The markdown of `prompt_diff`, also written to `out_dir/prompts-diff.md` when a folder is given."""
    text = render_prompt_diff(prompt_diff(ours, theirs))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / PROMPT_DIFF_FILE).write_text(text, encoding="utf-8")
    return text


def parse_watch(text: str | None) -> tuple[str, ...]:
    """`--watch "Elon Musk,xAI"` as names, blanks dropped."""
    return tuple(split_commas(text))
