"""The pause window's garbage-collector hold (pausepoint.window.collector_held): off inside,
back to what it was after, one hold shared by overlapping windows of one process."""

from __future__ import annotations

import gc
import threading

import pytest

from pausepoint.window import collector_held


@pytest.fixture(autouse=True)
def _collector_restored():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_the_collector_is_off_inside_and_back_on_after():
    gc.enable()
    with collector_held():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_back_on_after_a_failure_inside():
    gc.enable()
    with pytest.raises(RuntimeError), collector_held():
        raise RuntimeError("the window failed")
    assert gc.isenabled()


def test_overlapping_windows_share_one_hold_until_the_last_ends():
    """Two backups in one worker process (threads): the first to end must not switch the
    collector back on under the other's window."""
    gc.enable()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with collector_held():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    t = threading.Thread(target=first)
    t.start()
    first_in.wait(5)
    with collector_held():
        second_in.set()
        first_out.wait(5)
        seen.append(gc.isenabled())  # the first window ended; this one is still open
    t.join(5)
    assert seen == [False]
    assert gc.isenabled()


def test_a_collector_the_process_had_off_stays_off():
    gc.disable()
    with collector_held():
        assert not gc.isenabled()
    assert not gc.isenabled()
