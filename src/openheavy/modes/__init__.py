"""The modes, one strategy object each, and the one registry of their names.

`direct` (one model call), `single` (one research agent), `heavy` (a planned team, synthesized),
`heavy-rank` (the team's trajectories ranked), `rank` (N sampled answers ranked), `rank-tools` (N
research agents ranked). The CLI, the library API and the eval harness all take names from `MODES`.
"""

from __future__ import annotations

from openheavy.errors import ConfigError
from openheavy.modes.base import Mode, Outcome, RunContext, RunOptions
from openheavy.modes.direct import DirectMode
from openheavy.modes.heavy import HeavyMode, HeavyRankMode
from openheavy.modes.rank import RankMode, RankToolsMode
from openheavy.modes.single import SingleMode

MODES: dict[str, Mode] = {
    mode.name: mode
    for mode in (DirectMode(), SingleMode(), HeavyMode(), HeavyRankMode(), RankMode(), RankToolsMode())
}


def get_mode(name: str) -> Mode:
    """The mode called `name`; an unknown name raises `ConfigError` listing the known ones."""
    try:
        return MODES[name]
    except KeyError:
        raise ConfigError(f"unknown mode {name!r}; choose one of {', '.join(MODES)}") from None


__all__ = ["MODES", "Mode", "Outcome", "RunContext", "RunOptions", "get_mode"]
