"""One pause at a time per site: the Prefect global concurrency limit around the pause.

Two backups of one site started together must both succeed one after the other (without the lock
the second would find the nodes paused by the first and fail its preflight); a lock held elsewhere
past pause.lock_timeout_s, or a limit someone widened, stops a backup before anything is paused.
A timeout names the run that holds the lock, or says that no run does and how to free the slot;
a slot taken with no run of the site left to hold it (what a Prefect server restart leaves) is
freed by the next backup.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from prefect import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.concurrency.sync import concurrency

from flows.backup import backup
from pausepoint.catalog import open_catalog
from pausepoint.errors import PauseLockError
from pausepoint.requests import BackupRequest
from pausepoint.site import load_site
from tasks.pause_lock import lock_name
from tests.support.small_site import pause_calls

pytestmark = [pytest.mark.integration]


def _site_name(small_site) -> str:
    import yaml

    return yaml.safe_load(small_site.path.read_text())["site"]


def test_two_backups_started_together_pause_one_after_the_other(small_site):
    # The hold outlasts check-nodes' retries (2 x 2 s): without the lock the second run's
    # preflight would see the first run's pause on every attempt and fail.
    small_site.edit(lambda d: d.setdefault("pause", {}).update(min_hold_ms=7000))
    start = threading.Barrier(2)

    def one() -> str:
        start.wait()
        return backup(BackupRequest(site_file=str(small_site.path)))

    with ThreadPoolExecutor(2) as pool:
        ids = [f.result() for f in [pool.submit(one), pool.submit(one)]]

    points = sorted(small_site.points(), key=lambda p: p.window.start)
    assert sorted(p.id for p in points) == sorted(ids) and len(set(ids)) == 2
    first, second = (p.window for p in points)
    assert first.hold_ms >= 7000 and second.hold_ms >= 7000
    # The second pause began only after the first one ended (with its unpause confirmed).
    assert second.start > first.end
    assert pause_calls(small_site) == 2 * len(small_site.servers)
    assert [s.target for s in small_site.servers if s.gate.check_paused()] == []


def test_a_lock_held_past_the_timeout_stops_the_backup_before_any_pause(small_site):
    small_site.edit(lambda d: d.setdefault("pause", {}).update(lock_timeout_s=1))
    backup(BackupRequest(site_file=str(small_site.path)))  # creates the limit
    name = lock_name(_site_name(small_site))
    calls_before = pause_calls(small_site)
    with (
        concurrency(name, occupy=1, strict=True, lease_duration=60),
        pytest.raises(PauseLockError) as e,
    ):
        backup(BackupRequest(site_file=str(small_site.path)))
    # The holder here is no pausepoint run: the message does not invent one.
    assert f"the pause lock {name!r}" in str(e.value)
    assert "pause.lock_timeout_s=1" in str(e.value)
    assert "No run of the site is running" in str(e.value)
    assert pause_calls(small_site) == calls_before
    assert len(small_site.points()) == 1 and small_site.staged() == []


def test_a_widened_limit_is_refused(small_site):
    backup(BackupRequest(site_file=str(small_site.path)))  # creates the limit
    name = lock_name(_site_name(small_site))
    with get_client(sync_client=True) as client:
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=2))
    try:
        calls_before = pause_calls(small_site)
        with pytest.raises(PauseLockError, match=r"set to 2 slots.*prefect gcl update"):
            backup(BackupRequest(site_file=str(small_site.path)))
        assert pause_calls(small_site) == calls_before
    finally:
        with get_client(sync_client=True) as client:
            client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=1))


def _active_slots(name: str) -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name).active_slots


def test_a_timeout_names_the_run_that_holds_the_lock(small_site):
    """A backup in its hold holds the lock; a second backup that gives up says which flow run
    holds it (the id in the first run's lease), not a generic 'another backup or restore'."""
    small_site.edit(lambda d: d.setdefault("pause", {}).update(min_hold_ms=8000, lock_timeout_s=1))
    site = load_site(small_site.path)
    catalog = open_catalog(site.catalog)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(backup, BackupRequest(site_file=str(small_site.path)))
        deadline = time.monotonic() + 120
        while not catalog.list_leases(site.site, state="active"):
            assert not first.done(), first.result()
            assert time.monotonic() < deadline, "the first backup did not pause within 120 s"
            time.sleep(0.05)
        [lease] = catalog.list_leases(site.site, state="active")
        with pytest.raises(PauseLockError) as e:
            backup(BackupRequest(site_file=str(small_site.path)))
        first.result()
    message = str(e.value)
    assert lease.run_id in message and "held (or waited for) by flow run" in message, message
    assert "nothing was paused" in message
    assert len(small_site.points()) == 1


def test_a_slot_taken_with_no_run_to_hold_it_is_freed_by_the_next_backup(small_site):
    """What a Prefect server restart leaves: the limit's slot counted as taken, its lease
    forgotten, no run of the site alive. The next backup frees the slot and goes on, instead of
    waiting for the lock's timeout and blaming a run that does not exist."""
    small_site.edit(lambda d: d.setdefault("pause", {}).update(lock_timeout_s=20))
    name = lock_name(_site_name(small_site))
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=name, limit=1, active_slots=1)
        )
    assert _active_slots(name) == 1
    point_id = backup(BackupRequest(site_file=str(small_site.path)))
    assert [p.id for p in small_site.points()] == [point_id]
    assert _active_slots(name) == 0  # freed, then taken and released by the backup
