"""Site-file settings of a Cassandra store: the cluster (CQL contact points, keyspaces) and
every node (its address in the ring, JMX port, how commands reach it, its directories and how
to stop and start it)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pausepoint.executors import ExecutorConfig, LocalExecutorConfig
from pausepoint.secrets import SecretRef
from pausepoint.stores.base import CaptureDetails, StoreConfigBase


class CassandraNodeConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    address: str = Field(description="the node's address as the ring shows it (nodetool status)")
    jmx_host: str = Field("127.0.0.1", description="JMX host as seen ON the node")
    jmx_port: int = Field(7199, gt=0, lt=65536)
    executor: ExecutorConfig = Field(
        default_factory=LocalExecutorConfig, description="how commands reach the node"
    )
    java: str = Field("java", description="the Java 11+ runtime on the node (runs the agent)")
    agent_dir: str | None = Field(
        None,
        description="folder on the node holding NodeAgent.class; default: pausepoint's own "
        "compiled agent (local nodes) or uploaded into /tmp/pausepoint-agent-<user> (others)",
    )
    nodetool: list[str] = Field(
        default_factory=lambda: ["nodetool"], description="nodetool on the node (for repair)"
    )
    hints_dir: str | None = Field(
        None, description="the node's hints_directory; default: 'hints' beside the commitlog"
    )
    stop_command: list[str] = Field(
        default_factory=lambda: ["systemctl", "stop", "cassandra"],
        description="stops the node (restore); returns once it stopped",
    )
    start_command: list[str] = Field(
        default_factory=lambda: ["systemctl", "start", "cassandra"],
        description="starts the node (restore); pausepoint then waits for its CQL port",
    )


class CassandraConfig(StoreConfigBase):
    kind: Literal["cassandra"] = "cassandra"
    contact_points: list[str] = Field(min_length=1, description="CQL addresses of the cluster")
    port: int = Field(9042, gt=0, lt=65536, description="the CQL (native transport) port")
    user: str | None = None
    password: SecretRef | None = None
    jmx_user: str | None = None
    jmx_password: SecretRef | None = None
    keyspaces: list[str] = Field(
        min_length=1, description="the keyspaces ScalarDB uses (its namespaces, coordinator)"
    )
    nodes: list[CassandraNodeConfig] = Field(
        min_length=1, description="EVERY node of the cluster: each one is snapshotted"
    )
    flush_before_pause: bool = Field(
        True, description="nodetool flush of the keyspaces before the pause (short snapshots)"
    )
    min_free_disk_mb: int = Field(
        256, ge=0, description="free space each node's data directory needs (preflight)"
    )
    repair: bool = Field(True, description="nodetool repair of the keyspaces after a restore")
    connect_timeout_s: float = Field(30.0, gt=0, le=600)
    start_timeout_s: float = Field(600.0, gt=0, le=7200)

    @model_validator(mode="after")
    def _distinct(self) -> CassandraConfig:
        addresses = [n.address for n in self.nodes]
        if len(set(addresses)) != len(addresses):
            raise ValueError("nodes: each node's address must appear once")
        if len(set(self.keyspaces)) != len(self.keyspaces):
            raise ValueError("keyspaces: a keyspace is listed twice")
        return self


class CapturedNode(BaseModel):
    """One node of a capture: where it was in the ring and which files it gave."""

    model_config = ConfigDict(frozen=True)

    address: str
    host_id: str
    tokens: list[str]
    prefix: str  # artifacts of this node: "<prefix>/<keyspace>/<table>/<file>"
    tables: dict[str, int] = {}  # "ks.table" -> number of files


class CassandraCaptureDetails(CaptureDetails):
    """What a Cassandra capture records for its restore (``StoreCapture.details``)."""

    tag: str  # the snapshot tag on every node
    keyspaces: list[str]
    nodes: list[CapturedNode]
    table_ids: dict[str, str]  # "ks.table" -> the table id (uuid) at capture
    schema_file: str = "schema.cql"  # CREATE statements of the keyspaces (with their table ids)
    ring: str = "ring.json"  # token -> node of the whole ring, and the per-node tokens
    cassandra_version: str = ""
