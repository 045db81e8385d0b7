"""openheavy: an open Heavy mode for any language model.

    from openheavy import Heavy
    result = Heavy(model="local", corpus="pydocs").run("How do I ...?", mode="heavy")
    print(result.answer, result.citations, result.figures)

The names below are imported on first use, so `import openheavy.types` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Heavy",
    "OpenHeavyError",
    "RunOptions",
    "RunResult",
    "Settings",
    "__version__",
    "load_settings",
]

_LAZY = {
    "Heavy": "openheavy.api",
    "RunOptions": "openheavy.modes",
    "RunResult": "openheavy.api",
    "Settings": "openheavy.config",
    "load_settings": "openheavy.config",
    "OpenHeavyError": "openheavy.errors",
}

if TYPE_CHECKING:
    from openheavy.api import Heavy, RunResult
    from openheavy.config import Settings, load_settings
    from openheavy.errors import OpenHeavyError
    from openheavy.modes import RunOptions


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'openheavy' has no attribute {name!r}")
