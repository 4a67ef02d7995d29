"""The Ledger harness against real servers: ScalarDB multi-storage on PostgreSQL + MariaDB, and a
real ScalarDL Ledger paused through pausepoint's own admin client (the real wire contract)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from harness import ledger
from pausepoint.admin.grpc_client import GrpcAdminClient
from pausepoint.site import Target

pytestmark = pytest.mark.e2e

# Names of our own so the shared test servers never mix this Ledger with another test's tables.
NAMES = {
    "ledger_namespace": "harness_scalar",
    "coordinator_namespace": "harness_coordinator",
    "metadata_schema": "harness_scalardb",
}


@pytest.fixture(scope="module")
def storage(scalardl_tools, pg_server, mysql_server, tmp_path_factory) -> ledger.LedgerStorage:
    s = ledger.LedgerStorage(
        postgres=ledger.DbEndpoint.of(pg_server, "postgres"),
        mariadb=ledger.DbEndpoint.of(mysql_server, "mariadb"),
        **NAMES,
    )
    ledger.create_schema(s, tmp_path_factory.mktemp("schema"))
    return s


def test_schema_spans_two_databases(storage, pg_server, mysql_server, tmp_path):
    """The Ledger's tables land on MariaDB, the coordinator table on PostgreSQL, and ScalarDB's
    metadata on both; creating the schema again changes nothing."""
    ledger.create_schema(storage, tmp_path)  # idempotent

    with mysql_server.connect() as conn:
        cur = conn.cursor()
        cur.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN (%s, %s, %s)",
            (NAMES["ledger_namespace"], NAMES["coordinator_namespace"], NAMES["metadata_schema"]),
        )
        on_mariadb = {f"{s}.{t}" for s, t in cur.fetchall()}
    with pg_server.connect() as conn:
        on_postgres = {
            f"{s}.{t}"
            for s, t in conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema = ANY(%s)",
                (list(NAMES.values()),),
            ).fetchall()
        }

    ledger_tables = set(storage.schema())
    assert ledger_tables <= on_mariadb
    assert "harness_coordinator.state" in on_postgres
    assert "harness_scalardb.metadata" in on_mariadb
    assert "harness_scalardb.metadata" in on_postgres
    assert not any(t.startswith("harness_scalar.") for t in on_postgres)
    assert not any(t.startswith("harness_coordinator.") for t in on_mariadb)


def test_swapped_mapping_properties(storage):
    swapped = storage.swapped(ledger_namespace="aud_scalar", coordinator_namespace="aud_coord")
    props = swapped.scalardb_properties()
    assert props["scalar.db.multi_storage.namespace_mapping"] == (
        "aud_scalar:postgres,aud_coord:mariadb"
    )
    assert props["scalar.db.consensus_commit.coordinator.namespace"] == "aud_coord"


@pytest.fixture
def running_ledger(scalardl_ledger, storage, tmp_path):
    node = ledger.LedgerNode(storage, tmp_path / "node", name="harness-ledger-1")
    started = time.monotonic()
    node.start()
    print(f"Ledger started in {time.monotonic() - started:.1f} s (log {node.log_path})")
    try:
        yield node
    finally:
        node.stop()


def test_real_ledger_pause_holds_a_transfer_until_unpause(running_ledger, tmp_path):
    node = running_ledger
    client = ledger.LedgerClient(node, tmp_path / "client")
    client.register_secret()
    client.register_smallbank()
    client.execute("CreateAccount", {"account_id": "alice", "balance": 1000})
    client.execute("CreateAccount", {"account_id": "bob", "balance": 500})
    client.execute("Transfer", {"from": "alice", "to": "bob", "amount": 100})
    assert client.execute("Balance", {"account_id": "alice"})["balance"] == 900
    assert client.execute("Balance", {"account_id": "bob"})["balance"] == 600

    target = Target.parse(node.admin_address)
    with GrpcAdminClient() as admin:
        admin.pause(target, wait_outstanding=True, max_pause_wait_ms=5000, timeout_s=10)
        try:
            assert admin.check_paused(target, timeout_s=5) is True

            outcome: dict = {}

            def transfer() -> None:
                try:
                    outcome["result"] = client.execute(
                        "Transfer", {"from": "alice", "to": "bob", "amount": 50}
                    )
                except Exception as exc:  # reported by the assertions below
                    outcome["error"] = exc
                outcome["done_at"] = time.monotonic()

            worker = threading.Thread(target=transfer, daemon=True)
            worker.start()
            # The client tool needs a JVM start (~1-2 s) before its request reaches the gate.
            worker.join(timeout=8)
            assert worker.is_alive(), f"transfer finished while paused: {outcome}"
        finally:
            unpaused_at = time.monotonic()
            admin.unpause(target, timeout_s=10)
        worker.join(timeout=60)
        assert not worker.is_alive(), "transfer still pending 60 s after unpause"
        assert "error" not in outcome, outcome.get("error")
        assert outcome["done_at"] >= unpaused_at
        assert admin.check_paused(target, timeout_s=5) is False

    assert client.execute("Balance", {"account_id": "alice"})["balance"] == 850
    assert client.execute("Balance", {"account_id": "bob"})["balance"] == 650


def test_fetched_contracts_are_single_class_files(scalardl_tools):
    classes = ledger.require_contracts()
    package = classes / ledger.CONTRACT_PACKAGE.replace(".", "/")
    assert sorted(p.stem for p in package.glob("*.class")) == sorted(ledger.SMALLBANK_CONTRACTS)


def test_properties_name_every_port(tmp_path, storage):
    node = ledger.LedgerNode(storage, Path(tmp_path), port=1, privileged_port=2, admin_port=3)
    props = node.properties()
    assert props["scalar.dl.ledger.server.port"] == "1"
    assert props["scalar.dl.ledger.server.privileged_port"] == "2"
    assert props["scalar.dl.ledger.server.admin_port"] == "3"
    assert props["scalar.dl.ledger.namespace"] == "harness_scalar"
    assert props["scalar.dl.ledger.authentication.method"] == "hmac"
