"""The prune and watchdog flows, against the session's Prefect API, when catalog files are bad:
one damaged manifest or lease file never stops the others being handled (issue 10)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows.prune import prune
from flows.watchdog import watchdog
from harness.gate_server import start_gate_cluster
from pausepoint.catalog import Catalog, LocalDriver
from pausepoint.catalog.lease import dump_lease
from pausepoint.requests import PruneRequest, WatchdogRequest
from tests.support.prefect_api import read_events, wait_for
from tests.unit.test_catalog import SITE, lease, make_point, manifest_path
from tests.unit.test_catalog_damage import site_file

pytestmark = [pytest.mark.integration]


def test_prune_skips_unreadable_points_and_damaged_leases_and_handles_the_rest(
    prefect_api, tmp_path
):
    catalog = Catalog(LocalDriver(tmp_path / "catalog"))
    now = datetime.now(UTC)
    day = timedelta(days=1)
    old = [make_point(catalog, begun=now - (10 + i) * day) for i in range(3)]
    damaged = make_point(catalog, begun=now - 9 * day)
    newest_newer_format = make_point(catalog, begun=now - day)
    kept = make_point(catalog, begun=now - 2 * day)
    manifest_path(catalog, damaged.id).write_text('{"format": 1, "id": "')
    path = manifest_path(catalog, newest_newer_format.id)
    path.write_text(json.dumps({**json.loads(path.read_text()), "format": 2}))
    ended_long_ago = now - 30 * day
    catalog.write_lease(lease("old-run", created_at=ended_long_ago, deadline=ended_long_ago))
    catalog.release_lease(SITE, "old-run", now=ended_long_ago)
    bad_lease = catalog.driver.root / SITE / "leases" / "torn.json"
    bad_lease.write_text("{")

    report = prune(
        PruneRequest(site_file=site_file(tmp_path, catalog), keep_last=1, keep_daily_days=0)
    )

    # The readable points are pruned as before: the newest readable one is kept.
    assert list(report["kept"]) == [kept.id]
    assert sorted(report["deleted"]) == sorted(p.id for p in old)
    # The unreadable ones are kept untouched and named, with the file and the fix.
    assert set(report["unreadable"]) == {damaged.id, newest_newer_format.id}
    assert "Upgrade pausepoint" in report["unreadable"][newest_newer_format.id]
    assert str(manifest_path(catalog, damaged.id)) in report["unreadable"][damaged.id]
    assert manifest_path(catalog, damaged.id).exists()
    assert manifest_path(catalog, newest_newer_format.id).exists()
    assert [p.id for p in catalog.list_points(SITE)] == [kept.id]
    # The ended lease went; the damaged lease file is reported and left for the watchdog.
    assert report["leases"] == ["old-run"]
    assert list(report["damaged_leases"]) == [str(bad_lease)]
    assert bad_lease.exists()


def test_watchdog_flow_quarantines_a_damaged_lease_and_announces_it(prefect_api, tmp_path):
    started = datetime.now(UTC)
    catalog = Catalog(LocalDriver(tmp_path / "catalog"))
    with start_gate_cluster(1) as cluster:
        [node] = cluster.servers
        site = site_file(tmp_path, catalog, targets=[str(node.target)])
        node.gate.pause(wait_outstanding=False)
        path = catalog.driver.root / SITE / "leases" / "killed-run.json"
        path.parent.mkdir(parents=True)
        good = dump_lease(lease("killed-run", nodes=[f"ledger/{node.target}"]))
        path.write_bytes(good[: len(good) // 2])
        past = (started - timedelta(minutes=5)).timestamp()
        os.utime(path, (past, past))

        report = watchdog(WatchdogRequest(site_file=site))

        assert not node.gate.check_paused()
    [q] = report["quarantined"]
    assert q["file"] == str(path) and not path.exists() and Path(q["moved_to"]).exists()
    assert report["site_check"]["unpaused"] == [f"ledger/{node.target}"]
    events = wait_for(
        lambda: read_events("pausepoint.lease.quarantined", started, limit=10), timeout_s=30
    )
    [event] = [e for e in events if e["payload"]["file"] == str(path)]
    assert event["resource"]["prefect.resource.id"] == f"pausepoint.site.{SITE}"
    assert event["payload"]["unpaused"] == [f"ledger/{node.target}"]
    assert event["payload"]["moved_to"] == q["moved_to"]
