"""Leases: the record, written before pausing, of which nodes a run paused and until when.

The backup run writes its lease ``active`` before the first Pause and releases it after the last
Unpause. The watchdog looks for ``active`` leases past their deadline whose run is gone, unpauses
their nodes and marks the lease ``broken`` with the reason. A lease only ever leaves ``active``;
released and broken leases are kept as history (prune removes them). While its window is open
the run rewrites the lease every ``heartbeat_s`` (``heartbeat_at``), so a run that was killed
outright is known to be gone even where its orchestrator still reports it running.

Every write is conditional (``Catalog.write_lease``, ``Catalog._end_lease``): a lease is created
only if absent and rewritten only if unchanged since it was read (the driver's
``replace_if_unchanged``). When the run and the watchdog end the same lease at once, exactly one
transition lands; the other re-reads and returns that first record. A heartbeat never makes a
lease the watchdog broke active again (LeaseError instead).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pausepoint.catalog.manifest import explain_validation, load_versioned
from pausepoint.errors import CatalogError, LeaseError

LEASE_FORMAT = 1

LeaseState = Literal["active", "released", "broken"]

# Heartbeats a run may miss (a slow catalog write, a GC pause) before it counts as gone.
HEARTBEAT_MISSES = 3

# "component/host:port", as pausepoint.window.Node prints itself
_NODE = re.compile(r"^[a-z0-9][a-z0-9_-]*/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$")


class Lease(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal[1] = LEASE_FORMAT
    site: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    run_id: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
        description="the flow run id (or another id unique to the run); names the lease file",
    )
    owner: str = Field(description="who holds it, for people: flow run name, host and pid")
    nodes: list[str] = Field(min_length=1, description='"component/host:port" of every node')
    created_at: datetime
    deadline: datetime = Field(description="after this the watchdog may unpause the nodes")
    state: LeaseState = "active"
    broken_reason: str | None = None
    updated_at: datetime | None = None
    point_id: str | None = Field(None, description="the restore point the run was making")
    # A run killed outright can stay RUNNING in the Prefect API forever; its stopped heartbeat is
    # what tells the watchdog it is gone.
    heartbeat_at: datetime | None = Field(
        None, description="when the run last rewrote its lease (a sign of life)"
    )
    heartbeat_s: float | None = Field(
        None, gt=0, le=3600, description="how often the run promised to rewrite it"
    )

    @field_validator("nodes")
    @classmethod
    def _node_names(cls, nodes: list[str]) -> list[str]:
        bad = [n for n in nodes if not _NODE.match(n)]
        if bad:
            raise ValueError(f"nodes must be 'component/host:port', not {bad}")
        return nodes

    @field_validator("created_at", "deadline", "updated_at", "heartbeat_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("times must be timezone-aware (UTC)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Lease:
        if self.deadline < self.created_at:
            raise ValueError("deadline is before created_at")
        if (self.state == "broken") != (self.broken_reason is not None):
            raise ValueError("broken_reason is given exactly when state is 'broken'")
        if (self.heartbeat_at is None) != (self.heartbeat_s is None):
            raise ValueError("heartbeat_at and heartbeat_s are given together or not at all")
        return self

    def expired(self, now: datetime) -> bool:
        """True for an active lease past its deadline: the watchdog's candidates."""
        return self.state == "active" and now >= self.deadline

    def heartbeat_stale(self, now: datetime) -> bool:
        """True when the run missed HEARTBEAT_MISSES heartbeats in a row: it is dead or frozen.
        A lease without heartbeats is never stale (liveness then rests on the run's state)."""
        if self.heartbeat_at is None or self.heartbeat_s is None:
            return False
        return now - self.heartbeat_at > timedelta(seconds=HEARTBEAT_MISSES * self.heartbeat_s)


def parse_lease(data: bytes, source: str) -> Lease:
    try:
        obj = load_versioned(data, source, "lease", LEASE_FORMAT)
        return Lease.model_validate(obj)
    except CatalogError as exc:
        raise LeaseError(
            f"{exc} The nodes it names may still be paused: check them "
            "(`pausepoint unpause --site FILE` unpauses every node of the site)."
        ) from exc
    except ValidationError as exc:
        raise LeaseError(
            f"lease {source} is not a valid lease ({explain_validation(exc)}): it was damaged "
            "or edited. Check the nodes it names are unpaused (`pausepoint unpause --site "
            "FILE`), then delete the file."
        ) from None


def dump_lease(lease: Lease) -> bytes:
    return lease.model_dump_json(indent=2).encode() + b"\n"
