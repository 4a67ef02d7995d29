"""Site-file settings of a MySQL or MariaDB store."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

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


class MysqlCaptureDetails(CaptureDetails):
    """What a MySQL/MariaDB capture records for its restore (``StoreCapture.details``). Points
    of earlier versions may also hold ``commit_guard`` (kept, unused)."""

    databases: list[str] = Field(min_length=1)
    dump_file: str
    gzip_level: int = 0
    uncompressed_bytes: int = 0
    snapshot_signal: str = ""
