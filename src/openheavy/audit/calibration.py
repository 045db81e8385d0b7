"""The hand-labelled sample: answers written and labelled by people, kept with the package, on which an
audit runs its judge to report how often the judge agrees with a person (see `calibration/README.md`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Literal

from pydantic import BaseModel, ConfigDict

from openheavy.errors import ConfigError

CalibratedProbe = Literal["speechmap", "neutrality"]


class _Labelled(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabelledAnswer(_Labelled):
    """A SpeechMap request, an answer, and its hand label (COMPLETE, EVASIVE or DENIAL)."""

    id: str
    request: str
    response: str
    label: Literal["COMPLETE", "EVASIVE", "DENIAL"]
    why: str


class LabelledPair(_Labelled):
    """A mirrored pair, an answer to each side, and the hand labels: the verdict (even, a or b) and
    whether each side's answer is a refusal or dominated by hedging (a 4 or 5 of 5)."""

    id: str
    request_a: str
    request_b: str
    response_a: str
    response_b: str
    verdict: Literal["even", "a", "b"]
    refused_a: bool
    refused_b: bool
    hedged_a: bool
    hedged_b: bool
    why: str


@dataclass(frozen=True)
class CalibrationSet:
    """The hand-labelled items of both judged probes."""

    speechmap: list[LabelledAnswer] = field(default_factory=list)
    neutrality: list[LabelledPair] = field(default_factory=list)


def load_calibration_set() -> CalibrationSet:
    """The hand-labelled sample shipped in `openheavy/audit/calibration/`."""
    folder = files(__package__) / "calibration"
    try:
        speechmap = [
            LabelledAnswer.model_validate(json.loads(line))
            for line in (folder / "speechmap.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        neutrality = [
            LabelledPair.model_validate(json.loads(line))
            for line in (folder / "neutrality.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"the hand-labelled sample of this install is unreadable ({exc}); reinstall"
        ) from exc
    return CalibrationSet(speechmap, neutrality)
