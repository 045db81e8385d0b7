"""Tables whose every row is one line at any terminal width (`runs`, `corpora`, `compare`, `model
status`): when the columns do not fit, the least needed are left out, and the one flexible column (a
question, an answer) is cut with an ellipsis. Nothing wraps into a column of fragments; scripts use
each command's `--json` instead."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich.table import Table
from rich.text import Text

__all__ = ["Column", "one_line_table"]

_GAP = 2  # cells are padded one space on each side, none at the table's edges
_FLEX_MIN = 12  # a flexible column narrower than this says too little: leave out another column first


@dataclass(frozen=True)
class Column:
    """One column: `keep` ranks how long it stays when the width runs short (higher stays longer);
    the `flexible` column takes the width that is left and is cut with an ellipsis."""

    header: str
    keep: int = 0
    justify: Literal["left", "right"] = "left"
    flexible: bool = False


def _width(cell: str | Text) -> int:
    return cell.cell_len if isinstance(cell, Text) else Text(cell).cell_len


def one_line_table(columns: Sequence[Column], rows: Sequence[Sequence[str | Text]], width: int) -> Table:
    """A table of `rows` (one cell per column) that fits `width` columns with every row on one line."""
    natural = [max([_width(c.header)] + [_width(row[i]) for row in rows]) for i, c in enumerate(columns)]
    shown = list(range(len(columns)))

    def fixed_width(indices: list[int]) -> int:
        return sum(natural[i] for i in indices if not columns[i].flexible) + _GAP * (len(indices) - 1)

    def fits(indices: list[int]) -> bool:
        room = width - fixed_width(indices)
        flexible = [i for i in indices if columns[i].flexible]
        return room >= min(_FLEX_MIN, natural[flexible[0]]) if flexible else room >= 0

    while not fits(shown) and len(shown) > 1:
        shown.remove(min(shown, key=lambda i: (columns[i].keep, -i)))
    table = Table(box=None, pad_edge=False, padding=(0, 1), show_edge=False, header_style="bold")
    room = width - fixed_width(shown)
    for i in shown:
        column = columns[i]
        size = max(1, min(natural[i], room)) if column.flexible else natural[i]
        table.add_column(column.header, justify=column.justify, no_wrap=True, overflow="ellipsis", width=size)
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    return table
