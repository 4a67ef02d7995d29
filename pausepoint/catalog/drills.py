"""Drill records: the result of one test restore of a restore point into scratch databases.

Written (atomically, like manifests and leases) under the point it drilled, one file per drill, so
a point's history of drills goes where the point goes and is deleted with it. The newest record of
a point says whether it is **verified**: known to restore and to match its fingerprints. Prune
never deletes the newest verified point.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pausepoint.catalog.manifest import explain_validation, load_versioned
from pausepoint.errors import CatalogError

DRILL_FORMAT = 1


class DrillCheck(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    passed: bool
    detail: str = ""


class DrillRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal[1] = DRILL_FORMAT
    site: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    point_id: str = Field(pattern=r"^\d{8}T\d{6}Z-[0-9a-f]{4}$")
    started_at: datetime
    finished_at: datetime
    passed: bool
    checks: list[DrillCheck] = Field(default_factory=list, description="in the order they ran")
    error: str | None = Field(None, description="why the drill failed: error type and message")
    targets: dict[str, str] = Field(
        default_factory=dict, description="store name -> where it was restored (host:port/db)"
    )
    target_file: str | None = None
    flow_run_id: str | None = None
    pausepoint_version: str

    @model_validator(mode="after")
    def _consistent(self) -> DrillRecord:
        if self.finished_at < self.started_at:
            raise ValueError("finished_at is before started_at")
        failed = [c.name for c in self.checks if not c.passed]
        if self.passed and (failed or self.error):
            raise ValueError("a passed drill has no failed check and no error")
        if not self.passed and not (failed or self.error):
            raise ValueError("a failed drill names a failed check or an error")
        return self


def parse_drill(data: bytes, source: str) -> DrillRecord:
    obj = load_versioned(data, source, "drill record", DRILL_FORMAT)
    try:
        return DrillRecord.model_validate(obj)
    except ValidationError as exc:
        raise CatalogError(
            f"drill record {source} is invalid ({explain_validation(exc)}): it was damaged or "
            "edited. Delete it (the point then counts as not drilled) or restore it from a copy "
            "of the catalog."
        ) from None


def dump_drill(record: DrillRecord) -> bytes:
    return record.model_dump_json(indent=2).encode() + b"\n"
