"""Evaluation: benchmark datasets, exact graders, a resumable harness and reports.

A thin shell over the core: the harness answers questions through an injected `Runner`, so it runs
against the real engine, a fake in tests, or a cluster fan-out alike.
"""

from openheavy.evals.datasets import (
    DATASET_NAMES,
    CorpusDoc,
    CorpusSpec,
    DatasetError,
    EvalItem,
    build_corpus,
    dataset_corpora,
    load_dataset,
    resolve_data_dir,
)
from openheavy.evals.grading import (
    Grade,
    JudgeVerdict,
    exact_match,
    extract_urls,
    grade_answer,
    grade_math,
    grade_qa,
    grade_wide,
    judge_answer,
    normalize_url,
    token_f1,
)
from openheavy.evals.harness import (
    ModeSpec,
    Runner,
    RunOutcome,
    outcome_from_result,
    parse_modes,
    run_eval,
)
from openheavy.evals.report import render_report
from openheavy.evals.stats import EvalSummary, MetricSummary, ModeSummary
from openheavy.trace import RunFigures

__all__ = [
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
