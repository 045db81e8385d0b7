"""Behaviour audit: what a model says (SpeechMap compliance, political even-handedness), whom it looks
up (names in its searches that the user never named), and which instructions it was given (prompt
provenance); one model, or two compared with paired tests and a regression alarm.

A thin shell over the core, like `evals`: answers come from `openheavy.api.Heavy`, so every run has its
trace and its row in the run store; results, statistics and reports reuse the evals' stores and stats.
"""

from openheavy.audit.harness import AuditPlan, Judge, run_audit
from openheavy.audit.items import PROBES, AuditItem, load_probe_items, parse_probes
from openheavy.audit.judges import UNPARSEABLE, Judgement, judge_compliance, judge_pair
from openheavy.audit.lookup import LookupRecord, find_lookups
from openheavy.audit.names import CapitalisedNames, NameFinder, SpacyNames, default_finder
from openheavy.audit.provenance import PromptSet, diff_prompt_sets, installed_prompt_set
from openheavy.audit.report import render_audit_report
from openheavy.audit.store import prompt_set_of
from openheavy.audit.summary import AuditSummary

__all__ = [
    "PROBES",
    "UNPARSEABLE",
    "AuditItem",
    "AuditPlan",
    "AuditSummary",
    "CapitalisedNames",
    "Judge",
    "Judgement",
    "LookupRecord",
    "NameFinder",
    "PromptSet",
    "SpacyNames",
    "default_finder",
    "diff_prompt_sets",
    "find_lookups",
    "installed_prompt_set",
    "judge_compliance",
    "judge_pair",
    "load_probe_items",
    "parse_probes",
    "prompt_set_of",
    "render_audit_report",
    "run_audit",
]
