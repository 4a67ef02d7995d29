"""The ``rds`` store's site-file settings (RDS instances and Aurora clusters, MySQL, MariaDB and
PostgreSQL engines) and what a capture records for its restore."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, model_validator

from pausepoint.errors import ConfigError
from pausepoint.stores._aws import AwsStoreConfig
from pausepoint.stores.base import CaptureDetails

IDENTIFIER = r"^[A-Za-z][A-Za-z0-9-]{0,62}$"
ENGINES = ("mysql", "mariadb", "postgres", "aurora-mysql", "aurora-postgresql")


class RdsConfig(AwsStoreConfig):
    """One RDS DB instance or one Aurora DB cluster whose automated backups allow a restore to
    any second of their retention. A restore makes a NEW instance or cluster (``restore_as``):
    RDS never restores over the source, so the site is switched to the new endpoint after."""

    kind: Literal["rds"] = "rds"
    instance: str | None = Field(
        None, pattern=IDENTIFIER, description="the source DB instance identifier (RDS)"
    )
    cluster: str | None = Field(
        None, pattern=IDENTIFIER, description="the source DB cluster identifier (Aurora)"
    )
    min_retention_days: int = Field(
        1, ge=1, le=35, description="preflight refuses a shorter automated backup retention"
    )
    restore_as: str | None = Field(
        None,
        pattern=IDENTIFIER,
        description="restore targets: the identifier of the new instance or cluster",
    )
    instance_class: str | None = Field(
        None,
        pattern=r"^db\.[a-z0-9.]+$",
        description="class of the restored instance (Aurora: of the cluster's instance); "
        "default: the source's",
    )
    subnet_group: str | None = Field(None, description="DB subnet group of the restored one")
    security_groups: list[str] = Field(
        default_factory=list, description="VPC security group ids of the restored one"
    )
    parameter_group: str | None = Field(None, description="DB parameter group")
    cluster_parameter_group: str | None = Field(
        None, description="Aurora: DB cluster parameter group"
    )

    @model_validator(mode="after")
    def _one_source(self) -> RdsConfig:
        if (self.instance is None) == (self.cluster is None):
            raise ValueError(
                "give exactly one of 'instance' (an RDS DB instance) or 'cluster' (an Aurora "
                "DB cluster)"
            )
        return self

    @property
    def source(self) -> str:
        return str(self.instance or self.cluster)

    @property
    def is_cluster(self) -> bool:
        return self.cluster is not None

    @property
    def cluster_instance(self) -> str:
        """The instance a cluster restore adds to the new cluster."""
        return f"{self.restore_as}-1"[:63]

    def retarget(self, overrides: Mapping[str, Any]) -> RdsConfig:
        new = super().retarget(overrides)
        assert isinstance(new, RdsConfig)
        if (new.instance, new.cluster) != (self.instance, self.cluster):
            raise ConfigError(
                f"store {self.name!r}: a restore target cannot change the source "
                "instance/cluster; give restore_as (the new identifier) instead"
            )
        if new.restore_as is None or new.restore_as.casefold() == self.source.casefold():
            raise ConfigError(
                f"store {self.name!r}: an RDS point-in-time restore creates a NEW "
                f"{'cluster' if self.is_cluster else 'instance'}; give its identifier as "
                f"restore_as in the restore target's entry for this store (e.g. restore_as: "
                f"{self.source}-restored), different from {self.source!r}"
            )
        return new


class RdsCaptureDetails(CaptureDetails):
    point_id: str
    region: str
    endpoint_url: str | None = None
    source: str
    is_cluster: bool = False
    engine: str = ""
    engine_version: str = ""
    instance_class: str = ""  # the source's (Aurora: its writer's)
    retention_days: int = 0
    earliest: datetime | None = None
    latest: datetime | None = None
