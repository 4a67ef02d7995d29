"""ScalarDB on Cassandra end to end: the ScalarDB-backed nodes (ledger and auditor, two each)
with Cassandra as ScalarDB's storage, under the workload, backed up through the backup flow
and restored through the restore flow, each restored point read back through ScalarDB and
judged by the checker; and the negative control.

Layout: the ledger on the session's 3-node cluster (127.0.0.1-3), the auditor on a 1-node
cluster of its own (127.0.0.4): Ledger and Auditor keep separate databases, and each store's
restore stops and starts its WHOLE cluster, so two components cannot share one cluster as two
stores. Each component's namespaces and coordinator are keyspaces (replication factor 1: every
node holds other partitions, so a transfer's records, its request record and its coordinator
state live on different nodes, and nothing repairs a node from another: ``repair: false``).
Each site component declares ``scalardb:`` (the coverage preflight: on Cassandra the table
metadata is the cluster's schema, captured with each keyspace).

What it proves: under 8 clients, three backups whose snapshots of every node of both clusters
were taken inside the pause each restore (whole clusters, nodes stopped first) to a state
ScalarDB reads (lazy recovery) as consistent with the point's window: balances, hash chains,
both components agree on everything acknowledged before the window, nothing sent after it.
The negative control: the same snapshots taken node by node, seconds apart, without a pause,
while the workload runs, restored the same way: the checker finds the tear (a transfer's
records present on one node and missing on another).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import scalardb_cassandra as sca
from harness import scalardb_node as sn
from harness.scalardb_checker import Verdict
from harness.scalardb_checker import check as check_copy
from harness.scalardb_workload import Entry, Workload, create_accounts, throughput
from pausepoint.admin.client import AdminCallError
from pausepoint.admin.grpc_client import GrpcAdminClient
from pausepoint.catalog.base import Catalog
from pausepoint.catalog.local import LocalDriver
from pausepoint.secrets import SecretResolver
from pausepoint.site import Target
from pausepoint.stores.base import CaptureContext, CaptureWindow, StoreCapture
from pausepoint.stores.cassandra.store import CassandraHandle, CassandraPrepared, CassandraStore
from pausepoint.stores.cassandra_config import CassandraConfig

pytestmark = [pytest.mark.integration]

BACKUPS = 3
CLIENTS = 8
GAP_S = 2.0  # between two nodes' snapshots in the negative control
STORE_SETTINGS = {"repair": False}  # replication factor 1: no replica to repair from
MEASURED: dict[str, float] = {}


# --- the auditor's cluster, the nodes, the site ----------------------------------------------


@pytest.fixture(scope="module")
def auditor_cassandra(servers_dir: Path):
    """A 1-node Cassandra cluster on 127.0.0.4 for the auditor (its own databases)."""
    from harness import cassandra_cluster as cc

    try:
        cluster = cc.CassandraCluster(servers_dir / "cassandra-auditor", addresses=("127.0.0.4",))
    except cc.CassandraUnavailable as exc:
        if os.environ.get("CI"):  # as tests/conftest.py: CI runs every test
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    # Started in the background: the session's cluster (the ledger's) starts meanwhile.
    started: dict[str, Any] = {}

    def start() -> None:
        try:
            started["seconds"] = cluster.start()
        except BaseException as exc:  # surfaced by the fixture that waits
            started["error"] = exc

    t = threading.Thread(target=start, name="auditor-cassandra")
    t.start()
    cluster.wait_started = lambda: (t.join(), started)  # type: ignore[attr-defined]
    try:
        yield cluster
    finally:
        t.join()
        cluster.stop()


@dataclass
class E2e:
    nodes: sn.Cluster
    clusters: dict[str, Any]
    site_file: Path
    catalog: Path
    site: str
    work: Path
    creations: list[Entry]
    log: list[Entry] = field(default_factory=list)
    points: list[str] = field(default_factory=list)
    torn: dict[str, tuple[StoreCapture, Path]] = field(default_factory=dict)
    torn_times: list[float] = field(default_factory=list)

    def store(self, component: str, cls: type[CassandraStore] = CassandraStore) -> CassandraStore:
        data = yaml.safe_load(self.site_file.read_text())
        entry = dict(data[component]["stores"][0])
        entry.pop("kind")
        return cls(CassandraConfig(**entry), SecretResolver())

    def check(self) -> dict[str, dict[str, Any]]:
        """Both components read through ScalarDB (lazy recovery), in parallel."""
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futures = {
                c: pool.submit(sn.check, self.nodes.dbs[c], self.work, 300) for c in sn.COMPONENTS
            }
            return {c: f.result() for c, f in futures.items()}


@pytest.fixture(scope="module")
def e2e(
    auditor_cassandra, cassandra_cluster, scalardb_node_cp, prefect_api, tmp_path_factory
) -> Iterator[E2e]:
    _, started = auditor_cassandra.wait_started()
    if "error" in started:
        raise started["error"]
    clusters = {"ledger": cassandra_cluster, "auditor": auditor_cassandra}
    work = tmp_path_factory.mktemp("cassandra-scalardb")
    prefix = f"cs{secrets.token_hex(3)}"
    t0 = time.monotonic()
    nodes = sca.start_cluster(clusters, prefix, work)
    MEASURED["schema + 4 nodes up, s"] = time.monotonic() - t0
    try:
        creations = create_accounts(nodes.addresses("ledger"), nodes.addresses("auditor"))
        catalog = work / "catalog"
        data = sca.site_dict(
            prefix, nodes, clusters, STORE_SETTINGS, catalog={"path": str(catalog)},
            pause={"call_timeout_ms": 10000, "drain_timeout_ms": 30000,
                   "open_capture_timeout_ms": 60000},
        )  # fmt: skip
        site_file = work / "site.yaml"
        site_file.write_text(yaml.safe_dump(data, sort_keys=False))
        yield E2e(nodes, clusters, site_file, catalog, prefix, work, creations)
    finally:
        with GrpcAdminClient() as admin:  # never leave a node paused behind a failed test
            for t in nodes.targets():
                with contextlib.suppress(AdminCallError):
                    admin.unpause(Target.parse(t), timeout_s=5)
        nodes.stop()
        with contextlib.suppress(Exception):  # the session's cluster: leave it as found
            nodes.dbs["ledger"].drop_keyspaces()  # type: ignore[attr-defined]
        print("\nScalarDB on Cassandra:", {k: round(v, 2) for k, v in MEASURED.items()})


# --- the negative control's capture: every node snapshotted at its own moment, no pause -------


class StaggeredStore(CassandraStore):
    """The cassandra store with its window step replaced by one snapshot per node, ``GAP_S``
    apart (what running ``nodetool snapshot`` on each node in turn does), the files then
    copied by the store's own finish step."""

    times: list[float]

    def _open(self, prepared: CassandraPrepared) -> CassandraHandle:
        self.times = []
        for i, h in enumerate(prepared.nodes):
            if i:
                time.sleep(GAP_S)
            assert h.agent is not None
            prepared.snapshotted.add(h.address)
            h.agent.call("snapshot", prepared.tag, ",".join(prepared.keyspaces), timeout=600)
            self.times.append(time.time())
        return CassandraHandle(ctx=prepared.ctx, prepared=prepared, opened_at=datetime.now(UTC))


def staggered_capture(e: E2e) -> None:
    """Ledger's three nodes, then the auditor's, each GAP_S after the one before."""
    for comp in sn.COMPONENTS:
        store = e.store(comp, StaggeredStore)
        out = e.work / f"torn-{comp}"
        ctx = CaptureContext.local(out, store=store.name, point_id=f"torn-{comp}")
        prepared = store.prepare_capture(ctx)
        if e.torn_times:
            time.sleep(GAP_S)
        handle = store.open_capture(ctx, prepared)
        e.torn_times += store.times  # type: ignore[attr-defined]
        at = handle.opened_at
        handle.ctx.window = CaptureWindow(start=at, end=at, mid=at, paused=False)
        e.torn[comp] = (store.finish_capture(handle), out)


# --- under load: the backups and the negative control's capture --------------------------------


@pytest.fixture(scope="module")
def captured(e2e: E2e) -> E2e:
    from flows.backup import backup
    from pausepoint.requests import BackupRequest

    e = e2e
    with Workload(e.nodes.addresses("ledger"), e.nodes.addresses("auditor"),
                  clients=CLIENTS) as w:  # fmt: skip
        w.wait_for(50, timeout=120)
        for _ in range(BACKUPS):
            before = w.acked()
            t0 = time.monotonic()
            e.points.append(backup(BackupRequest(site_file=str(e.site_file))))
            MEASURED.setdefault("backup flow, s", time.monotonic() - t0)
            # writes go on between the backups: each point is another state
            w.wait_for(before + 30, timeout=120)
        staggered_capture(e)
        w.wait_for(w.acked() + 10, timeout=120)
    e.log = w.stop()
    MEASURED["requests/s"] = throughput(e.log)
    assert [x for x in e.log if x.outcome not in ("acked", "cut")] == []
    e.nodes.stop()  # a restore over the site's databases needs every node down
    return e


def window_of(e: E2e, point_id: str) -> tuple[float, float]:
    point = Catalog(LocalDriver(e.catalog)).get_point(e.site, point_id)
    assert point.window.paused
    return point.window.start.timestamp(), point.window.end.timestamp()


@pytest.mark.parametrize("index", range(BACKUPS))
def test_each_backup_under_load_restores_to_a_consistent_state(captured: E2e, index: int):
    from flows.restore import restore
    from pausepoint.requests import RestoreRequest

    e = captured
    point = e.points[index]
    t0 = time.monotonic()
    result = restore(RestoreRequest(site_file=str(e.site_file), point_id=point, confirm=point,
                                    replace=True))  # fmt: skip
    MEASURED.setdefault("restore flow (both clusters), s", time.monotonic() - t0)
    assert result["point"] == point
    # The flow's own check of ScalarDB's transaction metadata read every transactional table
    # over CQL (the accounts' histories and metadata, the request records) and found no record
    # whose fate the coordinator does not decide.
    checks = {name: (ok, detail) for name, ok, detail in result["checks"]}
    for comp in sn.COMPONENTS:
        ok, detail = checks[f"ScalarDB transactions {comp}"]
        assert ok and detail.startswith("5 transactional tables read"), detail
    verdict = check_copy(e.check(), e.creations + e.log, window_of(e, point))
    print(f"\npoint {index + 1} ({point}):\n{verdict.summary()}")
    assert verdict.ok, verdict.summary()
    assert verdict.stats["acked before window"] >= 50 + 30 * index
    # Both components hold every request acknowledged before the window: the point is a
    # moment of the running site, not an empty or a partial one.
    assert verdict.stats["requests ledger"] >= verdict.stats["acked before window"]


def test_negative_control_snapshots_at_different_moments_without_a_pause_are_caught(
    captured: E2e,
):
    e = captured
    first, last = e.torn_times[0], e.torn_times[-1]
    committed_between = [x for x in e.log if x.ledger_acked and first < x.ledger_acked < last]
    assert committed_between, "the workload committed nothing between the snapshots"

    def put_back(comp: str) -> None:
        capture, out = e.torn[comp]
        e.store(comp).restore(capture, out, replace=True)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for f in [pool.submit(put_back, c) for c in sn.COMPONENTS]:
            f.result()
    verdict: Verdict = check_copy(e.check(), e.creations + e.log, (first, last))
    print("\nnegative control:\n" + verdict.summary())
    assert not verdict.ok
    # The tear itself, inside the ledger's cluster: a transfer's records on one node, the
    # other half missing on a node snapshotted earlier.
    assert not verdict.rules["balances_match_records"], verdict.summary()
