"""The restore point manifest: the one record that makes a backup restorable.

Versioned (``format``); written last and atomically, so its existence is the finish marker.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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
        "pause_sent", "pause_confirmed", "pause_failed", "checked_paused",
        "unpause_sent", "unpause_confirmed", "unpause_failed",
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
    pausepoint_version: str
    window: PauseWindowRecord
    clock: ClockBoundRecord | None = None
    components: dict[str, ComponentRecord] = Field(min_length=1)

    def store(self, name: str) -> tuple[str, StoreCapture]:
        for comp_name, comp in self.components.items():
            for s in comp.stores:
                if s.name == name:
                    return comp_name, s
        raise KeyError(name)
