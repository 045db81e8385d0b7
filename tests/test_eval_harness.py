"""Dataset loaders, the resumable harness and the report, with a deterministic fake runner."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import openheavy.evals
from openheavy.errors import ConfigError
from openheavy.evals import (
    CorpusDoc,
    DatasetError,
    EvalItem,
    ModeSpec,
    RunFigures,
    RunOutcome,
    build_corpus,
    dataset_corpora,
    grade_answer,
    load_dataset,
    outcome_from_result,
    parse_modes,
    render_report,
    run_eval,
    token_f1,
)
from openheavy.evals.datasets import DATA_DIR_ENV, resolve_data_dir
from openheavy.evals.harness import graded_text, item_seed
from openheavy.evals.stats import summarize
from openheavy.evals.store import read_meta, read_results
from openheavy.models.scripted import FunctionModel, Reply, Unconstrained
from openheavy.trace import AgentFigures
from openheavy.types import JsonSchema, Message

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
FIXTURE_DATA = FIXTURES / "data"
REAL_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def test_public_api_is_pinned() -> None:
    assert sorted(openheavy.evals.__all__) == sorted(
        [
            "DATASET_NAMES",
            "CorpusDoc",
            "CorpusSpec",
            "DatasetError",
            "EvalItem",
            "EvalSummary",
            "Grade",
            "JudgeVerdict",
            "MetricSummary",
            "ModeSpec",
            "ModeSummary",
            "RunFigures",
            "RunOutcome",
            "Runner",
            "build_corpus",
            "dataset_corpora",
            "exact_match",
            "extract_urls",
            "grade_answer",
            "grade_math",
            "grade_qa",
            "grade_wide",
            "judge_answer",
            "load_dataset",
            "normalize_url",
            "outcome_from_result",
            "parse_modes",
            "render_report",
            "resolve_data_dir",
            "run_eval",
            "token_f1",
        ]
    )


# ---------------------------------------------------------------- modes


def test_parse_modes() -> None:
    modes = parse_modes("direct, single,heavy:4,rank:8,heavy:4")
    assert [m.label for m in modes] == ["direct", "single", "heavy:4", "rank:8"]
    assert modes[3] == ModeSpec("rank", 8)
    assert [m.label for m in parse_modes(["heavy", "rank"])] == ["heavy:4", "rank:8"]
    # every mode of the registry, with the registry's default N
    assert [m.label for m in parse_modes("heavy-rank,rank-tools:2")] == ["heavy-rank:4", "rank-tools:2"]


@pytest.mark.parametrize("bad", ["turbo", "heavy:0", "rank:x", "direct:2", ""])
def test_parse_modes_rejects_bad_input(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_modes(bad)


def test_item_seed_is_stable_and_per_item() -> None:
    assert item_seed(0, "a") == item_seed(0, "a")
    assert item_seed(0, "a") != item_seed(0, "b")
    assert item_seed(0, "a") != item_seed(1, "a")


def test_an_items_figures_are_the_runs_flat_totals() -> None:
    per_agent = {"agent-1": AgentFigures(searches=3)}
    figures = RunFigures(searches=3, search_cache_hits=4, wall_seconds=2, agents=2, per_agent=per_agent)
    assert figures.per_item() == {
        "searches": 3.0,
        "distinct_queries": 0.0,
        "documents_read": 0.0,
        "sources_cited": 0.0,
        "prompt_tokens": 0.0,
        "completion_tokens": 0.0,
        "wall_seconds": 2.0,
        "agents": 2.0,
    }


# ---------------------------------------------------------------- datasets


def test_hotpotqa_loader_and_deduplicated_corpus() -> None:
    items = load_dataset("hotpotqa", FIXTURE_DATA)
    assert [i.id for i in items] == ["hp-1", "hp-2", "hp-3"]
    assert items[1].answers == ("yes",)
    assert {i.kind for i in items} == {"qa"}
    corpus = items[0].corpus
    assert corpus is not None and corpus.name == "eval-hotpotqa"
    assert all(i.corpus is corpus for i in items)
    docs = list(corpus.documents())
    # 7 contexts, of which "Lake Quill" and "Nora Vell" appear twice.
    assert [d.title for d in docs] == [
        "Quill Gazette",
        "Nora Vell",
        "Lake Quill",
        "Lake Dorn",
        "Marrow river",
    ]
    assert len({d.id for d in docs}) == 5
    assert list(corpus.documents()) == docs  # stable ids and order


def test_musique_loader_aliases_and_corpus() -> None:
    items = load_dataset("musique", FIXTURE_DATA)
    assert items[0].answers == ("Dornland", "Kingdom of Dornland", "Dorn")
    assert items[0].corpus is not None
    docs = list(items[0].corpus.documents())
    assert len(docs) == 3  # one exact duplicate dropped; same title with other text kept
    assert [d.title for d in docs].count("Ashby") == 2


def test_math_loaders() -> None:
    gsm = load_dataset("gsm8k", FIXTURE_DATA)
    assert [(i.id, i.answers, i.kind, i.corpus) for i in gsm] == [
        ("gsm8k-0000", ("1,600",), "math", None),
        ("gsm8k-0001", ("2",), "math", None),
    ]
    math = load_dataset("math500", FIXTURE_DATA, limit=2)
    assert [i.answers for i in math] == [("\\frac{1}{2}",), ("\\text{Evelyn}",)]
    assert math[0].id == "test/prealgebra/1.json"


def test_peps_wide_loader_urls_are_gold_identifiers() -> None:
    items = load_dataset("peps-wide", FIXTURE_DATA)
    assert items[0].kind == "wide"
    assert items[0].answers == ("https://peps.python.org/pep-0001/", "https://peps.python.org/pep-0008/")
    assert items[0].corpus is not None
    docs = list(items[0].corpus.documents())
    assert docs[1] == CorpusDoc(
        "pep-0008", "PEP 8 – Made-up Style", docs[1].text, "https://peps.python.org/pep-0008/"
    )
    assert "Author: Ann Example, Bob Sample" in docs[1].text


def test_generic_jsonl_loader() -> None:
    items = load_dataset(str(FIXTURES / "generic.jsonl"))
    assert [i.id for i in items] == ["g1", "generic-0001", "generic-0002"]
    assert items[1].answers == ("Marrow", "Quill")
    assert items[2].kind == "wide" and items[2].corpus is None
    corpus = items[0].corpus
    assert corpus is not None and items[1].corpus is corpus
    assert corpus.name.startswith("eval-generic_corpus-")
    docs = list(corpus.documents())
    assert docs[0] == CorpusDoc(
        "doc-a", "Ashby flag", "The flag of Ashby is green.", "https://example.org/ashby"
    )
    assert len(docs[1].id) == 16  # no id upstream: a stable content hash


def test_generic_loader_reports_bad_records(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n{"question": "no answer"}\n')
    with pytest.raises(DatasetError, match=r"bad.jsonl:2: .*answer"):
        load_dataset(str(path))
    path.write_text(
        '{"id": 1, "question": "q", "answer": "a"}\n{"id": "1", "question": "q", "answer": "b"}\n'
    )
    with pytest.raises(DatasetError, match="more than once"):
        load_dataset(str(path))


def test_missing_file_error_names_the_path_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as error:
        load_dataset("hotpotqa", tmp_path)
    message = str(error.value)
    assert str(tmp_path / "hotpotqa" / "hotpotqa_dev_300.jsonl") in message
    assert "--data-dir" in message and DATA_DIR_ENV in message


def test_unknown_dataset_lists_the_choices() -> None:
    with pytest.raises(DatasetError, match="hotpotqa, musique, gsm8k, math500, peps-wide"):
        load_dataset("squad")


def test_data_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert resolve_data_dir() == Path("../shared/data")
    monkeypatch.setenv(DATA_DIR_ENV, str(FIXTURE_DATA))
    assert resolve_data_dir() == FIXTURE_DATA
    assert len(load_dataset("gsm8k")) == 2
    assert resolve_data_dir(tmp_path) == tmp_path


def test_build_corpus_feeds_the_indexer(tmp_path: Path) -> None:
    calls: list[tuple[list[Any], str, Path]] = []

    def fake_index(
        docs: Iterable[Any], name: str, index_dir: Path, progress: Callable[..., Any] | None = None
    ) -> str:
        calls.append((list(docs), name, index_dir))
        return "indexed"

    items = load_dataset("peps-wide", FIXTURE_DATA)
    (spec,) = dataset_corpora(items)
    assert build_corpus(spec, tmp_path, index_documents=fake_index) == "indexed"
    docs, name, index_dir = calls[0]
    assert name == "eval-peps" and index_dir == tmp_path
    assert [d.url for d in docs] == [f"https://peps.python.org/pep-{n:04d}/" for n in (1, 8, 3107)]


def test_build_corpus_indexes_into_a_searchable_local_corpus(tmp_path: Path) -> None:
    from openheavy.corpus import open_corpus

    (spec,) = dataset_corpora(load_dataset("peps-wide", FIXTURE_DATA))
    build_corpus(spec, tmp_path)
    index = open_corpus("eval-peps", tmp_path)
    try:
        hits = asyncio.run(index.search("Made-up Annotations", k=1))
    finally:
        index.close()
    assert hits[0].url == "https://peps.python.org/pep-3107/"


def test_outcome_from_a_core_run_result(tmp_path: Path) -> None:
    from openheavy.agent import StopReason
    from openheavy.api import RunResult

    result = RunResult(
        run_id="r1",
        question="q",
        mode="heavy",
        answer="Ashby",
        citations=[{"ref": 1, "url": "u"}],
        figures=RunFigures(searches=3, prompt_tokens=10, completion_tokens=5, wall_seconds=1.5, agents=2),
        trace_path=tmp_path / "r1.jsonl",
        stop_reason=StopReason("budget", "steps"),
    )
    outcome = outcome_from_result(result)
    assert outcome.answer == "Ashby" and outcome.run_id == "r1" and outcome.error is None
    assert outcome.figures == RunFigures(
        searches=3, prompt_tokens=10, completion_tokens=5, wall_seconds=1.5, agents=2
    )
    assert outcome.stop_reason == "budget:steps"


def test_a_wide_answer_is_graded_with_its_numbered_sources() -> None:
    wide, exact = load_dataset("peps-wide", FIXTURE_DATA)[0], load_dataset("math500", FIXTURE_DATA)[0]
    pep = {"number": 1, "title": "PEP 1 – PEP Purpose", "url": "https://peps.python.org/pep-0001/"}
    outcome = RunOutcome(answer=" PEP 1 [1] ", citations=[pep])
    assert graded_text(wide, outcome) == (
        " PEP 1 [1] \n\nSources:\n[1] PEP 1 – PEP Purpose — https://peps.python.org/pep-0001/"
    )
    assert graded_text(exact, outcome) == " PEP 1 [1] "  # exact grading sees the answer alone
    assert graded_text(wide, RunOutcome(answer="PEP 1")) == "PEP 1"


def test_a_short_answer_question_is_graded_on_the_short_answer_it_leads_with() -> None:
    qa, math = load_dataset("hotpotqa", FIXTURE_DATA)[0], load_dataset("math500", FIXTURE_DATA)[0]
    led = RunOutcome(answer="Catwoman\n\nCatwoman is a 2004 film [1].", short_answer="Catwoman")
    assert graded_text(qa, led) == "Catwoman"
    assert grade_answer(qa, graded_text(qa, led)).metrics["f1"] == token_f1("Catwoman", qa.answers)
    # no short answer: the whole text (math then finds its final answer in it by its own rules)
    assert graded_text(qa, RunOutcome(answer="Catwoman is a film.")) == "Catwoman is a film."
    assert graded_text(math, RunOutcome(answer="So x = 1/2.")) == "So x = 1/2."
    # a computed answer leads with its number: the explanation's last number is not the answer
    tutoring = RunOutcome(answer="168\n\nAlex charges $168 for 2 weeks of tutoring.", short_answer="168")
    assert graded_text(math, tutoring) == "168"
    gsm = load_dataset("gsm8k", FIXTURE_DATA)[0]
    pens = RunOutcome(answer="1600\n\nThe shop sold 1600 pens in 2 days.", short_answer="1600")
    assert grade_answer(gsm, graded_text(gsm, pens)).metrics["correct"] == 1.0
    assert grade_answer(gsm, pens.answer).metrics["correct"] == 0.0  # the whole text's last number is 2


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="benchmark data not present")
def test_real_datasets_load_with_expected_counts() -> None:
    counts = {"hotpotqa": 300, "musique": 60, "gsm8k": 1000, "math500": 500, "peps-wide": 15}
    corpora = {"hotpotqa": 2941, "musique": 1890, "peps-wide": 736}
    for name, count in counts.items():
        items = load_dataset(name, REAL_DATA)
        assert len(items) == count, name
        assert all(item.answers and item.question for item in items), name
        if name in corpora:
            (spec,) = dataset_corpora(items)
            docs = list(spec.documents())
            assert len(docs) == len({d.id for d in docs}) == corpora[name], name
    assert load_dataset("gsm8k", REAL_DATA, limit=5)[4].id == "gsm8k-0004"


# ---------------------------------------------------------------- harness

MODES = [ModeSpec("direct"), ModeSpec("heavy", 2), ModeSpec("rank", 4)]

# item -> mode -> answer. Gold: hp-1 "Ashby", hp-2 "yes", hp-3 "3,000".
ANSWERS = {
    "hp-1": {"direct": "Marrow", "heavy:2": "Ashby", "rank:4": "The Ashby."},
    "hp-2": {"direct": "Yes", "heavy:2": "<error>", "rank:4": "yes"},
    "hp-3": {"direct": "3,000 bridges", "heavy:2": "about 2,000", "rank:4": "3000"},
}
TOKENS = {"direct": 100, "heavy:2": 800, "rank:4": 1600}


class FakeRunner:
    """Deterministic answers from ANSWERS; raises for "<error>"; can block forever on call `block_at`.
    Writes a one-line trace per run in `trace_dir`, except for hp-3's direct run (its trace is lost)."""

    def __init__(self, trace_dir: Path, block_at: int | None = None) -> None:
        self.trace_dir = trace_dir
        self.block_at = block_at
        self.calls: list[tuple[str, str, int]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.blocked = asyncio.Event()

    async def __call__(self, item: EvalItem, mode: ModeSpec, seed: int) -> RunOutcome:
        self.calls.append((item.id, mode.label, seed))
        if self.block_at is not None and len(self.calls) == self.block_at:
            self.blocked.set()
            await asyncio.Event().wait()  # never set: an interrupted run
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)
            answer = ANSWERS[item.id][mode.label]
            if answer == "<error>":
                raise TimeoutError("model server timed out")
            run_id = f"run-{item.id}-{mode.name}"
            tokens = TOKENS[mode.label]
            if (item.id, mode.label) != ("hp-3", "direct"):
                self.trace_dir.mkdir(parents=True, exist_ok=True)
                (self.trace_dir / f"{run_id}.jsonl").write_text(json.dumps({"run_id": run_id}) + "\n")
            return RunOutcome(
                answer=answer,
                citations=[{"ref": 1, "url": ""}],
                run_id=run_id,
                trace_path=self.trace_dir / f"{run_id}.jsonl",
                figures=RunFigures(
                    searches=mode.n,
                    distinct_queries=mode.n,
                    documents_read=2 * mode.n,
                    sources_cited=1,
                    prompt_tokens=tokens - 50,
                    completion_tokens=50,
                    wall_seconds=float(mode.n),
                    agents=mode.n,
                ),
            )
        finally:
            self.in_flight -= 1


def quiet() -> Console:
    return Console(file=io.StringIO(), force_terminal=False, width=200)


async def test_run_eval_end_to_end(tmp_path: Path) -> None:
    items = load_dataset("hotpotqa", FIXTURE_DATA)
    runner = FakeRunner(tmp_path / "traces")
    out = tmp_path / "out"
    summary = await run_eval(
        items, MODES, runner, out, concurrency=2, seed=7, dataset="hotpotqa", console=quiet()
    )

    assert len(runner.calls) == 9
    assert runner.max_in_flight <= 2
    # every mode answers an item under the same, fixed seed
    assert {seed for item_id, _, seed in runner.calls if item_id == "hp-1"} == {item_seed(7, "hp-1")}

    by_mode = {m.mode: m for m in summary.modes}
    assert [m.mode for m in summary.modes] == ["direct", "heavy:2", "rank:4"]
    assert by_mode["direct"].metrics["em"].value == pytest.approx(1 / 3)
    assert by_mode["heavy:2"].metrics["em"].value == pytest.approx(1 / 3)
    assert by_mode["rank:4"].metrics["em"].value == pytest.approx(1.0)
    # direct: F1 = 0 (Marrow), 1 (Yes), 2/3 ("3000 bridges" vs "3000")
    assert by_mode["direct"].metrics["f1"].value == pytest.approx((0 + 1 + 2 / 3) / 3)
    assert by_mode["heavy:2"].errors == 1
    assert by_mode["heavy:2"].done == 3
    assert by_mode["rank:4"].mean_tokens == 1600
    # means are over every finished item; the errored run reported no figures (searches 0)
    assert by_mode["heavy:2"].means["searches"] == pytest.approx(4 / 3)
    # the report's distinct queries are the median over items, which one failed run does not drag down
    assert by_mode["heavy:2"].medians["distinct_queries"] == 2
    # Wilson interval for 1/3 with n=3
    em = by_mode["direct"].metrics["em"]
    assert em.method == "wilson"
    assert em.low == pytest.approx(0.0615, abs=1e-3)
    assert em.high == pytest.approx(0.7923, abs=1e-3)
    assert by_mode["direct"].metrics["f1"].method == "bootstrap"

    rows = read_results(out)
    assert len(rows) == 9
    failed = next(r for r in rows if r.error)
    assert (failed.item_id, failed.mode) == ("hp-2", "heavy:2")
    assert failed.error == "TimeoutError: model server timed out"
    assert failed.metrics == {"em": 0.0, "f1": 0.0}

    report = (out / "report.md").read_text()
    assert "| `rank:4` | 3/3 | 0 | 1.000 [" in report
    assert "| `direct` | 3/3 | 0 | 0.333 [0.061, 0.792]" in report
    assert "| distinct queries (median) |" in report
    # heavy:2's mean searches, median distinct queries, mean documents read
    assert re.search(r"\| `heavy:2` \|.*\| 1\.3 \| 2\.0 \| 2\.7 \|", report)
    assert "error: TimeoutError: model server timed out" in report
    # Runs are referenced by id, linked to their traces exported beside the report; a lost one says so.
    assert "| [run-hp-1-rank](traces/run-hp-1-rank.jsonl.gz) |" in report
    assert "| run-hp-3-direct (trace not available) |" in report
    exported = gzip.decompress((out / "traces" / "run-hp-1-rank.jsonl.gz").read_bytes())
    assert json.loads(exported) == {"run_id": "run-hp-1-rank"}
    for name in ("report.md", "results.jsonl", "summary.json", "eval.json"):
        assert str(tmp_path) not in (out / name).read_text(), f"{name} names a local path"
    assert "Wilson" in report and "bootstrap" in report
    assert (out / "accuracy_vs_tokens.png").stat().st_size > 1000
    assert (out / "accuracy_vs_n.png").stat().st_size > 1000
    assert json.loads((out / "summary.json").read_text())["modes"][2]["metrics"]["em"]["value"] == 1.0


async def test_resume_after_interrupt_runs_only_the_rest(tmp_path: Path) -> None:
    items = load_dataset("hotpotqa", FIXTURE_DATA)
    out = tmp_path / "out"
    first = FakeRunner(tmp_path, block_at=3)
    task = asyncio.create_task(run_eval(items, MODES, first, out, progress=False))
    await asyncio.wait_for(first.blocked.wait(), timeout=10)
    task.cancel()  # what Ctrl-C does to the main task under asyncio.run
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(read_results(out)) == 2

    second = FakeRunner(tmp_path)
    summary = await run_eval(items, MODES, second, out, progress=False)
    done_first = {(i, m) for i, m, _ in first.calls[:2]}
    assert len(second.calls) == 7
    assert not done_first & {(i, m) for i, m, _ in second.calls}
    assert all(m.done == 3 for m in summary.modes)
    assert len(read_results(out)) == 9

    third = FakeRunner(tmp_path)
    await run_eval(items, MODES, third, out, progress=False)
    assert third.calls == []


def test_keyboard_interrupt_keeps_finished_results(tmp_path: Path) -> None:
    items = load_dataset("hotpotqa", FIXTURE_DATA)
    out = tmp_path / "out"

    class InterruptingRunner(FakeRunner):
        async def __call__(self, item: EvalItem, mode: ModeSpec, seed: int) -> RunOutcome:
            if len(self.calls) == 2:
                raise KeyboardInterrupt
            return await super().__call__(item, mode, seed)

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(run_eval(items, MODES, InterruptingRunner(tmp_path), out, progress=False))
    assert [(r.item_id, r.mode) for r in read_results(out)] == [("hp-1", "direct"), ("hp-1", "heavy:2")]

    rest = FakeRunner(tmp_path)
    summary = asyncio.run(run_eval(items, MODES, rest, out, progress=False))
    assert len(rest.calls) == 7
    assert sum(m.done for m in summary.modes) == 9


async def test_retry_errors_reruns_only_errored_pairs(tmp_path: Path) -> None:
    items = load_dataset("hotpotqa", FIXTURE_DATA)
    out = tmp_path / "out"
    await run_eval(items, MODES, FakeRunner(tmp_path), out, progress=False)

    ANSWERS_FIXED = {**ANSWERS, "hp-2": {**ANSWERS["hp-2"], "heavy:2": "yes"}}

    class FixedRunner(FakeRunner):
        async def __call__(self, item: EvalItem, mode: ModeSpec, seed: int) -> RunOutcome:
            self.calls.append((item.id, mode.label, seed))
            return RunOutcome(answer=ANSWERS_FIXED[item.id][mode.label], run_id="retry")

    without = FixedRunner(tmp_path)
    await run_eval(items, MODES, without, out, progress=False)
    assert without.calls == []
    retry = FixedRunner(tmp_path)
    summary = await run_eval(items, MODES, retry, out, progress=False, retry_errors=True)
    assert [(i, m) for i, m, _ in retry.calls] == [("hp-2", "heavy:2")]
    heavy = next(m for m in summary.modes if m.mode == "heavy:2")
    assert heavy.errors == 0
    assert heavy.metrics["em"].value == pytest.approx(2 / 3)
    assert len(read_results(out)) == 10  # the errored row stays in the log; the retry supersedes it


async def test_rerun_with_more_items_and_modes_extends_the_report(tmp_path: Path) -> None:
    items = load_dataset("hotpotqa", FIXTURE_DATA)
    out = tmp_path / "out"
    await run_eval(items[:1], MODES[:1], FakeRunner(tmp_path), out, progress=False)
    runner = FakeRunner(tmp_path)
    summary = await run_eval(items, MODES[:2], runner, out, progress=False)
    assert len(runner.calls) == 5
    assert summary.items == 3
    assert [m.done for m in summary.modes] == [3, 3]


async def test_out_dir_of_another_dataset_or_seed_is_refused(tmp_path: Path) -> None:
    items = load_dataset("hotpotqa", FIXTURE_DATA)
    out = tmp_path / "out"
    await run_eval(items[:1], MODES[:1], FakeRunner(tmp_path), out, progress=False, dataset="hotpotqa")
    with pytest.raises(ConfigError, match="holds results for hotpotqa"):
        await run_eval(items[:1], MODES[:1], FakeRunner(tmp_path), out, progress=False, dataset="musique")
    with pytest.raises(ConfigError, match="--seed 0"):
        await run_eval(items[:1], MODES[:1], FakeRunner(tmp_path), out, progress=False, seed=3)


async def test_a_line_cut_short_by_a_crash_is_skipped_and_rerun(tmp_path: Path) -> None:
    items = load_dataset("hotpotqa", FIXTURE_DATA)
    out = tmp_path / "out"
    await run_eval(items[:2], MODES[:1], FakeRunner(tmp_path), out, progress=False)
    results = out / "results.jsonl"
    lines = results.read_text().splitlines(keepends=True)
    results.write_text(lines[0] + lines[1][:40])  # the second row was half written
    runner = FakeRunner(tmp_path)
    summary = await run_eval(items[:2], MODES[:1], runner, out, progress=False)
    assert [(i, m) for i, m, _ in runner.calls] == [("hp-2", "direct")]
    assert summary.modes[0].done == 2
    assert len(read_results(out)) == 2


async def test_progress_lines_when_not_a_terminal(tmp_path: Path) -> None:
    items = load_dataset("hotpotqa", FIXTURE_DATA)
    console = quiet()
    await run_eval(items, MODES, FakeRunner(tmp_path), tmp_path / "out", console=console, dataset="hotpotqa")
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "hotpotqa: 0/9 done, 9 to run" in text
    assert "hotpotqa: 9/9 done (1 errors)" in text
    assert "eta" in text


async def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    items = load_dataset("hotpotqa", FIXTURE_DATA)
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    await run_eval(items, MODES[:1], FakeRunner(tmp_path), tmp_path / "out", console=console)
    assert "3/3" in console.file.getvalue()  # type: ignore[attr-defined]


async def test_math_and_wide_items_through_the_harness(tmp_path: Path) -> None:
    math = load_dataset("math500", FIXTURE_DATA)
    wide = load_dataset("peps-wide", FIXTURE_DATA)
    replies = {
        "test/prealgebra/1.json": "\\boxed{0.5}",
        "test/algebra/2.json": "Evelyn",
        "test/prealgebra/3.json": "41",
        "pepwide-000": "- PEP 1: https://peps.python.org/pep-0001/\n- https://peps.python.org/pep-3107/",
        "pepwide-001": "PEP 3107",
    }

    async def runner(item: EvalItem, mode: ModeSpec, seed: int) -> RunOutcome:
        return RunOutcome(answer=replies[item.id])

    summary = await run_eval(math, [ModeSpec("single")], runner, tmp_path / "math", progress=False)
    assert summary.modes[0].primary == "correct"
    assert summary.modes[0].metrics["correct"].value == pytest.approx(2 / 3)

    summary = await run_eval(wide, [ModeSpec("single")], runner, tmp_path / "wide", progress=False)
    metrics = summary.modes[0].metrics
    assert summary.modes[0].primary == "f1"
    assert metrics["precision"].value == pytest.approx((1 / 2 + 1) / 2)
    assert metrics["recall"].value == pytest.approx((1 / 2 + 1) / 2)
    assert metrics["exact_set"].value == pytest.approx(1 / 2)


def verdict(messages: Sequence[Message], json_schema: JsonSchema | None) -> Reply:
    """A judge: correct iff the candidate answer contains "Ashby"; a reply that is no verdict on "yes"."""
    candidate = messages[0].content.split("Candidate answer:")[1]
    if "yes" in candidate.lower():
        return Unconstrained("not json")
    return json.dumps({"correct": "Ashby" in candidate, "reason": "checked"})


async def test_judge_is_reported_apart_from_exact_grades(tmp_path: Path) -> None:
    items = load_dataset("hotpotqa", FIXTURE_DATA)
    out = tmp_path / "out"
    summary = await run_eval(
        items, MODES, FakeRunner(tmp_path), out, progress=False, judge=FunctionModel(verdict, name="judge")
    )
    rank = next(m for m in summary.modes if m.mode == "rank:4")
    assert rank.judge is not None
    # rank:4 answers: "The Ashby." (judged correct), "yes" (judge fails), "3000" (judged wrong)
    assert (rank.judge.value, rank.judge.n, rank.judge_errors) == (0.5, 2, 1)
    assert rank.metrics["em"].value == 1.0  # exact grades untouched by the judge
    assert "## LLM judge" in (out / "report.md").read_text()


async def test_render_report_rebuilds_everything_from_saved_results(tmp_path: Path) -> None:
    items = load_dataset("hotpotqa", FIXTURE_DATA)
    out = tmp_path / "out"
    original = await run_eval(items, MODES, FakeRunner(tmp_path), out, progress=False, dataset="hotpotqa")
    report = (out / "report.md").read_text()
    for name in ("report.md", "summary.json", "accuracy_vs_tokens.png", "accuracy_vs_n.png"):
        (out / name).unlink()

    again = render_report(out)
    assert again.modes == original.modes
    assert (out / "report.md").read_text() == report
    assert "# Evaluation: hotpotqa" in report
    assert (out / "accuracy_vs_tokens.png").is_file()
    assert (out / "accuracy_vs_n.png").is_file()
    assert (out / "summary.json").is_file()


async def test_single_mode_plot_and_missing_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = load_dataset("hotpotqa", FIXTURE_DATA)
    out = tmp_path / "out"
    summary = await run_eval(items, MODES[:1], FakeRunner(tmp_path), out, progress=False)
    assert summary.plots == ["accuracy_vs_tokens.png"]  # no heavy or rank mode: no N plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    (out / "accuracy_vs_tokens.png").unlink()
    summary = render_report(out)
    assert summary.plots == []
    assert summary.plots_skipped is not None and "openheavy[eval]" in summary.plots_skipped
    assert "Plots skipped" in (out / "report.md").read_text()


def test_render_report_without_results_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="openheavy eval DATASET --out"):
        render_report(tmp_path)


def test_wilson_interval_ends_exactly_at_zero_and_one() -> None:
    from openheavy.evals.stats import wilson_interval

    # Without care, rounding gives 0.9999999999999999 here, just below the estimate of 1.0,
    # and a negative error bar that matplotlib refuses.
    assert wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 10)[0] == 0.0
    low, high = wilson_interval(3, 10)
    assert 0.0 < low < 0.3 < high < 1.0


async def test_the_report_counts_answers_that_end_mid_sentence_or_repeat_themselves(tmp_path: Path) -> None:
    looped = "It is Ashby, the town by the lake. " * 3
    forms = {
        "hp-1": "Ashby [1].",
        "hp-2": "It is yes because the lake was formed by a glacier that",
        "hp-3": looped,
    }

    async def runner(item: EvalItem, mode: ModeSpec, seed: int) -> RunOutcome:
        return RunOutcome(answer=forms[item.id], short_answer=forms[item.id][:5])

    items = load_dataset("hotpotqa", FIXTURE_DATA)
    out = tmp_path / "out"
    summary = await run_eval(
        items, [ModeSpec("direct")], runner, out, seed=1, dataset="hotpotqa", console=quiet()
    )
    assert summary.modes[0].form_problems == {"ends mid-sentence": 1, "repeats itself": 1}
    rows = {row.item_id: row for row in read_results(out)}
    assert rows["hp-2"].form_problems == ["ends mid-sentence"] and rows["hp-1"].form_problems == []
    assert rows["hp-1"].short_answer == "Ashby"
    report = (out / "report.md").read_text()
    assert "| ends mid-sentence | repeats itself |" in report
    assert re.search(r"\| `direct` \|.*\| 1 \| 1 \|$", report, flags=re.M)
    # A summary counts the answers with the checks of today, whatever an older check recorded
    stale = [row.model_copy(update={"form_problems": ["ends mid-sentence"]}) for row in read_results(out)]
    meta = read_meta(out)
    assert meta is not None
    [mode] = summarize(meta, stale, out).modes
    assert mode.form_problems == {"ends mid-sentence": 1, "repeats itself": 1}
