"""Point-in-time recovery on real servers with REAL ScalarDB writers: the ScalarDB-backed nodes
(harness/scalardb_node.py: ledger and auditor, two nodes each, every transfer a Consensus Commit
transaction across a MariaDB and a PostgreSQL account, the coordinator on PostgreSQL) write
through ScalarDB into a WAL-archiving PostgreSQL (``pitr: wal``) and a MariaDB with its binary
log on (``pitr: binlog``).

Under the workload (8 clients) the backup flow takes three points of the site, which declares
``scalardb:`` for both components; nothing is copied. Each point is restored BY TIME through the
restore flow: a new PostgreSQL server replayed to the point's mid-time, the MariaDB databases
under new names replayed to its second (ScalarDB's metadata renamed to match). Then the ScalarDB
checker reads everything through ScalarDB on the restored stores (lazy recovery resolves what a
drained pause left PREPARED) and must pass with the point's window, and the restore report's
ScalarDB transaction check must pass.

The negative control restores the first point to mid-time + 2 s (outside the window, inside
what the WAL and binary logs reach) through the same restore steps, and asserts that the same
checker catches it. One cluster and one set of points per module: JVMs and restores cost
seconds each on two cores.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from flows.backup import backup
from flows.restore import restore
from harness import scalardb_node as sn
from harness.processes import HOST, free_port
from harness.scalardb_checker import Verdict
from harness.scalardb_checker import check as check_copy
from harness.scalardb_workload import CLIENTS, Entry, Workload, create_accounts
from harness.servers import PASSWORD, MysqlServer
from pausepoint.admin.client import AdminCallError
from pausepoint.admin.grpc_client import GrpcAdminClient
from pausepoint.catalog import open_catalog
from pausepoint.catalog.manifest import RestorePoint
from pausepoint.readiness import point_readiness
from pausepoint.requests import BackupRequest, RestoreRequest
from pausepoint.restore import RestoreRun, load_target
from pausepoint.secrets import SecretResolver
from pausepoint.site import Target, load_site
from pausepoint.stores import open_store
from pausepoint.stores.postgres_wal import stop_restored
from tests.support.pitr_servers import WalServer, start_binlog_mariadb, wal_postgres
from tests.support.prefect_api import latest_artifact
from tests.unit.test_clock import FakeNtpServer

pytestmark = [pytest.mark.integration]

PG_ENV, MY_ENV = "PP_PITRNODES_PG_PASSWORD", "PP_PITRNODES_MY_PASSWORD"
PREFIX = "pn"
POINTS = 3
LATE_S = 2  # the negative control: mid-time + 2 s, after the window


@pytest.fixture(scope="module")
def wal_pg(servers_dir: Path) -> Iterator[WalServer]:
    with wal_postgres(servers_dir / "pitrnodes-pg-wal") as wal:
        yield wal


@pytest.fixture(scope="module")
def binlog_my(servers_dir: Path) -> Iterator[MysqlServer]:
    server = start_binlog_mariadb(servers_dir / "pitrnodes-mariadb-binlog")
    try:
        yield server
    finally:
        server.stop()


def component_dbs(component: str, my: MysqlServer, pg) -> sn.ComponentDbs:
    """The harness's layout, with ScalarDB's metadata under ONE name on both storages (a
    database on MariaDB, a schema on PostgreSQL): a site declares one `metadata_namespace`."""
    d = sn.ComponentDbs.named(component, PREFIX, sn.Login.of(my), sn.Login.of(pg))
    return replace(d, pg_metadata=d.mysql_metadata)


@pytest.fixture(scope="module")
def cluster(scalardb_node_cp, wal_pg, binlog_my, tmp_path_factory) -> Iterator[sn.Cluster]:
    work = tmp_path_factory.mktemp("pitrnodes")
    dbs = {c: component_dbs(c, binlog_my, wal_pg.server) for c in sn.COMPONENTS}
    with concurrent.futures.ThreadPoolExecutor(len(dbs)) as pool:
        for f in [pool.submit(sn.create_schema, d, work) for d in dbs.values()]:
            f.result()
    nodes = {c: [sn.node_process(dbs[c], f"{c}-{i}", work) for i in range(2)] for c in dbs}
    c = sn.Cluster(dbs, nodes, work)
    try:
        c.start()
        c.creations = create_accounts(c.addresses("ledger"), c.addresses("auditor"))
        yield c
    finally:
        with GrpcAdminClient() as admin:  # never leave a node paused behind a failed test
            for t in c.targets():
                with contextlib.suppress(AdminCallError):
                    admin.unpause(Target.parse(t), timeout_s=5)
        c.stop()


@dataclass
class Backed:
    """The site, its points (oldest first) and the workload's log around them."""

    cluster: sn.Cluster
    wal: WalServer
    servers_dir: Path
    site_file: Path
    work: Path
    points: list[str]
    log: list[Entry]
    restores: int = 0
    stopped: list[Path] = field(default_factory=list)

    @property
    def site(self):
        return load_site(self.site_file)

    def point(self, point_id: str) -> RestorePoint:
        return open_catalog(self.site.catalog).get_point(self.site.site, point_id)

    def wait_restorable(self, point_id: str, timeout_s: float = 120) -> None:
        """The server archives WAL segments in the background: wait for the point's."""
        site = self.site
        stores = {cfg.name: open_store(cfg, SecretResolver()) for _, cfg in site.stores()}
        deadline = time.monotonic() + timeout_s
        while not (ready := point_readiness(self.point(point_id), stores)).restorable:
            assert time.monotonic() < deadline, ready
            time.sleep(0.5)

    def target(self) -> tuple[Path, dict[str, sn.ComponentDbs]]:
        """A restore target (new PostgreSQL servers, new MariaDB database names) and the
        ScalarDB layout of what it will hold, per component."""
        n, self.restores = self.restores, self.restores + 1
        stores: dict[str, dict] = {}
        restored = {}
        for comp, d in self.cluster.dbs.items():
            restore_dir = self.servers_dir / f"pitrnodes-r{n}-{comp}"
            self.wal.restored.append(restore_dir)
            port = free_port()
            stores[f"{comp}-pg"] = {"port": port, "restore_dir": str(restore_dir)}
            if os.geteuid() == 0:
                stores[f"{comp}-pg"]["os_user"] = "postgres"
            r = replace(
                d,
                mysql_namespace=f"{d.mysql_namespace}_r{n}",
                mysql_metadata=f"{d.mysql_metadata}_r{n}",
                postgres=replace(d.postgres, host=HOST, port=port),
            )
            stores[f"{comp}-my"] = {
                "database_map": {
                    d.mysql_namespace: r.mysql_namespace,
                    d.mysql_metadata: r.mysql_metadata,
                }
            }
            restored[comp] = r
        path = self.work / f"target-{n}.yaml"
        path.write_text(yaml.safe_dump({"stores": stores}))
        return path, restored

    def check_restored(self, restored: dict[str, sn.ComponentDbs], window) -> Verdict:
        """The ScalarDB checker on the restored stores (both components read through ScalarDB
        at once), then the restored servers are stopped (memory: two cores, many servers)."""
        work = self.work / f"check-{self.restores}"
        work.mkdir()
        with concurrent.futures.ThreadPoolExecutor(len(restored)) as pool:
            futures = {c: pool.submit(sn.check, d, work) for c, d in restored.items()}
            dumps = {c: f.result() for c, f in futures.items()}
        for d in self.wal.restored:
            if d not in self.stopped:
                stop_restored(d)
                self.stopped.append(d)
        return check_copy(
            dumps,
            self.cluster.creations + self.log,
            (window.start.timestamp(), window.end.timestamp()),
        )


@pytest.fixture(scope="module")
def backed(cluster, wal_pg, binlog_my, servers_dir, prefect_api, tmp_path_factory) -> Backed:
    """Three backups of the ScalarDB-backed site under the workload, through the backup flow."""
    work = tmp_path_factory.mktemp("pitrnodes-site")
    mp = pytest.MonkeyPatch()
    mp.setenv(PG_ENV, PASSWORD)
    mp.setenv(MY_ENV, PASSWORD)
    ntp = FakeNtpServer(offset_s=0.004, root_dispersion_s=0.003)
    data = cluster.site_dict(
        "pitrnodes",
        {"mysql": MY_ENV, "postgres": PG_ENV},
        clock={"ntp_servers": [ntp.address], "required": True},
    )
    for comp, d in cluster.dbs.items():
        for store in data[comp]["stores"]:
            if store["kind"] == "postgres":  # one archive: the server has one archive_command
                store |= {
                    "pitr": "wal",
                    "archive_dir": str(wal_pg.archive),
                    "bin_dir": str(wal_pg.server.bin_dir),
                }
            else:
                store |= {"pitr": "binlog", "archive_dir": str(work / f"{comp}-binlog")}
        data[comp]["scalardb"] = {
            "namespaces": [d.mysql_namespace, d.pg_namespace],
            "coordinator_namespace": d.coordinator,
            "metadata_namespace": d.mysql_metadata,
        }
    site_file = work / "site.yaml"
    site_file.write_text(yaml.safe_dump(data, sort_keys=False))
    points = []
    try:
        with Workload(
            cluster.addresses("ledger"), cluster.addresses("auditor"), clients=CLIENTS
        ) as w:
            w.wait_for(60)
            for _ in range(POINTS):
                points.append(backup(BackupRequest(site_file=str(site_file))))
                # writes go on between the points, and for more than LATE_S after each window
                t = time.monotonic()
                w.wait_for(w.acked() + 60)
                time.sleep(max(0.0, LATE_S + 1 - (time.monotonic() - t)))
        log = w.stop()
    finally:
        ntp.close()
    ctx = Backed(cluster, wal_pg, servers_dir, site_file, work, points, log)
    yield ctx
    mp.undo()


def test_each_point_restored_by_time_passes_the_scalardb_checker(backed):
    assert len(backed.points) == POINTS
    assert [e for e in backed.log if e.outcome not in ("acked", "cut")] == []
    first = backed.point(backed.points[0])
    for comp in ("ledger", "auditor"):
        pg, my = first.store(f"{comp}-pg")[1], first.store(f"{comp}-my")[1]
        assert pg.method == "pitr-wal" and not pg.artifacts
        assert my.method == "pitr-binlog" and not my.artifacts
        assert pg.pitr_timestamp == first.window.mid
        assert first.window.start < my.pitr_timestamp < first.window.end
    assert first.window.hold_ms > 1000  # the binary log's second and twice the clock bound

    for point_id in backed.points:
        backed.wait_restorable(point_id)
    for point_id in backed.points:
        point = backed.point(point_id)
        target, restored = backed.target()
        result = restore(
            RestoreRequest(
                site_file=str(backed.site_file),
                point_id=point_id,
                confirm=point_id,
                target_file=str(target),
            )
        )
        checks = {what: (ok, detail) for what, ok, detail in result["checks"]}
        assert all(ok for ok, _ in checks.values()), result["checks"]
        # the restore report's ScalarDB transaction check, per component, and the rename
        for comp in ("ledger", "auditor"):
            ok, detail = checks[f"ScalarDB transactions {comp}"]
            assert ok and "transactional tables read" in detail, detail
        assert "ScalarDB metadata renamed" in checks
        report = str(latest_artifact("pitrnodes-restore").data)
        assert "ScalarDB" in report and point_id in report

        verdict = backed.check_restored(restored, point.window)
        assert verdict.ok, f"point {point_id}:\n{verdict.summary()}"
        # the window held requests back: some were sent during it, many acked before it
        assert verdict.stats["acked before window"] >= 60
        assert verdict.stats["sent after window opened"] > 0


def test_a_restore_after_the_window_is_caught_by_the_scalardb_checker(backed):
    """The first point's restore steps with every store's time moved to mid-time + 2 s."""
    point_id = backed.points[0]
    point = backed.point(point_id)
    backed.wait_restorable(point_id)
    target, restored = backed.target()
    site = backed.site
    run = RestoreRun.prepare(
        site, open_catalog(site.catalog), point_id, load_target(str(target)), SecretResolver()
    )
    run.validate()
    for slot in run.slots:
        at = slot.capture.pitr_timestamp
        assert at is not None
        slot.capture = slot.capture.model_copy(
            update={"pitr_timestamp": at + timedelta(seconds=LATE_S)}
        )
    for slot in run.slots:
        run.check_target(slot)  # inside what the WAL and binary logs reach
    for slot in run.slots:
        run.restore(slot)
    fingerprints = {s.store.name: run.verify(s) for s in run.slots}
    assert run.rewrite_scalardb_metadata()
    for comp in ("ledger", "auditor"):
        run.check_scalardb(comp)

    verdict = backed.check_restored(restored, point.window)
    print("\nnegative control (mid-time + 2 s):\n" + verdict.summary())
    assert not verdict.ok, "a restore 2 s after the window was not caught by the checker"
    assert not verdict.rules["nothing_after_window"], verdict.summary()
    assert any(fingerprints.values()), f"the fingerprints did not see it either: {fingerprints}"
