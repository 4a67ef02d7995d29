"""One bad file never breaks the catalog for a whole site (issue 10, defect 8), with real files in
a local catalog: unreadable manifests are skipped and named, a shortened point id gets the full
ids, and the staging of a backup run that is provably gone is swept at the next backup."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from pausepoint import retention, watchdog
from pausepoint.catalog import Catalog, DrillRecord, LocalDriver
from pausepoint.catalog.drills import dump_drill
from pausepoint.catalog.lease import dump_lease
from pausepoint.cli import run
from pausepoint.errors import RestorePointNotFoundError
from pausepoint.retention import Policy, plan
from tests.unit.test_catalog import SITE, T0, lease, make_point, manifest_path, stage

NOW = T0 + timedelta(days=1)


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(LocalDriver(tmp_path / "catalog"))


def site_file(tmp_path: Path, catalog: Catalog, targets: list[str] | None = None) -> str:
    path = tmp_path / "site.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "site": SITE,
                "catalog": {"path": str(catalog.driver.root)},
                "ledger": {
                    "targets": {"static": targets or ["127.0.0.1:1"]},
                    "stores": [{"kind": "postgres", "name": "pg", "user": "u", "database": "d"}],
                },
            }
        )
    )
    return str(path)


def damage_manifest(catalog: Catalog, point_id: str, how: str) -> Path:
    path = manifest_path(catalog, point_id)
    if how == "damaged":
        path.write_bytes(path.read_bytes()[:57])  # truncated mid-write by a copy, say
    else:  # written by a newer pausepoint
        data = json.loads(path.read_text())
        path.write_text(json.dumps({**data, "format": 2}))
    return path


# --- listing ------------------------------------------------------------------------------------


def test_list_points_skips_damaged_and_newer_manifests_and_scan_names_them(catalog):
    old = make_point(catalog, begun=T0)
    bad = make_point(catalog, begun=T0 + timedelta(hours=1))
    newer = make_point(catalog, begun=T0 + timedelta(hours=2))
    new = make_point(catalog, begun=T0 + timedelta(hours=3))
    bad_path = damage_manifest(catalog, bad.id, "damaged")
    newer_path = damage_manifest(catalog, newer.id, "newer")

    assert [p.id for p in catalog.list_points(SITE)] == [new.id, old.id]
    scan = catalog.scan_points(SITE)
    assert [p.id for p in scan.points] == [new.id, old.id]
    by_id = {u.id: u for u in scan.unreadable}
    assert set(by_id) == {bad.id, newer.id}
    assert by_id[bad.id].location == str(bad_path)
    assert f"manifest {bad_path} is not valid JSON" in by_id[bad.id].problem
    assert "Restore it from a copy of the catalog" in by_id[bad.id].problem
    assert "Upgrade pausepoint" in by_id[newer.id].problem
    assert str(newer_path) in by_id[newer.id].problem


def test_cli_points_list_shows_the_good_points_and_a_line_naming_the_damaged_one(
    catalog, tmp_path, capsys
):
    good = make_point(catalog, begun=T0)
    bad = make_point(catalog, begun=T0 + timedelta(hours=1))
    path = damage_manifest(catalog, bad.id, "damaged")
    site = site_file(tmp_path, catalog)

    assert run(["points", "list", "--site", site]) == 0
    out, err = capsys.readouterr()
    assert good.id in out and bad.id not in out
    [line] = err.splitlines()
    assert line.startswith(f"{bad.id}  UNREADABLE, not listed: manifest {path}")
    assert "copy of the catalog" in line

    assert run(["points", "list", "--site", site, "--json"]) == 0
    out, err = capsys.readouterr()
    assert [p["id"] for p in json.loads(out)] == [good.id]
    assert bad.id in err


# --- a shortened point id -------------------------------------------------------------------------


def test_get_point_prefix_lists_the_full_ids_it_matches_and_says_use_the_full_id(catalog):
    a = make_point(catalog, begun=T0)
    b = make_point(catalog, begun=T0 + timedelta(minutes=1))
    other = make_point(catalog, begun=T0 + timedelta(days=3))
    for prefix in (a.id[:12], a.id[:16]):  # to the ten minutes; the time without its suffix
        with pytest.raises(RestorePointNotFoundError) as info:
            catalog.get_point(SITE, prefix)
        msg = str(info.value)
        assert f"{prefix!r} is not a full restore point id" in msg
        assert "use the full id from `pausepoint points list" in msg.lower()
        assert other.id not in msg
        assert a.id in msg
    with pytest.raises(RestorePointNotFoundError) as info:
        catalog.get_point(SITE, a.id[:12])
    assert b.id in str(info.value) and "2 point id(s)" in str(info.value)


def test_cli_points_show_and_restore_with_a_prefix_name_the_full_id(catalog, tmp_path, capsys):
    point = make_point(catalog, begun=T0)
    site = site_file(tmp_path, catalog)
    for argv in (
        ["points", "show", point.id[:-5], "--site", site],
        ["restore", "--site", site, "--point", point.id[:-2]],
    ):
        with pytest.raises(RestorePointNotFoundError) as info:
            run(argv)
        assert point.id in str(info.value) and "full id" in str(info.value)


# --- prune's view -----------------------------------------------------------------------------


def test_retention_never_counts_or_deletes_an_unreadable_point(catalog):
    day = timedelta(days=1)
    oldest = make_point(catalog, begun=T0 - 3 * day)
    verified_bad_drill = make_point(catalog, begun=T0 - 2 * day)
    middle = make_point(catalog, begun=T0 - day)
    newest_bad = make_point(catalog, begun=T0)
    damage_manifest(catalog, newest_bad.id, "newer")
    catalog.record_drill(
        DrillRecord(
            site=SITE,
            point_id=verified_bad_drill.id,
            started_at=T0,
            finished_at=T0,
            passed=True,
            pausepoint_version="0.1.0",
        )
    )
    [drill_file] = (catalog.point_dir(SITE, verified_bad_drill.id) / "drills").iterdir()
    drill_file.write_bytes(dump_drill(catalog.latest_drill(SITE, verified_bad_drill.id))[:20])

    found, unreadable = retention.candidates(catalog, SITE)

    assert [c.id for c in found] == [middle.id, oldest.id]
    assert set(unreadable) == {newest_bad.id, verified_bad_drill.id}
    assert str(drill_file) in unreadable[verified_bad_drill.id]
    result = plan(found, Policy(keep_last=1, keep_daily_days=0), NOW)
    # The newest READABLE point is the one always kept; the unreadable ones are not in the plan.
    assert [d.id for d in result.keep] == [middle.id]
    assert [d.id for d in result.delete] == [oldest.id]


# --- staging of runs that are gone ----------------------------------------------------------


def idle_since(pending, when: datetime) -> None:
    for p in [pending.staging, *pending.staging.rglob("*")]:
        os.utime(p, (when.timestamp(), when.timestamp()))


def test_sweep_abandoned_staging_removes_only_the_staging_of_runs_provably_gone(catalog):
    registered = make_point(catalog, begun=T0)
    killed, _ = stage(catalog, begun=T0 + timedelta(minutes=1))  # its lease: broken, dead
    copying, _ = stage(catalog, begun=T0 + timedelta(minutes=2))  # released; run still alive
    finished_dead, _ = stage(catalog, begun=T0 + timedelta(minutes=3))  # released; run over
    in_window, _ = stage(catalog, begun=T0 + timedelta(minutes=4))  # active, before deadline
    no_lease, _ = stage(catalog, begun=T0 + timedelta(minutes=5))  # a run without a pause
    damaged_lease, _ = stage(catalog, begun=T0 + timedelta(minutes=6))
    busy, _ = stage(catalog, begun=T0 + timedelta(minutes=7))  # gone, but written just now
    now = T0 + timedelta(hours=1)
    for pending in (killed, copying, finished_dead, in_window, no_lease, damaged_lease):
        idle_since(pending, T0 + timedelta(minutes=10))
    idle_since(busy, now - timedelta(seconds=1))
    beat = {"heartbeat_at": T0, "heartbeat_s": 5.0}
    catalog.write_lease(lease("killed", point_id=killed.id, **beat))
    catalog.mark_broken(SITE, "killed", "the watchdog unpaused ...")
    catalog.write_lease(lease("copying", point_id=copying.id, **beat))
    catalog.release_lease(SITE, "copying")
    catalog.write_lease(lease("finished", point_id=finished_dead.id, **beat))
    catalog.release_lease(SITE, "finished")
    catalog.write_lease(
        lease("window", point_id=in_window.id, deadline=now + timedelta(minutes=1), **beat)
    )
    catalog.write_lease(lease("busy", point_id=busy.id, **beat))
    catalog.mark_broken(SITE, "busy", "the watchdog unpaused ...")
    leases = catalog.driver.root / SITE / "leases"
    damaged_json = json.loads(dump_lease(lease("torn", point_id=damaged_lease.id)))
    (leases / "torn.json").write_text(json.dumps(damaged_json)[:-30])

    alive_runs = {"copying", "window", "killed", "busy"}  # a killed run stays RUNNING in the API
    live = watchdog.live_staging(catalog, SITE, lambda run_id: run_id in alive_runs, now)
    swept = catalog.sweep_abandoned_staging(SITE, live, now=now)

    assert sorted(swept) == sorted([killed.staging, finished_dead.staging])
    for kept in (copying, in_window, no_lease, damaged_lease, busy):
        assert kept.staging.exists(), kept.id
    assert catalog.list_points(SITE) == [registered]
    # Whatever the caller says, a registered point is never swept.
    assert catalog.sweep_abandoned_staging(SITE, set(), now=now + timedelta(days=1)) == sorted(
        p.staging for p in (copying, in_window, no_lease, damaged_lease, busy)
    )
    assert catalog.list_points(SITE) == [registered]


def test_live_staging_cannot_tell_keeps_everything(catalog):
    pending, _ = stage(catalog, begun=T0)
    catalog.write_lease(lease("r", point_id=pending.id))
    catalog.release_lease(SITE, "r")

    def api_down(run_id: str) -> bool:
        raise ConnectionError("Prefect API unreachable")

    assert watchdog.live_staging(catalog, SITE, api_down, NOW) == {pending.id}


# --- quarantining a lease that a live run rewrote --------------------------------------------


def test_quarantine_lease_leaves_a_lease_rewritten_since_the_scan(catalog):
    path = catalog.driver.root / SITE / "leases" / "run-1.json"
    path.parent.mkdir(parents=True)
    path.write_text("{")
    [bad] = catalog.scan_leases(SITE).damaged
    catalog.write_lease(lease("run-1"))  # the live run's heartbeat replaced the damaged record
    assert catalog.quarantine_lease(SITE, bad, NOW) is None
    assert catalog.get_lease(SITE, "run-1").state == "active"
    assert not (path.parent / "quarantine").exists()
    # Still damaged: moved, and the listing no longer sees it.
    path.write_text("{")
    [bad] = catalog.scan_leases(SITE).damaged
    moved = catalog.quarantine_lease(SITE, bad, NOW)
    assert moved is not None and Path(moved).read_text() == "{"
    assert catalog.scan_leases(SITE).damaged == [] and catalog.list_leases(SITE) == []
    # The driver's move (never over an existing key): tests/contract/test_catalog_driver_contract
