"""The ScalarDB-backed nodes (harness/scalardb_node.py) with Cassandra as ScalarDB's storage.

A component (``ledger``, ``auditor``) keeps everything in ONE Cassandra cluster
(``scalar.db.storage=cassandra``, Consensus Commit): its two account namespaces and the
coordinator are keyspaces (:class:`CassandraDbs`). ScalarDB 3.16 keeps no table metadata of its
own on Cassandra: ``CassandraAdmin.getTableMetadata`` reads the cluster's schema through the
driver, and the system namespace it creates (``scalardb``) holds no table. So the keyspaces
alone (with their schema, which a snapshot carries) are the component's whole ScalarDB state.
ScalarDB creates the keyspaces itself (SimpleStrategy, its default replication factor 1: each
node holds other partitions).

The node's Java side is the same; only its properties differ (:meth:`CassandraDbs.properties`),
so :func:`harness.scalardb_node.node_process`, :func:`harness.scalardb_node.check` and
:class:`harness.scalardb_node.Cluster` work unchanged.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import scalardb_node as sn
from harness.cassandra_cluster import CassandraCluster


@dataclass(frozen=True)
class CassandraDbs:
    """The keyspaces of one component on one Cassandra cluster, and ScalarDB's names for them.
    Duck-types :class:`harness.scalardb_node.ComponentDbs` where the nodes need it
    (``component``, ``properties()``)."""

    component: str
    contact_points: tuple[str, ...]
    port: int
    namespace_a: str  # the node's "mysql" side: the my-* accounts
    namespace_b: str  # the node's "postgres" side: the pg-* accounts and the request records
    coordinator: str

    @classmethod
    def named(cls, component: str, prefix: str, cluster: CassandraCluster) -> CassandraDbs:
        return cls(
            component=component,
            contact_points=tuple(n.address for n in cluster.nodes),
            port=cluster.native_port,
            namespace_a=f"{prefix}_{component}_a",
            namespace_b=f"{prefix}_{component}_b",
            coordinator=f"{prefix}_{component}_coord",
        )

    @property
    def keyspaces(self) -> list[str]:
        """Every keyspace ScalarDB keeps this component in (what its store must capture)."""
        return [self.namespace_a, self.namespace_b, self.coordinator]

    def properties(self) -> dict[str, str]:
        """ScalarDB's settings: Cassandra storage, Consensus Commit, the node's namespaces."""
        return {
            "scalar.db.transaction_manager": "consensus-commit",
            "scalar.db.storage": "cassandra",
            "scalar.db.contact_points": ",".join(self.contact_points),
            "scalar.db.contact_port": str(self.port),
            "scalar.db.consensus_commit.coordinator.namespace": self.coordinator,
            "scalar.db.cross_partition_scan.enabled": "true",
            "pausepoint.node.namespace.mysql": self.namespace_a,
            "pausepoint.node.namespace.postgres": self.namespace_b,
        }

    def scalardb_settings(self) -> dict[str, Any]:
        """The component's ``scalardb:`` in a site file."""
        return {
            "namespaces": [self.namespace_a, self.namespace_b],
            "coordinator_namespace": self.coordinator,
        }

    def drop_keyspaces(self) -> None:
        from cassandra.cluster import Cluster
        from cassandra.policies import RoundRobinPolicy

        cluster = Cluster(list(self.contact_points), port=self.port, connect_timeout=30,
                          load_balancing_policy=RoundRobinPolicy(),
                          protocol_version=5)  # fmt: skip
        try:
            session = cluster.connect()
            session.default_timeout = 120
            for ks in self.keyspaces:
                session.execute(f"DROP KEYSPACE IF EXISTS {ks}")
        finally:
            cluster.shutdown()


def create_schema(dbs: CassandraDbs, workdir: Path) -> None:
    """ScalarDB's coordinator table and the node's keyspaces and tables (ScalarDB creates the
    keyspaces: SimpleStrategy, its default replication factor 1)."""
    config = sn.write_config(workdir / f"{dbs.component}-schema.properties", dbs.properties())
    r = sn._java(["schema"], config, timeout=300)
    if r.returncode != 0:
        raise sn.NodeError(f"creating the {dbs.component} schema failed:\n{r.stderr[-3000:]}")


def start_cluster(
    clusters: dict[str, CassandraCluster],
    prefix: str,
    workdir: Path,
    *,
    nodes_per_component: int = 2,
    release: str = "3.14",
) -> sn.Cluster:
    """Both components' schemas on their Cassandra clusters (``clusters``: component ->
    cluster; one cluster may serve both) and their nodes started."""
    sn.require_node()
    workdir.mkdir(parents=True, exist_ok=True)
    dbs = {c: CassandraDbs.named(c, prefix, clusters[c]) for c in sn.COMPONENTS}
    with concurrent.futures.ThreadPoolExecutor(len(dbs)) as pool:
        for f in [pool.submit(create_schema, d, workdir) for d in dbs.values()]:
            f.result()
    nodes = {
        c: [
            sn.node_process(dbs[c], f"{c}-{i}", workdir, release)  # type: ignore[arg-type]
            for i in range(nodes_per_component)
        ]
        for c in sn.COMPONENTS
    }
    cluster = sn.Cluster(dbs, nodes, workdir)  # type: ignore[arg-type]
    cluster.start()
    return cluster


def store_entry(
    name: str, dbs: CassandraDbs, cluster: CassandraCluster, **settings: Any
) -> dict[str, Any]:
    """A cassandra store's site-file entry capturing every keyspace of ``dbs``."""
    return {"name": name, **cluster.store_settings(dbs.keyspaces), **settings}


def site_dict(
    name: str,
    nodes: sn.Cluster,
    clusters: dict[str, CassandraCluster],
    store_settings: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A pausepoint site file (as a dict): per component its admin targets, ONE cassandra store
    (every node of its cluster, its keyspaces) and its ``scalardb:``. ``extra`` is merged at
    the top level (catalog, pause settings)."""
    data: dict[str, Any] = {
        "site": name,
        "catalog": {"path": "catalog"},
        "pause": {"call_timeout_ms": 5000, "drain_timeout_ms": 20000},
    }
    for comp in sn.COMPONENTS:
        dbs: CassandraDbs = nodes.dbs[comp]  # type: ignore[assignment]
        data[comp] = {
            "targets": {"static": nodes.targets(comp)},
            "stores": [
                store_entry(f"{comp}-cassandra", dbs, clusters[comp], **(store_settings or {}))
            ],
            "scalardb": dbs.scalardb_settings(),
        }
    data.update(extra)
    return data
