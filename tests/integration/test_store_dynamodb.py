"""The ``dynamodb`` store through the real boto3 against moto's server on loopback.

What moto's server proves here: the calls the store makes, their parameters and their order
(recorded with botocore's ``before-parameter-build`` hook), what it refuses before changing
anything, that the settings it records are re-applied, and that an interrupted restore
resumes. What it cannot prove (FACTS.md §8): moto copies the CURRENT items whatever the time
asked, accepts any time and never advances the latest restorable time, so that the restored
items are those of the point, and how long AWS's steps take, are not shown by these tests; the
window logic is tested with the window moved by the test (``move_time``), as AWS would answer
at another moment.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pausepoint.errors import (
    CaptureError,
    CorruptArtifactError,
    NameTakenError,
    PitrWindowError,
    RestoreError,
    RestoreTargetError,
    StoreCheckError,
    TargetNotEmptyError,
)
from pausepoint.stores.base import CaptureContext, CaptureWindow, StoreCapture
from pausepoint.stores.dynamodb.config import DynamoConfig
from pausepoint.stores.dynamodb.restore import IN_PLACE_STEPS, alias_name
from pausepoint.stores.dynamodb.store import DynamoStore
from tests.support.aws import (
    CallLog,
    FileJournal,
    MemoryJournal,
    aws_settings,
    move_time,
    now_minus,
    resolver,
    throttle,
)

pytestmark = pytest.mark.integration

_n = itertools.count()
ROOT = Path(__file__).resolve().parents[2]
TABLES = ("scalar.asset", "scalar.asset_metadata", "coordinator.state", "scalardb.metadata")


class Site:
    """ScalarDB-like tables under a prefix of their own on the session's moto server."""

    def __init__(self, moto, prefix: str):
        self.moto, self.prefix = moto, prefix
        self.ddb = moto.client("dynamodb")
        self.scaling = moto.client("application-autoscaling")

    def name(self, key: str, prefix: str | None = None) -> str:
        return f"{self.prefix if prefix is None else prefix}{key}"

    def create(self, pitr_off: tuple[str, ...] = ()) -> None:
        for key in TABLES:
            name = self.name(key)
            provisioned = key == "scalar.asset"
            self.ddb.create_table(
                TableName=name,
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                **(
                    {
                        "BillingMode": "PROVISIONED",
                        "ProvisionedThroughput": {"ReadCapacityUnits": 7, "WriteCapacityUnits": 3},
                    }
                    if provisioned
                    else {"BillingMode": "PAY_PER_REQUEST"}
                ),
                Tags=[{"Key": "app", "Value": "scalardl"}],
            )
            if key not in pitr_off:
                self.ddb.update_continuous_backups(
                    TableName=name,
                    PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
                )
            for i in range(5):
                self.ddb.put_item(
                    TableName=name,
                    Item={"id": {"S": f"{key}-{i}"}, "n": {"N": str(i)}, "b": {"B": bytes([i])}},
                )
        asset = self.name("scalar.asset")
        self.ddb.update_time_to_live(
            TableName=asset, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"}
        )
        self.scaling.register_scalable_target(
            ServiceNamespace="dynamodb",
            ResourceId=f"table/{asset}",
            ScalableDimension="dynamodb:table:ReadCapacityUnits",
            MinCapacity=5,
            MaxCapacity=50,
        )
        self.scaling.put_scaling_policy(
            PolicyName=f"{asset}-read",
            ServiceNamespace="dynamodb",
            ResourceId=f"table/{asset}",
            ScalableDimension="dynamodb:table:ReadCapacityUnits",
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": 70.0,
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "DynamoDBReadCapacityUtilization"
                },
            },
        )

    def items(self, key: str, prefix: str | None = None) -> list[dict]:
        items = self.ddb.scan(TableName=self.name(key, prefix))["Items"]
        return sorted(items, key=lambda i: i["id"]["S"])

    def tables(self) -> list[str]:
        pages = self.ddb.get_paginator("list_tables").paginate()
        return [n for page in pages for n in page["TableNames"]]

    def exists(self, name: str) -> bool:
        return name in self.tables()

    def config(self, **settings) -> DynamoConfig:
        return DynamoConfig.model_validate(
            {
                "name": "ledger-ddb",
                "kind": "dynamodb",
                "namespaces": ["scalar"],
                "table_prefix": self.prefix,
                **aws_settings(self.moto.endpoint),
                **settings,
            }
        )

    def store(self, log: CallLog | None = None, window: bool = True, **settings) -> DynamoStore:
        store = DynamoStore(self.config(**settings), resolver())
        if log is not None:
            for service in ("dynamodb", "application-autoscaling"):
                log.attach(store.aws.client(service))
        if window:
            # As AWS answers for tables whose PITR has been on for an hour, once its latest
            # restorable time (about 5 minutes behind the clock) caught up with now.
            move_time(store.aws.client("dynamodb"), earliest=now_minus(3600), latest=now_minus(0))
        return store


@pytest.fixture
def site(moto) -> Site:
    s = Site(moto, f"pp{next(_n)}{os.getpid()}_")
    s.create()
    return s


def capture(store: DynamoStore, workdir: Path, at: datetime | None = None) -> StoreCapture:
    ctx = CaptureContext.local(workdir, store=store.name, point_id="20261207T090000Z-ab12")
    handle = store.open_capture(ctx)
    mid = at or datetime.now(UTC) - timedelta(seconds=1)
    ctx.window = CaptureWindow(start=mid, end=mid, mid=mid)
    return store.finish_capture(handle)


def restore(store: DynamoStore, cap: StoreCapture, workdir: Path, replace=False, journal=None):
    store.check_restorable(cap)
    store.check_restore_target(cap, replace)
    store.restore(cap, workdir, replace, journal=journal)
    store.reapply_settings(cap)


# --- preflight and capture ------------------------------------------------------------------------


def test_check_lists_the_tables_and_their_common_window(site):
    """The coordinator's and ScalarDB's metadata table are part of the store by default; the
    window is the overlap of every table's (moto's: the moment PITR was turned on, moved by the
    test as AWS would answer an hour later)."""
    facts = site.store().check()
    assert facts["tables"] == len(TABLES)
    pitr = site.store().check_pitr()
    assert pitr["pitr"] == f"on for {len(TABLES)} tables"
    assert pitr["restorable_since"] <= pitr["restorable_until"]
    assert datetime.fromisoformat(facts["restorable_from"]) <= datetime.now(UTC)


def test_check_refuses_a_table_without_pitr(moto):
    s = Site(moto, f"pp{next(_n)}{os.getpid()}_")
    s.create(pitr_off=("scalar.asset_metadata",))
    with pytest.raises(StoreCheckError) as err:
        s.store().check_pitr()
    text = str(err.value)
    assert s.name("scalar.asset_metadata") in text and "update-continuous-backups" in text
    assert s.name("scalar.asset") + "," not in text  # only the table without PITR is named
    with pytest.raises(CaptureError, match="asset_metadata"):
        capture(s.store(), Path("/nonexistent-never-written"))


def test_check_names_a_namespace_without_tables(site):
    with pytest.raises(StoreCheckError, match=r"namespace.*auditor.*table_prefix"):
        site.store(namespaces=["scalar", "auditor"]).check()


def test_capture_records_the_point_to_the_second_and_the_settings(site, tmp_path):
    """What a restore resets is recorded per table: billing and capacity, TTL, tags, auto
    scaling, the PITR window then."""
    mid = datetime(2026, 12, 7, 9, 0, 0, 600_000, tzinfo=UTC)
    cap = capture(site.store(), tmp_path, at=mid)
    assert cap.pitr_timestamp == datetime(2026, 12, 7, 9, 0, 1, tzinfo=UTC)  # nearest second
    assert cap.fingerprint == {} and [a.path for a in cap.artifacts] == ["pitr.json"]
    assert json.loads((tmp_path / "pitr.json").read_text())["point_id"] == "20261207T090000Z-ab12"
    by_key = {t.key: t for t in cap.details.tables}
    assert set(by_key) == set(TABLES)
    asset = by_key["scalar.asset"]
    assert (asset.billing_mode, asset.read_capacity, asset.write_capacity) == ("PROVISIONED", 7, 3)
    assert asset.ttl_attribute == "expires" and asset.tags == {"app": "scalardl"}
    assert asset.scalable_targets[0]["MaxCapacity"] == 50
    assert asset.scaling_policies[0]["PolicyType"] == "TargetTrackingScaling"
    assert by_key["coordinator.state"].billing_mode == "PAY_PER_REQUEST"
    assert asset.earliest is not None and asset.pitr_recovery_days == 35
    # the manifest reads the details back into the kind's model
    again = StoreCapture.model_validate_json(cap.model_dump_json())
    assert again.details.tables[0].key == cap.details.tables[0].key


# --- restore side by side -------------------------------------------------------------------------


def test_side_by_side_restores_each_table_at_the_point_and_leaves_the_originals(site, tmp_path):
    """Each table: one RestoreTableToPointInTime from the original, at the point, into the new
    prefix; then its settings. Not provable here: that the items are the point's (moto copies
    the current ones)."""
    cap = capture(site.store(), tmp_path / "cap")
    log = CallLog()
    target = site.store(log, table_prefix=f"{site.prefix}r_")
    restore(target, cap, tmp_path / "cap")

    assert not log.ops(mutating=True, table=site.name("scalar.asset"))  # originals untouched
    restores = log.params("RestoreTableToPointInTime")
    assert sorted(p["TargetTableName"] for p in restores) == sorted(
        site.name(k, f"{site.prefix}r_") for k in TABLES
    )
    for p in restores:
        assert p["SourceTableName"] == p["TargetTableName"].replace(
            f"{site.prefix}r_", site.prefix, 1
        )
        assert p["RestoreDateTime"] == cap.pitr_timestamp
    asset = site.name("scalar.asset", f"{site.prefix}r_")
    assert log.ops(mutating=True, table=asset)[0] == "RestoreTableToPointInTime"
    assert {"UpdateContinuousBackups", "UpdateTimeToLive", "TagResource"} <= set(
        log.ops(mutating=True, table=asset)
    )
    for key in TABLES:
        assert site.items(key, f"{site.prefix}r_") == site.items(key)
    ddb = site.ddb
    assert (
        ddb.describe_time_to_live(TableName=asset)["TimeToLiveDescription"]["AttributeName"]
        == "expires"
    )
    pitr = ddb.describe_continuous_backups(TableName=asset)["ContinuousBackupsDescription"]
    assert pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    targets = site.scaling.describe_scalable_targets(
        ServiceNamespace="dynamodb", ResourceIds=[f"table/{asset}"]
    )["ScalableTargets"]
    assert [(t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [(5, 50)]
    assert (
        ddb.describe_table(TableName=asset)["Table"]["ProvisionedThroughput"]["ReadCapacityUnits"]
        == 7
    )
    assert target.fingerprint() == site.store().fingerprint()
    where = target.restored_to()
    assert where["ScalarDB setting"] == f"scalar.db.dynamo.namespace.prefix={site.prefix}r_"
    assert where["tables"].startswith(f"{len(TABLES)} under prefix")


def test_side_by_side_target_taken_is_refused_then_replaced(site, tmp_path):
    cap = capture(site.store(), tmp_path / "cap")
    taken = site.name("scalar.asset", f"{site.prefix}t_")
    site.ddb.create_table(
        TableName=taken,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    site.ddb.put_item(TableName=taken, Item={"id": {"S": "other"}})
    log = CallLog()
    target = site.store(log, table_prefix=f"{site.prefix}t_")
    with pytest.raises(TargetNotEmptyError, match=f"{taken}.*--replace"):
        target.check_restore_target(cap, replace=False)
    with pytest.raises(TargetNotEmptyError):
        target.restore(cap, tmp_path / "cap", replace=False)
    assert not log.ops(mutating=True)
    restore(target, cap, tmp_path / "cap", replace=True)
    assert site.items("scalar.asset", f"{site.prefix}t_") == site.items("scalar.asset")


def test_a_corrupt_artifact_is_refused_before_any_call_that_changes(site, tmp_path):
    cap = capture(site.store(), tmp_path / "cap")
    path = tmp_path / "cap" / "pitr.json"
    data = bytearray(path.read_bytes())
    data[10] ^= 1
    path.write_bytes(data)
    log = CallLog()
    with pytest.raises(CorruptArtifactError, match=r"pitr\.json"):
        site.store(log, table_prefix="zz_").restore(cap, tmp_path / "cap", False)
    assert log.calls == []


# --- restore in place -----------------------------------------------------------------------------

IN_PLACE_ORDER = [
    "RestoreTableToPointInTime",  # original -> alias, at the point
    "CreateBackup",  # of the alias
    "DeleteTable",  # the alias
    "DeleteTable",  # the original: only after its point is in the backup
    "RestoreTableFromBackup",  # the backup under the original name
]


def test_in_place_follows_scalardbs_procedure_in_order(site, tmp_path):
    """Per table: alias at the point, back it up, delete it, delete the original, restore the
    backup under the original name, then the settings. Not provable here: the items are the
    point's (moto copies the current ones), and AWS's real step durations."""
    store = site.store()
    cap = capture(store, tmp_path / "cap")
    before = {k: site.items(k) for k in TABLES}
    log = CallLog()
    target = site.store(log, in_place=True)
    restore(target, cap, tmp_path / "cap", replace=True)

    for key in TABLES:
        name = site.name(key)
        alias = alias_name(name, "20261207T090000Z-ab12")
        mine = [
            (o, p)
            for _, o, p in log.calls
            if o in IN_PLACE_ORDER
            and {p.get("TableName"), p.get("SourceTableName"), p.get("TargetTableName")}
            & {name, alias}
        ]
        assert [o for o, _ in mine] == IN_PLACE_ORDER, key
        pitr_call, backup, del_alias, del_orig, from_backup = (p for _, p in mine)
        assert (pitr_call["SourceTableName"], pitr_call["TargetTableName"]) == (name, alias)
        assert pitr_call["RestoreDateTime"] == cap.pitr_timestamp
        assert backup["TableName"] == alias and del_alias["TableName"] == alias
        assert del_orig["TableName"] == name and from_backup["TargetTableName"] == name
        assert not site.exists(alias)
        assert site.items(key) == before[key]
    # settings come after the table is back, and PITR is on again
    asset = site.name("scalar.asset")
    ops = log.ops(mutating=True, table=asset)
    assert ops.index("UpdateContinuousBackups") > ops.index("RestoreTableFromBackup")
    pitr = site.ddb.describe_continuous_backups(TableName=asset)["ContinuousBackupsDescription"]
    assert pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    assert (
        site.ddb.describe_time_to_live(TableName=asset)["TimeToLiveDescription"]["TimeToLiveStatus"]
        == "ENABLED"
    )
    kept = target.restored_to()["alias backups kept"].split(", ")
    assert len(kept) == len(TABLES) and all("/backup/" in arn for arn in kept)


def test_in_place_needs_in_place_and_replace(site, tmp_path):
    cap = capture(site.store(), tmp_path / "cap")
    with pytest.raises(RestoreTargetError, match="in_place: true"):
        site.store().check_restore_target(cap, replace=True)
    with pytest.raises(TargetNotEmptyError, match="replaces the live tables"):
        site.store(in_place=True).check_restore_target(cap, replace=False)


def test_an_alias_name_taken_is_refused_before_anything_changes(site, tmp_path):
    cap = capture(site.store(), tmp_path / "cap")
    alias = alias_name(site.name("coordinator.state"), "20261207T090000Z-ab12")
    site.ddb.create_table(
        TableName=alias,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    log = CallLog()
    store = site.store(log, in_place=True)
    with pytest.raises(NameTakenError, match=alias):
        store.check_restore_target(cap, replace=True)
    with pytest.raises(NameTakenError):
        store.restore(cap, tmp_path / "cap", True)
    assert not log.ops(mutating=True)
    assert len(site.items("coordinator.state")) == 5


# --- the window -----------------------------------------------------------------------------------


def test_a_point_outside_a_tables_window_is_refused_with_the_window(site, tmp_path):
    """Time moved by the test: the point lies before the earliest restorable time of the
    tables (a retention that moved on) or after the latest (DynamoDB is about 5 minutes
    behind); either is refused before any change, naming each table and its window. Not
    provable here: AWS's own window (moto never advances it)."""
    cap = capture(site.store(), tmp_path / "cap")
    log = CallLog()
    old = site.store(log, window=False, in_place=True)
    move_time(old.aws.client("dynamodb"), earliest=now_minus(-60), latest=now_minus(-120))
    with pytest.raises(PitrWindowError) as err:
        old.restore(cap, tmp_path / "cap", True)
    text = str(err.value)
    assert cap.pitr_timestamp.isoformat() in text and site.name("coordinator.state") in text
    assert "restorable" in text
    assert not log.ops(mutating=True)

    early = site.store(log, window=False, table_prefix="w_")
    move_time(early.aws.client("dynamodb"), latest=now_minus(300))
    with pytest.raises(PitrWindowError, match="5 minutes"):
        early.check_restorable(cap)
    assert early.restorable_window(cap)[1] < cap.pitr_timestamp
    assert not log.ops(mutating=True)


def test_moto_alone_never_lets_a_point_in(site, tmp_path):
    """Without moving time, moto's window stays at the moment PITR was turned on, so a point
    taken after it is refused: the reason the other tests move it (FACTS.md §8)."""
    cap = capture(site.store(), tmp_path / "cap", at=datetime.now(UTC) + timedelta(seconds=2))
    with pytest.raises(PitrWindowError):
        site.store(window=False, table_prefix="x_").check_restorable(cap)


# --- bad inputs: credentials, throttling ----------------------------------------------------------


def test_refused_credentials_are_named_without_the_secret(site):
    """A second moto server that checks signatures (moto's INITIAL_NO_AUTH_ACTION_COUNT=0)
    refuses unknown keys as AWS does. Not provable here: IAM policies (AccessDenied) of a real
    account."""
    from harness import moto_server

    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
    try:
        strict = moto_server.start_moto(site.moto.log.parent / f"strict{os.getpid()}")
    finally:
        del os.environ["INITIAL_NO_AUTH_ACTION_COUNT"]
    try:
        cfg = site.config(endpoint_url=strict.endpoint)
        secret = "not-a-real-secret-1234"
        with pytest.raises(StoreCheckError) as err:
            DynamoStore(cfg, resolver(key="AKIANOTAKEY", secret=secret)).check()
        text = str(err.value)
        assert "refused the credentials" in text and "AWS credentials keys" in text
        assert secret not in text
    finally:
        strict.stop()


def test_throttling_is_retried_with_backoff_then_reported(site):
    """botocore's retries (adaptive mode) absorb throttling; when every attempt is throttled
    the error says so and names max_attempts. Not provable here: AWS's real throttling rates."""
    store = site.store(max_attempts=4)
    seen = throttle(store.aws.client("dynamodb"), "ListTables", times=3)
    assert store.check()["tables"] == len(TABLES)
    assert len(seen) >= 4  # three throttled attempts, then the one that went through
    stuck = site.store(max_attempts=2)
    seen = throttle(stuck.aws.client("dynamodb"), "ListTables", times=100)
    with pytest.raises(StoreCheckError, match=r"throttled ListTables.*max_attempts"):
        stuck.check()
    assert len(seen) == 2


# --- an interrupted restore resumes ---------------------------------------------------------------


class Died(Exception):
    pass


@pytest.mark.parametrize("step", IN_PLACE_STEPS[:-1])
def test_an_in_place_restore_interrupted_at_each_step_resumes(site, tmp_path, step):
    """The restore dies right after recording ``step`` for the coordinator's table; a second
    run with the same journal finishes every table without repeating a step already done
    (one alias restore, one backup, one restore from backup per table)."""
    cap = capture(site.store(), tmp_path / "cap")
    before = {k: site.items(k) for k in TABLES}
    journal = MemoryJournal()
    victim = site.name("coordinator.state")
    first = site.store(in_place=True, parallel_tables=1)

    def die(table: str, at: str) -> None:
        if table == victim and at == step:
            raise Died(at)

    first.step_hook = die
    log = CallLog()
    for service in ("dynamodb",):
        log.attach(first.aws.client(service))
    with pytest.raises(Died):
        restore(first, cap, tmp_path / "cap", replace=True, journal=journal)
    assert journal.data["tables"][victim]["step"] == step

    second = site.store(log, in_place=True)
    second.check_restorable(cap)  # as the flow does, even while resuming
    second.restore(cap, tmp_path / "cap", True, journal=journal)
    second.reapply_settings(cap)
    for key in TABLES:
        assert site.items(key) == before[key]
        assert not site.exists(alias_name(site.name(key), "20261207T090000Z-ab12"))
    for op in ("RestoreTableToPointInTime", "CreateBackup", "RestoreTableFromBackup"):
        targets = [p.get("TargetTableName") or p.get("TableName") for p in log.params(op)]
        assert len(targets) == len(set(targets)) == len(TABLES), (op, targets)


def test_a_restore_killed_with_sigkill_resumes_from_its_recorded_step(site, tmp_path):
    """A process restoring in place is killed with SIGKILL once the coordinator's table has
    its alias backed up (the journal file says so); a new process with the same journal
    finishes, and the original comes back with its items."""
    store = site.store()
    cap = capture(store, tmp_path / "cap")
    before = {k: site.items(k) for k in TABLES}
    (tmp_path / "capture.json").write_text(cap.model_dump_json())
    journal_path = tmp_path / "journal.json"
    victim = site.name("coordinator.state")
    script = tmp_path / "restore_child.py"
    script.write_text(_CHILD)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PP_CFG": site.config(in_place=True, parallel_tables=1).model_dump_json(exclude_unset=True),
        "PP_CAP": str(tmp_path / "capture.json"),
        "PP_JOURNAL": str(journal_path),
        "PP_VICTIM": victim,
        "PP_DIR": str(tmp_path / "cap"),
    }
    child = subprocess.Popen([sys.executable, str(script)], env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        journal = FileJournal(journal_path)
        while True:
            tables = journal.data.get("tables", {}) if journal_path.exists() else {}
            if tables.get(victim, {}).get("step") == "backup_ready":
                break
            assert child.poll() is None, "the restoring process ended before it was killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert not site.exists(victim) or site.exists(alias_name(victim, "20261207T090000Z-ab12"))

    second = site.store(in_place=True)
    second.restore(cap, tmp_path / "cap", True, journal=FileJournal(journal_path))
    second.reapply_settings(cap)
    for key in TABLES:
        assert site.items(key) == before[key]


_CHILD = """
import json, os, time
from pathlib import Path
from pausepoint.stores.base import StoreCapture
from pausepoint.stores.dynamodb.config import DynamoConfig
from pausepoint.stores.dynamodb.store import DynamoStore
from tests.support.aws import FileJournal, move_time, now_minus, resolver

store = DynamoStore(DynamoConfig.model_validate_json(os.environ["PP_CFG"]), resolver())
move_time(store.aws.client("dynamodb"), earliest=now_minus(3600), latest=now_minus(0))
victim = os.environ["PP_VICTIM"]

def hang(table, step):
    if table == victim and step == "backup_ready":
        time.sleep(600)  # killed here

store.step_hook = hang
cap = StoreCapture.model_validate_json(Path(os.environ["PP_CAP"]).read_text())
journal = FileJournal(Path(os.environ["PP_JOURNAL"]))
store.restore(cap, Path(os.environ["PP_DIR"]), True, journal=journal)
"""


def test_a_deleted_source_without_our_backup_is_refused(site, tmp_path):
    cap = capture(site.store(), tmp_path / "cap")
    site.ddb.delete_table(TableName=site.name("scalar.asset_metadata"))
    with pytest.raises(RestoreError, match="does not exist any more"):
        site.store(table_prefix="y_").check_restorable(cap)


def test_scalardbs_own_tables_are_found_and_restored_side_by_side(moto, scalardb_tools, tmp_path):
    """ScalarDB's schema loader (its DynamoDB adapter pointed at moto's server) makes the
    Ledger's tables, the coordinator's and its metadata table under a namespace prefix, with
    PITR on and auto scaling registered; the store finds exactly those, records their auto
    scaling, and a side-by-side restore brings every table back under the new prefix with its
    auto scaling re-registered. Not provable here: that the items are the point's (moto)."""
    from harness.scalardb_dynamo import create_ledger_tables

    prefix = f"sdb{os.getpid()}_"
    create_ledger_tables(moto.endpoint, prefix, tmp_path / "schema")
    s = Site(moto, prefix)
    facts = s.store().check()
    names = [n for n in s.tables() if n.startswith(prefix)]
    assert facts["tables"] == len(names) == 10  # 8 Ledger tables, coordinator, metadata
    cap = capture(s.store(), tmp_path / "cap")
    keys = {t.key for t in cap.details.tables}
    assert {"coordinator.state", "scalardb.metadata", "scalar.asset", "scalar.tx_state"} <= keys
    asset = next(t for t in cap.details.tables if t.key == "scalar.asset")
    assert len(asset.scalable_targets) == 2 and len(asset.scaling_policies) == 2

    restore(s.store(table_prefix=f"{prefix}r_"), cap, tmp_path / "cap")
    restored = sorted(n for n in s.tables() if n.startswith(f"{prefix}r_"))
    assert restored == sorted(f"{prefix}r_{k}" for k in keys)
    targets = s.scaling.describe_scalable_targets(
        ServiceNamespace="dynamodb", ResourceIds=[f"table/{prefix}r_scalar.asset"]
    )["ScalableTargets"]
    assert len(targets) == 2
