"""Tables for people: a header and aligned columns, one definition per column.

``POINT_COLUMNS`` is what `pausepoint points list` shows of each restore point; a column is
added by adding one ``Column`` to it (its header, how to read the value, its alignment).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pausepoint.catalog.manifest import RestorePoint

T = TypeVar("T")


@dataclass(frozen=True)
class Column(Generic[T]):
    header: str
    value: Callable[[T], str]
    right: bool = False  # numbers align right


def render(columns: Sequence[Column[T]], rows: Iterable[T], gap: str = "  ") -> list[str]:
    """The header line and one line per row, each column as wide as its widest cell; the last
    column is not padded (no trailing blanks)."""
    cells = [[c.header for c in columns]] + [[c.value(r) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    out = []
    for line in cells:
        parts = [
            cell.rjust(w) if col.right else cell.ljust(w)
            for cell, w, col in zip(line, widths, columns, strict=True)
        ]
        out.append(gap.join(parts).rstrip())
    return out


def _utc(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _stores(p: RestorePoint) -> list[Any]:
    return [s for c in p.components.values() for s in c.stores]


POINT_COLUMNS: list[Column[RestorePoint]] = [
    Column("POINT", lambda p: p.id),
    Column("MID-TIME (UTC)", lambda p: _utc(p.window.mid)),
    Column("STALL ms", lambda p: f"{p.window.write_stall_ms:.1f}", right=True),
    Column("COMPONENTS", lambda p: "+".join(p.components)),
    Column("STORES", lambda p: str(len(_stores(p))), right=True),
    Column("SIZE MB", lambda p: f"{sum(s.total_bytes for s in _stores(p)) / 1e6:,.1f}", right=True),
]
