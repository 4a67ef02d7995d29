"""The watchdog's rules, against the in-memory admin client and a real local catalog.

It acts only on an ACTIVE lease past its deadline whose run is gone, touches only the nodes that
lease names, unpauses only those that report paused, and leaves a node another live lease names.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harness.gate_server import start_gate_cluster
from pausepoint import watchdog
from pausepoint.admin.site_client import admin_client
from pausepoint.catalog import Catalog, Lease, LocalDriver, open_catalog
from pausepoint.catalog.lease import dump_lease
from pausepoint.errors import UnpauseError, WatchdogError
from pausepoint.site import parse_site
from pausepoint.watchdog import run_watchdog
from tests.unit.test_window import T1, T2, T3, FakeAdmin

T0 = datetime(2026, 11, 28, 0, 31, 19, tzinfo=UTC)
DEADLINE = T0 + timedelta(minutes=2)
AFTER = DEADLINE + timedelta(seconds=1)
N1, N2, N3 = f"ledger/{T1}", f"ledger/{T2}", f"auditor/{T3}"

SITE = parse_site(
    {
        "site": "demo",
        "catalog": {"path": "/nonexistent"},
        "pause": {"unpause_backoff_ms": 1, "call_timeout_ms": 500},
        "ledger": {
            "targets": {"static": [str(T1), str(T2)]},
            "stores": [{"kind": "postgres", "name": "a", "user": "u", "database": "d"}],
        },
        "auditor": {
            "targets": {"static": [str(T3)]},
            "stores": [{"kind": "postgres", "name": "b", "user": "u", "database": "d"}],
        },
    }
)


class RecordingAdmin(FakeAdmin):
    """FakeAdmin that also records CheckPaused, so 'never touched' means no call at all."""

    def check_paused(self, target, *, timeout_s):
        with self._lock:
            self.calls.append(("check_paused", target))
        return super().check_paused(target, timeout_s=timeout_s)

    def touched(self) -> set:
        return {t for _, t in self.calls}


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(LocalDriver(tmp_path / "catalog"))


def lease(run_id: str = "run-1", nodes=(N1, N2, N3), **kw) -> Lease:
    fields = {
        "site": "demo",
        "run_id": run_id,
        "owner": f"backup run {run_id} on host-a pid 4242",
        "nodes": list(nodes),
        "created_at": T0,
        "deadline": DEADLINE,
        **kw,
    }
    return Lease(**fields)


def dead(run_id: str) -> bool:
    return False


def alive(run_id: str) -> bool:
    return True


def test_watchdog_expired_lease_of_dead_run_unpauses_paused_nodes_and_breaks_it(catalog):
    catalog.write_lease(lease(point_id="20261128T003119Z-3f9a"))
    admin = RecordingAdmin()
    admin.paused.update({T1: True, T2: False, T3: True})
    report = run_watchdog(catalog, SITE, admin, dead, now=AFTER)
    assert report.failures == [] and report.waiting == {}
    [broken] = report.broken
    assert broken.unpaused == [N3, N1]  # sorted by name
    assert broken.not_paused == [N2]
    assert sorted(admin.unpaused_targets(), key=str) == sorted([T1, T3], key=str)
    assert not any(admin.paused.values())
    stored = catalog.get_lease("demo", "run-1")
    assert stored == broken.lease and stored.state == "broken"
    assert stored.broken_reason == (
        "run run-1 (backup run run-1 on host-a pid 4242) was gone (its flow run is no longer "
        f"running) after the deadline; the watchdog unpaused {N3}, {N1}"
    )
    assert "1 orphaned lease(s) closed, 2 node(s) unpaused" in report.summary()


def test_watchdog_lease_not_expired_is_untouched(catalog):
    catalog.write_lease(lease())
    admin = RecordingAdmin()
    admin.paused.update({T1: True, T2: True, T3: True})
    asked = []
    report = run_watchdog(
        catalog,
        SITE,
        admin,
        lambda r: asked.append(r) or False,
        now=DEADLINE - timedelta(seconds=1),
    )
    assert report.broken == [] and report.failures == []
    assert report.waiting == {"run-1": f"its deadline {DEADLINE.isoformat()} is ahead"}
    assert admin.calls == [] and asked == []
    assert all(admin.paused.values())
    assert catalog.get_lease("demo", "run-1").state == "active"


@pytest.mark.parametrize("heartbeat", [False, True])
def test_watchdog_run_alive_is_untouched(catalog, heartbeat):
    extra = {"heartbeat_at": AFTER - timedelta(seconds=1), "heartbeat_s": 5.0} if heartbeat else {}
    catalog.write_lease(lease(**extra))
    admin = RecordingAdmin()
    admin.paused.update({T1: True, T2: True, T3: True})
    report = run_watchdog(catalog, SITE, admin, alive, now=AFTER)
    assert report.broken == [] and report.failures == []
    assert report.waiting == {"run-1": "its flow run is still running"}
    assert admin.calls == []
    assert all(admin.paused.values())
    assert catalog.get_lease("demo", "run-1").state == "active"


def test_watchdog_stale_heartbeat_counts_as_gone_even_if_the_api_says_running(catalog):
    # A flow run killed outright (SIGKILL, run plainly) stays RUNNING in the Prefect API.
    beat = T0 + timedelta(seconds=10)
    catalog.write_lease(lease(nodes=(N1,), heartbeat_at=beat, heartbeat_s=5.0))
    admin = RecordingAdmin()
    admin.paused[T1] = True
    report = run_watchdog(catalog, SITE, admin, alive, now=AFTER)
    [broken] = report.broken
    assert broken.unpaused == [N1]
    assert f"its heartbeat stopped at {beat.isoformat()}" in (broken.lease.broken_reason or "")
    assert not admin.paused[T1]


def test_watchdog_never_touches_a_node_the_lease_does_not_name(catalog):
    catalog.write_lease(lease(nodes=(N1,)))
    admin = RecordingAdmin()
    admin.paused.update({T1: True, T2: True, T3: True})  # T2, T3: someone else's pauses
    report = run_watchdog(catalog, SITE, admin, dead, now=AFTER)
    assert report.broken[0].unpaused == [N1]
    assert admin.touched() == {T1}
    assert admin.paused == {T1: False, T2: True, T3: True}


def test_watchdog_nodes_already_unpaused_breaks_lease_with_nothing_to_unpause(catalog):
    catalog.write_lease(lease())
    admin = RecordingAdmin()
    report = run_watchdog(catalog, SITE, admin, dead, now=AFTER)
    [broken] = report.broken
    assert broken.unpaused == [] and broken.not_paused == sorted([N1, N2, N3])
    assert admin.unpaused_targets() == []
    stored = catalog.get_lease("demo", "run-1")
    assert stored.state == "broken"
    assert "nothing to unpause" in (stored.broken_reason or "")


def test_watchdog_leaves_a_node_named_by_another_live_lease(catalog):
    catalog.write_lease(lease("old", nodes=(N1, N2)))
    later = T0 + timedelta(minutes=5)
    catalog.write_lease(
        lease("new", nodes=(N2,), created_at=later, deadline=later + timedelta(minutes=2))
    )
    admin = RecordingAdmin()
    admin.paused.update({T1: True, T2: True})  # T2 is paused by the new, live run
    report = run_watchdog(catalog, SITE, admin, dead, now=later + timedelta(seconds=1))
    [broken] = report.broken
    assert broken.lease.run_id == "old"
    assert broken.unpaused == [N1] and broken.left_alone == [N2]
    assert admin.paused == {T1: False, T2: True}
    assert T2 not in admin.touched()
    assert f"left alone (named in another run's live lease): {N2}" in (
        broken.lease.broken_reason or ""
    )
    assert catalog.get_lease("demo", "new").state == "active"


def test_watchdog_node_unreachable_keeps_lease_active_and_reports_unpause_error(catalog):
    catalog.write_lease(lease())
    admin = RecordingAdmin()
    admin.paused.update({T1: True, T3: True})
    admin.down.add(T3)
    report = run_watchdog(catalog, SITE, admin, dead, now=AFTER)
    assert report.broken == []
    [failure] = report.failures
    assert isinstance(failure, UnpauseError)
    assert f"{N3} did not answer CheckPaused" in str(failure)
    assert "may still be paused" in str(failure) and "next watchdog run retries" in str(failure)
    assert not admin.paused[T1]  # what could be done was done
    assert catalog.get_lease("demo", "run-1").state == "active"
    # the node is back: the next run finishes the job
    admin.down.clear()
    report = run_watchdog(catalog, SITE, admin, dead, now=AFTER)
    assert report.broken[0].unpaused == [N3]
    assert catalog.get_lease("demo", "run-1").state == "broken"


def test_watchdog_unpause_fails_keeps_lease_active_for_the_next_run(catalog):
    catalog.write_lease(lease(nodes=(N1,)))
    admin = RecordingAdmin()
    admin.paused[T1] = True
    admin.unpause_fail[T1] = 99
    report = run_watchdog(catalog, SITE, admin, dead, now=AFTER)
    [failure] = report.failures
    assert isinstance(failure, UnpauseError)
    assert "lease of run run-1" in str(failure) and "may still be PAUSED" in str(failure)
    assert report.waiting == {"run-1": "left active for the next watchdog run"}
    assert catalog.get_lease("demo", "run-1").state == "active"


def test_watchdog_cannot_ask_whether_run_is_alive_leaves_lease_alone(catalog):
    catalog.write_lease(lease())
    admin = RecordingAdmin()
    admin.paused[T1] = True

    def api_down(run_id: str) -> bool:
        raise ConnectionError("Prefect API unreachable")

    report = run_watchdog(catalog, SITE, admin, api_down, now=AFTER)
    [failure] = report.failures
    assert isinstance(failure, WatchdogError)
    assert "cannot tell whether run run-1" in str(failure) and "not touched" in str(failure)
    assert admin.calls == [] and admin.paused[T1]
    assert catalog.get_lease("demo", "run-1").state == "active"


def test_watchdog_ignores_released_and_broken_leases(catalog):
    catalog.write_lease(lease("done"))
    catalog.release_lease("demo", "done")
    catalog.write_lease(lease("gone"))
    catalog.mark_broken("demo", "gone", "earlier watchdog run")
    admin = RecordingAdmin()
    admin.paused[T1] = True
    report = run_watchdog(catalog, SITE, admin, dead, now=AFTER)
    assert report.broken == [] and report.waiting == {} and report.failures == []
    assert admin.calls == []


# --- damaged lease files (issue 10, defect 3) ---------------------------------------------------
# Real lease files in a local catalog, real test admin nodes over gRPC.


@pytest.fixture
def gates(tmp_path: Path):
    """Two Ledger nodes and one Auditor node on loopback, the site that names them, its
    admin client and catalog."""
    with start_gate_cluster(3) as cluster:
        ledger, auditor = cluster.servers[:2], cluster.servers[2:]
        site = parse_site(
            {
                "site": "demo",
                "catalog": {"path": str(tmp_path / "catalog")},
                "pause": {"unpause_backoff_ms": 1, "call_timeout_ms": 2000},
                "ledger": {
                    "targets": {"static": [str(s.target) for s in ledger]},
                    "stores": [{"kind": "postgres", "name": "a", "user": "u", "database": "d"}],
                },
                "auditor": {
                    "targets": {"static": [str(s.target) for s in auditor]},
                    "stores": [{"kind": "postgres", "name": "b", "user": "u", "database": "d"}],
                },
            }
        )
        client = admin_client(site)
        try:
            yield site, cluster.servers, client, open_catalog(site.catalog)
        finally:
            client.close()


def node_name(component: str, server) -> str:
    return f"{component}/{server.target}"


def damage(catalog: Catalog, run_id: str, data: bytes, written: datetime) -> Path:
    """A lease file with ``data``, last written at ``written`` (a killed run's file is old)."""
    path = catalog.driver.root / "demo" / "leases" / f"{run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (written.timestamp(), written.timestamp()))
    return path


def valid_lease_json(run_id: str, nodes: list[str]) -> dict:
    return json.loads(dump_lease(lease(run_id, nodes=nodes)))


DAMAGES = {
    "bad json": lambda good: b'{"format": 1, "site": "demo", "run_id": ',
    "truncated": lambda good: json.dumps(good).encode()[:40],
    "empty": lambda good: b"",
    "wrong schema": lambda good: json.dumps({**good, "nodes": "all of them"}).encode(),
    "newer format": lambda good: json.dumps({**good, "format": 2}).encode(),
    "another run's": lambda good: json.dumps({**good, "run_id": "someone-else"}).encode(),
}


@pytest.mark.parametrize("kind", sorted(DAMAGES))
def test_watchdog_damaged_lease_is_quarantined_and_the_others_are_still_handled(
    gates, kind, caplog
):
    site, (l1, l2, a1), client, catalog = gates
    for server in (l1, l2, a1):
        server.gate.pause(wait_outstanding=False)
    # A dead run's good, expired lease names l1; the killed run whose lease is damaged had
    # paused l2 and a1, which nobody can read from its file any more.
    catalog.write_lease(lease("dead-run", nodes=(node_name("ledger", l1),)))
    good = valid_lease_json("killed-run", [node_name("ledger", l2), node_name("auditor", a1)])
    path = damage(catalog, "killed-run", DAMAGES[kind](good), written=T0)

    report = run_watchdog(catalog, site, client, dead, now=AFTER)

    assert report.failures == []
    [broken] = report.broken  # the good lease is handled as before
    assert broken.lease.run_id == "dead-run" and broken.unpaused == [node_name("ledger", l1)]
    assert catalog.get_lease("demo", "dead-run").state == "broken"
    # Every node of the site was asked; those still paused were unpaused, and it says so.
    assert [s.target for s in (l1, l2, a1) if s.gate.check_paused()] == []
    check = report.site_check
    assert check is not None
    assert sorted(check.unpaused) == sorted([node_name("ledger", l2), node_name("auditor", a1)])
    assert check.not_paused == [node_name("ledger", l1)]  # the good lease's run already did it
    assert f"lease file(s) {path} cannot be read" in check.reason
    assert "the watchdog unpaused" in check.reason
    # The damaged file is moved aside for people, never read as a lease again.
    [q] = report.quarantined
    assert not path.exists()
    moved = Path(q.moved_to)
    assert moved.parent == path.parent / "quarantine"
    assert moved.name.startswith("killed-run.json.2026")
    assert moved.read_bytes() == DAMAGES[kind](good)
    assert q.location == str(path) and str(path) in q.problem
    assert [x.run_id for x in catalog.list_leases("demo")] == ["dead-run"]
    assert catalog.scan_leases("demo").damaged == []
    data = report.to_dict()
    assert data["quarantined"][0]["moved_to"] == q.moved_to
    assert sorted(data["site_check"]["unpaused"]) == sorted(check.unpaused)
    assert "1 damaged lease file(s) quarantined" in report.summary()
    assert any(str(path) in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    # The next run has nothing left to do: the quarantine is not a lease.
    again = run_watchdog(catalog, site, client, dead, now=AFTER)
    assert again.site_check is None and again.quarantined == [] and again.failures == []


def test_watchdog_damaged_lease_leaves_nodes_of_another_runs_live_lease(gates):
    site, (l1, l2, a1), client, catalog = gates
    for server in (l1, l2, a1):
        server.gate.pause(wait_outstanding=False)
    later = AFTER + timedelta(minutes=5)
    # A live run (deadline ahead) paused l1 and a1: its pause, not ours to undo.
    catalog.write_lease(
        lease(
            "live-run",
            nodes=(node_name("ledger", l1), node_name("auditor", a1)),
            created_at=later,
            deadline=later + timedelta(minutes=2),
        )
    )
    damage(catalog, "killed-run", b"\x00\x00\x00", written=T0)

    report = run_watchdog(catalog, site, client, alive, now=later + timedelta(seconds=1))

    assert report.failures == [] and report.broken == []
    assert report.site_check is not None
    assert report.site_check.unpaused == [node_name("ledger", l2)]
    assert sorted(report.site_check.left_alone) == sorted(
        [node_name("ledger", l1), node_name("auditor", a1)]
    )
    assert "left alone (named in another run's live lease)" in report.site_check.reason
    assert l1.gate.check_paused() and a1.gate.check_paused() and not l2.gate.check_paused()
    assert l1.calls.get("CheckPaused", 0) == 0 and a1.calls.get("CheckPaused", 0) == 0
    assert len(report.quarantined) == 1
    assert catalog.get_lease("demo", "live-run").state == "active"


def test_watchdog_fresh_damaged_lease_or_temp_file_touches_no_node(gates):
    site, servers, client, catalog = gates
    for server in servers:
        server.gate.pause(wait_outstanding=False)
    # Written just now: a live run may still replace it with its next heartbeat.
    path = damage(catalog, "maybe-live", b"{", written=AFTER - timedelta(seconds=1))
    # The temp file of an atomic write in progress is never a lease, damaged or not.
    temp = path.parent / ".other-run.json.x1y2.tmp"
    temp.write_bytes(b'{"format": 1, "si')
    os.utime(temp, (T0.timestamp(), T0.timestamp()))

    report = run_watchdog(catalog, site, client, dead, now=AFTER)

    assert report.site_check is None and report.quarantined == [] and report.failures == []
    assert "a live run may still rewrite it" in report.waiting["maybe-live"]
    assert path.exists() and temp.exists()
    assert all(s.gate.check_paused() for s in servers)
    assert all(s.calls.get("CheckPaused", 0) == 0 for s in servers)
    # Once it has stayed damaged past the grace, it is handled.
    report = run_watchdog(catalog, site, client, dead, now=AFTER + watchdog.UNREADABLE_GRACE)
    assert len(report.quarantined) == 1 and not path.exists() and temp.exists()
    assert not any(s.gate.check_paused() for s in servers)


def test_watchdog_damaged_lease_node_down_keeps_the_file_for_the_next_run(gates):
    site, (_, l2, a1), client, catalog = gates
    l2.gate.pause(wait_outstanding=False)
    a1.gate.pause(wait_outstanding=False)
    a1.stop()
    path = damage(catalog, "killed-run", b"not json", written=T0)

    report = run_watchdog(catalog, site, client, dead, now=AFTER)

    [failure] = report.failures
    assert isinstance(failure, UnpauseError)
    assert str(path) in str(failure) and node_name("auditor", a1) in str(failure)
    assert "stay for the next watchdog run" in str(failure)
    assert report.quarantined == [] and path.exists()
    assert not l2.gate.check_paused()  # what could be done was done
    a1.start()
    report = run_watchdog(catalog, site, client, dead, now=AFTER)
    assert report.failures == [] and len(report.quarantined) == 1 and not path.exists()
    assert report.site_check is not None
    assert report.site_check.unpaused == [node_name("auditor", a1)]
    assert not a1.gate.check_paused()
