"""Site-file settings of a PostgreSQL store."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from pausepoint.secrets import SecretRef
from pausepoint.stores.base import CaptureDetails, StoreConfigBase


class PostgresConfig(StoreConfigBase):
    kind: Literal["postgres"] = "postgres"
    host: str = "127.0.0.1"
    port: int = Field(5432, gt=0, lt=65536)
    user: str
    password: SecretRef | None = None
    database: str = Field(description="the database that holds ScalarDB's schemas")
    schemas: list[str] = Field(
        default_factory=list, description="schemas to capture; empty means every user schema"
    )
    jobs: int = Field(2, ge=1, le=32, description="parallel pg_dump / pg_restore jobs")
    bin_dir: str | None = Field(None, description="folder of pg_dump/pg_restore; default: PATH")
    # --- point-in-time recovery (pitr: wal); docs/stores.md -------------------------------
    pitr: Literal["wal"] | None = Field(
        None,
        description=(
            "wal: nothing is copied per backup; a restore replays archived WAL onto a base "
            "backup up to the point's time (needs archive_mode and archive_command, see "
            "docs/stores.md)"
        ),
    )
    archive_dir: str | None = Field(
        None,
        description=(
            "pitr: wal: the directory the server's archive_command copies WAL into "
            "(<archive_dir>/wal) and pausepoint keeps base backups in (<archive_dir>/base); "
            "absolute"
        ),
    )
    base_backup_max_age_s: int = Field(
        86_400,
        ge=60,
        description="pitr: wal: preflight takes a new base backup when the newest is older",
    )
    restore_dir: str | None = Field(
        None,
        description=(
            "pitr: wal, restore targets: the data directory of the NEW server the restore "
            "creates (it listens on host:port of the target); absolute"
        ),
    )
    os_user: str | None = Field(
        None,
        description=(
            "pitr: wal, restore targets: the OS user that owns restore_dir and runs the "
            "restored server (PostgreSQL refuses root); default: the user running pausepoint"
        ),
    )
    recovery_timeout_s: int = Field(
        3_600, gt=0, description="pitr: wal: how long a restore waits for recovery to end"
    )

    @model_validator(mode="after")
    def _pitr_settings(self) -> PostgresConfig:
        if self.pitr == "wal" and not self.archive_dir:
            raise ValueError(
                "pitr: wal needs archive_dir: the directory archive_command copies WAL into "
                "(see docs/stores.md)"
            )
        for name in ("archive_dir", "restore_dir"):
            value = getattr(self, name)
            if value is not None and not Path(value).is_absolute():
                raise ValueError(f"{name} must be an absolute path")
        return self

    def store_mode(self) -> str | None:
        return self.pitr


class PostgresCaptureDetails(CaptureDetails):
    """What a PostgreSQL capture records for its restore (``StoreCapture.details``)."""

    database: str
    schemas: list[str]  # the captured schemas: a restore checks, drops (replace) and loads them
    snapshot_id: str
    jobs: int
    dump_dir: str = "dump"  # the pg_dump -Fd directory, relative to the store's artifacts
    toc: str | None = None  # `pg_restore --list` of the dump; points before it have none


class PostgresWalDetails(CaptureDetails):
    """What a ``pitr: wal`` capture records: where the source's WAL archive and base backups
    are, and what the fingerprint covers (the schemas)."""

    database: str
    schemas: list[str]
    archive_dir: str  # the SOURCE's archive: a restore replays from it
    server_version: str = ""
    # the base backup the point will replay from, as far as known at capture time
    base_backup: str | None = None
    base_ready_at: datetime | None = None
