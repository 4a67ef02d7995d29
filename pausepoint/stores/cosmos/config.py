"""Site-file settings of a Cosmos DB store, and what its capture records."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from pausepoint.credentials import AzureCredentials
from pausepoint.secrets import SecretRef
from pausepoint.stores.base import CaptureDetails, StoreConfigBase

_NAME = r"^[a-z0-9][a-z0-9-]{1,42}[a-z0-9]$"  # Cosmos DB account names: 3-44, lower case


class CosmosConfig(StoreConfigBase):
    kind: Literal["cosmos"] = "cosmos"
    subscription_id: str = Field(
        pattern=r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$",
        description="the Azure subscription of the account",
    )
    resource_group: str = Field(min_length=1, max_length=90)
    account: str = Field(pattern=_NAME, description="the Cosmos DB account ScalarDB writes to")
    location: str = Field(
        pattern=r"^[a-z0-9]+$", description="the account's write region, e.g. westus2"
    )
    databases: list[str] = Field(
        min_length=1,
        description=(
            "ScalarDB's databases in the account: its namespaces and the coordinator's "
            "(`coordinator`); a restore brings back exactly these"
        ),
    )
    credentials: AzureCredentials = AzureCredentials(source="default")
    management_endpoint: str = Field(
        "https://management.azure.com",
        pattern=r"^https://[A-Za-z0-9.-]+(:\d+)?/?$",
        description="Azure Resource Manager (another cloud's, e.g. https://management.usgovcloudapi.net)",
    )
    ca_file: str | None = Field(
        None, description="a CA bundle for a private Resource Manager endpoint; default: system"
    )
    # Restore target settings (a restore always creates a NEW account).
    restore_as: str | None = Field(
        None,
        pattern=_NAME,
        description="restore only: the name of the new account the point is restored into",
    )
    repair_command: list[str] | None = Field(
        None,
        min_length=1,
        description=(
            "restore only: the command that re-installs ScalarDB's stored procedures on the new "
            "account, e.g. the Schema Loader with --cosmos --repair-all; `{endpoint}` and "
            "`{account}` in an argument are replaced; no secret belongs here (use repair_env)"
        ),
    )
    repair_env: dict[str, SecretRef] = Field(
        default_factory=dict,
        description="restore only: environment of repair_command, by secret reference",
    )
    repair_timeout_s: float = Field(900, gt=0)
    poll_interval_s: float = Field(
        15, ge=0, description="how often a long-running Azure operation is polled"
    )
    restore_timeout_s: float = Field(
        6 * 3600, gt=0, description="how long a restored account may take to be created"
    )


class CosmosCaptureDetails(CaptureDetails):
    """What a Cosmos DB capture records for its restore."""

    account: str
    resource_group: str
    location: str
    restorable_id: str  # the restorable account's resource id: the restore's source
    databases: dict[str, list[str]]  # database -> containers at capture
    oldest_restorable: datetime
    consistency: str  # the source's default consistency level (a restore sets Strong)
