"""The harness fanned out over Ray (`RayRunner`): runs happen in worker processes, results come back whole,
failures keep their own message, and the real engine works behind it (embedded tiny model)."""

from __future__ import annotations

import asyncio
import functools
import io
import os
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from openheavy.config import Settings
from openheavy.evals import EvalItem, ModeSpec, RunFigures, RunOutcome, load_dataset, run_eval
from openheavy.evals.cluster import RayRunner
from openheavy.evals.runner import HeavyRunner, make_heavy_runner
from openheavy.evals.store import read_results

ray = pytest.importorskip("ray", reason="the cluster extra is installed by `make setup`")

FIXTURE_DATA = Path(__file__).parent / "fixtures" / "eval" / "data"

# Workers unpickle what they run; this module is not importable there, so ship its code by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class PidRunner:
    """Answers each item with its gold answer, except "<fail>" items; says which process answered."""

    async def __call__(self, item: EvalItem, mode: ModeSpec, seed: int) -> RunOutcome:
        if item.id == "hp-2" and mode.name == "heavy":
            raise TimeoutError("model server timed out")
        await asyncio.sleep(0.3)  # long enough that two workers each get some of the runs
        return RunOutcome(
            answer=item.answers[0],
            run_id=f"pid-{os.getpid()}",
            figures=RunFigures(prompt_tokens=10 * mode.n, completion_tokens=5, wall_seconds=0.3),
            stop_reason="answered",
        )


def make_pid_runner() -> PidRunner:
    return PidRunner()


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    # One local Ray instance for the module; RayRunner joins it rather than starting its own.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def quiet() -> Console:
    return Console(file=io.StringIO(), force_terminal=False, width=200)


async def test_runs_go_to_the_workers_and_results_come_back_graded(ray_session: None, tmp_path: Path) -> None:
    items = load_dataset("hotpotqa", FIXTURE_DATA)
    modes = [ModeSpec("direct"), ModeSpec("heavy", 2)]
    runner = RayRunner(make_pid_runner, workers=2)
    try:
        summary = await run_eval(items, modes, runner, tmp_path / "out", concurrency=2, console=quiet())
    finally:
        await runner.aclose()
    assert ray.is_initialized(), "a runner that joined a running Ray must leave it running"

    rows = read_results(tmp_path / "out")
    assert len(rows) == 6
    pids = {row.run_id for row in rows if not row.error}
    assert f"pid-{os.getpid()}" not in pids, "runs must happen in Ray workers, not here"
    assert len(pids) == 2, f"both workers should have answered some runs: {pids}"
    failed = [row for row in rows if row.error]
    assert [(r.item_id, r.mode, r.error) for r in failed] == [
        ("hp-2", "heavy:2", "TimeoutError: model server timed out")
    ]
    by_mode = {m.mode: m for m in summary.modes}
    assert by_mode["direct"].metrics["em"].value == 1.0
    assert by_mode["heavy:2"].metrics["em"].value == pytest.approx(2 / 3)
    # figures travel back too: 2 × 10 + 5 tokens per run; the errored run counts as 0
    assert by_mode["heavy:2"].mean_tokens == pytest.approx(50 / 3)


def test_bad_worker_count_is_refused() -> None:
    with pytest.raises(Exception, match="--workers must be at least 1"):
        RayRunner(make_pid_runner, workers=0)


def test_the_cli_runner_factory_can_be_shipped_to_workers(tmp_path: Path) -> None:
    make = functools.partial(make_heavy_runner, Settings(data_dir=tmp_path, model="http://127.0.0.1:9/v1"))
    runner = pickle.loads(pickle.dumps(make))()
    assert isinstance(runner, HeavyRunner)
    assert runner.model.name == "http://127.0.0.1:9/v1"


@pytest.mark.embedded
async def test_the_real_engine_answers_through_a_ray_worker(
    ray_session: None, embedded_settings: Settings, tmp_path: Path
) -> None:
    small = {"model": "local:tiny", "answer_max_tokens": 24, "llama_slots": 1}
    settings = embedded_settings.model_copy(update=small)
    items = load_dataset("gsm8k", FIXTURE_DATA, limit=2)
    runner = RayRunner(functools.partial(make_heavy_runner, settings), workers=1)
    try:
        await run_eval(items, [ModeSpec("direct")], runner, tmp_path / "out", console=quiet())
    finally:
        await runner.aclose()
    rows = read_results(tmp_path / "out")
    assert [row.error for row in rows] == [None, None]
    for row in rows:
        assert row.answer.strip()
        assert row.figures["completion_tokens"] > 0
        # Ray's local workers share this machine's data directory: their traces are exported too.
        assert row.trace_path is not None
        assert await asyncio.to_thread(os.path.isfile, tmp_path / "out" / row.trace_path)


def test_the_eval_command_fans_out_over_ray(
    ray_session: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from openheavy.cli import app

    monkeypatch.setenv("OPENHEAVY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OPENHEAVY_MAX_RETRIES", "0")
    out = tmp_path / "out"
    args = ["eval", "gsm8k", "--data-dir", str(FIXTURE_DATA), "--modes", "direct", "--limit", "2"]
    args += ["--model", "http://127.0.0.1:9/v1", "--out", str(out), "--ray", "auto", "--workers", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "starting 2 Ray workers (auto)" in result.output
    rows = read_results(out)
    assert len(rows) == 2
    # Nothing listens on port 9: each worker built its own model from the shipped settings and failed
    # with the adapter's own message, which came back through Ray unwrapped.
    for row in rows:
        assert row.error is not None
        assert row.error.startswith("ModelUnreachableError: no model server at http://127.0.0.1:9/v1")
