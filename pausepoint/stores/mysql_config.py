"""Site-file settings of a MySQL or MariaDB store."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from pausepoint.secrets import SecretRef
from pausepoint.stores.base import CaptureDetails, StoreConfigBase


class MysqlConfig(StoreConfigBase):
    kind: Literal["mysql"] = "mysql"
    host: str = "127.0.0.1"
    port: int = Field(3306, gt=0, lt=65536)
    user: str
    password: SecretRef | None = None
    databases: list[str] = Field(min_length=1, description="databases (ScalarDB namespaces)")
    database_map: dict[str, str] = Field(
        default_factory=dict,
        description="restore only: captured database name -> name to restore it as",
    )
    bin_dir: str | None = Field(None, description="folder of mariadb-dump/mysqldump; default: PATH")
    gzip_level: int = Field(
        0,
        ge=0,
        le=9,
        description=(
            "gzip level of the dump artifact; 0 (default) stores it uncompressed, which keeps "
            "the dump at full speed on small machines; 1 halves the size for ~10-20% speed "
            "when server, dump and compression share two cores"
        ),
    )

    # --- point-in-time recovery (pitr: binlog); docs/stores.md ----------------------------
    pitr: Literal["binlog"] | None = Field(
        None,
        description=(
            "binlog: nothing is copied per backup; a restore loads a base dump and replays the "
            "archived binary logs up to the point's time (one-second steps)"
        ),
    )
    archive_dir: str | None = Field(
        None,
        description=(
            "pitr: binlog: where pausepoint keeps base dumps (<archive_dir>/base) and the "
            "binary logs it fetches from the server (<archive_dir>/binlog); absolute"
        ),
    )
    base_dump_max_age_s: int = Field(
        86_400, ge=60, description="pitr: binlog: preflight takes a new base dump when older"
    )

    @model_validator(mode="after")
    def _pitr_settings(self) -> MysqlConfig:
        if self.pitr == "binlog" and not self.archive_dir:
            raise ValueError(
                "pitr: binlog needs archive_dir: where base dumps and fetched binary logs are "
                "kept (see docs/stores.md)"
            )
        if self.archive_dir is not None and not Path(self.archive_dir).is_absolute():
            raise ValueError("archive_dir must be an absolute path")
        return self

    def store_mode(self) -> str | None:
        return self.pitr


class MysqlCaptureDetails(CaptureDetails):
    """What a MySQL/MariaDB capture records for its restore (``StoreCapture.details``). Points
    of earlier versions may also hold ``commit_guard`` (kept, unused)."""

    databases: list[str] = Field(min_length=1)
    dump_file: str
    gzip_level: int = 0
    uncompressed_bytes: int = 0
    snapshot_signal: str = ""


class MysqlBinlogDetails(CaptureDetails):
    """What a ``pitr: binlog`` capture records: the databases and the SOURCE's archive."""

    databases: list[str] = Field(min_length=1)
    archive_dir: str
    server_version: str = ""
    base_dump: str | None = None  # the base dump the point will replay from, when known
