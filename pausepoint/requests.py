"""What a person asks of each flow: one pydantic model per flow.

Prefect turns a flow's pydantic parameter into a form in the UI and into the deployment's
parameter schema, so the server refuses a run whose parameters break a constraint here (HTTP 409
through the API) before anything starts. Checks that need more than the schema (the restore
confirmation) live in validators; they fail the run before its first task, naming the field.

Secrets are never parameters: a site file names them by reference (pausepoint.secrets).
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from pausepoint.errors import ConfigError
from pausepoint.validation import problem, where

SiteFile = Annotated[
    str,
    Field(
        min_length=1,
        title="Site file",
        description="Path of the site file (YAML), relative to the worker's working directory "
        "(the checkout set by PAUSEPOINT_HOME) or absolute.",
        examples=["deployments/production/site.yaml"],
    ),
]
PointId = Annotated[
    str,
    Field(
        pattern=r"^\d{8}T\d{6}Z-[0-9a-f]{4}$",
        title="Restore point id",
        description="As listed by `pausepoint points list`, e.g. 20261128T003119Z-3f9a.",
        examples=["20261128T003119Z-3f9a"],
    ),
]
_LABEL_KEY = r"^[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?$"


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


R = TypeVar("R", bound=_Request)


class BackupRequest(_Request):
    """Back up every component of a site at one restore point."""

    site_file: SiteFile
    labels: dict[
        Annotated[str, Field(pattern=_LABEL_KEY)], Annotated[str, Field(max_length=128)]
    ] = Field(
        default_factory=dict,
        title="Labels",
        description="Recorded in the restore point (e.g. reason: pre-upgrade).",
        # Pydantic states the key rule as patternProperties only, which lets any other key
        # through the server's schema check; refuse those there too.
        json_schema_extra={"additionalProperties": False},
    )


class RestoreRequest(_Request):
    """Restore Ledger and Auditor of a site to one restore point."""

    site_file: SiteFile
    point_id: PointId
    confirm: str = Field(
        title="Confirm",
        description="Type the restore point id again: a restore overwrites databases.",
    )
    target_file: str | None = Field(
        None,
        title="Restore target file",
        description="Per-store settings to restore into instead of the site's own databases.",
    )
    replace: bool = Field(
        False,
        title="Replace existing data",
        description="Drop what the target databases hold; without it a non-empty target is "
        "refused.",
    )

    @field_validator("confirm")
    @classmethod
    def _confirmed(cls, confirm: str, info: ValidationInfo) -> str:
        # A field validator (not a model one) so that the error names the field `confirm`.
        # point_id is validated first; when it is wrong, its own error says so.
        point_id = info.data.get("point_id")
        if point_id is not None and confirm != point_id:
            raise ValueError(
                f"is {confirm!r} but must repeat point_id {point_id!r}: type the restore point "
                "id in both fields to confirm the restore"
            )
        return confirm


class WatchdogRequest(_Request):
    """Unpause what a dead backup run of the site left paused."""

    site_file: SiteFile


class CheckRequest(_Request):
    """Run every preflight check of a backup of the site; pauses nothing."""

    site_file: SiteFile


class PruneRequest(_Request):
    """Delete old restore points of a site by retention; sweep failed runs' files."""

    site_file: SiteFile
    keep_last: int = Field(
        7, ge=1, le=10_000, title="Keep last", description="The newest N points are kept."
    )
    keep_daily_days: int = Field(
        30,
        ge=0,
        le=3_650,
        title="Keep one a day for (days)",
        description="For each of the last D days, the newest point of that day is kept.",
    )
    dry_run: bool = Field(False, title="Dry run", description="Report what would be deleted.")


class DrillRequest(_Request):
    """Restore the newest point of a site into a scratch target and verify it."""

    site_file: SiteFile
    target_file: str = Field(
        min_length=1,
        title="Scratch target file",
        description="Restore target that points at scratch databases, never the site's own; "
        "they are replaced by each drill.",
        examples=["deployments/production/drill-target.yaml"],
    )
    wait_restorable_s: int = Field(
        600,
        ge=0,
        le=86_400,
        title="Wait for a point-in-time point (s)",
        description="A point whose point-in-time stores have not archived up to its time yet "
        "is waited for this long before the drill fails saying so.",
    )


def parse_request(model: type[R], **fields: object) -> R:
    """``model(**fields)``, or a ConfigError that names each wrong field and what to give."""
    try:
        return model(**fields)
    except ValidationError as exc:
        problems = []
        for e in exc.errors(include_url=False):
            text = problem(e)
            if e["type"] == "extra_forbidden":
                text = (
                    f"is not a parameter of {model.__name__}; it takes {sorted(model.model_fields)}"
                )
            problems.append(f"\n  - {where(e['loc'])}: {text}")
        raise ConfigError(f"invalid {model.__name__}:{''.join(problems)}") from None
