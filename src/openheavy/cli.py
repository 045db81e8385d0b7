"""The `openheavy` command: a thin shell over the library API.

Errors that openheavy raises on purpose are printed as one line that says what to do (naming the run
they happened in, if any), with exit code 1; with `--json`, as one JSON object on stdout. Ctrl-C exits
with 130 after the run's trace is closed, the run marked cancelled and the model server let go (a
shared one stays up); SIGTERM and SIGHUP take the same path and exit with 143 and 129.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import replace
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
from openheavy.option_lists import split_commas
from openheavy.prompts import list_prompts, load_prompt
from openheavy.search.base import SearchBackend, close_search
from openheavy.tools.catalog import DEFAULT_TOOLS, TOOL_NAMES
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
    # A shell starts a background job (`openheavy eval … &` in a script) with SIGINT ignored; asyncio then
    # installs no Ctrl-C handler, and the SIGINT that SIGTERM turns into would be lost: `kill PID` would
    # not stop the run. The default handler makes both work as documented.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
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


# The run budgets, the same flags on ask, compare and eval.
MaxStepsOption = Annotated[int | None, typer.Option(min=1, help="Budget: actions per agent.")]
MaxTokensOption = Annotated[
    int | None, typer.Option(min=1, help="Budget: tokens per run, prompt + completion (default 60,000).")
]
MaxSecondsOption = Annotated[
    float | None, typer.Option(help="Budget: wall-clock seconds per run (default 900).", show_default=False)
]


def _check_seconds(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        _fail(f"--max-seconds must be a positive, finite number of seconds, got {value}")
    return value


def _budgets(max_steps: int | None, max_tokens: int | None, max_seconds: float | None) -> RunOptions:
    """The run budgets the flags give, checked now (a bad one must fail before any model call)."""
    return RunOptions(max_steps=max_steps, max_tokens=max_tokens, max_seconds=_check_seconds(max_seconds))


def _print_stops(stops: str | None, *, of: str | None = None) -> None:
    """The line that says which budget stopped a run (of mode `of`, where several ran); nothing if none."""
    if stops:
        prefix = f"{escape(of)}: " if of is not None else ""
        out.print(f"[yellow]{prefix}{escape(stops)}[/]", highlight=False)


def _print_json(data: Any) -> None:
    """`data` as indented JSON on standard output, for scripts (non-ASCII text kept as written)."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def _budget_limits(settings: Settings, options: RunOptions) -> dict[str, str]:
    """The flag and value of each budget as the run used it, for the line that says what a budget stopped."""
    return {
        "steps": f"--max-steps {options.max_steps or settings.max_steps}",
        "tokens": f"--max-tokens {options.max_tokens or settings.max_tokens:,}",
        "time": f"--max-seconds {options.max_seconds or settings.max_seconds:g}",
    }


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


def _parse_tools(value: str | None) -> tuple[str, ...] | None:
    """`--tools a,b` as names (checked by `RunOptions`), or None when not given."""
    return None if value is None else tuple(split_commas(value))


def _check_tools(tools: tuple[str, ...] | None, settings: Settings) -> None:
    """Build the tools once now: a bad name, or a tool this machine cannot run (no bubblewrap for
    python), fails before any model call rather than after the first modes or items have run."""
    from openheavy.sandbox import Sandbox
    from openheavy.tools.catalog import build_tools

    if tools is not None:
        build_tools(tools, Sandbox.from_settings(settings))


ToolsOption = Annotated[
    str | None,
    typer.Option(
        "--tools",
        help="The agents' tools, comma-separated: "
        + "; ".join(f"{name}: {what}" for name, what in TOOL_NAMES.items())
        + ". Default search; e.g. search,python, or python alone for questions with nothing to look up. "
        + "In rank mode, python makes every other sample a program run in the sandbox.",
    ),
]


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
    search: Annotated[
        list[str] | None,
        typer.Option(
            "--search",
            help="Search backends instead of --corpus: local:NAME, searxng:URL, ddgs, brave, tavily "
            "(comma list or repeated; several are searched at once).",
        ),
    ] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="HOST[:PORT] that web access may reach although it is loopback or private, e.g. a local "
            "SearXNG (comma list or repeated; adds to the config's allow_hosts).",
        ),
    ] = None,
    max_steps: MaxStepsOption = None,
    max_tokens: MaxTokensOption = None,
    max_seconds: MaxSecondsOption = None,
    agents: Annotated[str, typer.Option(help="heavy: 'auto' or a number of agents.")] = "auto",
    max_agents: Annotated[int, typer.Option(min=1, help="heavy: most agents the planner may use.")] = 4,
    n: Annotated[int, typer.Option(min=1, help="rank: number of samples.")] = 4,
    verifier: Annotated[str, typer.Option(help="rank: vote | judge | check:NAME | reward:URL")] = "vote",
    seed: Annotated[int, typer.Option(help="Base seed.")] = 0,
    tools: ToolsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON result, nothing else.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live view.")] = False,
) -> None:
    """Research QUESTION and print a cited answer with its figures."""
    from openheavy.display.live import LiveDisplay
    from openheavy.display.render import (
        render_agent_table,
        render_answer,
        render_budget_stops,
        render_ranking,
        render_summary,
    )

    runs = _RunIds()
    with _errors(as_json=as_json, runs=runs), _progress(enabled=not as_json) as progress:
        if mode not in MODES:
            _fail(f"unknown --mode {mode!r}; choose one of {', '.join(MODES)}")
        text = _read_question(question, question_file)
        key = _api_key(api_key, api_key_file)
        settings = _settings(model=model, corpus=corpus, api_key=key)
        agent_count = _parse_agents(agents)
        options = replace(
            _budgets(max_steps, max_tokens, max_seconds),
            agents=agent_count,
            max_agents=max_agents,
            n=n,
            verifier=verifier,
            seed=seed,
            tools=_parse_tools(tools),
        )
        backend = _search_backend(settings, search, corpus, allow_host or [], progress)
        heavy = Heavy(corpus=backend, settings=settings, api_key=key, progress=progress)
        sinks: list[EventSink] = [runs] if (as_json or quiet) else [runs, LiveDisplay(err)]
        result: RunResult = (
            heavy.run(text, mode, options, sinks=sinks)
            if backend is None
            else asyncio.run(_run_closing(heavy, backend, text, mode, options, sinks))
        )
    if as_json:
        _print_json(result.to_dict())
        return
    render_answer(result.answer, result.citations, out)
    if result.ranking:
        render_ranking(result.ranking, out)
    if result.figures.agents > 1:
        render_agent_table(result.figures, out)
    for note in result.notes:
        out.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    stops = render_budget_stops(str(result.stop_reason), result.agents, _budget_limits(settings, options))
    _print_stops(stops)
    out.print(render_summary(result.figures, result.run_id), style="dim", highlight=False)


def _search_backend(
    settings: Settings,
    search: list[str] | None,
    corpus: str | None,
    allow_hosts: list[str],
    progress: Callable[[int, int, str], None],
) -> SearchBackend | None:
    """The backends `--search` (or the config's `search`) names, with `--corpus NAME` as one more
    (`local:NAME`); None when neither is given: Heavy opens the corpus itself, as before."""
    specs = list(search or [])
    if not specs and corpus is None and settings.search:
        specs = [settings.search]
    if not specs:
        return None
    if corpus is not None:
        specs.insert(0, f"local:{corpus}")
    from openheavy.corpus.catalog import open_corpus
    from openheavy.search.registry import open_search

    return open_search(
        specs,
        settings,
        allow_hosts=allow_hosts,
        open_local=lambda name: open_corpus(name, settings.index_dir, progress=progress),
    )


async def _run_closing(
    heavy: Heavy,
    backend: SearchBackend,
    question: str,
    mode: str,
    options: RunOptions,
    sinks: Sequence[EventSink],
) -> RunResult:
    """One run over a backend the CLI opened (Heavy closes only what it opened itself)."""
    try:
        return await heavy.arun(question, mode, options, sinks=sinks)
    finally:
        await heavy.aclose()
        await close_search(backend)


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
    max_steps: MaxStepsOption = None,
    max_tokens: MaxTokensOption = None,
    max_seconds: MaxSecondsOption = None,
    max_agents: Annotated[int, typer.Option(min=1, help="heavy: most agents the planner may use.")] = 4,
    n: Annotated[int, typer.Option(min=1, help="rank: number of samples.")] = 4,
    verifier: Annotated[str, typer.Option(help="rank: vote | judge | check:NAME | reward:URL")] = "vote",
    tools: ToolsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Run several modes on one question and show the answers and their cost side by side. --tools
    applies to the modes that run agents, and python also to rank's samples."""
    from rich.text import Text

    from openheavy.display.formatting import one_line
    from openheavy.display.live import LiveDisplay
    from openheavy.display.render import render_answer, render_budget_stops
    from openheavy.display.tables import Column, one_line_table

    runs = _RunIds()

    async def run_all(heavy: Heavy) -> list[RunResult]:
        results = []
        async with heavy:
            for mode in chosen:
                if not as_json:
                    err.rule(f"[bold]{mode}")
                sinks: list[EventSink] = [runs] if as_json else [runs, LiveDisplay(err)]
                mode_options = replace(options, tools=MODES[mode].takes_tools(agent_tools))
                results.append(await heavy.arun(question, mode, mode_options, sinks=sinks))
        return results

    with _errors(as_json=as_json, runs=runs), _progress(enabled=not as_json) as progress:
        chosen = split_commas(modes)
        unknown = [m for m in chosen if m not in MODES]
        if unknown or not chosen:
            _fail(f"unknown mode(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(MODES)}")
        key = _api_key(api_key, api_key_file)
        settings = _settings(model=model, corpus=corpus, api_key=key)
        agent_tools = _parse_tools(tools)
        options = replace(
            _budgets(max_steps, max_tokens, max_seconds),
            max_agents=max_agents,
            n=n,
            verifier=verifier,
        )
        _check_tools(agent_tools, settings)
        results = asyncio.run(run_all(Heavy(settings=settings, api_key=key, progress=progress)))
    if as_json:
        _print_json([r.to_dict() for r in results])
        return
    # Each answer in full, then one line of figures per mode, side by side at any width.
    for r in results:
        out.rule(f"[bold]{escape(r.mode)}")
        render_answer(r.answer, r.citations, out)
    out.rule()
    out.print(
        escape(one_line(question, 300)), style="bold", highlight=False, no_wrap=True, overflow="ellipsis"
    )
    columns = [
        Column("mode", keep=9),
        Column("answer", keep=5, flexible=True),
        Column("searches", keep=3, justify="right"),
        Column("read", keep=2, justify="right"),
        Column("cited", keep=4, justify="right"),
        Column("tokens", keep=7, justify="right"),
        Column("wall s", keep=6, justify="right"),
        Column("run", keep=8),
    ]
    rows: list[list[str | Text]] = [
        [
            r.mode,
            one_line(r.answer, 200),
            str(r.figures.searches),
            str(r.figures.documents_read),
            str(r.figures.sources_cited),
            f"{r.figures.total_tokens:,}",
            f"{r.figures.wall_seconds:.1f}",
            r.run_id,
        ]
        for r in results
    ]
    out.print(one_line_table(columns, rows, out.width))
    for r in results:
        stops = render_budget_stops(str(r.stop_reason), r.agents, _budget_limits(settings, options))
        _print_stops(stops, of=r.mode)


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
    max_steps: MaxStepsOption = None,
    max_tokens: MaxTokensOption = None,
    max_seconds: MaxSecondsOption = None,
    verifier: Annotated[
        str | None,
        typer.Option(
            help="rank: vote | judge | check:NAME | reward:URL (default: check:numeric on gsm8k, "
            "check:math on math500, vote elsewhere)"
        ),
    ] = None,
    tools: ToolsOption = None,
    judge: Annotated[bool, typer.Option("--judge", help="Also grade with an LLM judge (the model).")] = False,
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="Rerun items that errored.")] = False,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Only re-render the report of this results folder (and make an older one portable: "
            "traces still on this machine are copied into it, the others marked not available).",
        ),
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
    """Evaluate modes on a benchmark: accuracy against compute, resumable, with a report and plots.

    --tools applies to the modes that run agents; on an item with nothing to search (math) they keep
    only the tools that need no corpus (python). With python alone, rank:N alternates prose and program
    samples; with search, it ranks N research agents."""
    from openheavy.evals import build_corpus, dataset_corpora, load_dataset, parse_modes, render_report
    from openheavy.evals.cluster import RayRunner
    from openheavy.evals.datasets import default_verifier
    from openheavy.evals.harness import run_eval
    from openheavy.evals.runner import HeavyRunner, item_tools, make_heavy_runner
    from openheavy.models.base import ChatModel
    from openheavy.models.registry import resolve_model

    if report is not None:
        from openheavy.evals.portable import make_portable

        with _errors():
            if not (report / "eval.json").is_file():
                render_report(report)  # says what is missing and what to run
            portable = make_portable(report, _settings().runs_dir)
            render_report(report)
        if portable.rewritten:
            out.print(
                f"traces: {portable.exported} copied into {report / 'traces'}, {portable.missing} not "
                "available on this machine (marked so in the report)",
                highlight=False,
            )
        out.print(f"report: {report / 'report.md'}", highlight=False)
        return
    if dataset is None:
        _fail("name a DATASET (hotpotqa, musique, gsm8k, math500, peps-wide or a .jsonl), or --report DIR")
    key = _api_key(api_key, api_key_file)
    settings = _settings(model=model, api_key=key)
    out_dir = results or Path("eval-out") / Path(dataset).stem
    with _errors():
        # Checked here, once: a bad budget must not become an errored result for every item.
        budgets = _budgets(max_steps, max_tokens, max_seconds)
        items = load_dataset(dataset, data_dir, limit=limit)
        mode_specs = parse_modes(modes)
        agent_tools = _parse_tools(tools)
        _check_tools(agent_tools, settings)
        with_agents = [m.label for m in mode_specs if MODES[m.name].runs_agents]
        if with_agents and any(not item_tools(agent_tools, i) for i in items):
            _fail(
                f"{dataset} has nothing to search, and {', '.join(with_agents)} search: use direct and "
                "rank:N, or give the agents a tool that needs no corpus (--tools python)"
            )
        for spec in dataset_corpora(items):
            with _progress() as progress:
                err.print(f"indexing corpus {spec.name} …")
                build_corpus(spec, settings.index_dir, progress=progress)

        async def evaluate() -> None:
            make = functools.partial(
                make_heavy_runner,
                settings,
                api_key=key,
                verifier=verifier or default_verifier(dataset),
                budgets=budgets,
                tools=agent_tools,
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
                    tools=agent_tools or DEFAULT_TOOLS,
                )
            finally:
                await runner.aclose()
                if isinstance(runner, RayRunner) and judge_model is not None:
                    await judge_model.aclose()

        asyncio.run(evaluate())
    stops = _eval_budget_stops(out_dir, _budget_limits(settings, budgets))
    _print_stops(stops)
    out.print(f"results: {out_dir / 'results.jsonl'} · report: {out_dir / 'report.md'}")


def _eval_budget_stops(out_dir: Path, limits: dict[str, str]) -> str | None:
    """Which budget stopped how many runs of each mode, e.g. `stopped by budget: tokens (--max-tokens
    500): heavy:4 ×3, single ×1`; None when no budget stopped a run."""
    from openheavy.evals.store import latest_results, read_results

    counts: dict[str, dict[str, int]] = {}
    for row in latest_results(read_results(out_dir)).values():
        if row.stop_reason.startswith("budget:"):
            by_mode = counts.setdefault(row.stop_reason.removeprefix("budget:"), {})
            by_mode[row.mode] = by_mode.get(row.mode, 0) + 1
    parts = [
        f"{budget} ({limits.get(budget, budget)}): " + ", ".join(f"{m} ×{c}" for m, c in modes.items())
        for budget, modes in counts.items()
    ]
    return "stopped by budget: " + " · ".join(parts) if parts else None


@app.command()
def audit(
    probes: Annotated[
        str,
        typer.Argument(
            help="speechmap,neutrality,lookup (any of them), or `prompts` with --vs to diff prompt sets."
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(help="The model to audit: local | local:fast | http://host:port/v1 | PROFILE"),
    ] = None,
    vs: Annotated[
        str | None,
        typer.Option(
            help="Compare with a second model spec, or with an earlier audit's --out folder (e.g. made under "
            "another prompt version). With `prompts`: an audit folder, a prompts folder or a git revision."
        ),
    ] = None,
    mode: Annotated[str, typer.Option(help="direct | single | heavy (lookup needs a mode that searches)")] = (
        "single"
    ),
    limit: Annotated[
        int | None, typer.Option(min=1, help="N items per probe, spread over its groups.")
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(help="Judge model spec (default: the audited model, reported as self-judged)."),
    ] = None,
    results: Annotated[
        Path | None, typer.Option("--out", help="Audit folder (default audit-out/PROBES); reruns resume.")
    ] = None,
    watch: Annotated[
        str | None, typer.Option(help="Names always counted in searches and documents: 'Elon Musk,xAI'.")
    ] = None,
    alarm: Annotated[
        float, typer.Option(help="Regression alarm: flag a rate shift of this much (0.1 = 10 points).")
    ] = (0.10),
    alarm_min_items: Annotated[
        int,
        typer.Option(
            help="The alarm rings for a group only over at least this many paired items (smaller groups' "
            "shifts are listed, marked 'few items')."
        ),
    ] = 5,
    corpus: Annotated[
        str | None, typer.Option(help="Corpus the research modes search (default pydocs).")
    ] = None,
    api_key: ApiKeyOption = None,
    api_key_file: ApiKeyFileOption = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Items in flight at once.")] = 1,
    seed: Annotated[int, typer.Option(help="Run seed; each item's seed derives from it.")] = 0,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Data folder with speechmap/ and political_neutrality/ (default ../shared/data)."),
    ] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Actions per agent.")] = None,
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="Rerun items that errored.")] = False,
    calibration: Annotated[
        bool, typer.Option(help="Run the judge on the hand-labelled sample and report its agreement.")
    ] = True,
    report: Annotated[
        Path | None, typer.Option("--report", help="Only re-render the report of this audit folder.")
    ] = None,
) -> None:
    """Audit a model's behaviour: what it says (SpeechMap, political even-handedness), whom it looks up,
    and which prompts it was given; compare two models or prompt versions with --vs."""
    from openheavy.audit import parse_probes, render_audit_report
    from openheavy.audit.command import AuditRequest, audit_command, parse_watch, write_prompt_diff

    if report is not None:
        with _errors():
            render_audit_report(report)
        out.print(f"report: {report / 'report.md'}")
        return
    with _errors():
        chosen = parse_probes(probes)
        if chosen == ["prompts"]:
            if vs is None:
                _fail("`openheavy audit prompts` diffs prompt sets: name the other with --vs DIR_OR_REVISION")
            ours = str(results) if results is not None and (results / "audit.json").is_file() else None
            out.print(write_prompt_diff(ours, vs, results), markup=False, highlight=False)
            return
        key = _api_key(api_key, api_key_file)
        settings = _settings(model=model, api_key=key)
        out_dir = results or Path("audit-out") / "-".join(p for p in chosen if p != "prompts")
        request = AuditRequest(
            probes=tuple(chosen),
            out_dir=out_dir,
            model=settings.model,
            vs=vs,
            mode=mode,
            limit=limit,
            judge=judge,
            corpus=corpus,
            watch=parse_watch(watch),
            alarm=alarm,
            alarm_min_items=alarm_min_items,
            seed=seed,
            max_steps=max_steps,
            concurrency=concurrency,
            data_dir=data_dir,
            retry_errors=retry_errors,
            calibrate=calibration,
        )
        summary = asyncio.run(audit_command(request, settings, api_key=key, console=err))
    for alarmed in summary.alarms:
        err.print(
            f"[bold red]alarm:[/] {alarmed.probe} {alarmed.metric} ({alarmed.group}) "
            f"{100 * alarmed.model_rate:.0f}% → {100 * alarmed.vs_rate:.0f}% (p = {alarmed.p_value:.3g})",
            highlight=False,
        )
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
def corpora(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")] = False,
) -> None:
    """List local corpora with their document and chunk counts."""
    from rich.text import Text

    from openheavy.corpus.catalog import list_corpora
    from openheavy.display.tables import Column, one_line_table

    settings = _settings()
    with _errors():
        found = list_corpora(settings.index_dir)
    if as_json:
        listed = [
            {
                "name": info.name,
                "documents": info.documents,
                "chunks": info.chunks,
                "updated_at": info.updated_at.isoformat(),
                "path": str(info.path),
                "problem": info.problem,
            }
            for info in found
        ]
        _print_json(listed)
        return
    if not found:
        out.print("no corpora yet: `openheavy index PATH --name NAME`, or ask a question to build pydocs")
        return
    columns = [
        Column("name", keep=9, flexible=True),
        Column("documents", keep=8, justify="right"),
        Column("chunks", keep=7, justify="right"),
        Column("updated", keep=6),
    ]
    rows: list[list[str | Text]] = [
        [
            info.name,
            Text("unusable", style="red") if info.problem else f"{info.documents:,}",
            "" if info.problem else f"{info.chunks:,}",
            info.updated_at.strftime("%Y-%m-%d %H:%M"),
        ]
        for info in found
    ]
    out.print(one_line_table(columns, rows, out.width))
    out.print(f"in {settings.index_dir}", style="dim", highlight=False)
    for info in found:
        if info.problem is not None:
            err.print(f"[yellow]warning:[/] {escape(info.problem)}", highlight=False)


@app.command()
def runs(
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")] = False,
) -> None:
    """List past runs."""
    from openheavy.display.render import render_runs
    from openheavy.trace import RunStore, run_store_path

    settings = _settings()
    with _errors():
        rows = RunStore(run_store_path(settings.runs_dir)).list(limit=limit)
    if as_json:
        listed = [row.model_dump(mode="json") for row in rows]
        _print_json(listed)
        return
    render_runs(rows, out)


@app.command()
def trace(
    run_id: Annotated[
        str,
        typer.Argument(
            help="A run id (or a unique prefix) from `openheavy runs`, or a trace file "
            "(.jsonl, or .jsonl.gz as exported beside eval results)."
        ),
    ],
) -> None:
    """Print a run step by step: every prompt, output, search, document, token and second."""
    from openheavy.display.render import render_trace
    from openheavy.trace import RunStore, read_trace, run_store_path

    if run_id.endswith((".jsonl", ".jsonl.gz")) and Path(run_id).is_file():
        with _errors():
            render_trace(read_trace(Path(run_id)), out)
        return
    settings = _settings()
    with _errors():
        row = RunStore(run_store_path(settings.runs_dir)).get(run_id)
        if not row.trace_path:
            _fail(f"run {row.run_id} has no trace file")
        records = read_trace(Path(row.trace_path))
    render_trace(records, out)


model_app = typer.Typer(
    help="The shared embedded model servers of this data directory: what runs, who uses it; stop them.",
    no_args_is_help=True,
)
app.add_typer(model_app, name="model")


@model_app.command("status")
def model_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")] = False,
) -> None:
    """Show the shared llama-servers: model, pid, port, threads, busy slots, uptime, idle time, users."""
    from rich.text import Text

    from openheavy.display.formatting import duration
    from openheavy.display.tables import Column, one_line_table
    from openheavy.models.core_ledger import CoreLedger
    from openheavy.models.shared_server import server_statuses

    settings = _settings()
    with _errors():
        statuses = server_statuses(settings.data_dir)
        ledger = CoreLedger(settings.runtime_dir)
        used = ledger.used()
    if as_json:
        report = {
            "data_dir": str(settings.data_dir),
            "servers": [s.to_dict() for s in statuses],
            "cores": {"total": ledger.cores, "used_by_llama_servers": used},
        }
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    if not statuses:
        out.print(f"no shared model server in {settings.data_dir}", highlight=False)
    else:
        columns = [
            Column("model", keep=9, flexible=True),
            Column("pid", keep=8, justify="right"),
            Column("port", keep=4, justify="right"),
            Column("threads", keep=3, justify="right"),
            Column("busy", keep=7, justify="right"),
            Column("up", keep=5, justify="right"),
            Column("idle", keep=6, justify="right"),
            Column("users", keep=2, justify="right"),
        ]
        rows: list[list[str | Text]] = []
        for status in statuses:
            idle = status.idle_for
            rows.append(
                [
                    status.model,
                    str(status.server_pid),
                    str(status.port),
                    str(status.threads),
                    f"{status.busy_slots if status.busy_slots is not None else '?'}/{status.slots}",
                    duration(status.uptime),
                    "stale" if status.problem else "busy" if idle is None else duration(idle),
                    str(len(status.users)),
                ]
            )
        out.print(one_line_table(columns, rows, out.width))
        for status in statuses:
            if status.problem:
                out.print(
                    f"{status.model}: stale record, {status.problem} (replaced on next use)", highlight=False
                )
            for user in status.users:
                ago = duration(max(0.0, time.time() - user.last_used))
                out.print(
                    f"{status.model}: used by pid {user.pid}, last request {ago} ago ({user.command})",
                    highlight=False,
                    no_wrap=True,
                    overflow="ellipsis",
                )
    out.print(
        f"llama.cpp threads on this machine: {used} of {ledger.cores} cores", style="dim", highlight=False
    )


@model_app.command("stop")
def model_stop(
    model: Annotated[
        str | None, typer.Argument(help="local | local:fast | local:tiny (default: all).")
    ] = None,
) -> None:
    """Stop the shared llama-servers of this data directory (runs using them get an error)."""
    from openheavy.models.shared_server import stop_servers

    settings = _settings()
    with _errors():
        stopped = stop_servers(settings.data_dir, model)
    if not stopped:
        which = f"for {model} " if model else ""
        out.print(f"no shared model server {which}in {settings.data_dir}", highlight=False)
    for server in stopped:
        if not server.was_running:
            out.print(
                f"{server.model}: removed a stale record (pid {server.server_pid} was gone)", highlight=False
            )
        elif server.stopped:
            out.print(f"{server.model}: stopped llama-server pid {server.server_pid}", highlight=False)
        else:
            _fail(f"{server.model}: llama-server pid {server.server_pid} did not stop — kill it yourself")


@app.command()
def sandbox(
    code: Annotated[str | None, typer.Option("--code", "-c", help="Python code to run.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="A Python file to run.")] = None,
    cpu_seconds: Annotated[float | None, typer.Option(min=0.1, help="CPU seconds per process.")] = None,
    wall_seconds: Annotated[float | None, typer.Option(min=0.1, help="Wall seconds for the run.")] = None,
    memory_mb: Annotated[int | None, typer.Option(min=1, help="Memory per process, MiB.")] = None,
    output_bytes: Annotated[int | None, typer.Option(min=1, help="stdout + stderr kept, bytes.")] = None,
    processes: Annotated[int | None, typer.Option(min=1, help="Processes and threads.")] = None,
    file_mb: Annotated[int | None, typer.Option(min=1, help="Largest file written, MiB.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result record as JSON.")] = False,
) -> None:
    """Run Python code exactly as the python tool does, to check what this machine isolates."""
    from openheavy.sandbox import Sandbox

    if (code is None) == (file is None):
        _fail("give the code with -c CODE or a file with -f FILE (one of them)")
    if file is not None:
        try:
            code = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"cannot read {file}: {exc}")
    assert code is not None
    settings = _settings(
        sandbox_cpu_seconds=cpu_seconds,
        sandbox_wall_seconds=wall_seconds,
        sandbox_memory_mb=memory_mb,
        sandbox_output_bytes=output_bytes,
        sandbox_processes=processes,
        sandbox_file_mb=file_mb,
    )
    with _errors():
        result = asyncio.run(Sandbox.from_settings(settings).run(code))
    if as_json:
        _print_json(result.to_record())
    else:
        isolation = "bubblewrap" if result.isolation == "bwrap" else "NONE: the code ran UNCONFINED"
        limit = result.limit_message() or "none reached"
        out.print(
            f"isolation: {isolation} · exit status {result.exit_status} · limit: {limit} · "
            f"{result.seconds:.2f} s",
            highlight=False,
            markup=False,
        )
        for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
            if text:
                out.rule(name, style="dim")
                out.print(text.rstrip("\n"), highlight=False, markup=False)
    raise typer.Exit(min(result.exit_status, 255))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback needs a key.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            help="File whose first line is the key clients must send (or env OPENHEAVY_SERVER_KEY)."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="local | local:fast | local:tiny | http://host:port/v1 | PROFILE")
    ] = None,
    corpus: Annotated[str | None, typer.Option(help="Default corpus to search (default pydocs).")] = None,
    max_concurrent: Annotated[int, typer.Option(min=1, help="Runs at once; more get HTTP 429.")] = 4,
) -> None:
    """Serve the OpenAI-compatible API (/v1), MCP over HTTP (/mcp) and the web view of runs (/)."""
    settings = _settings(model=model, corpus=corpus)
    with _errors():
        from openheavy.server import ServerConfig, load_server_key
        from openheavy.server import serve as run_server

        config = ServerConfig(
            host=host, port=port, api_key=load_server_key(api_key_file), max_concurrent=max_concurrent
        )
        where = f"http://{host}:{port}"
        key = "Bearer key required" if config.api_key else "no key (loopback only)"
        err.print(
            f"openheavy serving {where}/v1 (OpenAI API), {where}/mcp (MCP), {where}/ (runs) · {key}",
            markup=False,
            highlight=False,
        )
        run_server(config, settings)


@app.command("mcp")
def mcp_stdio(
    model: Annotated[
        str | None, typer.Option(help="local | local:fast | local:tiny | http://host:port/v1 | PROFILE")
    ] = None,
    corpus: Annotated[str | None, typer.Option(help="Default corpus to search (default pydocs).")] = None,
) -> None:
    """Serve the MCP tools (research, search, get_run) over stdio, for MCP clients that launch it."""
    settings = _settings(model=model, corpus=corpus)
    with _errors():
        from openheavy.server import run_stdio

        asyncio.run(run_stdio(settings))


@app.command()
def prompts() -> None:
    """Print every prompt template openheavy uses."""
    for name in list_prompts():
        out.rule(f"[bold]{name}")
        out.print(load_prompt(name), markup=False, highlight=False)
