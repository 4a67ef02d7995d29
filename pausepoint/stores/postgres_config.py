"""Site-file settings of a PostgreSQL store."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

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


class PostgresCaptureDetails(CaptureDetails):
    """What a PostgreSQL capture records for its restore (``StoreCapture.details``)."""

    database: str
    schemas: list[str]  # the captured schemas: a restore checks, drops (replace) and loads them
    snapshot_id: str
    jobs: int
    dump_dir: str = "dump"  # the pg_dump -Fd directory, relative to the store's artifacts
    toc: str | None = None  # `pg_restore --list` of the dump; points before it have none
