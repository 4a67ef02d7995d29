"""LockView: when the pause lock's slot is orphaned, and what a timeout says (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pausepoint.pause_lock import QUIET_S, LockRun, LockView, free_command

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RUN = LockRun(id="0b5e6f52-2f40-4c4e-9e38-1d2b2c3d4e5f", name="umber-horse", state="Running")


def view(active: int, live=(), ended_s_ago: float | None = None) -> LockView:
    last_end = NOW - timedelta(seconds=ended_s_ago) if ended_s_ago is not None else None
    return LockView(site="s1", active_slots=active, live=tuple(live), last_end=last_end, now=NOW)


def test_a_slot_is_orphaned_only_when_no_run_could_hold_it():
    assert view(1).orphaned()
    assert view(1, ended_s_ago=QUIET_S).orphaned()
    assert not view(1, ended_s_ago=QUIET_S - 1).orphaned()  # its lease may not have lapsed yet
    assert not view(1, live=[RUN]).orphaned()  # a live run may hold it
    assert not view(0).orphaned()


def test_a_timeout_names_the_holder_or_says_there_is_none():
    held = view(1, live=[RUN]).timeout_message(900)
    assert RUN.id in held and "umber-horse" in held and "Running" in held
    assert "pause.lock_timeout_s=900" in held and "nothing was paused" in held

    lost = view(1, ended_s_ago=10).timeout_message(900)
    assert "No run of the site is running" in lost and free_command("s1") in lost
    assert "prefect gcl update pausepoint-pause-s1 --active-slots 0" in lost
    assert "another backup" not in lost

    slow = view(0).timeout_message(900)
    assert "was free" in slow and "too slow or unreachable" in slow
    assert "another backup" not in slow and "held" not in slow
