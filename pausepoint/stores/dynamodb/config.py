"""The ``dynamodb`` store's site-file settings and what a capture records for its restore."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pausepoint.errors import ConfigError
from pausepoint.stores._aws import AwsStoreConfig
from pausepoint.stores.base import CaptureDetails

NAMESPACE = r"^[A-Za-z0-9_]+$"
# DynamoDB table names: 3-255 of [A-Za-z0-9_.-]; a prefix is their start.
PREFIX = r"^[A-Za-z0-9_.-]{0,120}$"


class DynamoConfig(AwsStoreConfig):
    """The tables of ScalarDB namespaces in one account and region. ScalarDB names a table
    ``<prefix><namespace>.<table>`` (its ``scalar.db.dynamo.namespace.prefix`` is
    ``table_prefix`` here)."""

    kind: Literal["dynamodb"] = "dynamodb"
    namespaces: list[Annotated[str, Field(pattern=NAMESPACE)]] = Field(
        min_length=1,
        description="ScalarDB namespaces whose tables this store holds (e.g. [scalar] for a "
        "Ledger, [auditor] for an Auditor)",
    )
    coordinator_namespace: str | None = Field(
        "coordinator",
        pattern=NAMESPACE,
        description="ScalarDB's coordinator namespace (its table 'state'); null when another "
        "store holds it",
    )
    metadata_namespace: str | None = Field(
        "scalardb",
        pattern=NAMESPACE,
        description="ScalarDB's table metadata namespace (its table 'metadata'; ScalarDB's "
        "scalar.db.dynamo.table_metadata.namespace): restored with the tables so ScalarDB "
        "finds them under a new prefix; null when another store of the site holds it",
    )
    table_prefix: str = Field(
        "",
        pattern=PREFIX,
        description="ScalarDB's scalar.db.dynamo.namespace.prefix; in a restore target: the "
        "prefix the restored tables get (side by side)",
    )
    in_place: bool = Field(
        False,
        description="restore targets only: restore over the site's own tables (ScalarDB's "
        "alias procedure, which deletes them); without it a restore must give a new "
        "table_prefix and leaves the originals alone",
    )
    parallel_tables: int = Field(4, ge=1, le=32, description="tables restored at once")

    @property
    def all_namespaces(self) -> list[str]:
        extra = [n for n in (self.coordinator_namespace, self.metadata_namespace) if n]
        return list(dict.fromkeys([*self.namespaces, *extra]))

    def retarget(self, overrides: Mapping[str, Any]) -> DynamoConfig:
        """A restore target either names a new table prefix (side by side: the safer default,
        the originals stay) or says ``in_place: true`` (ScalarDB's alias procedure)."""
        new = super().retarget(overrides)
        assert isinstance(new, DynamoConfig)
        if (new.region, new.endpoint_url) != (self.region, self.endpoint_url):
            raise ConfigError(
                f"store {self.name!r}: a DynamoDB point-in-time restore writes into the source "
                "tables' own account and region; remove region/endpoint_url from the restore "
                "target (restore side by side with a new table_prefix instead)"
            )
        same = new.table_prefix == self.table_prefix
        if new.in_place and not same:
            raise ConfigError(
                f"store {self.name!r}: the restore target sets both in_place: true and another "
                f"table_prefix ({new.table_prefix!r}); give one of them"
            )
        if same and not new.in_place:
            raise ConfigError(
                f"store {self.name!r}: a DynamoDB restore goes side by side unless asked: give "
                "a new table_prefix in the restore target's entry for this store (e.g. "
                f"table_prefix: restored_{self.table_prefix}), so the restored tables are new "
                "ones and the originals stay; or give in_place: true to replace the site's "
                "tables by ScalarDB's alias procedure (with --replace and the nodes stopped)"
            )
        return new


class DynamoTableSettings(BaseModel):
    """One table as captured: its name, restorable window then, and the settings a restore
    resets (PITR, billing and capacity, auto scaling, TTL, tags, streams, deletion
    protection)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    key: str  # "<namespace>.<table>": the name without the prefix
    name: str  # the full table name
    arn: str = ""
    earliest: datetime | None = None
    latest: datetime | None = None
    pitr_recovery_days: int | None = None
    billing_mode: Literal["PROVISIONED", "PAY_PER_REQUEST"] = "PAY_PER_REQUEST"
    read_capacity: int | None = None
    write_capacity: int | None = None
    ttl_attribute: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    stream_view_type: str | None = None
    deletion_protection: bool = False
    # application-autoscaling, as described (ResourceId "table/<name>[/index/<index>]")
    scalable_targets: list[dict[str, Any]] = Field(default_factory=list)
    scaling_policies: list[dict[str, Any]] = Field(default_factory=list)


class DynamoCaptureDetails(CaptureDetails):
    point_id: str
    region: str
    endpoint_url: str | None = None
    table_prefix: str = ""
    tables: list[DynamoTableSettings] = Field(default_factory=list)
