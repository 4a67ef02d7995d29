"""The ``cosmos`` store through the REAL azure-mgmt-cosmosdb and azure-identity clients against a
local Azure Resource Manager endpoint (tests/support/arm_server.py, HTTPS on 127.0.0.1, with
its own token endpoint so the service-principal secret goes the real way).

What these tests prove: the calls the store makes, their order, their bodies field by field in
Azure's documented wire names, the waiting on long-running operations, the handling of 4xx and
429, the window checks, the journal-driven resume and where errors name the fix. What a local
endpoint cannot prove: that Azure accepts these requests, how long a real restore takes, that
the restored account holds the data as of the timestamp (no data plane here), RBAC decisions.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pausepoint.errors import (
    CredentialsError,
    PitrNotYetRestorableError,
    PitrWindowError,
    RestoreTargetError,
    StoreCheckError,
    TargetNotEmptyError,
)
from pausepoint.secrets import SecretResolver
from pausepoint.stores.base import CaptureContext, CaptureWindow, StoreCapture, StoreJournal
from pausepoint.stores.cosmos.config import CosmosConfig
from pausepoint.stores.cosmos.store import CREATE, CREATED, CosmosStore
from pausepoint.stores.registry import capabilities, open_store
from tests.support.arm_server import ArmEndpoint, ArmState, start_arm

pytestmark = pytest.mark.integration

SUB = "00000000-0000-0000-0000-0000000000aa"
TENANT = "pausepoint-test-tenant"
CLIENT = "11111111-2222-3333-4444-555555555555"
SECRET = "arm-client-secret-value"  # only ever in the environment of this process
DATABASES = {"mbank": ["accounts", "transfers"], "coordinator": ["state"]}


class MemoryJournal(StoreJournal):
    """The restore journal's contract in memory (the catalog's is tested elsewhere)."""

    def __init__(self, step: str | None = None, data: Mapping[str, Any] | None = None):
        self._step, self._data = step, dict(data or {})
        self.steps: list[str] = []

    @property
    def step(self) -> str | None:
        return self._step

    @property
    def data(self) -> dict[str, Any]:
        return self._data

    def record(self, step: str, data: Mapping[str, Any] | None = None) -> None:
        self._step, self._data = step, dict(data or {})
        self.steps.append(step)


@pytest.fixture
def arm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ArmEndpoint]:
    monkeypatch.setenv("PP_TEST_ARM_SECRET", SECRET)
    state = ArmState(SUB, TENANT, CLIENT, SECRET)
    state.lro_polls = 2
    # Continuous backup since yesterday: the restorable window's start.
    state.add_account(
        "scalardb-prod",
        "rg-ledger",
        "westus2",
        databases=dict(DATABASES),
        created=datetime.now(UTC) - timedelta(days=1),
    )
    endpoint = start_arm(tmp_path / "arm", state)
    yield endpoint
    endpoint.stop()


def config(arm: ArmEndpoint, **over: Any) -> CosmosConfig:
    fields: dict[str, Any] = {
        "name": "ledger-cosmos",
        "subscription_id": SUB,
        "resource_group": "rg-ledger",
        "account": "scalardb-prod",
        "location": "westus2",
        "databases": sorted(DATABASES),
        "credentials": {
            "source": "service_principal",
            "tenant_id": TENANT,
            "client_id": CLIENT,
            "client_secret": {"env": "PP_TEST_ARM_SECRET"},
            "authority": arm.url,
        },
        "management_endpoint": arm.url,
        "ca_file": str(arm.ca_file),
        "poll_interval_s": 0,
        **over,
    }
    return CosmosConfig.model_validate(fields)


def store(arm: ArmEndpoint, **over: Any) -> CosmosStore:
    s = open_store(config(arm, **over), SecretResolver())
    assert isinstance(s, CosmosStore)
    return s


def capture(arm: ArmEndpoint, tmp_path: Path, mid: datetime | None = None) -> StoreCapture:
    s = store(arm)
    ctx = CaptureContext.local(tmp_path / "capture", store=s.name, component="ledger")
    handle = s.open_capture(ctx)
    mid = mid or datetime.now(UTC) - timedelta(seconds=30)
    ctx.window = CaptureWindow(
        start=mid - timedelta(seconds=1), end=mid + timedelta(seconds=1), mid=mid
    )
    return s.finish_capture(handle)


def test_the_kind_restores_by_time_into_a_new_account_only() -> None:
    caps = capabilities(
        CosmosConfig(
            name="c",
            subscription_id=SUB,
            resource_group="r",
            account="acct",
            location="westus",
            databases=["ns"],
        )
    )
    assert caps.capture == "pitr" and caps.pitr_granularity_ms == 1000
    assert caps.restore_modes == frozenset({"side_by_side"})
    assert not caps.transactional


def test_check_reports_continuous_backup_databases_and_signs_in_with_the_secret(arm) -> None:
    facts = store(arm).check()
    assert facts["backup"] == "continuous"
    assert facts["databases"] == {"mbank": 2, "coordinator": 1}
    token_calls = arm.state.calls("POST", "/oauth2/v2.0/token")
    assert token_calls, "the service principal's secret was not used"
    # Every management call carried the api-version and a bearer token from that endpoint.
    for r in arm.state.calls("GET", "/subscriptions/"):
        assert r.query.get("api-version"), r.path
        assert r.headers.get("Authorization", "").startswith("Bearer ")


def test_check_pitr_reports_continuous_backup_and_since_when(arm) -> None:
    facts = store(arm).check_pitr()
    created = arm.state.accounts["scalardb-prod"].created
    assert facts["backup"] == "continuous"
    assert datetime.fromisoformat(facts["restorable_since"]) == created.replace(microsecond=0) or (
        abs(datetime.fromisoformat(facts["restorable_since"]) - created) < timedelta(seconds=1)
    )
    arm.state.accounts["scalardb-prod"].backup = "Periodic"
    with pytest.raises(StoreCheckError, match="not continuous backup"):
        store(arm).check_pitr()


def test_check_refuses_periodic_backup_and_names_the_fix(arm) -> None:
    arm.state.accounts["scalardb-prod"].backup = "Periodic"
    with pytest.raises(StoreCheckError) as err:
        store(arm).check()
    text = str(err.value)
    assert "not continuous backup" in text and "--backup-policy-type Continuous" in text


def test_check_names_a_missing_scalardb_database(arm) -> None:
    with pytest.raises(StoreCheckError) as err:
        store(arm, databases=["mbank", "coordinator", "auditor"]).check()
    assert "no database 'auditor'" in str(err.value)


def test_a_wrong_secret_is_a_credentials_error_that_does_not_repeat_it(arm, monkeypatch) -> None:
    monkeypatch.setenv("PP_TEST_ARM_SECRET", "not-the-secret")
    with pytest.raises(CredentialsError) as err:
        store(arm).check()
    text = str(err.value)
    assert "could not sign in" in text and CLIENT in text
    assert "not-the-secret" not in text and SECRET not in text


def test_403_names_the_role_and_429_is_retried_after_its_delay(arm) -> None:
    arm.state.fail_next(403, "AuthorizationFailed", "no access", match="GET /subscriptions/")
    with pytest.raises(CredentialsError) as err:
        store(arm).check()
    assert "HTTP 403 AuthorizationFailed" in str(err.value)
    assert "DocumentDB Account Contributor" in str(err.value)

    arm.state.requests.clear()
    arm.state.fail_next(429, "TooManyRequests", "slow down", match="sqlDatabases", retry_after=1)
    store(arm).check()  # azure-core honours Retry-After and tries again
    lists = [r for r in arm.state.calls("GET", "/sqlDatabases") if r.path.endswith("sqlDatabases")]
    assert len(lists) == 2


def test_capture_records_the_second_and_the_restorable_source(arm, tmp_path) -> None:
    mid = datetime(2026, 12, 7, 9, 0, 0, 600_000, tzinfo=UTC)
    cap = capture(arm, tmp_path, mid)
    assert cap.pitr_timestamp == datetime(2026, 12, 7, 9, 0, 1, tzinfo=UTC)
    d = cap.details
    source = arm.state.accounts["scalardb-prod"]
    assert d["restorable_id"].endswith(f"/restorableDatabaseAccounts/{source.instance_id}")
    assert d["databases"] == {db: sorted(cs) for db, cs in DATABASES.items()}
    assert [a.path for a in cap.artifacts] == ["pitr.json"]


def test_restore_creates_the_account_at_the_point_with_documented_fields(arm, tmp_path) -> None:
    """The PUT body field by field (Azure's wire names), then Strong consistency, the repair
    command with its secret in the environment only, and the endpoint reported."""
    cap = capture(arm, tmp_path)
    out = tmp_path / "repair.txt"
    script = tmp_path / "repair.py"
    script.write_text(
        "import os, sys\n"
        f"open({str(out)!r}, 'w').write(repr(sys.argv[1:]) + '|' + "
        "str(os.environ.get('COSMOS_KEY') == 'k3y'))\n"
    )
    target = store(
        arm,
        restore_as="scalardb-restored",
        repair_command=[sys.executable, str(script), "--endpoint", "{endpoint}", "{account}"],
        repair_env={"COSMOS_KEY": {"env": "PP_TEST_COSMOS_KEY"}},
    )
    import os

    os.environ["PP_TEST_COSMOS_KEY"] = "k3y"
    try:
        target.check_restorable(cap)
        target.check_restore_target(cap, replace=False)
        journal = MemoryJournal()
        target.restore(cap, tmp_path / "capture", replace=False, journal=journal)
        target.reapply_settings(cap)
    finally:
        del os.environ["PP_TEST_COSMOS_KEY"]

    assert journal.steps == [CREATE, CREATED]
    puts = arm.state.calls("PUT", "/databaseAccounts/scalardb-restored")
    assert len(puts) == 1
    body = puts[0].body
    props = body["properties"]
    assert body["location"] == "westus2" and body["kind"] == "GlobalDocumentDB"
    assert props["createMode"] == "Restore"
    assert props["backupPolicy"] == {"type": "Continuous"}
    assert props["locations"] == [{"locationName": "westus2", "failoverPriority": 0}]
    rp = props["restoreParameters"]
    assert rp["restoreMode"] == "PointInTime"
    assert rp["restoreSource"] == cap.details["restorable_id"]
    assert datetime.fromisoformat(rp["restoreTimestampInUtc"].replace("Z", "+00:00")) == (
        cap.pitr_timestamp
    )
    assert sorted(rp["databasesToRestore"], key=lambda x: x["databaseName"]) == [
        {"databaseName": "coordinator", "collectionNames": ["state"]},
        {"databaseName": "mbank", "collectionNames": ["accounts", "transfers"]},
    ]
    # The source account was only read.
    assert not [
        r
        for r in arm.state.requests
        if "scalardb-prod" in r.path and r.method not in ("GET", "POST")
    ]
    patches = arm.state.calls("PATCH", "/databaseAccounts/scalardb-restored")
    assert [p.body["properties"]["consistencyPolicy"] for p in patches] == [
        {"defaultConsistencyLevel": "Strong"}
    ]
    assert arm.state.accounts["scalardb-restored"].consistency == "Strong"
    endpoint = "https://scalardb-restored.documents.azure.example:443/"
    assert target.restored_to() == {"account": "scalardb-restored", "endpoint": endpoint}
    argv, key_seen = out.read_text().split("|")
    assert argv == repr(["--endpoint", endpoint, "scalardb-restored"])
    assert key_seen == "True" and "k3y" not in argv


def test_restore_refuses_a_point_outside_the_window_before_anything(arm, tmp_path) -> None:
    """Window logic with time moved by the test (a local endpoint has no real provider lag)."""
    cap = capture(arm, tmp_path)
    target = store(arm, restore_as="scalardb-restored")
    # Azure's latest restorable time has not reached the point yet: not yet, not never.
    arm.state.latest_restorable = cap.pitr_timestamp - timedelta(seconds=5)
    with pytest.raises(PitrNotYetRestorableError, match="not restorable yet"):
        target.check_restorable(cap)
    arm.state.latest_restorable = None
    # Before the source's oldest restorable time: outside the window for good.
    old = capture(arm, tmp_path / "old", datetime.now(UTC) - timedelta(days=60))
    with pytest.raises(PitrWindowError) as err:
        target.check_restorable(old)
    assert "outside the store's restorable window" in str(err.value)
    assert not arm.state.calls("PUT")


def test_target_name_taken_or_missing_is_refused(arm, tmp_path) -> None:
    cap = capture(arm, tmp_path)
    arm.state.add_account("scalardb-copy", "rg-other", "westus2", databases={})
    with pytest.raises(TargetNotEmptyError) as err:
        store(arm, restore_as="scalardb-copy").check_restore_target(cap, replace=True)
    assert "is taken" in str(err.value)
    with pytest.raises(RestoreTargetError) as err2:
        store(arm).check_restore_target(cap, replace=False)
    assert "set `restore_as`" in str(err2.value)
    assert not arm.state.calls("PUT")


def test_an_interrupted_restore_resumes_without_a_second_create(arm, tmp_path) -> None:
    """The run that sent the create died (journal at CREATE): the resumed one finds the account
    being created, waits for it, and never sends a second PUT."""
    cap = capture(arm, tmp_path)
    first = store(arm, restore_as="scalardb-restored")
    first.restore(cap, tmp_path / "capture", replace=False, journal=MemoryJournal())
    arm.state.accounts["scalardb-restored"].provisioning = "Creating"
    arm.state.requests.clear()

    resumed = store(arm, restore_as="scalardb-restored", poll_interval_s=0.05)
    journal = MemoryJournal(CREATE, {"account": "scalardb-restored"})
    import threading

    def finish_later() -> None:
        import time

        time.sleep(0.3)
        arm.state.accounts["scalardb-restored"].provisioning = "Succeeded"

    t = threading.Thread(target=finish_later)
    t.start()
    resumed.restore(cap, tmp_path / "capture", replace=False, journal=journal)
    t.join()
    assert not arm.state.calls("PUT")
    assert journal.step == CREATED
    assert resumed.restored_to()["endpoint"].startswith("https://scalardb-restored.")
    # Resumed past CREATED: nothing is asked of Azure at all.
    arm.state.requests.clear()
    again = store(arm, restore_as="scalardb-restored")
    again.restore(cap, tmp_path / "capture", replace=False, journal=journal)
    assert not [r for r in arm.state.requests if "/subscriptions/" in r.path]


def test_a_failed_repair_names_the_command_and_hides_the_secret(arm, tmp_path, monkeypatch) -> None:
    cap = capture(arm, tmp_path)
    monkeypatch.setenv("PP_TEST_COSMOS_KEY", "very-secret-key")
    script = tmp_path / "fail.py"
    script.write_text(
        "import os, sys\nprint('key=' + os.environ['K'], file=sys.stderr)\nsys.exit(3)\n"
    )
    target = store(
        arm,
        restore_as="scalardb-restored",
        repair_command=[sys.executable, str(script)],
        repair_env={"K": {"env": "PP_TEST_COSMOS_KEY"}},
    )
    target.restore(cap, tmp_path / "capture", replace=False)
    from pausepoint.errors import RestoreError

    with pytest.raises(RestoreError) as err:
        target.reapply_settings(cap)
    text = str(err.value)
    assert "exited with 3" in text and "key=***" in text and "very-secret-key" not in text


# --- through the real backup and restore flows ---------------------------------------------


@pytest.fixture
def cosmos_site(pg_server, mysql_server, prefect_api, arm, tmp_path, monkeypatch):
    """A site whose ledger has a PostgreSQL store and the Cosmos DB store, under one test admin
    node, backed up by the real backup flow."""
    import yaml

    from harness.bank_app import create_schema
    from harness.gate_server import start_gate_cluster
    from harness.sites import SiteDbs
    from tests.unit.test_clock import FakeNtpServer

    dbs = SiteDbs(pg_server, mysql_server, monkeypatch, prefix="cosmosflow")
    pg = dbs.database("ledger_c", "postgres")
    create_schema(pg.live)
    with start_gate_cluster(1) as ledger:
        data = dbs.site_dict({"ledger": ledger.targets}, {"ledger": [pg]})
        cfg = {"kind": "cosmos", **config(arm).model_dump(mode="json", exclude_defaults=True)}
        data["ledger"]["stores"].append(cfg)
        ntp = FakeNtpServer(offset_s=0.004, root_dispersion_s=0.002)
        data["clock"] = {"ntp_servers": [ntp.address], "required": True}
        path = tmp_path / "site.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        try:
            yield path, pg
        finally:
            ntp.close()


def test_backup_and_restore_flows_take_the_point_by_time_and_report_the_new_account(
    cosmos_site, arm, tmp_path
) -> None:
    import yaml

    from flows.backup import backup
    from pausepoint.catalog import open_catalog
    from pausepoint.requests import BackupRequest
    from pausepoint.site import load_site
    from tests.integration.test_in_place import restore_with

    path, pg = cosmos_site
    point_id = backup(BackupRequest(site_file=str(path)))
    site = load_site(path)
    point = open_catalog(site.catalog).get_point(site.site, point_id)
    _, cap = point.store("ledger-cosmos")
    assert point.window.start <= cap.pitr_timestamp <= point.window.end + timedelta(seconds=0.5)
    # The hold covers the kind's one-second step (clock.required_hold_ms).
    assert point.window.hold_ms >= 1000

    target = tmp_path / "target.yaml"
    target.write_text(
        yaml.safe_dump(
            {
                "stores": {
                    pg.store_name: pg.restore_override,
                    "ledger-cosmos": {"restore_as": "scalardb-flow-restored"},
                }
            }
        )
    )
    result = restore_with(type("S", (), {"path": path})(), point_id, str(target), replace=False)
    checks = {name: (ok, detail) for name, ok, detail in result["checks"]}
    ok, detail = checks["restored into ledger/ledger-cosmos"]
    assert ok and "scalardb-flow-restored" in detail and "documents.azure.example" in detail
    put = arm.state.calls("PUT", "/databaseAccounts/scalardb-flow-restored")[0].body
    at = put["properties"]["restoreParameters"]["restoreTimestampInUtc"]
    assert datetime.fromisoformat(at.replace("Z", "+00:00")) == cap.pitr_timestamp
    assert arm.state.accounts["scalardb-flow-restored"].consistency == "Strong"
    # The service principal's secret is nowhere in the catalog.
    for f in site.catalog.path.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f
