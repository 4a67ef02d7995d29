"""A Pause that takes effect after the backup gave up on it (issue 10, defect 2).

Real gRPC test admin nodes: one of them answers Pause with DEADLINE_EXCEEDED at once and closes
its gate some time later (``GateServer.late_pause_ms``), after the run has already unpaused. The
run must keep its lease and re-check that node until the lease deadline, and unpause it then.
The window steps run in threads as in test_backup_window.py; the lease is in a real local
catalog; the deadline is short (drain + open-capture timeouts of 300 ms, a 1.5 s margin).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.gate_server import GateCluster, PauseOutcome, start_gate_cluster
from pausepoint.admin.client import Reason
from pausepoint.admin.grpc_client import GrpcAdminClient
from pausepoint.backup import BackupRun, StoreSlot
from pausepoint.catalog import Catalog, LocalDriver
from pausepoint.errors import PauseError
from pausepoint.site import PauseSettings
from pausepoint.window import PauseSession
from tests.unit.test_backup_window import FakeStore, run_window, window_site
from tests.unit.test_window import FakeAdmin

PAUSE = {
    "drain_timeout_ms": 300,
    "open_capture_timeout_ms": 300,
    "lease_margin_ms": 1500,
    "call_timeout_ms": 1000,
    "unpause_backoff_ms": 1,
}
SITE = window_site(PAUSE)


@pytest.fixture
def nodes():
    with start_gate_cluster(3) as cluster:
        yield cluster


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(LocalDriver(tmp_path / "catalog"))


def make_run(cluster: GateCluster, catalog: Catalog) -> BackupRun:
    client = GrpcAdminClient()
    run = BackupRun(site=SITE, catalog=catalog, client=client, resolver=None)  # type: ignore[arg-type]
    run.slots = [StoreSlot("ledger", FakeStore("a", FakeAdmin()), workdir=Path("/nonexistent"))]
    t = cluster.targets
    run.session = PauseSession(
        "demo", {"ledger": [t[0], t[1]], "auditor": [t[2]]}, client, PauseSettings(**PAUSE)
    )
    return run


def paused(cluster: GateCluster) -> list:
    return [s.target for s in cluster.servers if s.gate.check_paused()]


def test_a_pause_applied_late_is_unpaused_before_the_lease_ends(nodes, catalog):
    late = nodes.servers[1]
    late.late_pause_ms = 400  # well after the run gave up on it and unpaused
    run = make_run(nodes, catalog)
    try:
        lease = run.take_lease(hold_ms=0)
        out = run_window(run)
        assert isinstance(out["pause"], PauseError)
        assert "DEADLINE" in str(out["pause"]) and f"ledger/{late.target}" in str(out["pause"])
        assert late.late_pauses == []  # not yet: the run gave up on it and unpaused already

        ended = run.end_lease()
        # Whatever end_lease did, the late Pause lands; give it the time to.
        t0 = time.monotonic()
        while not late.late_pauses:
            assert time.monotonic() - t0 < 10, "the late pause never landed"
            time.sleep(0.02)
        time.sleep(0.1)
    finally:
        run.client.close()
    assert late.late_pauses == [PauseOutcome.PAUSED]
    assert paused(nodes) == [], "the late pause was left in place"
    assert datetime.now(UTC) >= lease.deadline  # the run watched until its lease deadline
    assert ended is not None and ended.state == "broken"
    assert f"ledger/{late.target}" in (ended.broken_reason or "")
    assert "late" in (ended.broken_reason or "")
    assert catalog.get_lease("demo", run.run_id) == ended
    # The run's error stays the pause error, with a note naming the node and what was done.
    assert run.errors_after_window() == []
    notes = " ".join(getattr(out["pause"], "__notes__", []))
    assert f"ledger/{late.target}" in notes and "unpaused again" in notes


def test_a_pause_someone_else_holds_is_not_taken_for_a_late_one(nodes, catalog):
    busy = nodes.servers[1]
    busy.refuse_with = Reason.PAUSE_IN_PROGRESS  # the node's own answer: another pause is on
    run = make_run(nodes, catalog)
    try:
        run.take_lease(hold_ms=0)
        out = run_window(run)
        assert isinstance(out["pause"], PauseError)
        busy.gate.pause(wait_outstanding=False)  # that other pause lands after we gave up
        checks = [s.calls.get("CheckPaused", 0) for s in nodes.servers]
        ended = run.end_lease()
        # No Pause of ours can land late: nothing is watched, no node is asked again.
        assert [s.calls.get("CheckPaused", 0) for s in nodes.servers] == checks
    finally:
        run.client.close()
    assert paused(nodes) == [busy.target]  # the other caller's pause is left alone
    assert ended is not None and ended.state == "released"


def test_a_node_silent_at_the_end_of_the_watch_leaves_the_lease_to_the_watchdog(nodes, catalog):
    gone = nodes.servers[2]
    gone.stop()  # Pause fails UNAVAILABLE: unknown whether it reached the node
    run = make_run(nodes, catalog)
    try:
        lease = run.take_lease(hold_ms=0)
        out = run_window(run)
        assert isinstance(out["pause"], PauseError)
        ended = run.end_lease()
    finally:
        run.client.close()
    assert datetime.now(UTC) >= lease.deadline
    assert ended is not None and ended.state == "active"
    assert catalog.get_lease("demo", run.run_id).state == "active"
    notes = " ".join(getattr(out["pause"], "__notes__", []))
    assert f"auditor/{gone.target}" in notes and "watchdog" in notes
    assert paused(nodes) == []
