"""End to end on the ScalarDB-backed nodes (issue 12, items 4 and 5): pausepoint's backup and
restore FLOWS against real ScalarDB Consensus Commit under load, and the real scalar-admin CLI.

Two ledger and two auditor nodes (harness/scalardb_node.py) on the session's MariaDB and
PostgreSQL, every transfer one transaction across both databases, 8 clients
(harness/scalardb_workload.py). The site file declares ``scalardb:`` for both components
(harness/scalardb_site.py). Five backups run through the backup flow while the clients write;
each point is restored through the restore flow into FRESH databases (MariaDB's namespace and
metadata under new names, so the restore rewrites ScalarDB's metadata; PostgreSQL's database
under a new name) and must pass the restore's ScalarDB transaction check and the checker
(harness/scalardb_checker.py: everything read through ScalarDB) with the point's window. The
write stall the clients saw is printed per backup beside pausepoint's own figure (run with -s).

The negative control copies the same databases at two moments without a pause (PostgreSQL,
with the coordinator, first; MariaDB a second later) and runs the same two checks: the checker
must catch it; the ScalarDB transaction check must fail exactly when the copy holds a record
whose transaction the copied coordinator does not know (an independent SQL look at the copies
says whether it does).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness import scalardb_node as sn
from harness import scalardb_site as ss
from harness.admin_cli import AdminCliUnavailable, Command, class_path, run_admin_command
from harness.scalardb_checker import check as check_copy
from harness.scalardb_workload import CLIENTS, Entry, Workload, create_accounts
from harness.servers import PASSWORD, connect_mysql, connect_postgres
from pausepoint.admin.client import AdminCallError
from pausepoint.admin.grpc_client import GrpcAdminClient
from pausepoint.site import Target

pytestmark = [pytest.mark.integration]

BACKUPS = int(os.environ.get("PAUSEPOINT_E2E_BACKUPS", "5"))
FIGURES: list[str] = []  # printed at module end


@dataclass
class E2e:
    cluster: sn.Cluster
    site_file: Path
    work: Path
    pg: object
    my: object
    creations: list[Entry] = field(default_factory=list)


@pytest.fixture(scope="module")
def e2e(scalardb_node_cp, pg_server, mysql_server, prefect_api, tmp_path_factory) -> Iterator[E2e]:
    work = tmp_path_factory.mktemp("scalardb-e2e")
    mp = pytest.MonkeyPatch()
    for env in ss.PASSWORD_ENVS.values():
        mp.setenv(env, PASSWORD)
    cluster = sn.start_cluster(pg_server, mysql_server, "e2e", work)
    try:
        site_file = ss.write_yaml(
            work / "site.yaml", ss.site_data(cluster, "sdb-e2e", work / "catalog")
        )
        ctx = E2e(cluster, site_file, work, pg_server, mysql_server)
        ctx.creations = create_accounts(cluster.addresses("ledger"), cluster.addresses("auditor"))
        yield ctx
    finally:
        with GrpcAdminClient() as admin:  # never leave a node paused behind a failed test
            for t in cluster.targets():
                with contextlib.suppress(AdminCallError):
                    admin.unpause(Target.parse(t), timeout_s=5)
        cluster.stop()
        mp.undo()
        if FIGURES:
            print("\nScalarDB e2e:\n  " + "\n  ".join(FIGURES))


@pytest.fixture(scope="module")
def backups(e2e) -> tuple[list[ss.PointFigures], list[Entry]]:
    """BACKUPS points through the backup flow while 8 clients write; the whole request log."""
    figures = []
    with Workload(e2e.cluster.addresses("ledger"), e2e.cluster.addresses("auditor")) as w:
        w.wait_for(50)
        for _ in range(BACKUPS):
            figures.append(ss.backup(e2e.site_file))
            w.wait_for(w.acked() + 40)  # requests held by the pause completed, new ones too
    log = w.stop()
    return figures, e2e.creations + log


def test_backups_under_load_restore_into_fresh_databases_and_pass_both_checks(e2e, backups):
    figures, log = backups
    assert len(figures) == BACKUPS >= 1
    arrived_in_pauses = 0
    for i, fig in enumerate(figures, 1):
        suffix = f"r{i}"
        try:
            checked = ss.restore_and_check(e2e.cluster, e2e.site_file, fig, log, suffix, e2e.work)
        finally:
            ss.drop_copies(e2e.cluster, suffix)
        clients = fig.clients(log)
        arrived_in_pauses += clients.requests
        FIGURES.append(f"backup {i} ({fig.point_id}): {ss.stall_line(fig, clients)}")
        # the restore's own checks: fingerprints, the metadata rewrite, ScalarDB transactions
        assert all(ok for _, ok, _ in checked.checks), checked.checks
        assert {n for n, _, _ in checked.checks} >= {"ScalarDB metadata renamed"}
        assert set(checked.scalardb) == {"ledger", "auditor"}, checked.checks
        assert all(ok for ok, _ in checked.scalardb.values()), checked.scalardb
        # the checker, reading everything through ScalarDB, with the point's window
        assert checked.verdict.ok, f"point {fig.point_id}:\n{checked.verdict.summary()}"
        assert checked.verdict.stats["acked before window"] > 0
        assert checked.ok
        # a request sent while the nodes were paused waited at least until the pause ended
        held = [e for e in log if e.acked is not None and fig.window[0] <= e.sent <= fig.window[1]]
        assert all(e.acked >= fig.window[1] for e in held), fig
    assert arrived_in_pauses > 0, "no request arrived during any pause: the stall is unmeasured"


def _unknown_to_coordinator(copy: sn.ComponentDbs) -> list[str]:
    """Independently of pausepoint: the tx id of each non-COMMITTED record (ScalarDB's tx_state
    3 = COMMITTED) in the copy's transactional tables whose transaction the copy's coordinator
    does not know (one entry per record)."""
    pending: list[str] = []
    my = connect_mysql(copy.mysql, copy.mysql_metadata, autocommit=True)
    with my as conn, conn.cursor() as cur:
        cur.execute("SELECT DISTINCT full_table_name FROM metadata")
        tables = [r[0] for r in cur.fetchall()]
        for full in tables:
            ns, _, table = full.partition(".")
            cur.execute(f"SELECT tx_id FROM `{ns}`.`{table}` WHERE tx_state <> 3")
            pending += [r[0] for r in cur.fetchall()]
    with connect_postgres(copy.postgres, copy.pg_database, autocommit=True) as conn:
        for table in ("asset", "asset_metadata", "request"):
            exists = conn.execute(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = %s "
                "AND table_name = %s",
                (copy.pg_namespace, table),
            ).fetchone()
            if exists:
                rows = conn.execute(
                    f'SELECT tx_id FROM "{copy.pg_namespace}"."{table}" WHERE tx_state <> 3'
                ).fetchall()
                pending += [r[0] for r in rows]
        known = {
            r[0]
            for r in conn.execute(
                f'SELECT tx_id FROM "{copy.coordinator}"."state" WHERE tx_id = ANY(%s)',
                (sorted(set(pending)),),
            ).fetchall()
        }
    return [tx for tx in pending if tx not in known]


def test_negative_control_copies_at_two_moments_without_a_pause_are_caught(e2e):
    cluster, suffix = e2e.cluster, "torn"
    copies = ss.copies(cluster, suffix)
    try:
        with Workload(cluster.addresses("ledger"), cluster.addresses("auditor"), seed=7) as w:
            w.wait_for(30)
            # PostgreSQL (with the coordinator) first, MariaDB a second later: the order in
            # which a transaction can be PREPARED in the copy yet unknown to its coordinator.
            t1 = min(sn.copy_postgres(e2e.pg, cluster.dbs[c], copies[c], e2e.work) for c in copies)
            time.sleep(1.0)
            t2 = max(sn.copy_mysql(e2e.my, cluster.dbs[c], copies[c], e2e.work) for c in copies)
            w.wait_for(w.acked() + 10)
        log = e2e.creations + w.stop()
        committed_between = [e for e in log if e.ledger_acked and t1 < e.ledger_acked < t2]
        assert committed_between, "the workload committed nothing between the two copies"
        # pausepoint's ScalarDB transaction check first (the checker's reads resolve records)
        unknown = {c: _unknown_to_coordinator(d) for c, d in copies.items()}
        tx = {r.component: r for r in ss.scalardb_check_copies(e2e.site_file, ss.target_data(
            cluster, suffix))}  # fmt: skip
        for comp, result in tx.items():
            FIGURES.append(
                f"negative control, ScalarDB check {comp}: "
                f"{'pass' if result.passed else 'FAIL'}: {result.summary()}"
            )
            assert result.unresolved == len(unknown[comp]), (comp, result.summary())
            assert result.passed == (not unknown[comp]), (comp, result.summary())
        dumps = {c: sn.check(d, e2e.work) for c, d in copies.items()}
        verdict = check_copy(dumps, log, (t1, t2))
        FIGURES.append("negative control, checker: " + verdict.summary().replace("\n", "\n  "))
        assert not verdict.ok, verdict.summary()
        # the tear itself: MariaDB holds transfers whose request records (PostgreSQL) are not
        assert not verdict.rules["balances_match_records"], verdict.summary()
    finally:
        ss.drop_copies(cluster, suffix)


# --- the real scalar-admin CLI against the ScalarDB-backed nodes -------------------------------


def test_admin_command_cli_pauses_checks_and_unpauses_the_nodes_under_load(e2e):
    try:
        class_path()
    except AdminCliUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI must run every test: `make test` runs make scalar-admin)")
        pytest.skip(str(exc))
    cluster = e2e.cluster
    targets = cluster.targets()
    assert len(targets) == 4
    with Workload(cluster.addresses("ledger"), cluster.addresses("auditor"), seed=11) as w:
        w.wait_for(30)
        try:
            run_admin_command(Command.PAUSE, addresses=targets, max_wait_ms=20_000).check()
            paused_at = time.time()
            states = run_admin_command(Command.CHECK_PAUSED, addresses=targets).check().paused
            assert states == {t: True for t in targets}
            # every client ends up held at a gate (ledger or auditor step), nothing in flight
            deadline = time.monotonic() + 10
            while True:
                pings = [n.ping() for n in cluster.all_nodes()]
                if sum(p["held"] for p in pings) == CLIENTS or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert sum(p["held"] for p in pings) == CLIENTS, pings
            assert all(p["paused"] and p["inflight"] == 0 for p in pings), pings
            acked = w.acked()
            time.sleep(1.0)
            assert w.acked() == acked, "requests completed while every node was paused"
            unpause_at = time.time()
        finally:
            unpaused = run_admin_command(Command.UNPAUSE, addresses=targets)
        unpaused.check()
        states = run_admin_command(Command.CHECK_PAUSED, addresses=targets).check().paused
        assert states == {t: False for t in targets}
        w.wait_for(acked + 30)  # the held requests and new ones complete
    log = w.stop()
    assert not [e for e in log if e.acked and paused_at < e.acked < unpause_at]
    resumed = [e for e in log if e.sent < unpause_at and e.acked and e.acked > unpause_at]
    assert len(resumed) >= 1, "no held request completed after UNPAUSE"
    assert all(e.outcome == "acked" for e in log if e.acked), "a request failed after the unpause"
