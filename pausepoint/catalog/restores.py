"""Restore journals: how far a long restore of a point into one target got, so a restore of the
same point into the same target resumes after a crash instead of starting over.

Kept beside the point, ``<site>/points/<point id>/restores/<restore id>.json``; the restore id
is derived from the point and where each store is restored (``restore_id``). Written only when
a store records a step (a kind whose restore is long: see ``Store.restore``'s ``journal``);
deleted with the point.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pausepoint.catalog.manifest import explain_validation, load_versioned
from pausepoint.errors import CatalogError

RESTORE_FORMAT = 1
DONE = "done"  # the step a store's entry gets once its restore and settings finished


class StoreStep(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    step: str
    data: dict[str, Any] = Field(default_factory=dict)
    at: datetime


class RestoreJournalRecord(BaseModel):
    """One restore of a point into one target: the step each store reached."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal[1] = RESTORE_FORMAT
    site: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    point_id: str = Field(pattern=r"^\d{8}T\d{6}Z-[0-9a-f]{4}$")
    restore_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    # store name -> where it is restored (canonical locations), so a reader can tell the target
    target: dict[str, list[str]] = Field(default_factory=dict)
    started_at: datetime
    updated_at: datetime
    runs: int = Field(1, ge=1, description="how many restore runs worked on it")
    stores: dict[str, StoreStep] = Field(default_factory=dict)


def restore_id(point_id: str, target: Mapping[str, list[str]]) -> str:
    """The same point into the same places gives the same id (16 hex digits)."""
    text = point_id + "".join(
        f"\n{s}=" + ",".join(sorted(locs)) for s, locs in sorted(target.items())
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_journal(data: bytes, source: str) -> RestoreJournalRecord:
    obj = load_versioned(data, source, "restore journal", RESTORE_FORMAT)
    try:
        return RestoreJournalRecord.model_validate(obj)
    except ValidationError as exc:
        raise CatalogError(
            f"restore journal {source} is invalid ({explain_validation(exc)}): it was damaged "
            "or edited. Delete it: the next restore of this point into this target then starts "
            "from the beginning (with --replace)."
        ) from None


def dump_journal(record: RestoreJournalRecord) -> bytes:
    return record.model_dump_json(indent=2).encode() + b"\n"
