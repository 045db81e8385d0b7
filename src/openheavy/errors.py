"""The one error tree. Every message says what happened and what to do next."""

from __future__ import annotations

from typing import Literal

BudgetName = Literal["steps", "tokens", "time"]
"""The budgets of a run: actions per agent, tokens and wall time."""


class OpenHeavyError(Exception):
    """Base of every error openheavy raises on purpose."""


class ConfigError(OpenHeavyError):
    """Bad settings, flags or config file."""


class SchemaError(OpenHeavyError):
    """An SQLite file openheavy cannot migrate: written by a newer openheavy, or another application's."""


class PromptTemplateError(OpenHeavyError):
    """A prompt template and the values given for it do not match: a bug, never the user's doing."""


class ModelError(OpenHeavyError):
    """A model backend failed."""


class ModelUnreachableError(ModelError):
    """No server answers at the configured URL."""


class ModelOutputError(ModelError):
    """The model's output could not be parsed into a valid action, even after a retry."""


class EmbeddedModelError(ModelError):
    """Embedded model files missing or corrupt, or llama-server would not start."""


class SearchError(OpenHeavyError):
    """A search backend failed."""


class UnknownCorpusError(SearchError):
    """The named corpus has no index."""


class EmptyIndexError(SearchError):
    """The index exists but holds no documents."""


class DamagedIndexError(SearchError):
    """An index file SQLite cannot read whole: damaged, truncated, or not a database at all."""


class DocumentNotFoundError(SearchError):
    """A document id that the index does not hold."""


class CorpusError(SearchError):
    """Files or documents that cannot be indexed: a missing path, a bad name, a malformed file."""


class AgentsFailedError(OpenHeavyError):
    """Every research agent of a run failed: the run has no answer to give."""


class DamagedRunStoreError(OpenHeavyError):
    """The run store's SQLite file is damaged, truncated, or not a database at all."""


class BudgetExceededError(OpenHeavyError):
    """A run's budget ran out: `budget` says which ("tokens" or "time"), the message what it stopped."""

    def __init__(self, message: str, *, budget: BudgetName = "tokens") -> None:
        super().__init__(message)
        self.budget = budget


class RunNotFoundError(OpenHeavyError):
    """No run with that id in the run store."""
