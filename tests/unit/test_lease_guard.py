"""The backup run's lease: written before the first Pause, enforced in-process by its timer.

The window steps run in threads as in test_backup_window.py, with a real local catalog. The
deadline is made short (drain + open-capture timeouts of 200 ms, no margin) so a hung window
meets it within a unit test.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pausepoint.backup import BackupRun, StoreSlot
from pausepoint.catalog import Catalog, Lease, LocalDriver
from pausepoint.errors import LeaseError, PauseError, UnpauseError, WindowExpiredError
from pausepoint.lease_guard import LeaseGuard
from pausepoint.site import PauseSettings
from pausepoint.window import PauseSession, deadline_for
from tests.unit.test_backup_window import FakeHandle, FakeStore, run_window, window_site
from tests.unit.test_window import T1, T2, T3, FakeAdmin

PAUSE = {
    "drain_timeout_ms": 200,
    "open_capture_timeout_ms": 200,
    "lease_margin_ms": 0,
    # Long: the steps' own waits must not end a hung window before the lease deadline does.
    "call_timeout_ms": 5000,
    "unpause_backoff_ms": 1,
}
SITE = window_site(PAUSE)
NODES = {"ledger": [T1, T2], "auditor": [T3]}


class HungStore(FakeStore):
    """Opens its snapshot only when the test lets it: a step that hangs inside the window."""

    def __init__(self, name: str, admin: FakeAdmin):
        super().__init__(name, admin)
        self.release = threading.Event()

    def open_capture(self, workdir: Path, prepared=None):
        self.release.wait(10)
        return FakeHandle()


def make_run(admin: FakeAdmin, catalog: Catalog, stores: list[FakeStore]) -> BackupRun:
    run = BackupRun(site=SITE, catalog=catalog, client=admin, resolver=None)  # type: ignore[arg-type]
    run.slots = [StoreSlot("ledger", s, workdir=Path("/nonexistent")) for s in stores]
    run.session = PauseSession("demo", NODES, admin, PauseSettings(**PAUSE))
    return run


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(LocalDriver(tmp_path / "catalog"))


def unpauses(admin: FakeAdmin) -> dict:
    return {t: admin.unpaused_targets().count(t) for t in (T1, T2, T3)}


def test_take_lease_names_every_node_run_and_deadline(catalog):
    run = make_run(FakeAdmin(), catalog, [])
    now = datetime.now(UTC)  # a past "now" would put the deadline behind us: the timer fires
    lease = run.take_lease(hold_ms=1000, now=now)
    try:
        assert lease.nodes == [f"ledger/{T1}", f"ledger/{T2}", f"auditor/{T3}"]
        assert lease.run_id == run.run_id and run.run_id.startswith("local-")
        assert lease.deadline == deadline_for(SITE.pause, 1000, now)
        assert lease.deadline == now + timedelta(milliseconds=200 + 1000 + 200)
        assert lease.heartbeat_at == now and lease.heartbeat_s is not None
        assert catalog.get_lease("demo", run.run_id) == lease
    finally:
        run.guard.disarm()


def test_take_lease_uses_the_flow_run_id_when_there_is_one(catalog):
    run = make_run(FakeAdmin(), catalog, [])
    run.flow_run_id = "0b5e6b52-5c3a-4c55-9d55-3d8b1f0b8a11"
    try:
        assert run.take_lease(hold_ms=0).run_id == run.flow_run_id
    finally:
        run.guard.disarm()


def test_take_lease_write_fails_raises_lease_error_and_pauses_nothing(tmp_path):
    blocker = tmp_path / "catalog"
    blocker.write_text("a file where the catalog directory should be")
    admin = FakeAdmin()
    run = make_run(admin, Catalog(LocalDriver(blocker)), [])
    with pytest.raises(LeaseError) as e:
        run.take_lease(hold_ms=0)
    msg = str(e.value)
    assert "site 'demo'" in msg and f"ledger/{T1}" in msg and f"auditor/{T3}" in msg
    assert "Nothing was paused" in msg and "catalog.path" in msg
    assert run.guard is None
    assert admin.calls == []


def test_lease_released_after_a_normal_window_and_timer_cancelled(catalog):
    admin = FakeAdmin()
    run = make_run(admin, catalog, [FakeStore("a", admin)])
    run.take_lease(hold_ms=0)
    out = run_window(run, hold_ms=10)
    assert out == {
        "prepare0": True,
        "pause": True,
        "open0": True,
        "verify": True,
        "unpause": None,
    }
    lease = run.end_lease()
    assert lease is not None and lease.state == "released"
    assert catalog.get_lease("demo", run.run_id).state == "released"
    time.sleep(0.6)  # well past the deadline: a live timer would unpause again now
    assert not run.guard.fired and not run.deadline_passed
    assert unpauses(admin) == {T1: 1, T2: 1, T3: 1}
    assert catalog.get_lease("demo", run.run_id).state == "released"


def test_lease_timer_unpauses_when_the_deadline_passes_while_the_window_hangs(catalog):
    admin = FakeAdmin()
    store = HungStore("a", admin)
    run = make_run(admin, catalog, [store])
    lease = run.take_lease(hold_ms=0)
    with ThreadPoolExecutor(max_workers=1) as pool:
        window = pool.submit(run_window, run)
        t0 = time.monotonic()
        while not (admin.unpaused_targets() and not any(admin.paused.values())):
            assert time.monotonic() - t0 < 5, "the lease timer did not unpause the hung window"
            time.sleep(0.01)
        unpaused_at = datetime.now(UTC)
        store.release.set()  # the hung step returns at last
        out = window.result()
    assert lease.deadline <= unpaused_at < lease.deadline + timedelta(seconds=1)
    assert run.guard.fired and run.deadline_passed
    assert unpauses(admin) == {T1: 1, T2: 1, T3: 1}  # the unpause step did not unpause again
    assert isinstance(out["unpause"], WindowExpiredError)
    assert "lease deadline" in str(out["unpause"]) and "discarded" in str(out["unpause"])
    assert out["verify"] is False  # the window closed before the snapshots opened
    stored = catalog.get_lease("demo", run.run_id)
    assert stored.state == "broken"
    assert "the run's own deadline timer unpaused" in (stored.broken_reason or "")
    assert run.end_lease() == stored  # the timer's record is kept


def test_lease_timer_cuts_a_hold_that_outlives_the_deadline_short(catalog):
    admin = FakeAdmin()
    run = make_run(admin, catalog, [FakeStore("a", admin)])
    run.take_lease(hold_ms=0)  # the deadline is ~400 ms away; the hold below is 5 s
    t0 = time.monotonic()
    out = run_window(run, hold_ms=5000)
    assert time.monotonic() - t0 < 2.5
    assert out["verify"] is False  # the hold stopped when the window closed; nothing verified
    assert isinstance(out["unpause"], WindowExpiredError)
    assert not any(admin.paused.values())
    assert catalog.get_lease("demo", run.run_id).state == "broken"


def test_end_lease_leaves_lease_active_when_unpause_failed(catalog):
    admin = FakeAdmin()
    admin.unpause_fail[T2] = 99
    run = make_run(admin, catalog, [FakeStore("a", admin)])
    run.take_lease(hold_ms=0)
    out = run_window(run)
    assert isinstance(out["unpause"], UnpauseError)
    lease = run.end_lease()
    assert lease is not None and lease.state == "active"
    assert catalog.get_lease("demo", run.run_id).state == "active"  # for the watchdog
    time.sleep(0.6)
    assert not run.guard.fired  # disarmed when the window closed, even though unpause failed


def test_unpause_all_runs_once_when_the_timer_races_the_unpause_step():
    class SlowAdmin(FakeAdmin):
        def unpause(self, target, *, timeout_s):
            time.sleep(0.05)
            super().unpause(target, timeout_s=timeout_s)

    admin = SlowAdmin()
    session = PauseSession("demo", NODES, admin, PauseSettings(**PAUSE))
    session.pause_all()
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: session.unpause_all(), range(2)))
    assert sorted(results) == [False, True]
    assert unpauses(admin) == {T1: 1, T2: 1, T3: 1}
    assert session.unpaused_everything


def test_unpause_all_second_caller_gets_the_first_callers_failure():
    admin = FakeAdmin()
    admin.unpause_fail[T1] = 99
    session = PauseSession("demo", NODES, admin, PauseSettings(**PAUSE))
    session.pause_all()
    with pytest.raises(UnpauseError) as first:
        session.unpause_all()
    calls = len(admin.calls)
    with pytest.raises(UnpauseError) as second:
        session.unpause_all()
    assert second.value is first.value
    assert len(admin.calls) == calls
    assert not session.unpaused_everything


def test_pause_landing_after_the_window_closed_is_unpaused_at_once():
    class SlowPause(FakeAdmin):
        def pause(self, target, **kw):
            time.sleep(0.2)
            super().pause(target, **kw)

    admin = SlowPause()
    session = PauseSession("demo", NODES, admin, PauseSettings(**PAUSE))
    with ThreadPoolExecutor(max_workers=1) as pool:
        pausing = pool.submit(session.pause_all)
        time.sleep(0.05)
        assert session.unpause_all() is True  # the deadline closed the window mid-pause
        with pytest.raises(PauseError, match="while Pause was still in flight") as e:
            pausing.result()
    assert f"ledger/{T1}" in str(e.value) and "unpaused again" in str(e.value)
    assert not any(admin.paused.values())
    assert unpauses(admin) == {T1: 1, T2: 1, T3: 1}
    assert session.unpaused_everything


def test_lease_heartbeat_rewrites_the_lease_until_disarmed(catalog):
    now = datetime.now(UTC)
    lease = Lease(
        site="demo",
        run_id="beating",
        owner="test",
        nodes=[f"ledger/{T1}"],
        created_at=now,
        deadline=now + timedelta(minutes=1),
    )
    guard = LeaseGuard(catalog, lambda: None, heartbeat_s=0.02)
    first = guard.take(lease)
    try:
        # Wait for a beat (a busy machine may delay the heartbeat thread; no timing asserted).
        deadline = time.monotonic() + 30
        beat = catalog.get_lease("demo", "beating").heartbeat_at
        while (beat is None or beat <= now) and time.monotonic() < deadline:
            time.sleep(0.02)
            beat = catalog.get_lease("demo", "beating").heartbeat_at
        assert first.heartbeat_at == now and beat is not None and beat > now
    finally:
        guard.disarm()
    after = catalog.get_lease("demo", "beating").heartbeat_at
    time.sleep(0.1)
    assert catalog.get_lease("demo", "beating").heartbeat_at == after
    assert catalog.get_lease("demo", "beating").state == "active"
    assert guard.release().state == "released"
