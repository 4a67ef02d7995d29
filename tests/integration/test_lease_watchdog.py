"""Never leave ScalarDL paused: the backup's lease, and the watchdog after a run was killed.

The killed backup runs the real flow in a separate process against the session's Prefect API,
pauses the test admin nodes of this process over gRPC, and dies by SIGKILL inside its hold. Run
plainly like that, its flow run stays RUNNING in the API; its stopped heartbeat is what tells the
watchdog it is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL

from flows.backup import backup
from flows.watchdog import watchdog
from pausepoint.catalog import Catalog, Lease, open_catalog
from pausepoint.catalog.base import STAGING_IDLE
from pausepoint.catalog.lease import HEARTBEAT_MISSES
from pausepoint.cli import run
from pausepoint.errors import LeaseError
from pausepoint.requests import BackupRequest, WatchdogRequest
from pausepoint.site import load_site
from pausepoint.watchdog import live_staging
from tasks.watchdog_steps import flow_run_alive
from tests.support.prefect_api import read_events, wait_for
from tests.support.small_site import SmallSite, pause_calls

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
WATCHDOG_PERIOD = timedelta(minutes=1)  # the watchdog deployment's schedule


def site_catalog(small_site: SmallSite) -> tuple[str, Catalog]:
    site = load_site(small_site.path)
    return site.site, open_catalog(site.catalog)


def expected_nodes(small_site: SmallSite) -> list[str]:
    return sorted(
        [f"ledger/{s.target}" for s in small_site.ledger.servers]
        + [f"auditor/{s.target}" for s in small_site.auditor.servers]
    )


def test_backup_releases_its_lease_after_a_normal_run(small_site):
    # A run killed earlier left its staging and a lease the watchdog broke: this backup sweeps
    # that staging at its start, not prune 24 hours later.
    site, catalog = site_catalog(small_site)
    then = datetime.now(UTC) - timedelta(hours=1)
    dead = catalog.begin_point(site, now=then)
    (dead.store_dir("ledger", "pg") / "half.dump").write_bytes(b"half a dump")
    for p in [dead.staging, *dead.staging.rglob("*")]:
        os.utime(p, (then.timestamp(), then.timestamp()))
    catalog.write_lease(
        Lease(
            site=site,
            run_id="local-killed",
            owner="a killed backup",
            nodes=expected_nodes(small_site),
            created_at=then,
            deadline=then + timedelta(minutes=1),
            point_id=dead.id,
            heartbeat_at=then,
            heartbeat_s=5.0,
        )
    )
    catalog.mark_broken(site, "local-killed", "the watchdog unpaused ...")
    point_id = backup(BackupRequest(site_file=str(small_site.path)))
    assert not dead.staging.exists() and small_site.staged() == []
    point = catalog.get_point(site, point_id)
    [lease] = [x for x in catalog.list_leases(site) if x.run_id != "local-killed"]
    assert lease.state == "released" and lease.broken_reason is None
    assert lease.run_id == point.flow_run_id and lease.point_id == point_id
    assert sorted(lease.nodes) == expected_nodes(small_site)
    assert lease.created_at <= point.window.start <= point.window.end <= lease.deadline
    assert lease.updated_at is not None and lease.updated_at >= point.window.end
    # the watchdog's view of runs: a finished run, an unknown one and a non-Prefect id are gone
    assert not flow_run_alive(lease.run_id)
    assert not flow_run_alive(str(uuid.uuid4()))
    assert not flow_run_alive("local-0123abcd")


def test_backup_lease_cannot_be_written_pauses_nothing(small_site):
    site = load_site(small_site.path)
    leases = site.catalog.path / site.site / "leases"
    leases.parent.mkdir(parents=True, exist_ok=True)
    leases.write_text("a file where the leases directory should be")
    with pytest.raises(LeaseError) as e:
        backup(BackupRequest(site_file=str(small_site.path)))
    assert "Nothing was paused" in str(e.value)
    for node in expected_nodes(small_site):
        assert node in str(e.value)
    assert pause_calls(small_site) == 0
    small_site.assert_nothing_paused_or_registered()


def _start_backup_process(small_site: SmallSite, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    code = "import sys; from flows.backup import backup; backup({'site_file': sys.argv[1]})"
    with log.open("wb") as out:
        # A session of its own: SIGKILL to its process group also kills the dump tools it runs.
        return subprocess.Popen(
            [sys.executable, "-c", code, str(small_site.path)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _orphaned_events(since: datetime) -> list[dict]:
    return read_events("pausepoint.pause.orphaned", since, limit=10)


def test_backup_killed_in_its_window_is_unpaused_by_the_watchdog_after_the_deadline(
    small_site, tmp_path, capsys
):
    # Hold long enough to be killed inside the window; small timeouts put the deadline close.
    small_site.edit(
        lambda d: d["pause"].update(
            min_hold_ms=10_000,
            drain_timeout_ms=2000,
            open_capture_timeout_ms=5000,
            lease_margin_ms=1000,
        )
    )
    site, catalog = site_catalog(small_site)
    started = datetime.now(UTC)
    log = tmp_path / "backup.log"
    child = _start_backup_process(small_site, log)
    try:
        small_site.wait_until_paused(child, log)
        os.killpg(child.pid, signal.SIGKILL)  # the group this test created, nothing else
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
    [lease] = catalog.list_leases(site, state="active")
    assert sorted(lease.nodes) == expected_nodes(small_site)
    assert all(s.gate.check_paused() for s in small_site.servers), "killed inside the window"
    # Run plainly and killed, the flow run stays RUNNING in the API: only the heartbeat tells.
    assert flow_run_alive(lease.run_id)

    # Before the deadline the watchdog leaves the lease and its nodes alone.
    report = watchdog(WatchdogRequest(site_file=str(small_site.path)))
    if datetime.now(UTC) < lease.deadline:
        assert report["broken"] == [] and lease.run_id in report["waiting"]
        assert all(s.gate.check_paused() for s in small_site.servers)

    # After the deadline (and once the dead run missed its heartbeats): one watchdog run.
    lease = catalog.get_lease(site, lease.run_id)
    assert lease.heartbeat_at is not None and lease.heartbeat_s is not None
    gone_at = lease.heartbeat_at + timedelta(seconds=HEARTBEAT_MISSES * lease.heartbeat_s)
    _sleep_until(max(lease.deadline, gone_at) + timedelta(milliseconds=200))
    report = watchdog(WatchdogRequest(site_file=str(small_site.path)))
    unpaused_at = datetime.now(UTC)

    assert [s.target for s in small_site.servers if s.gate.check_paused()] == []
    assert unpaused_at <= lease.deadline + WATCHDOG_PERIOD
    [broken] = report["broken"]
    assert broken["run_id"] == lease.run_id
    assert sorted(broken["unpaused"]) == expected_nodes(small_site)
    stored: Lease = catalog.get_lease(site, lease.run_id)
    assert stored.state == "broken"
    assert "heartbeat stopped" in (stored.broken_reason or "")
    assert "the watchdog unpaused" in (stored.broken_reason or "")

    # No restore point; the killed run's staging directory stays until the next backup.
    assert small_site.points() == []
    staged = small_site.staged()
    assert [p.name for p in staged] == [lease.point_id]

    # Announced as an event, with the site as its resource and the lease among the related.
    events = wait_for(lambda: _orphaned_events(started), timeout_s=30)
    [event] = events
    assert event["resource"]["prefect.resource.id"] == f"pausepoint.site.{site}"
    related = {r["prefect.resource.id"] for r in event["related"]}
    assert f"pausepoint.lease.{site}.{lease.run_id}" in related
    assert f"prefect.flow-run.{lease.run_id}" in related
    assert sorted(event["payload"]["unpaused"]) == expected_nodes(small_site)

    # Closed leases are history: the next watchdog run (here through the CLI) has nothing to do.
    assert run(["watchdog", "--site", str(small_site.path)]) == 0
    assert f"site {site}: 0 orphaned lease(s) closed" in capsys.readouterr().out

    # The next backup sweeps that staging at its start (test_backup_sweeps_the_staging_...):
    # the decision it makes, with the API still saying the killed run is RUNNING.
    live = live_staging(catalog, site, flow_run_alive)
    last_write = max(f.stat().st_mtime for f in [staged[0], *staged[0].rglob("*")])
    _sleep_until(datetime.fromtimestamp(last_write, UTC) + STAGING_IDLE + timedelta(seconds=1))
    assert live == set()
    assert catalog.sweep_abandoned_staging(site, live) == staged
    assert small_site.staged() == []


def _sleep_until(at: datetime) -> None:
    left = (at - datetime.now(UTC)).total_seconds()
    if left > 0:
        time.sleep(left)
