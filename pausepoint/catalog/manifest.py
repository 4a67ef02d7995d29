"""The restore point manifest: the one record that makes a backup restorable.

Versioned (``format``); written last and atomically, so its existence is the finish marker.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pausepoint.errors import CatalogError, IncompleteRestorePointError
from pausepoint.stores.base import StoreCapture

MANIFEST_FORMAT = 1


class ClockBoundRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    offset_s: float
    uncertainty_s: float
    server: str
    measured_at: datetime


class TimelineEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    at: datetime
    component: str
    node: str
    event: Literal[
        "pause_sent",
        "pause_confirmed",
        "pause_failed",
        "checked_paused",
        "unpause_sent",
        "unpause_confirmed",
        "unpause_failed",
    ]
    detail: str | None = None


class PauseWindowRecord(BaseModel):
    """When writes were provably blocked on every node, and what it cost."""

    model_config = ConfigDict(frozen=True)

    paused: bool = True  # False: single transactional store, no pause was needed
    start: datetime  # last node confirmed Pause
    end: datetime  # first Unpause sent
    mid: datetime
    hold_ms: int  # the hold this run aimed for (derived, raised by min_hold_ms)
    drain_ms: float  # first Pause sent -> last node confirmed
    unpause_ms: float  # first Unpause sent -> last node confirmed
    write_stall_ms: float  # first Pause sent -> last Unpause confirmed
    timeline: list[TimelineEvent] = []

    @property
    def length_ms(self) -> float:
        return (self.end - self.start).total_seconds() * 1000


class ComponentRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    targets: list[str]
    stores: list[StoreCapture]


class RestorePoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    format: Literal[1] = MANIFEST_FORMAT
    id: str
    site: str
    created_at: datetime
    flow_run_id: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)  # given by whoever asked for the backup
    pausepoint_version: str
    window: PauseWindowRecord
    clock: ClockBoundRecord | None = None
    components: dict[str, ComponentRecord] = Field(min_length=1)

    def store(self, name: str) -> tuple[str, StoreCapture]:
        for comp_name, comp in self.components.items():
            for s in comp.stores:
                if s.name == name:
                    return comp_name, s
        raise IncompleteRestorePointError(
            f"restore point {self.id} has no store {name!r}; it holds "
            f"{', '.join(s.name for c in self.components.values() for s in c.stores)}: restore "
            "a point made with this store, or a target that names only the point's stores"
        )


# --- reading and writing --------------------------------------------------------------------


def explain_validation(err: ValidationError, limit: int = 5) -> str:
    parts = []
    for e in err.errors()[:limit]:
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        parts.append(f"{where}: {e['msg']}")
    more = len(err.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def load_versioned(data: bytes, source: str, what: str, current: int) -> dict[str, Any]:
    """The JSON object of a versioned catalog file, or CatalogError saying what to do."""
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatalogError(
            f"{what} {source} is not valid JSON ({exc}): the file is damaged. Restore it from a "
            "copy of the catalog; until then the record it holds cannot be used."
        ) from exc
    if not isinstance(obj, dict):
        raise CatalogError(
            f"{what} {source} holds a JSON {type(obj).__name__}, not an object: the file is "
            "damaged. Restore it from a copy of the catalog."
        )
    fmt = obj.get("format")
    if type(fmt) is not int or fmt != current:  # true == 1 in Python, not in a format field
        if type(fmt) is int and fmt > current:
            hint = (
                "it was written by a newer pausepoint. Upgrade pausepoint to read it; do not "
                "edit the file."
            )
        else:
            hint = (
                "it was not written by pausepoint or is damaged. Restore it from a copy of the "
                "catalog."
            )
        raise CatalogError(
            f"{what} {source} has format {fmt!r}, this pausepoint reads format {current}: {hint}"
        )
    return obj


def parse_manifest(data: bytes, source: str) -> RestorePoint:
    """Read a manifest; CatalogError names the file and what to do when it cannot be used."""
    obj = load_versioned(data, source, "manifest", MANIFEST_FORMAT)
    try:
        return RestorePoint.model_validate(obj)
    except ValidationError as exc:
        raise CatalogError(
            f"manifest {source} does not describe a valid restore point "
            f"({explain_validation(exc)}): it was damaged or edited. Restore it from a copy of "
            "the catalog; the point cannot be restored until then."
        ) from None


def dump_manifest(point: RestorePoint) -> bytes:
    return point.model_dump_json(indent=2).encode() + b"\n"
