"""The `openheavy` command: a thin shell over the library API.

Errors that openheavy raises on purpose are printed as one line that says what to do (naming the run
they happened in, if any), with exit code 1; with `--json`, as one JSON object on stdout. Ctrl-C exits
with 130 after the run's trace is closed, the run marked cancelled and the model server stopped;
SIGTERM and SIGHUP take the same path and exit with 143 and 129.
"""

from __future__ import annotations

import asyncio
import functools
import json
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from openheavy.api import Heavy, RunResult
from openheavy.config import Settings, load_settings
from openheavy.errors import OpenHeavyError
from openheavy.modes import MODES, RunOptions
from openheavy.prompts import list_prompts, load_prompt
from openheavy.types import Event, EventSink, RunStarted

app = typer.Typer(
    help="openheavy: parallel tool-using research agents, ranked generation and verifiers, in the open.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)


def main() -> None:
    """Entry point of the `openheavy` script."""
    with _termination_as_interrupt():
        app()


# The termination signals this process received: SIGTERM and SIGHUP are turned into Ctrl-C.
_terminated_by: list[int] = []


@contextmanager
def _termination_as_interrupt() -> Iterator[None]:
    """Handle SIGTERM and SIGHUP exactly as Ctrl-C: a running run is cancelled (trace kept, run marked
    cancelled, model server stopped) and the exit code says which signal it was (128 + its number)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        _terminated_by.append(signum)
        # Whatever handles Ctrl-C now (asyncio cancels the run; elsewhere KeyboardInterrupt) takes over.
        signal.raise_signal(signal.SIGINT)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _interrupted_code() -> int:
    """The exit code of an interrupted command: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + (_terminated_by[-1] if _terminated_by else signal.SIGINT)


def _interrupted_by() -> str:
    """ "cancelled" after Ctrl-C, else the name of the termination signal ("SIGTERM")."""
    return signal.Signals(_terminated_by[-1]).name if _terminated_by else "cancelled"


# Whether the running command reports errors as JSON (`--json`).
_json_errors: ContextVar[bool] = ContextVar("openheavy_json_errors", default=False)


class _RunIds(EventSink):
    """Remembers the run that started last, so that an error can name it."""

    def __init__(self) -> None:
        self.run_id: str | None = None

    def handle(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.run_id = event.run_id


def _fail(message: str, code: int = 1, *, run_id: str | None = None, status: str = "failed") -> NoReturn:
    if _json_errors.get():
        report = {"status": status, "error": message, "run_id": run_id, "exit_code": code}
        with suppress(OSError):  # a closed pipe or terminal (SIGHUP) must not turn into a traceback
            sys.stdout.write(json.dumps(report, ensure_ascii=False) + "\n")
        raise typer.Exit(code)
    where = f"\n  run {run_id}: `openheavy trace {run_id}` shows every step" if run_id else ""
    with suppress(OSError):
        err.print(f"[bold red]error:[/] {escape(message)}{escape(where)}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def _errors(*, as_json: bool = False, runs: _RunIds | None = None) -> Iterator[None]:
    """Report what goes wrong inside as one line (or one JSON object with `as_json`) and an exit code."""
    token = _json_errors.set(as_json)
    try:
        yield
    except OpenHeavyError as exc:
        _fail(str(exc), run_id=runs.run_id if runs else None)
    except KeyboardInterrupt:
        what = _interrupted_by()
        message = "the run's trace was kept and marked cancelled (`openheavy runs`)."
        if as_json:
            run_id = runs.run_id if runs else None
            _fail(f"{what}: {message}", _interrupted_code(), run_id=run_id, status="cancelled")
        with suppress(OSError):
            err.print(f"[yellow]{what}[/]: {message}", highlight=False)
        raise typer.Exit(_interrupted_code()) from None
    finally:
        _json_errors.reset(token)


@contextmanager
def _progress(enabled: bool = True) -> Iterator[Callable[[int, int, str], None]]:
    """A progress callback `(done, total, label)` drawing one bar on stderr."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[label]}", style="dim"),
        console=err,
        transient=True,
        disable=not enabled,
    )
    task = progress.add_task("indexing", total=None, label="")

    def update(done: int, total: int, label: str) -> None:
        progress.update(task, completed=done, total=total or None, label=label[-60:])

    with progress:
        yield update


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except OpenHeavyError as exc:
        _fail(str(exc))


def _parse_agents(value: str) -> int | None:
    if value == "auto":
        return None
    try:
        count = int(value)
    except ValueError:
        _fail(f"--agents must be 'auto' or a number, got {value!r}")
    if count < 1:
        _fail("--agents must be at least 1")
    return count


ApiKeyOption = Annotated[
    str | None,
    typer.Option(help="Deprecated: every user sees it in `ps`. Use --api-key-file or OPENHEAVY_API_KEY."),
]
ApiKeyFileOption = Annotated[
    Path | None, typer.Option("--api-key-file", help="Read the API key for a remote model from this file.")
]


def _api_key(api_key: str | None, api_key_file: Path | None) -> str | None:
    """The API key given on the command line: from --api-key-file, or from the deprecated --api-key
    (with a warning: a command line is visible to every user of the machine and kept in shell history)."""
    if api_key is not None and api_key_file is not None:
        _fail("give the API key once: --api-key-file FILE (or OPENHEAVY_API_KEY), not --api-key as well")
    if api_key is not None:
        err.print(
            "[yellow]warning:[/] --api-key shows the key to every user of this machine (`ps`) and keeps it "
            "in your shell history; use --api-key-file FILE or OPENHEAVY_API_KEY (--api-key is deprecated)",
            highlight=False,
        )
        return api_key
    if api_key_file is None:
        return None
    try:
        key = api_key_file.read_text(encoding="utf-8").strip()
        private = api_key_file.stat().st_mode & 0o077 == 0
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read the API key file {api_key_file} ({exc}) — check the path")
    if not key:
        _fail(f"the API key file {api_key_file} is empty — put the key in it, on one line")
    if not private:
        err.print(
            f"[yellow]warning:[/] other users can read {escape(str(api_key_file))}: chmod 600 it",
            highlight=False,
        )
    return key


def _read_question(question: str | None, question_file: Path | None) -> str:
    """The question: the argument, standard input when it is `-`, or the file `--question-file` names.
    Text from a file or stdin that is not UTF-8 is passed on as read, for the run to refuse by name."""
    if question_file is not None:
        if question is not None:
            _fail("give the question once: as an argument, - for standard input, or --question-file FILE")
        try:
            data = question_file.read_bytes()
        except OSError as exc:
            _fail(f"cannot read the question file {question_file} ({exc.strerror or exc}) — check the path")
    elif question == "-":
        data = sys.stdin.buffer.read()
    elif question is None:
        _fail("no question: give it as an argument, - to read standard input, or --question-file FILE")
    else:
        return question
    return data.decode("utf-8", errors="surrogateescape").strip()


@app.command()
def ask(
    question: Annotated[
        str | None, typer.Argument(help="The question to research; - reads it from standard input.")
    ] = None,
    question_file: Annotated[
        Path | None, typer.Option("--question-file", help="Read the question from this file (UTF-8).")
    ] = None,
    mode: Annotated[str, typer.Option(help=" | ".join(MODES))] = "single",
    model: Annotated[
        str | None, typer.Option(help="local | local:fast | local:tiny | http://host:port/v1 | PROFILE")
    ] = None,
    api_key: ApiKeyOption = None,
    api_key_file: ApiKeyFileOption = None,
    corpus: Annotated[str | None, typer.Option(help="Corpus to search (default pydocs).")] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Actions per agent.")] = None,
    agents: Annotated[str, typer.Option(help="heavy: 'auto' or a number of agents.")] = "auto",
    max_agents: Annotated[int, typer.Option(min=1, help="heavy: most agents the planner may use.")] = 4,
    n: Annotated[int, typer.Option(min=1, help="rank: number of samples.")] = 4,
    verifier: Annotated[str, typer.Option(help="rank: vote | judge | check:NAME | reward:URL")] = "vote",
    seed: Annotated[int, typer.Option(help="Base seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON result, nothing else.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live view.")] = False,
) -> None:
    """Research QUESTION and print a cited answer with its figures."""
    from openheavy.display.live import LiveDisplay
    from openheavy.display.render import render_agent_table, render_answer, render_ranking, render_summary

    runs = _RunIds()
    with _errors(as_json=as_json, runs=runs), _progress(enabled=not as_json) as progress:
        if mode not in MODES:
            _fail(f"unknown --mode {mode!r}; choose one of {', '.join(MODES)}")
        text = _read_question(question, question_file)
        key = _api_key(api_key, api_key_file)
        settings = _settings(model=model, corpus=corpus, api_key=key)
        agent_count = _parse_agents(agents)
        options = RunOptions(
            max_steps=max_steps, agents=agent_count, max_agents=max_agents, n=n, verifier=verifier, seed=seed
        )
        heavy = Heavy(settings=settings, api_key=key, progress=progress)
        sinks: list[EventSink] = [runs] if (as_json or quiet) else [runs, LiveDisplay(err)]
        result: RunResult = heavy.run(text, mode, options, sinks=sinks)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False, indent=2) + "\n")
        return
    render_answer(result.answer, result.citations, out)
    if result.ranking:
        render_ranking(result.ranking, out)
    if result.figures.agents > 1:
        render_agent_table(result.figures, out)
    for note in result.notes:
        out.print(f"[yellow]note:[/] {note}", highlight=False)
    out.print(render_summary(result.figures, result.run_id), style="dim", highlight=False)


@app.command()
def compare(
    question: Annotated[str, typer.Argument(help="The question every mode answers.")],
    modes: Annotated[str, typer.Option(help="Comma-separated modes, e.g. direct,single,heavy,rank.")] = (
        "direct,single,heavy,rank"
    ),
    model: Annotated[
        str | None, typer.Option(help="local | local:fast | local:tiny | http://host:port/v1 | PROFILE")
    ] = None,
    api_key: ApiKeyOption = None,
    api_key_file: ApiKeyFileOption = None,
    corpus: Annotated[str | None, typer.Option(help="Corpus to search (default pydocs).")] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Actions per agent.")] = None,
    n: Annotated[int, typer.Option(min=1, help="rank: number of samples.")] = 4,
    verifier: Annotated[str, typer.Option(help="rank: vote | judge | check:NAME | reward:URL")] = "vote",
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Run several modes on one question and show the answers and their cost side by side."""
    from rich.table import Table

    from openheavy.display.live import LiveDisplay

    runs = _RunIds()

    async def run_all(heavy: Heavy) -> list[RunResult]:
        results = []
        async with heavy:
            for mode in chosen:
                if not as_json:
                    err.rule(f"[bold]{mode}")
                sinks: list[EventSink] = [runs] if as_json else [runs, LiveDisplay(err)]
                options = RunOptions(max_steps=max_steps, n=n, verifier=verifier)
                results.append(await heavy.arun(question, mode, options, sinks=sinks))
        return results

    with _errors(as_json=as_json, runs=runs), _progress(enabled=not as_json) as progress:
        chosen = [m.strip() for m in modes.split(",") if m.strip()]
        unknown = [m for m in chosen if m not in MODES]
        if unknown or not chosen:
            _fail(f"unknown mode(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(MODES)}")
        key = _api_key(api_key, api_key_file)
        settings = _settings(model=model, corpus=corpus, api_key=key)
        results = asyncio.run(run_all(Heavy(settings=settings, api_key=key, progress=progress)))
    if as_json:
        sys.stdout.write(json.dumps([r.to_dict() for r in results], ensure_ascii=False, indent=2) + "\n")
        return
    table = Table(title=question, show_lines=True)
    for column in ("mode", "answer", "searches", "docs read", "cited", "tokens in/out", "wall s", "run"):
        table.add_column(column, overflow="fold")
    for r in results:
        f = r.figures
        table.add_row(
            r.mode,
            r.answer,
            str(f.searches),
            str(f.documents_read),
            str(f.sources_cited),
            f"{f.prompt_tokens:,} / {f.completion_tokens:,}",
            f"{f.wall_seconds:.1f}",
            r.run_id,
        )
    out.print(table)


@app.command("eval")
def eval_(
    dataset: Annotated[
        str | None,
        typer.Argument(help="hotpotqa | musique | gsm8k | math500 | peps-wide | a .jsonl file."),
    ] = None,
    modes: Annotated[str, typer.Option(help="e.g. direct,single,heavy:4,rank:8")] = "direct,single",
    limit: Annotated[int | None, typer.Option(min=1, help="First N items only.")] = None,
    model: Annotated[
        str | None, typer.Option(help="local | local:fast | local:tiny | http://host:port/v1 | PROFILE")
    ] = None,
    api_key: ApiKeyOption = None,
    api_key_file: ApiKeyFileOption = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Items in flight at once.")] = 1,
    results: Annotated[
        Path | None, typer.Option("--out", help="Results folder (default eval-out/DATASET).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Run seed; each item's seed derives from it.")] = 0,
    data_dir: Annotated[
        Path | None, typer.Option(help="Benchmark data folder (default ../shared/data).")
    ] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Actions per agent.")] = None,
    verifier: Annotated[str, typer.Option(help="rank: vote | judge | check:NAME | reward:URL")] = "vote",
    judge: Annotated[bool, typer.Option("--judge", help="Also grade with an LLM judge (the model).")] = False,
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="Rerun items that errored.")] = False,
    report: Annotated[
        Path | None, typer.Option("--report", help="Only re-render the report of this results folder.")
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Fan out over Ray: 'local' starts it here, 'auto' joins this machine's cluster, "
            "or ray://HOST:PORT (needs the cluster extra).",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="With --ray: worker processes, each with its own model.")
    ] = 2,
) -> None:
    """Evaluate modes on a benchmark: accuracy against compute, resumable, with a report and plots."""
    from openheavy.evals import build_corpus, dataset_corpora, load_dataset, parse_modes, render_report
    from openheavy.evals.cluster import RayRunner
    from openheavy.evals.harness import run_eval
    from openheavy.evals.runner import HeavyRunner, make_heavy_runner
    from openheavy.models.base import ChatModel
    from openheavy.models.registry import resolve_model

    if report is not None:
        with _errors():
            render_report(report)
        out.print(f"report: {report / 'report.md'}")
        return
    if dataset is None:
        _fail("name a DATASET (hotpotqa, musique, gsm8k, math500, peps-wide or a .jsonl), or --report DIR")
    key = _api_key(api_key, api_key_file)
    settings = _settings(model=model, api_key=key)
    out_dir = results or Path("eval-out") / Path(dataset).stem
    with _errors():
        items = load_dataset(dataset, data_dir, limit=limit)
        mode_specs = parse_modes(modes)
        searching = [m.label for m in mode_specs if MODES[m.name].uses_corpus]
        if searching and any(i.corpus is None for i in items):
            _fail(
                f"{dataset} has nothing to search, and {', '.join(searching)} search: use direct and rank:N"
            )
        for spec in dataset_corpora(items):
            with _progress() as progress:
                err.print(f"indexing corpus {spec.name} …")
                build_corpus(spec, settings.index_dir, progress=progress)

        async def evaluate() -> None:
            make = functools.partial(
                make_heavy_runner, settings, api_key=key, verifier=verifier, max_steps=max_steps
            )
            runner: HeavyRunner | RayRunner
            judge_model: ChatModel | None = None
            if ray is None:
                runner = make()
                judge_model = runner.model if judge else None  # the judge shares the one model
            else:
                err.print(f"starting {workers} Ray workers ({'this machine' if ray == 'local' else ray}) …")
                runner = RayRunner(make, workers=workers, address=None if ray == "local" else ray)
                if judge:  # runs go to the workers; the judge runs here, on a model of its own
                    judge_model = resolve_model(settings.model, settings, api_key=key)
            try:
                await run_eval(
                    items,
                    mode_specs,
                    runner,
                    out_dir,
                    concurrency=concurrency if ray is None else max(concurrency, workers),
                    seed=seed,
                    judge=judge_model,
                    dataset=dataset,
                    retry_errors=retry_errors,
                    console=err,
                )
            finally:
                await runner.aclose()
                if isinstance(runner, RayRunner) and judge_model is not None:
                    await judge_model.aclose()

        asyncio.run(evaluate())
    out.print(f"results: {out_dir / 'results.jsonl'} · report: {out_dir / 'report.md'}")


@app.command()
def index(
    paths: Annotated[list[Path], typer.Argument(help="Folders or files (.md .rst .txt .html .pdf .jsonl).")],
    name: Annotated[str, typer.Option("--name", "-n", help="Name of the corpus.")],
) -> None:
    """Index files into a named local corpus (re-indexing skips unchanged files).

    A file that cannot be read or parsed is skipped with a warning; the run fails (exit 1) only when
    nothing could be indexed, and then creates no corpus.
    """
    from openheavy.corpus.catalog import index_paths

    def warn(message: str) -> None:
        err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)

    settings = _settings()
    with _errors(), _progress() as progress:
        try:
            report = index_paths(list(paths), name, settings.index_dir, progress=progress, warn=warn)
        except KeyboardInterrupt:
            err.print(
                f"[yellow]{_interrupted_by()}[/]: files indexed so far stay indexed; run the command again "
                "to finish."
            )
            raise typer.Exit(_interrupted_code()) from None
    skipped = f", {len(report.skipped)} skipped" if report.skipped else ""
    out.print(
        f"corpus [bold]{name}[/]: {report.documents:,} documents, {report.chunks:,} chunks · "
        f"{report.files_indexed} files indexed, {report.files_unchanged} unchanged, "
        f"{report.files_removed} removed{skipped} · {report.seconds:.1f} s",
        highlight=False,
    )


@app.command()
def corpora() -> None:
    """List local corpora with their document and chunk counts."""
    from rich.table import Table

    from openheavy.corpus.catalog import list_corpora

    settings = _settings()
    with _errors():
        found = list_corpora(settings.index_dir)
    if not found:
        out.print("no corpora yet: `openheavy index PATH --name NAME`, or ask a question to build pydocs")
        return
    table = Table("name", "documents", "chunks", "updated", "path")
    for info in found:
        if info.problem is not None:
            table.add_row(info.name, "[red]unusable[/]", "", str(info.updated_at), str(info.path))
        else:
            table.add_row(
                info.name, f"{info.documents:,}", f"{info.chunks:,}", str(info.updated_at), str(info.path)
            )
    out.print(table)
    for info in found:
        if info.problem is not None:
            err.print(f"[yellow]warning:[/] {escape(info.problem)}", highlight=False)


@app.command()
def runs(limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20) -> None:
    """List past runs."""
    from openheavy.display.render import render_runs
    from openheavy.trace import RunStore, run_store_path

    settings = _settings()
    with _errors():
        rows = RunStore(run_store_path(settings.runs_dir)).list(limit=limit)
    render_runs(rows, out)


@app.command()
def trace(
    run_id: Annotated[str, typer.Argument(help="A run id (or a unique prefix) from `openheavy runs`.")],
) -> None:
    """Print a run step by step: every prompt, output, search, document, token and second."""
    from openheavy.display.render import render_trace
    from openheavy.trace import RunStore, read_trace, run_store_path

    settings = _settings()
    with _errors():
        row = RunStore(run_store_path(settings.runs_dir)).get(run_id)
        if not row.trace_path:
            _fail(f"run {row.run_id} has no trace file")
        records = read_trace(Path(row.trace_path))
    render_trace(records, out)


@app.command()
def prompts() -> None:
    """Print every prompt template openheavy uses."""
    for name in list_prompts():
        out.rule(f"[bold]{name}")
        out.print(load_prompt(name), markup=False, highlight=False)
