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


class FetchError(SearchError):
    """A web page could not be fetched or read. `url` is the page asked for, `reason` a short code
    ("refused", "timeout", "http-status", "content-type", "anti-bot", "login", "empty", ...)."""

    def __init__(self, message: str, *, url: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.url = url
        self.reason = reason


class AddressRefusedError(FetchError):
    """The SSRF guard refused a connection: the host resolves to an address that is not public
    (loopback, private, link-local, cloud metadata, ...) and is not on the allow-list. `chain` holds
    the URLs that redirected to the refused one, first to last."""

    def __init__(
        self,
        message: str,
        *,
        host: str,
        port: int,
        address: str,
        why: str,
        url: str = "",
        chain: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, url=url, reason="refused")
        self.host = host
        self.port = port
        self.address = address
        self.why = why  # "loopback", "private", "cloud metadata", ...
        self.chain = chain


class PageUnreadableError(FetchError):
    """A page was fetched (or tried) but holds nothing a reader could cite: an anti-bot wall, a login
    page, no text after extraction, an unsupported content type, an HTTP error or a timeout."""


class BudgetExceededError(OpenHeavyError):
    """A run's budget ran out: `budget` says which ("tokens" or "time"), the message what it stopped."""

    def __init__(self, message: str, *, budget: BudgetName = "tokens") -> None:
        super().__init__(message)
        self.budget = budget


class RunNotFoundError(OpenHeavyError):
    """No run with that id in the run store."""


class SandboxUnavailableError(OpenHeavyError):
    """The isolation asked for to run code (bubblewrap) is missing or unusable on this machine."""


class ServerBusyError(OpenHeavyError):
    """The server is already running as many questions as it may at once."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
