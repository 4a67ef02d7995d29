"""A ScalarDB-backed site on DynamoDB, end to end: the ScalarDB-backed nodes (harness/
scalardb_node.py: real ScalarDB 3.16 Consensus Commit, its DynamoDB adapter) on moto's server,
backed up under their workload through the backup flow (``scalardb:`` and one ``dynamodb``
store per component, the clock gate fed by a fake NTP server), restored through the restore
flow (a) side by side under new table prefixes, with ScalarDB pointed at them, and (b) in place
by ScalarDB's alias procedure with the nodes stopped, then restarted. After each restore the
checker (harness/scalardb_checker.py) reads everything through ScalarDB on the restored tables.

What this proves: the backup's pause, hold and clock gate with real nodes whose data is on
DynamoDB; that both restore procedures, run by the flow over ScalarDB's own tables (data,
coordinator ``state``, ScalarDB's ``metadata``), give tables that ScalarDB reads and writes
again (under the new prefix; after the alias procedure, with the re-applied settings), holding
one consistent state of both components, item for item the one the nodes left.

What this local endpoint cannot prove (FACTS.md §8), and how the test is shaped around it:
- Time travel. moto's point-in-time restore copies the tables' CURRENT items whatever time is
  asked, so a restored table holds the data at restore time, not at the point's mid-time. The
  workload is therefore stopped before the restores, and the checker is given the moment it
  stopped as its window: it checks the restored state against everything acknowledged, not
  against the pause window (its ``nothing_after_window`` rule is vacuous here). That requests
  sent after the point's window come back is asserted, so the day an endpoint honours the time
  this test says it must be tightened. That the point's mid-time falls inside the window is
  shown with real point-in-time recovery in test_pitrdb_recovery.py.
- Windows. moto's latest restorable time is the moment PITR was turned on and never advances;
  the test answers DescribeContinuousBackups as AWS would once its latest restorable time has
  passed the point (``tests.support.aws.move_time``: latest = now). Window refusals are tested
  with the window moved in test_store_dynamodb.py.
- Atomic conditional writes. moto's threaded server lets two conditional writes on one item
  both pass; ScalarDB's Consensus Commit needs them atomic, as DynamoDB makes them. The test's
  moto runs with its backend serialised (harness/moto_serial.py).
- Provider timing (how long AWS takes per step) and real IAM.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.backup import backup
from flows.restore import restore
from harness import moto_server
from harness import scalardb_node as sn
from harness.scalardb_checker import check as check_copy
from harness.scalardb_workload import Entry, Workload, accounts, create_accounts
from pausepoint.admin.client import AdminCallError
from pausepoint.admin.grpc_client import GrpcAdminClient
from pausepoint.catalog import open_catalog
from pausepoint.catalog.manifest import RestorePoint
from pausepoint.requests import BackupRequest, RestoreRequest
from pausepoint.site import Target, load_site
from pausepoint.stores._aws import AwsClients
from pausepoint.stores.base import CaptureContext, CaptureWindow
from pausepoint.stores.dynamodb.config import DynamoConfig
from pausepoint.stores.dynamodb.store import DynamoStore
from tests.support.aws import KEY_ENV, SECRET_ENV, aws_settings, move_time, now_minus, resolver
from tests.unit.test_clock import FakeNtpServer

pytestmark = [pytest.mark.integration]

PREFIX = "ddsdb"
CLIENTS = 4  # moto serves one request at a time: more clients only wait longer
NAMES = accounts(4)  # my-0..3, pg-0..3


@dataclass
class DynamoSite:
    """Both components on one moto server, their nodes, the site file and what ran so far."""

    moto: moto_server.MotoServer
    cluster: sn.Cluster
    path: Path
    work: Path
    log: list[Entry] = field(default_factory=list)  # creations and every transfer
    points: list[str] = field(default_factory=list)
    stopped_at: float = 0.0  # when the workload stopped (nothing was sent after)
    live: dict[str, Any] = field(default_factory=dict)  # the nodes' state then, via ScalarDB

    @property
    def site(self):
        return load_site(self.path)

    def point(self, point_id: str) -> RestorePoint:
        site = self.site
        return open_catalog(site.catalog).get_point(site.site, point_id)

    def dynamo(self, component: str) -> sn.DynamoDbs:
        dbs = self.cluster.dbs[component]
        assert isinstance(dbs, sn.DynamoDbs)
        return dbs

    def target(self, name: str, stores: dict[str, dict[str, Any]]) -> str:
        path = self.work / f"target-{name}.yaml"
        path.write_text(yaml.safe_dump({"stores": stores}))
        return str(path)

    def restore(self, point_id: str, target: str, replace: bool = False) -> dict:
        return restore(
            RestoreRequest(
                site_file=str(self.path),
                point_id=point_id,
                confirm=point_id,
                target_file=target,
                replace=replace,
            )
        )

    def tables(self) -> list[str]:
        pages = self.moto.client("dynamodb").get_paginator("list_tables").paginate()
        return sorted(n for page in pages for n in page["TableNames"])


def _move_windows(real_client):
    """Every DynamoDB client a store makes answers the window as AWS would once its latest
    restorable time has passed the point (moto never advances it)."""

    def client(self: AwsClients, service: str) -> Any:
        c = real_client(self, service)
        if service == "dynamodb" and not getattr(c, "_pp_moved", False):
            move_time(c, latest=now_minus(0))
            c._pp_moved = True
        return c

    return client


@pytest.fixture(scope="module")
def serial_moto(tmp_path_factory) -> Iterator[moto_server.MotoServer]:
    """moto's server of this module, one request at a time (the module docstring says why)."""
    try:
        moto = moto_server.start_moto(tmp_path_factory.mktemp("moto-serial"), serial=True)
    except moto_server.ServerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield moto
    finally:
        moto.stop()


@pytest.fixture(scope="module")
def dsite(serial_moto, scalardb_node_cp, prefect_api, tmp_path_factory) -> Iterator[DynamoSite]:
    work = tmp_path_factory.mktemp("dynamodb-scalardb")
    moto = serial_moto
    ntp = FakeNtpServer(offset_s=0.004, root_dispersion_s=0.003)
    cluster = None
    try:
        cluster = sn.start_dynamo_cluster(
            moto.endpoint,
            moto_server.REGION,
            moto_server.ACCESS_KEY,
            moto_server.SECRET_KEY,
            PREFIX,
            work / "nodes",
        )
        data = cluster.site_dict(
            "ddsdb",
            {"access_key_id": KEY_ENV, "secret_access_key": SECRET_ENV},
            catalog={"path": str(work / "catalog")},
            clock={"ntp_servers": [ntp.address], "required": True},
        )
        for comp, dbs in cluster.dbs.items():
            assert isinstance(dbs, sn.DynamoDbs)
            data[comp]["scalardb"] = dbs.scalardb_settings()
            for store in data[comp]["stores"]:
                store |= {"poll_interval_s": 0.05, "wait_timeout_s": 120}
        path = work / "site.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(KEY_ENV, moto_server.ACCESS_KEY)
            mp.setenv(SECRET_ENV, moto_server.SECRET_KEY)
            mp.setattr(AwsClients, "client", _move_windows(AwsClients.client))
            yield DynamoSite(moto, cluster, path, work)
    finally:
        if cluster is not None:
            with GrpcAdminClient() as admin:  # never leave a node paused behind a failure
                for t in cluster.targets():
                    with contextlib.suppress(AdminCallError):
                        admin.unpause(Target.parse(t), timeout_s=5)
            cluster.stop()
        ntp.close()


@pytest.fixture(scope="module")
def backed_up(dsite: DynamoSite) -> DynamoSite:
    """Two backups through the backup flow while the workload runs; then the workload stops
    and the nodes' state is read through ScalarDB (what a restore on moto brings back)."""
    c = dsite.cluster
    dsite.log = create_accounts(c.addresses("ledger"), c.addresses("auditor"), NAMES)
    work = Workload(c.addresses("ledger"), c.addresses("auditor"), NAMES, CLIENTS).start()
    try:
        work.wait_for(10, timeout=120)
        for _ in range(2):
            dsite.points.append(backup(BackupRequest(site_file=str(dsite.path))))
            work.wait_for(work.acked() + 5, timeout=120)  # writes go on between the points
    finally:
        dsite.log += work.stop()
    dsite.stopped_at = time.time()
    dsite.live = c.check()
    verdict = check_copy(dsite.live, dsite.log, (dsite.stopped_at, dsite.stopped_at))
    assert verdict.ok, verdict.summary()  # the live site itself holds together
    return dsite


def _restored_state_is_the_live_one(s: DynamoSite, dumps: dict[str, Any]) -> None:
    verdict = check_copy(dumps, s.log, (s.stopped_at, s.stopped_at))
    assert verdict.ok, verdict.summary()
    acked = sum(1 for e in s.log if e.outcome == "acked")
    assert verdict.stats["acked before window"] == acked
    # moto copied the current items (see the module docstring): the state when the workload
    # stopped, requests sent after the point's window included.
    for comp in ("ledger", "auditor"):
        for part in ("accounts", "requests"):
            assert dumps[comp][part] == s.live[comp][part], f"{comp} {part} differ"
    first = s.point(s.points[0])
    late = [e.rid for e in s.log if e.sent > first.window.end.timestamp() and e.outcome == "acked"]
    assert late and all(rid in dumps["ledger"]["requests"] for rid in late)


def test_backups_under_load_record_the_point_and_pause_the_nodes_on_dynamodb(backed_up):
    s = backed_up
    assert len(s.points) == 2
    for point_id in s.points:
        point = s.point(point_id)
        for comp in ("ledger", "auditor"):
            _, capture = point.store(f"{comp}-ddb")
            assert capture.method == "dynamodb-pitr"
            # DynamoDB restores to the second: the mid-time rounded, inside the window
            assert capture.pitr_timestamp.microsecond == 0
            assert point.window.start <= capture.pitr_timestamp <= point.window.end
            # every table ScalarDB made for the component: data, coordinator, metadata
            tables = {t.key for t in capture.details.tables}
            dbs = s.dynamo(comp)
            assert {f"{dbs.coordinator}.state", f"{dbs.metadata}.metadata"} <= tables
            assert {f"{ns}.asset" for ns in dbs.namespaces} <= tables
        # the hold covers DynamoDB's one-second step and twice the clock bound
        assert point.window.hold_ms > 1000
        # under load: transfers acknowledged before the window and sent after it
        start, end = point.window.start.timestamp(), point.window.end.timestamp()
        transfers = [e for e in s.log if e.kind == "transfer" and e.outcome == "acked"]
        assert any(e.acked < start for e in transfers)
        assert any(e.sent > end for e in transfers)
    assert not any(n.ping()["paused"] for n in s.cluster.all_nodes())


def test_restore_side_by_side_under_a_new_prefix_is_read_by_scalardb(backed_up):
    s = backed_up
    point_id = s.points[0]
    before = s.tables()
    new = {comp: f"r1_{s.dynamo(comp).table_prefix}" for comp in ("ledger", "auditor")}
    target = s.target(
        "side", {f"{comp}-ddb": {"table_prefix": new[comp]} for comp in ("ledger", "auditor")}
    )
    result = s.restore(point_id, target)
    checks = {name: (ok, detail) for name, ok, detail in result["checks"]}
    assert all(ok for ok, _ in checks.values()), result["checks"]
    # nodes may run (the site's tables are not touched), and the report says where ScalarDB goes
    assert "may run" in checks["ScalarDL nodes"][1]
    for comp in ("ledger", "auditor"):
        where = checks[f"restored into {comp}/{comp}-ddb"][1]
        assert f"scalar.db.dynamo.namespace.prefix={new[comp]}" in where
    # the originals are untouched; every table came back under the new prefix
    after = s.tables()
    assert set(before) <= set(after)
    for comp in ("ledger", "auditor"):
        old = s.dynamo(comp).table_prefix
        assert sorted(t.replace(old, new[comp], 1) for t in before if t.startswith(old)) == sorted(
            t for t in after if t.startswith(new[comp])
        )
    # ScalarDB, given only the new prefix, reads every component's state from the copies
    copies = {comp: s.dynamo(comp).with_prefix(new[comp]) for comp in ("ledger", "auditor")}
    dumps = {comp: sn.check(copies[comp], s.work) for comp in ("ledger", "auditor")}
    _restored_state_is_the_live_one(s, dumps)


def test_restore_in_place_by_the_alias_procedure_with_the_nodes_stopped(backed_up):
    s = backed_up
    point_id = s.points[-1]
    before = s.tables()
    target = s.target(
        "in-place", {f"{comp}-ddb": {"in_place": True} for comp in ("ledger", "auditor")}
    )
    s.cluster.stop()
    try:
        result = s.restore(point_id, target, replace=True)
    finally:
        s.cluster.start()
    checks = {name: (ok, detail) for name, ok, detail in result["checks"]}
    assert all(ok for ok, _ in checks.values()), result["checks"]
    assert "every admin endpoint is down" in checks["ScalarDL nodes"][1]
    for comp in ("ledger", "auditor"):
        assert "alias backups kept" in checks[f"restored into {comp}/{comp}-ddb"][1]
    # the same tables (the aliases are gone), restored with their settings re-applied
    assert s.tables() == before
    ddb = s.moto.client("dynamodb")
    for name in before:
        pitr = ddb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
        assert pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    # the restarted nodes' ScalarDB reads the restored tables...
    _restored_state_is_the_live_one(s, s.cluster.check())
    # ... and writes to them again
    c = s.cluster
    more = Workload(c.addresses("ledger"), c.addresses("auditor"), NAMES, 2, seed=7).start()
    try:
        more.wait_for(5, timeout=120)
    finally:
        log = s.log + more.stop()
    end = time.time()
    verdict = check_copy(c.check(), log, (end, end))
    assert verdict.ok, verdict.summary()


# --- ScalarDB's metadata under the new prefix, on the store alone (no nodes) ---------------------


@pytest.mark.parametrize("old", ["", "pp_meta_"])
def test_side_by_side_renames_scalardb_metadata_to_the_new_prefix(serial_moto, tmp_path, old):
    """ScalarDB keys its metadata by prefixed names: ``metadata.table`` =
    ``<prefix><namespace>.<table>`` and, where a ScalarDB version keeps it,
    ``namespaces.namespace_name`` = ``<prefix><namespace>``. A side-by-side restore renames
    exactly the entries of the restored tables (the empty prefix, ScalarDB's default, included:
    nothing is renamed twice), leaves other entries and the source's metadata alone, and a
    rerun (a resumed restore) renames nothing more."""
    ddb = serial_moto.client("dynamodb")
    ns, coord, meta = f"bank{len(old)}", f"coord{len(old)}", f"sdb{len(old)}"

    def table(name: str, key: str) -> None:
        ddb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )

    data = [f"{ns}.asset", f"{coord}.state"]
    for key in data:
        table(f"{old}{key}", "concatenatedPartitionKey")
    table(f"{old}{meta}.metadata", "table")
    table(f"{old}{meta}.namespaces", "namespace_name")
    for key in data:
        ddb.put_item(
            TableName=f"{old}{meta}.metadata",
            Item={"table": {"S": f"{old}{key}"}, "columns": {"M": {"id": {"S": "text"}}}},
        )
    # an entry of a table this store does not hold stays as it is
    ddb.put_item(TableName=f"{old}{meta}.metadata", Item={"table": {"S": "elsewhere.t"}})
    for n in (ns, coord):
        ddb.put_item(
            TableName=f"{old}{meta}.namespaces", Item={"namespace_name": {"S": f"{old}{n}"}}
        )

    settings = {
        "name": "ledger-ddb",
        "kind": "dynamodb",
        "namespaces": [ns],
        "coordinator_namespace": coord,
        "metadata_namespace": meta,
        "table_prefix": old,
        **aws_settings(serial_moto.endpoint),
    }
    source = DynamoStore(DynamoConfig.model_validate(settings), resolver())
    # tables made a moment ago: answered as AWS would an hour on
    move_time(source.aws.client("dynamodb"), earliest=now_minus(3600), latest=now_minus(0))
    ctx = CaptureContext.local(tmp_path, store=source.name, point_id="20261207T090000Z-cd34")
    handle = source.open_capture(ctx)
    mid = datetime.now(UTC)
    ctx.window = CaptureWindow(start=mid, end=mid, mid=mid)
    cap = source.finish_capture(handle)

    new = f"r_{old}"
    store = DynamoStore(source.config.retarget({"table_prefix": new}), resolver())
    move_time(store.aws.client("dynamodb"), earliest=now_minus(3600), latest=now_minus(0))
    store.check_restorable(cap)
    store.check_restore_target(cap, replace=False)
    store.restore(cap, tmp_path, replace=False)

    def keys(name: str, attr: str) -> list[str]:
        return sorted(i[attr]["S"] for i in ddb.scan(TableName=name)["Items"])

    assert keys(f"{new}{meta}.metadata", "table") == sorted(
        [f"{new}{k}" for k in data] + ["elsewhere.t"]
    )
    assert keys(f"{new}{meta}.namespaces", "namespace_name") == sorted(
        [f"{new}{coord}", f"{new}{ns}"]
    )
    item = ddb.get_item(TableName=f"{new}{meta}.metadata", Key={"table": {"S": f"{new}{ns}.asset"}})
    assert item["Item"]["columns"] == {"M": {"id": {"S": "text"}}}  # the rest of the entry kept
    assert keys(f"{old}{meta}.metadata", "table") == sorted(
        [f"{old}{k}" for k in data] + ["elsewhere.t"]
    )
    assert store.restored_to()["ScalarDB metadata"] == "4 entries renamed to the new prefix"
    assert store._rename_in_metadata(store.captured_details(cap)) == 0  # a rerun: nothing left
