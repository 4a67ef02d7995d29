"""SIGINT/SIGTERM during the pause window close it at once (issue 10, defect 8).

The window steps run in worker threads as in test_backup_window.py; the test sends the signal to
its own process, whose main thread (pytest's) has the run's handlers installed, as the flow's
main thread has. The subprocess version through `pausepoint backup` is in
tests/integration/test_backup_signals.py.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pausepoint.backup import interrupts_close_window
from pausepoint.errors import BackupInterruptedError, most_severe
from tests.unit.test_backup_window import FakeStore, run_window
from tests.unit.test_lease_guard import catalog, make_run  # noqa: F401 (fixture)
from tests.unit.test_window import T2, FakeAdmin


def wait_until(predicate, what: str, timeout_s: float = 10) -> None:
    t0 = time.monotonic()
    while not predicate():
        assert time.monotonic() - t0 < timeout_s, what
        time.sleep(0.01)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_in_the_hold_closes_the_window_at_once(catalog, signum):  # noqa: F811
    admin = FakeAdmin()
    run = make_run(admin, catalog, [FakeStore("a", admin)])
    before = signal.getsignal(signum)
    with interrupts_close_window(run):
        run.take_lease(hold_ms=30_000)
        with ThreadPoolExecutor(max_workers=1) as pool:
            window = pool.submit(run_window, run, 30_000)  # a 30 s hold
            wait_until(run.signals.paused.is_set, "never paused")
            t0 = time.monotonic()
            os.kill(os.getpid(), signum)
            out = window.result(timeout=20)
            closed_after = time.monotonic() - t0
        lease = run.end_lease()
    assert signal.getsignal(signum) is before  # the previous handler is back
    assert closed_after < 10  # not the 30 s hold
    assert out["pause"] is True and out["verify"] is False and out["unpause"] is None
    assert not any(admin.paused.values())
    assert lease is not None and lease.state == "released"
    [error] = run.errors_after_window()
    assert isinstance(error, BackupInterruptedError)
    assert error.exit_code == 128 + signum
    name = signal.Signals(signum).name
    assert f"interrupted by {name} during the pause window: every node was unpaused" in str(error)
    assert "no restore point was registered" in str(error)


def test_a_signal_before_the_pause_pauses_nothing(catalog):  # noqa: F811
    admin = FakeAdmin()
    run = make_run(admin, catalog, [FakeStore("a", admin)])
    with interrupts_close_window(run):
        run.take_lease(hold_ms=0)
        os.kill(os.getpid(), signal.SIGTERM)
        wait_until(run.signals.interrupted.is_set, "the signal was not handled")
        out = run_window(run)
        run.end_lease()
    assert out["pause"] is True  # run_window's view: pause() returned without raising
    assert [c for c in admin.calls if c[0] == "pause"] == []
    [error] = run.errors_after_window()
    assert "interrupted by SIGTERM before the pause: nothing was paused" in str(error)


def test_an_unpause_failure_outranks_the_interruption(catalog):  # noqa: F811
    admin = FakeAdmin()
    admin.unpause_fail[T2] = 99
    run = make_run(admin, catalog, [FakeStore("a", admin)])
    with interrupts_close_window(run):
        run.take_lease(hold_ms=30_000)
        with ThreadPoolExecutor(max_workers=1) as pool:
            window = pool.submit(run_window, run, 30_000)
            wait_until(run.signals.paused.is_set, "never paused")
            os.kill(os.getpid(), signal.SIGTERM)
            out = window.result(timeout=20)
        lease = run.end_lease()
    assert lease is not None and lease.state == "active"  # for the watchdog
    errors = [out["unpause"], *run.errors_after_window()]
    worst = most_severe(errors)
    assert type(worst).__name__ == "UnpauseError"
    assert "may still be PAUSED" in str(errors[1]) and "stays ACTIVE" in str(errors[1])
