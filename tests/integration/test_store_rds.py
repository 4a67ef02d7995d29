"""The ``rds`` store (RDS instances, Aurora clusters) through the real boto3 against moto's
server on loopback.

Proved here: the preflight's refusals, the restore calls with their parameters and order, the
waits, the endpoint reported, refusals before anything is created, and resuming. Not provable
here (FACTS.md §8): moto ignores the restore time (it copies the source as it is), reports
every restore available at once and answers "now" as the latest restorable time; so whether
the new database holds the point's data, and AWS's real durations, are not shown. The window
is tested with the source's age moved by the test (``age_rds``).
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pausepoint.errors import (
    CorruptArtifactError,
    NameTakenError,
    PitrWindowError,
    StoreCheckError,
)
from pausepoint.stores.base import CaptureContext, CaptureWindow, StoreCapture
from pausepoint.stores.rds.config import RdsConfig
from pausepoint.stores.rds.store import RdsStore
from tests.support.aws import CallLog, MemoryJournal, age_rds, aws_settings, resolver

pytestmark = pytest.mark.integration

_n = itertools.count()
POINT_ID = "20261207T090000Z-cd34"


class Rds:
    def __init__(self, moto):
        self.moto = moto
        self.rds = moto.client("rds")
        self.tag = f"pp{next(_n)}x{os.getpid()}"

    def instance(self, retention: int = 7, engine: str = "postgres") -> str:
        name = f"{self.tag}-ledger"
        self.rds.create_db_instance(
            DBInstanceIdentifier=name,
            Engine=engine,
            DBInstanceClass="db.t3.micro",
            MasterUsername="scalar",
            MasterUserPassword="not-used-by-pausepoint-1",
            AllocatedStorage=20,
            BackupRetentionPeriod=retention,
        )
        return name

    def cluster(self, retention: int = 3) -> str:
        name = f"{self.tag}-aurora"
        self.rds.create_db_cluster(
            DBClusterIdentifier=name,
            Engine="aurora-mysql",
            MasterUsername="scalar",
            MasterUserPassword="not-used-by-pausepoint-1",
            BackupRetentionPeriod=retention,
        )
        self.rds.create_db_instance(
            DBInstanceIdentifier=f"{name}-w",
            DBClusterIdentifier=name,
            Engine="aurora-mysql",
            DBInstanceClass="db.r6g.xlarge",
        )
        return name

    def store(self, log: CallLog | None = None, aged: bool = True, **settings) -> RdsStore:
        cfg = RdsConfig.model_validate(
            {"name": "ledger-rds", "kind": "rds", **aws_settings(self.moto.endpoint), **settings}
        )
        store = RdsStore(cfg, resolver())
        if log is not None:
            log.attach(store.aws.client("rds"))
        if aged:
            age_rds(store.aws.client("rds"))
        return store


@pytest.fixture
def rds(moto) -> Rds:
    return Rds(moto)


def capture(store: RdsStore, workdir: Path, at: datetime | None = None) -> StoreCapture:
    ctx = CaptureContext.local(workdir, store=store.name, point_id=POINT_ID)
    handle = store.open_capture(ctx)
    mid = at or datetime.now(UTC) - timedelta(seconds=2)
    ctx.window = CaptureWindow(start=mid, end=mid, mid=mid)
    return store.finish_capture(handle)


def restore(store: RdsStore, cap: StoreCapture, workdir: Path, journal=None) -> None:
    store.check_restorable(cap)
    store.check_restore_target(cap, False)
    store.restore(cap, workdir, False, journal=journal)
    store.reapply_settings(cap)


def test_check_reports_engine_retention_and_window(rds):
    name = rds.instance()
    facts = rds.store(instance=name).check()
    assert facts["server_version"].startswith("postgres") and facts["retention_days"] == 7
    pitr = rds.store(instance=name).check_pitr()
    assert (
        pitr["automated backups"] == "7 days"
        and pitr["restorable_since"] < facts["restorable_until"]
    )
    assert facts["restorable_from"] < facts["restorable_until"]


def test_check_refuses_automated_backups_off_and_short_retention(rds):
    off = rds.instance(retention=0)
    with pytest.raises(StoreCheckError, match=r"automated backups are off.*backup-retention"):
        rds.store(instance=off).check_pitr()
    rds.rds.delete_db_instance(DBInstanceIdentifier=off, SkipFinalSnapshot=True)
    short = rds.instance(retention=2)
    with pytest.raises(StoreCheckError, match="shorter than min_retention_days"):
        rds.store(instance=short, min_retention_days=7).check()
    with pytest.raises(StoreCheckError, match="no DB instance 'nope-db'"):
        rds.store(instance="nope-db").check()


def test_an_instance_is_restored_as_a_new_one_at_the_point_and_its_endpoint_reported(rds, tmp_path):
    """One RestoreDBInstanceToPointInTime from the source at the point (to the second) into
    restore_as, waited for until available; the report names the new endpoint."""
    name = rds.instance()
    cap = capture(rds.store(instance=name), tmp_path / "cap")
    assert cap.pitr_timestamp.microsecond == 0 and cap.details.engine == "postgres"
    log = CallLog()
    target = rds.store(log, instance=name, restore_as=f"{name}-r", instance_class="db.t3.small")
    restore(target, cap, tmp_path / "cap")

    assert log.ops(mutating=True) == ["RestoreDBInstanceToPointInTime"]
    (call,) = log.params("RestoreDBInstanceToPointInTime")
    assert call["SourceDBInstanceIdentifier"] == name
    assert call["TargetDBInstanceIdentifier"] == f"{name}-r"
    assert call["RestoreTime"] == cap.pitr_timestamp
    assert call["DBInstanceClass"] == "db.t3.small"
    # waited for: asked for its state after the call
    after = [op for _, op, _ in log.calls][log.ops().index("RestoreDBInstanceToPointInTime") :]
    assert "DescribeDBInstances" in after
    endpoint = rds.rds.describe_db_instances(DBInstanceIdentifier=f"{name}-r")["DBInstances"][0][
        "Endpoint"
    ]
    assert target.restored_to() == {
        "instance": f"{name}-r",
        "endpoint": f"{endpoint['Address']}:{endpoint['Port']}",
    }


def test_an_aurora_cluster_is_restored_with_an_instance_in_it(rds, tmp_path):
    """Cluster first (RestoreDBClusterToPointInTime at the point), waited for, then one
    instance in it of the source writer's class; the cluster's endpoints are reported."""
    name = rds.cluster()
    cap = capture(rds.store(cluster=name), tmp_path / "cap")
    assert cap.details.instance_class == "db.r6g.xlarge" and cap.details.is_cluster
    log = CallLog()
    target = rds.store(log, cluster=name, restore_as=f"{name}-r")
    restore(target, cap, tmp_path / "cap")

    assert log.ops(mutating=True) == ["RestoreDBClusterToPointInTime", "CreateDBInstance"]
    (c,) = log.params("RestoreDBClusterToPointInTime")
    assert (c["SourceDBClusterIdentifier"], c["DBClusterIdentifier"]) == (name, f"{name}-r")
    assert c["RestoreToTime"] == cap.pitr_timestamp and c["RestoreType"] == "full-copy"
    (i,) = log.params("CreateDBInstance")
    assert i["DBClusterIdentifier"] == f"{name}-r" and i["DBInstanceClass"] == "db.r6g.xlarge"
    assert i["Engine"] == "aurora-mysql"
    ops = log.ops()
    between = ops[ops.index("RestoreDBClusterToPointInTime") : ops.index("CreateDBInstance")]
    assert "DescribeDBClusters" in between  # the cluster was waited for first
    cluster = rds.rds.describe_db_clusters(DBClusterIdentifier=f"{name}-r")["DBClusters"][0]
    assert target.restored_to() == {
        "cluster": f"{name}-r",
        "endpoint": f"{cluster['Endpoint']}:{cluster['Port']}",
        "reader endpoint": cluster["ReaderEndpoint"],
    }


def test_a_taken_name_is_refused_before_anything_is_created(rds, tmp_path):
    name = rds.instance()
    cap = capture(rds.store(instance=name), tmp_path / "cap")
    log = CallLog()
    target = rds.store(log, instance=name, restore_as=name + "-x")
    rds.rds.create_db_instance(
        DBInstanceIdentifier=name + "-x",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        MasterUsername="u",
        MasterUserPassword="not-used-by-pausepoint-1",
        AllocatedStorage=20,
    )
    with pytest.raises(NameTakenError, match=f"{name}-x.*never deletes"):
        target.check_restore_target(cap, True)
    with pytest.raises(NameTakenError):
        target.restore(cap, tmp_path / "cap", True)
    assert not log.ops(mutating=True)


def test_a_point_outside_the_window_is_refused_before_anything_is_created(rds, tmp_path):
    """Time moved by the test: the source is an hour old, so a point two hours back lies
    before its earliest restorable time; a point in the future lies after the latest."""
    name = rds.instance()
    log = CallLog()
    target = rds.store(log, instance=name, restore_as=f"{name}-w")
    for at in (datetime.now(UTC) - timedelta(hours=2), datetime.now(UTC) + timedelta(hours=1)):
        cap = capture(rds.store(instance=name), tmp_path / "cap", at=at)
        with pytest.raises(PitrWindowError, match="outside the restorable window") as err:
            target.restore(cap, tmp_path / "cap", False)
        assert cap.pitr_timestamp.isoformat() in str(err.value)
    assert not log.ops(mutating=True)


def test_a_corrupt_artifact_is_refused_before_any_call(rds, tmp_path):
    name = rds.instance()
    cap = capture(rds.store(instance=name), tmp_path / "cap")
    (tmp_path / "cap" / "pitr.json").write_text("{}")
    log = CallLog()
    with pytest.raises(CorruptArtifactError):
        rds.store(log, instance=name, restore_as=f"{name}-c").restore(cap, tmp_path / "cap", False)
    assert log.calls == []


def test_an_interrupted_cluster_restore_resumes_without_a_second_cluster(rds, tmp_path):
    """The first run dies once the cluster is available (the journal says so); the second
    adds the instance only."""
    name = rds.cluster()
    cap = capture(rds.store(cluster=name), tmp_path / "cap")
    journal = MemoryJournal()
    first = rds.store(cluster=name, restore_as=f"{name}-j")

    class Died(Exception):
        pass

    original = first._wait_instance

    def die(instance: str) -> None:
        raise Died(instance)

    first._wait_instance = die  # dies when it would wait for the cluster's instance
    with pytest.raises(Died):
        first.restore(cap, tmp_path / "cap", False, journal=journal)
    assert journal.step == "instance_requested"
    assert original  # the store's own wait is used by the second run
    log = CallLog()
    second = rds.store(log, cluster=name, restore_as=f"{name}-j")
    second.check_restorable(cap)
    second.restore(cap, tmp_path / "cap", False, journal=journal)
    assert log.ops(mutating=True) == []  # cluster and instance exist: waited for only
    assert journal.step == "available"
    assert second.endpoint()["host"]
