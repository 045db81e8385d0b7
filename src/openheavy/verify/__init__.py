"""Verifiers: score N candidate answers to one question so the best can be picked.

A verifier sees `Sample`s — plain sampled completions in rank mode, whole research trajectories in heavy
mode — and returns one `Score` per sample. Four kinds, chosen by a spec string (`make_verifier`):

- `vote`: self-consistency, the majority over normalized final answers;
- `judge`: a model grades each answer against a rubric, then (N > 2) a pairwise round-robin of the best;
- `check:NAME`: programmatic checkers (numeric, math, regex, a user's Python predicate);
- `reward:URL`: an external reward-model endpoint.
"""

from openheavy.verify.base import Sample, Score, Verifier, extract_answer
from openheavy.verify.checks import CHECKERS, CheckVerifier, math_equal
from openheavy.verify.judge import PAIRWISE_SCHEMA as PAIRWISE_SCHEMA
from openheavy.verify.judge import POINTWISE_SCHEMA as POINTWISE_SCHEMA
from openheavy.verify.judge import JudgeVerifier
from openheavy.verify.reward import RewardVerifier
from openheavy.verify.spec import VERIFIER_SPECS as VERIFIER_SPECS
from openheavy.verify.spec import make_verifier
from openheavy.verify.vote import Tally, VoteVerifier, tally

__all__ = [
    "CHECKERS",
    "CheckVerifier",
    "JudgeVerifier",
    "RewardVerifier",
    "Sample",
    "Score",
    "Tally",
    "Verifier",
    "VoteVerifier",
    "extract_answer",
    "make_verifier",
    "math_equal",
    "tally",
]
