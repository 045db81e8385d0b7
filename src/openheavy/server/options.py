"""What a client may ask for: the mode, the backend, and the run options, validated at the boundary.

The OpenAI endpoint reads these from a request's extra body fields and the MCP `research` tool from its
arguments; both build the same `ResearchOptions`, and `engine.start_run` is the one place that turns them
into the engine's run options. Bounds are here because a request comes from the network: `agents=500`
must be refused, not run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field

from openheavy.errors import ConfigError

Mode = Literal["heavy", "rank", "single", "direct"]
MODE_NAMES: tuple[str, ...] = get_args(Mode)

# Verifiers a remote client may choose. `check:py:...` imports and runs code named in the request and
# `reward:URL` makes the server call any URL, so neither is offered over the network.
ServedVerifier = Literal["vote", "judge", "check:numeric", "check:math"]

MAX_AGENTS = 16
MAX_SAMPLES = 32


class ResearchOptions(BaseModel):
    """Run options a client may set; `None` leaves the server's default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agents: int | None = Field(None, ge=1, le=MAX_AGENTS, description="heavy: agents (default: planner)")
    max_agents: int | None = Field(
        None, ge=1, le=MAX_AGENTS, description="heavy: most agents the planner uses"
    )
    n: int | None = Field(None, ge=1, le=MAX_SAMPLES, description="rank: samples")
    verifier: ServedVerifier | None = Field(None, description="rank: how samples are scored")
    # Not `tools`: that is the OpenAI field for client tools, which openheavy refuses.
    rank_with_tools: bool | None = Field(None, description="rank: each sample is a research agent")
    rank_trajectories: bool | None = Field(None, description="heavy: rank the agents' answers, no synthesis")
    corpus: str | None = Field(None, min_length=1, max_length=64, description="corpus to search")
    max_steps: int | None = Field(None, ge=1, le=50, description="actions per agent")
    budget_tokens: int | None = Field(None, ge=1, le=10_000_000, description="whole-run token budget")
    budget_seconds: float | None = Field(
        None, gt=0, le=86_400, allow_inf_nan=False, description="whole-run wall-time budget"
    )
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    temperature: float | None = Field(None, ge=0, le=2, allow_inf_nan=False)


OPTION_NAMES: tuple[str, ...] = tuple(ResearchOptions.model_fields)


def uses_corpus(mode: str, options: ResearchOptions) -> bool:
    """Whether a run in `mode` searches a corpus (so the corpus must exist before it starts)."""
    return mode in ("single", "heavy") or (mode == "rank" and bool(options.rank_with_tools))


@dataclass(frozen=True)
class ResearchRequest:
    """One question to run: the question text, the mode, the backend (`""` = the server's default) and
    the options."""

    question: str
    mode: Mode
    backend: str = ""
    options: ResearchOptions = field(default_factory=ResearchOptions)


def parse_model_field(model: str, backends: list[str]) -> tuple[Mode, str]:
    """`heavy` → (heavy, default backend); `heavy:PROFILE` → (heavy, PROFILE). Raises `ConfigError`
    naming what is served."""
    mode, _, backend = model.strip().partition(":")
    if mode not in MODE_NAMES or (backend and backend not in backends):
        served = ", ".join(MODE_NAMES)
        profiles = ", ".join(f"MODE:{b}" for b in backends[1:])
        extra = f", or {profiles}" if profiles else ""
        raise ConfigError(
            f"model {model!r} is not served — use a mode as the model: {served}{extra}"
            " (GET /v1/models lists them)"
        )
    return cast(Mode, mode), backend
