"""Turn a `--model` string into a `ChatModel`.

Forms: `local`, `local:fast`, `local:tiny` (embedded llama-server), an OpenAI-compatible URL
(`http://host:8000/v1`, optionally `#model-name`), or the name of a profile in the config file.
A new backend is one module plus one line in `BACKENDS`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from openheavy.config import ModelProfile, Settings, config_file_path
from openheavy.errors import ConfigError
from openheavy.models.base import ChatModel
from openheavy.models.embedded import EmbeddedModel
from openheavy.models.openai_compat import OpenAICompatModel
from openheavy.models.weights import EMBEDDED_MODELS, embedded_spec

__all__ = ["BACKENDS", "ModelFactory", "resolve_model"]

ModelFactory = Callable[[str, Settings, str | None], ChatModel]


def _embedded(spec: str, settings: Settings, api_key: str | None) -> ChatModel:
    return EmbeddedModel(embedded_spec(spec), settings)


def _url(spec: str, settings: Settings, api_key: str | None) -> ChatModel:
    # A URL fragment never reaches the server, which makes it a clean place to name the model.
    base_url, _, model = spec.partition("#")
    key = (
        api_key
        or settings.api_key
        or os.environ.get("OPENHEAVY_API_KEY")
        or os.environ.get("OPENAI_API_KEY")
        or "none"
    )
    return OpenAICompatModel(
        base_url,
        model,
        api_key=key,
        timeout=settings.request_timeout,
        max_retries=settings.max_retries,
        temperature=settings.temperature,
    )


def _profile(name: str, profile: ModelProfile, settings: Settings, api_key: str | None) -> ChatModel:
    key = api_key or profile.resolved_api_key() or settings.api_key or os.environ.get("OPENAI_API_KEY")
    return OpenAICompatModel(
        profile.base_url,
        profile.model,
        api_key=key or "none",
        name=name,
        structured=profile.structured,
        timeout=settings.request_timeout,
        max_retries=settings.max_retries,
        temperature=settings.temperature,
        sampling=profile.sampling,
    )


# Keyed by what comes before the first ":" of the spec.
BACKENDS: dict[str, ModelFactory] = {
    "local": _embedded,
    "http": _url,
    "https": _url,
}


def resolve_model(spec: str, settings: Settings, api_key: str | None = None) -> ChatModel:
    """The model `spec` names. A configured profile wins over a built-in form of the same name;
    `api_key` (the `--api-key` flag) wins over every configured key."""
    spec = spec.strip()
    if spec in settings.profiles:
        return _profile(spec, settings.profiles[spec], settings, api_key)
    factory = BACKENDS.get(spec.split(":", 1)[0])
    if factory is not None:
        return factory(spec, settings, api_key)
    embedded = ", ".join(EMBEDDED_MODELS)
    profiles = ", ".join(sorted(settings.profiles)) or f"none configured in {config_file_path()}"
    raise ConfigError(
        f"unknown model {spec!r} — use one of: {embedded} (embedded), an OpenAI-compatible URL such as "
        f"http://localhost:8000/v1 (optionally #model-name), or a profile ({profiles})"
    )
