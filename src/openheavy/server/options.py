"""What a client may ask for: the mode, the backend, and the run options, validated at the boundary.

The OpenAI endpoint reads these from a request's extra body fields and the MCP `research` tool from its
arguments; both build the same `ResearchOptions`, and `engine.start_run` is the one place that turns them
into the engine's run options. Bounds are here because a request comes from the network: `agents=500`
must be refused, not run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from openheavy.errors import ConfigError
from openheavy.modes import MODES

# The modes a client may pick: every mode in the engine's registry, the most useful first.
MODE_NAMES: tuple[str, ...] = ("heavy", *(name for name in MODES if name != "heavy"))


def _served_mode(name: str) -> str:
    if name not in MODES:
        raise ValueError(f"unknown mode {name!r}; choose one of {', '.join(MODE_NAMES)}")
    return name


# A mode name as a tool argument: validated against the registry, listed as an enum in the JSON schema.
ModeName = Annotated[str, Field(json_schema_extra={"enum": list(MODE_NAMES)}), AfterValidator(_served_mode)]

# Verifiers a remote client may choose. `check:py:...` imports and runs code named in the request and
# `reward:URL` makes the server call any URL, so neither is offered over the network.
ServedVerifier = Literal["vote", "judge", "check:numeric", "check:math"]

MAX_AGENTS = 16
MAX_SAMPLES = 32


class ResearchOptions(BaseModel):
    """Run options a client may set; `None` leaves the server's default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agents: int | None = Field(
        None, ge=1, le=MAX_AGENTS, description="heavy, heavy-rank: agents (default: planner)"
    )
    max_agents: int | None = Field(
        None, ge=1, le=MAX_AGENTS, description="heavy, heavy-rank: most agents the planner uses"
    )
    n: int | None = Field(None, ge=1, le=MAX_SAMPLES, description="rank: samples; rank-tools: agents")
    verifier: ServedVerifier | None = Field(
        None, description="rank, rank-tools, heavy-rank: how answers are scored"
    )
    corpus: str | None = Field(None, min_length=1, max_length=64, description="corpus to search")
    max_steps: int | None = Field(None, ge=1, le=50, description="actions per agent")
    budget_tokens: int | None = Field(None, ge=1, le=10_000_000, description="whole-run token budget")
    budget_seconds: float | None = Field(
        None, gt=0, le=86_400, allow_inf_nan=False, description="whole-run wall-time budget"
    )
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    temperature: float | None = Field(None, ge=0, le=2, allow_inf_nan=False)


OPTION_NAMES: tuple[str, ...] = tuple(ResearchOptions.model_fields)


@dataclass(frozen=True)
class ResearchRequest:
    """One question to run: the question text, the mode, the backend (`""` = the server's default) and
    the options."""

    question: str
    mode: str  # a name in `openheavy.modes.MODES`
    backend: str = ""
    options: ResearchOptions = field(default_factory=ResearchOptions)


def parse_model_field(model: str, backends: list[str]) -> tuple[str, str]:
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
    return mode, backend
