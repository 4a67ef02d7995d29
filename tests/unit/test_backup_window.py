"""The window steps of a backup run, started before the pause and handing over by signals.

Each step runs in its own thread, as the flow's tasks do; fake stores and the in-memory admin
client make every failure cheap to provoke. Whatever fails, the window closes and every node
this run paused is unpaused.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pausepoint.backup import BackupRun, StoreSlot
from pausepoint.errors import CaptureError, PauseError, VerificationError
from pausepoint.site import PauseSettings, Site, parse_site
from pausepoint.stores.base import CaptureHandle, PreparedCapture, Store, StoreCapture
from pausepoint.window import PauseSession
from tests.unit.test_window import T1, T2, T3, FakeAdmin


class FakeHandle(CaptureHandle):
    def __init__(self):
        self.opened_at = datetime.now(UTC)


class FakePrepared(PreparedCapture):
    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.freed = 0

    def free(self) -> None:
        self.freed += 1


class FakeStore(Store):
    kind = "fake"

    def __init__(
        self,
        name: str,
        admin: FakeAdmin,
        fail: bool = False,
        delay_s: float = 0,
        fail_prepare: bool = False,
    ):
        self._name, self.admin, self.fail, self.delay_s = name, admin, fail, delay_s
        self.fail_prepare = fail_prepare
        self.opened_while_paused: bool | None = None
        self.prepared: list[FakePrepared] = []
        self.prepared_while_paused: bool | None = None

    @property
    def name(self) -> str:
        return self._name

    def prepare_capture(self, workdir: Path) -> PreparedCapture:
        self.prepared_while_paused = any(self.admin.paused.get(t) for t in (T1, T2, T3))
        if self.fail_prepare:
            raise CaptureError(f"store {self._name}: cannot connect")
        self.prepared.append(FakePrepared(workdir))
        return self.prepared[-1]

    def open_capture(self, workdir: Path, prepared: PreparedCapture | None = None) -> CaptureHandle:
        if prepared is not None:
            prepared.take()
        time.sleep(self.delay_s)
        self.opened_while_paused = all(self.admin.paused.get(t) for t in (T1, T2, T3))
        if self.fail:
            raise CaptureError(f"store {self._name}: cannot open")
        return FakeHandle()

    def check(self):
        return {}

    def finish_capture(self, handle, progress=None) -> StoreCapture:
        raise NotImplementedError

    def abort_capture(self, handle) -> None:
        pass

    def check_restore_target(self, capture, replace) -> None:
        raise NotImplementedError

    def restore(self, capture, source_dir, replace) -> None:
        raise NotImplementedError

    def fingerprint(self, tables=None, method=None):
        raise NotImplementedError


def window_site(pause: dict[str, int]) -> Site:
    """Site "demo": one postgres store (nothing connects to it) and these pause settings."""
    return parse_site(
        {
            "site": "demo",
            "catalog": {"path": "/nonexistent"},
            "pause": pause,
            "ledger": {
                "targets": {"static": ["127.0.0.1:1"]},
                "stores": [{"kind": "postgres", "name": "a", "user": "u", "database": "d"}],
            },
        }
    )


SITE = window_site(
    {
        "open_capture_timeout_ms": 2000,
        "drain_timeout_ms": 1000,
        "lease_margin_ms": 0,
        "unpause_backoff_ms": 1,
    }
)


def make_run(admin: FakeAdmin, stores: list[FakeStore]) -> BackupRun:
    run = BackupRun(site=SITE, catalog=None, client=admin, resolver=None)  # type: ignore[arg-type]
    run.slots = [StoreSlot("ledger", s, workdir=Path("/nonexistent")) for s in stores]
    run.session = PauseSession(
        "demo",
        {"ledger": [T1, T2], "auditor": [T3]},
        admin,
        PauseSettings(unpause_backoff_ms=1, call_timeout_ms=500),
    )
    return run


def run_window(run: BackupRun, hold_ms: int = 0) -> dict[str, BaseException | object]:
    """As flows/backup.py's _window: prepare every capture, start the window steps (they wait),
    then pause unless a preparation failed; collect each outcome; release what is left."""
    outcome: dict[str, BaseException | object] = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        prepares = [pool.submit(run.prepare_capture, s) for s in run.slots]
        for i, f in enumerate(prepares):
            outcome[f"prepare{i}"] = f.exception() or True
        opens = [pool.submit(run.open_capture_in_window, s) for s in run.slots]
        verify = pool.submit(run.hold_and_verify, hold_ms)
        unpause = pool.submit(run.unpause_when_closing)
        time.sleep(0.02)  # the steps are now waiting, as the flow's tasks would be
        if any(v is not True for v in outcome.values()):
            outcome["pause"] = None
            run.signals.closing.set()
        else:
            try:
                run.pause()
                outcome["pause"] = True
            except BaseException as exc:
                outcome["pause"] = exc
        for i, f in enumerate(opens):
            outcome[f"open{i}"] = f.exception() or f.result()
        outcome["verify"] = verify.exception() or verify.result()
        outcome["unpause"] = unpause.exception() or unpause.result()
    run.signals.closing.set()
    run.release_prepared()
    return outcome


def preparations(stores: list[FakeStore]) -> list[tuple[str, int]]:
    """(state, times freed) of every preparation the stores made."""
    return [(p.state, p.freed) for s in stores for p in s.prepared]


def test_window_all_good_opens_every_store_inside_pause_then_unpauses():
    admin = FakeAdmin()
    stores = [FakeStore("a", admin), FakeStore("b", admin, delay_s=0.01)]
    run = make_run(admin, stores)
    out = run_window(run, hold_ms=30)
    assert out == {
        "prepare0": True,
        "prepare1": True,
        "pause": True,
        "open0": True,
        "open1": True,
        "verify": True,
        "unpause": None,
    }
    assert all(s.opened_while_paused for s in stores)
    assert not any(s.prepared_while_paused for s in stores)  # prepared BEFORE the pause
    # each open took its preparation over: the handle, not the run, frees it
    assert preparations(stores) == [("taken", 0), ("taken", 0)]
    rec = run.session.record()
    assert rec.length_ms >= 30
    assert not any(admin.paused.values())


def test_window_pause_fails_skips_opens_and_unpauses_what_was_paused():
    admin = FakeAdmin()
    admin.down.add(T3)
    stores = [FakeStore("a", admin)]
    run = make_run(admin, stores)
    out = run_window(run)
    assert isinstance(out["pause"], PauseError)
    assert out["open0"] is False and out["verify"] is False
    assert stores[0].opened_while_paused is None  # never opened
    assert set(admin.unpaused_targets()) == {T1, T2}
    assert not any(admin.paused.values())
    assert preparations(stores) == [("released", 1)]  # its connections are not left open


def test_window_prepare_fails_pauses_nothing_and_releases_the_other_preparations():
    admin = FakeAdmin()
    stores = [FakeStore("a", admin), FakeStore("b", admin, fail_prepare=True)]
    run = make_run(admin, stores)
    out = run_window(run)
    assert isinstance(out["prepare1"], CaptureError)
    assert out["pause"] is None and out["open0"] is False and out["verify"] is False
    assert admin.paused == {} or not any(admin.paused.values())
    assert admin.unpaused_targets() == []  # nothing was paused, nothing to unpause
    assert run.session.unpaused_everything  # so the lease is released, not left active
    assert preparations(stores) == [("released", 1)]


def test_release_prepared_after_a_failed_open_frees_nothing_twice():
    admin = FakeAdmin()
    stores = [FakeStore("a", admin, fail=True), FakeStore("b", admin)]
    run = make_run(admin, stores)
    out = run_window(run, hold_ms=5000)
    assert isinstance(out["open0"], CaptureError)
    # a took its preparation over (and failed: freeing it was its job); b's open may or may
    # not have run before the window closed: either taken, or released by the run
    assert stores[0].prepared[0].state == "taken"
    assert preparations(stores)[1] in (("taken", 0), ("released", 1))
    run.release_prepared()
    run.fail([CaptureError("x")])
    assert all(freed <= 1 for _, freed in preparations(stores))


def test_a_preparation_released_first_cannot_be_opened():
    admin = FakeAdmin()
    store = FakeStore("a", admin)
    run = make_run(admin, [store])
    run.prepare_capture(run.slots[0])
    prepared = run.slots[0].prepared
    run.release_prepared()
    assert run.slots[0].prepared is None and prepared.state == "released"
    with pytest.raises(CaptureError, match="already released"):
        prepared.take()


def test_window_open_fails_skips_verify_and_unpauses():
    admin = FakeAdmin()
    run = make_run(admin, [FakeStore("a", admin, fail=True), FakeStore("b", admin)])
    out = run_window(run, hold_ms=5000)
    assert isinstance(out["open0"], CaptureError)
    assert out["verify"] is False  # the hold is not served after a failure
    assert not any(admin.paused.values())


def test_window_node_restarted_fails_verification_and_unpauses():
    admin = FakeAdmin()

    class Restarting(FakeStore):
        def open_capture(self, workdir, prepared=None):
            handle = super().open_capture(workdir, prepared)
            admin.paused[T2] = False  # the node came back unpaused during the window
            return handle

    run = make_run(admin, [Restarting("a", admin)])
    out = run_window(run)
    assert isinstance(out["verify"], VerificationError)
    assert not any(admin.paused.values())


def test_wait_for_returns_false_when_window_closes_first():
    from pausepoint.backup import WindowSignals

    sig = WindowSignals()
    threading.Timer(0.02, sig.closing.set).start()
    t0 = time.monotonic()
    assert WindowSignals.wait_for(sig.opened, sig.closing, timeout_s=5) is False
    assert time.monotonic() - t0 < 1


@pytest.mark.parametrize("setter", ["event", "timeout"])
def test_wait_for_event_or_timeout(setter):
    from pausepoint.backup import WindowSignals

    sig = WindowSignals()
    if setter == "event":
        sig.paused.set()
        assert WindowSignals.wait_for(sig.paused, sig.closing, timeout_s=1) is True
    else:
        assert WindowSignals.wait_for(sig.paused, sig.closing, timeout_s=0.02) is False
