"""Graders: SQuAD exact match and token F1, math equivalence, wide-search URL sets, and an LLM judge.

Exact graders are deterministic and pure; the LLM judge is reported apart from them, because a judge
is a model with its own errors and must never be mixed into the exact numbers.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openheavy.citations import renumber_markers
from openheavy.errors import ConfigError, ModelOutputError
from openheavy.evals.datasets import EvalItem, ItemKind
from openheavy.json_output import first_json_object
from openheavy.models.base import ChatModel
from openheavy.models.recording import RecordingModel
from openheavy.normalize import (
    last_boxed,
    last_number,
    numbers_equal,
    plain_number,
    squad_normalize,
    strip_text_wrappers,
)
from openheavy.prompts import render_prompt
from openheavy.types import Message

EVAL_INSTALL_HINT = "pip install 'openheavy[eval]'"

MetricKind = Literal["proportion", "mean"]

#: Every metric a grader can report, and whether it is a 0/1 proportion or a mean of scores in [0, 1];
#: the report picks the confidence interval by this.
METRICS: dict[str, MetricKind] = {
    "em": "proportion",
    "f1": "mean",
    "correct": "proportion",
    "precision": "mean",
    "recall": "mean",
    "exact_set": "proportion",
    "judge": "proportion",
}

#: The headline metric per item kind: what "accuracy" means in the scaling plots.
PRIMARY_METRIC: dict[ItemKind, str] = {"qa": "em", "math": "correct", "wide": "f1"}

#: The metrics each kind reports, in display order. An errored run scores 0 on all of them.
KIND_METRICS: dict[ItemKind, tuple[str, ...]] = {
    "qa": ("em", "f1"),
    "math": ("correct",),
    "wide": ("precision", "recall", "f1", "exact_set"),
}


@dataclass(frozen=True)
class Grade:
    """The exact grade of one answer: metric name -> score in [0, 1], and what the grader saw."""

    metrics: Mapping[str, float]
    details: Mapping[str, Any] = field(default_factory=dict)


def grade_answer(item: EvalItem, prediction: str) -> Grade:
    """Grade `prediction` against the item's gold answers with the grader for its kind.

    Exact graders see the answer without its citation markers, so "Ashby [1]" matches "Ashby" and
    "160 [2]" reads as 160, not 2. Wide search keeps them: its sources are listed by number."""
    if item.kind == "qa":
        return grade_qa(_without_markers(prediction), item.answers)
    if item.kind == "math":
        return grade_math(_without_markers(prediction), item.answers[0])
    return grade_wide(prediction, item.answers)


def _without_markers(text: str) -> str:
    """`text` without its citation markers ("Ashby [1]." → "Ashby."), by the engine's own marker rules."""
    return renumber_markers(text, {})


def failed_grade(kind: ItemKind, error: str) -> Grade:
    """The grade of a run that errored: wrong on every metric of its kind."""
    return Grade({name: 0.0 for name in KIND_METRICS[kind]}, {"error": error})


# ---------------------------------------------------------------- QA: SQuAD exact match and F1


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the normalized prediction equals any normalized gold alias, else 0.0."""
    normalized = squad_normalize(prediction)
    return float(any(normalized == squad_normalize(gold) for gold in answers))


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    """The best SQuAD token F1 of the prediction against any gold alias."""
    return max((_f1(prediction, gold) for gold in answers), default=0.0)


def _f1(prediction: str, gold: str) -> float:
    predicted = squad_normalize(prediction).split()
    expected = squad_normalize(gold).split()
    # As in the official HotpotQA script: yes/no/noanswer only count when they match exactly, otherwise
    # "yes" would earn partial credit inside any sentence that contains it.
    special = {"yes", "no", "noanswer"}
    if (" ".join(predicted) in special or " ".join(expected) in special) and predicted != expected:
        return 0.0
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision = common / len(predicted)
    recall = common / len(expected)
    return 2 * precision * recall / (precision + recall)


def grade_qa(prediction: str, answers: Sequence[str]) -> Grade:
    """Exact match and token F1, each the maximum over the gold aliases."""
    return Grade({"em": exact_match(prediction, answers), "f1": token_f1(prediction, answers)})


# ---------------------------------------------------------------- math


def _final_answer_text(prediction: str) -> tuple[str, bool]:
    """Where the final answer is: the last \\boxed{}, else after the last "####" (GSM8K style), else
    all of it; and whether it was boxed (then the whole box is the answer, not its last number)."""
    boxed = last_boxed(prediction)
    if boxed is not None:
        return boxed, True
    if "####" in prediction:
        return prediction.rsplit("####", 1)[1], False
    return prediction, False


def _loose_latex(text: str) -> str:
    # For answers math-verify cannot compare as expressions, like \text{Evelyn} against "Evelyn".
    text = strip_text_wrappers(text)
    text = text.replace("$", "").replace("\\!", "").replace("\\,", "").replace("\\ ", "")
    text = re.sub(r"\\(?:left|right)", "", text)
    return "".join(text.split()).lower().rstrip(".")


def grade_math(prediction: str, gold: str) -> Grade:
    """Whether the prediction's final answer equals `gold` mathematically.

    A plain-number gold (all of GSM8K, much of MATH-500) is compared with the prediction's final number
    without sympy: "1,000", "$1,000", "1000.00" and "1000" are equal. Anything else (fractions,
    radicals, tuples, intervals) goes to math-verify, which must be installed (`openheavy[eval]`).
    """
    final, boxed = _final_answer_text(prediction)
    gold_number = plain_number(gold)
    details: dict[str, Any] = {"final": final.strip()[-200:]}
    if gold_number is not None:
        predicted = plain_number(final) if boxed else last_number(final)
        details["predicted_number"] = None if predicted is None else float(predicted.value)
        if predicted is not None and numbers_equal(predicted, gold_number):
            return Grade({"correct": 1.0}, details)
        # A numeric gold can still be written as LaTeX in the answer, e.g. \frac{1}{2} for 0.5; that
        # needs math-verify, and without it the plain comparison above stands.
        if _math_verify_available() and _math_verify_equal(gold, prediction):
            return Grade({"correct": 1.0}, {**details, "via": "math-verify"})
        return Grade({"correct": 0.0}, details)
    if _loose_latex(final) == _loose_latex(gold):
        return Grade({"correct": 1.0}, {**details, "via": "string"})
    if not _math_verify_available():
        raise ConfigError(f"grading LaTeX math answers needs math-verify — {EVAL_INSTALL_HINT}")
    correct = _math_verify_equal(gold, prediction)
    return Grade({"correct": float(correct)}, {**details, "via": "math-verify"})


def _math_verify_available() -> bool:
    try:
        import math_verify  # noqa: F401
    except ImportError:
        return False
    return True


def _math_verify_equal(gold: str, prediction: str) -> bool:
    from math_verify import parse, verify

    # math-verify times out with signal.alarm, which only works on the main thread; elsewhere it must
    # run without a timeout rather than raise.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    gold_parsed = parse(f"${gold}$", parsing_timeout=timeout)
    predicted = parse(prediction, parsing_timeout=timeout)
    if not gold_parsed or not predicted:
        return False
    return bool(verify(gold_parsed, predicted, timeout_seconds=timeout))


# ---------------------------------------------------------------- wide search: URL sets

# Scheme URLs and bare www. hosts. Brackets, quotes and angle brackets end a URL (markdown links,
# autolinks, HTML); parentheses are kept and balanced afterwards, because Wikipedia URLs contain them.
_URL = re.compile(r"(?:https?://|\bwww\.)[^\s<>\"'`\[\]{}|\\^]+", re.IGNORECASE)
_TRAILING = ".,;:!?*_~"
_HOST = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$|^localhost$")
_PEP_PATH = re.compile(r"/(?:dev/peps/)?pep-(\d{1,4})(?:\.html)?/?$", re.IGNORECASE)
_PEP_HOSTS = frozenset({"peps.python.org", "python.org"})
_PEP_MENTION = re.compile(r"\bPEP[\s\-_]?(\d{1,4})\b", re.IGNORECASE)
PEP_URL = "https://peps.python.org/pep-{:04d}/"


def normalize_url(url: str) -> str | None:
    """A comparison key for a URL, or None when it is malformed.

    Scheme (http/https) is dropped, the host lower-cased and stripped of `www.` and default ports, the
    fragment and a trailing slash removed; path and query keep their case. PEP URLs on python.org in
    any of their historic forms map to the canonical `peps.python.org/pep-NNNN`.
    """
    url = url.strip()
    if url.lower().startswith("www."):
        url = "http://" + url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        return None
    try:
        # Internationalized hosts compare in their ASCII (punycode) form.
        host = parts.hostname.encode("idna").decode("ascii").lower().removeprefix("www.")
    except UnicodeError:
        return None
    if not _HOST.match(host):
        return None
    if port is not None and port not in {80, 443}:
        host = f"{host}:{port}"
    path = parts.path.rstrip("/")
    if host in _PEP_HOSTS and (pep := _PEP_PATH.search(parts.path)):
        return f"peps.python.org/pep-{int(pep[1]):04d}"
    return host + path + (f"?{parts.query}" if parts.query else "")


def _trim(candidate: str) -> str:
    while candidate:
        # A closing parenthesis belongs to the URL only when the URL opened one (Wikipedia titles).
        unbalanced = candidate[-1] == ")" and candidate.count(")") > candidate.count("(")
        if candidate[-1] in _TRAILING or unbalanced:
            candidate = candidate[:-1]
        else:
            break
    return candidate


def extract_urls(text: str, pep_numbers: bool = False) -> list[str]:
    """Normalized URLs found in `text`, deduplicated in order of first appearance; malformed ones are
    skipped. With `pep_numbers`, mentions like "PEP 8" count as the PEP's canonical URL."""
    found: list[str] = []
    for match in _URL.finditer(text):
        key = normalize_url(_trim(match.group()))
        if key is not None:
            found.append(key)
    if pep_numbers:
        found.extend(f"peps.python.org/pep-{int(m[1]):04d}" for m in _PEP_MENTION.finditer(text))
    return list(dict.fromkeys(found))


def _is_url(value: str) -> bool:
    return normalize_url(value) is not None


def grade_wide(prediction: str, gold: Sequence[str]) -> Grade:
    """Item-level precision, recall and F1 of the URLs (or ids) an answer lists against the gold list.

    Gold URLs are matched by their normalized form. Gold entries that are not URLs (plain ids) count as
    listed when they appear in the answer as a whole word. PEP numbers ("PEP 8") count as PEP URLs when
    the gold list is made of PEP URLs. `exact_set` is 1 when the listed set equals the gold set.
    """
    gold_keys: list[str] = []
    gold_ids: list[str] = []
    for entry in gold:
        key = normalize_url(entry)
        if key is not None:
            gold_keys.append(key)
        elif entry.strip():
            gold_ids.append(entry.strip())
    pep_gold = any(key.startswith("peps.python.org/pep-") for key in gold_keys)
    listed = extract_urls(prediction, pep_numbers=pep_gold)
    listed += [
        entry
        for entry in gold_ids
        if re.search(rf"(?<!\w){re.escape(entry)}(?!\w)", prediction, re.IGNORECASE)
    ]
    expected = {*gold_keys, *gold_ids}
    predicted = set(listed)
    hits = predicted & expected
    precision = len(hits) / len(predicted) if predicted else 0.0
    recall = len(hits) / len(expected) if expected else 0.0
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    details = {
        "found": sorted(hits),
        "missing": sorted(expected - predicted),
        "extra": sorted(predicted - expected),
    }
    metrics = {"precision": precision, "recall": recall, "f1": f1, "exact_set": float(predicted == expected)}
    return Grade(metrics, details)


# ---------------------------------------------------------------- LLM judge

JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "correct": {"type": "boolean"},
        # A bound on the string: constrained decoding can otherwise run on inside it to max_tokens.
        "reason": {"type": "string", "maxLength": 300},
    },
    "required": ["correct", "reason"],
    "additionalProperties": False,
}


class JudgeVerdict(BaseModel):
    """The LLM judge's verdict on one answer."""

    model_config = ConfigDict(frozen=True)

    correct: bool
    reason: str = Field(default="", max_length=2000)


async def judge_answer(
    model: ChatModel, question: str, answers: Iterable[str], prediction: str, *, seed: int = 0
) -> JudgeVerdict:
    """Ask `model` whether `prediction` answers `question` as the gold `answers` do. Greedy and seeded
    so that a rerun judges the same way. Raises `ModelOutputError` if the reply is not a verdict."""
    prompt = render_prompt(
        "eval_judge", question=question, gold=" | ".join(answers), candidate=prediction.strip()
    )
    # No stream: the eval judge runs outside any run. The wrapper still bounds the reply by the schema
    # (a fixed lower limit could cut the verdict off inside its reason).
    judge = RecordingModel(model, stream=None, run_id="")
    completion = await judge.complete(
        [Message("user", prompt)], json_schema=JUDGE_SCHEMA, temperature=0.0, seed=seed
    )
    text = completion.text.strip()
    try:
        return JudgeVerdict.model_validate(first_json_object(text))
    except (ValueError, ValidationError) as exc:
        raise ModelOutputError(f"judge reply is not a verdict: {text[:200]!r}") from exc
