"""What a person sees, one module per job:

- `display.live`: `LiveDisplay`, the view of a run as it happens (panels on a terminal, plain lines
  elsewhere);
- `display.render`: after-the-fact rendering of answers, summaries, past runs and whole traces;
- `display.formatting`: the short text both use (durations, counts, tokens, one-line clipping).
"""

from openheavy.display.live import LiveDisplay, describe_event
from openheavy.display.render import (
    render_agent_table,
    render_answer,
    render_ranking,
    render_runs,
    render_summary,
    render_trace,
)

__all__ = [
    "LiveDisplay",
    "describe_event",
    "render_agent_table",
    "render_answer",
    "render_ranking",
    "render_runs",
    "render_summary",
    "render_trace",
]
