"""`make_verifier`: the verifier a `--verifier` spec string names."""

from __future__ import annotations

from openheavy.errors import ConfigError
from openheavy.models.base import ChatModel
from openheavy.verify.base import Verifier
from openheavy.verify.checks import CHECKERS, CheckVerifier
from openheavy.verify.judge import JudgeVerifier
from openheavy.verify.reward import RewardVerifier
from openheavy.verify.vote import VoteVerifier

VERIFIER_SPECS = "vote, judge, check:NAME (" + ", ".join(CHECKERS) + "), reward:URL"


def make_verifier(
    spec: str, model: ChatModel | None, reference: str | None = None, *, seed: int = 0
) -> Verifier:
    """The verifier a `--verifier` spec names: `vote`, `judge`, `check:NAME` or `reward:URL`.

    With a model, `vote` and the self-consistency checkers break ties with the judge (extra model calls
    only when there is a tie). `judge` needs a model. `reference` is the expected answer for the
    `check:numeric` and `check:math` checkers.
    """
    spec = spec.strip()
    kind, _, argument = spec.partition(":")
    judge = JudgeVerifier(model, seed=seed) if model is not None else None
    if spec == "vote":
        return VoteVerifier(tie_breaker=judge)
    if spec == "judge":
        if judge is None:
            raise ConfigError("--verifier judge needs a model to act as the judge")
        return judge
    if kind == "check":
        if not argument:
            raise ConfigError(f"--verifier check:NAME needs a checker name; valid: {', '.join(CHECKERS)}")
        return CheckVerifier(argument, reference=reference, tie_breaker=judge)
    if kind == "reward":
        return RewardVerifier(argument)
    raise ConfigError(f"unknown verifier {spec!r}; valid: {VERIFIER_SPECS}")
