"""The drill and prune flows on the small site (real PostgreSQL + MariaDB, test admin nodes):
a drill restores the newest point into scratch databases and records the result under the point;
prune keeps by retention, never the newest verified point, and sweeps what failed runs left."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from flows.backup import backup
from flows.drill import drill
from flows.prune import prune
from harness.bank_app import _exec, read_state
from pausepoint.catalog import Lease, layout, open_catalog
from pausepoint.catalog.manifest import dump_manifest
from pausepoint.cli import run
from pausepoint.drill import ScratchTargetError
from pausepoint.errors import CorruptArtifactError
from pausepoint.requests import BackupRequest, DrillRequest, PruneRequest
from pausepoint.site import load_site
from tests.support.small_site import pause_calls

pytestmark = [pytest.mark.integration]


def add_transfer(db, transfer_id: int) -> None:
    conn = db.connect()
    try:
        _exec(
            conn,
            "INSERT INTO transfer (id, src, dst, amount, note) VALUES (%s, 1, 2, 5, 'drill')",
            (transfer_id,),
        )
        conn.commit()
    finally:
        conn.close()


def scratch_file(small_site, tmp_path, **overrides) -> str:
    """A drill target: every store into its own `_r` database, unless overridden."""
    stores = {db.store_name: db.restore_override for db in small_site.dbs.all()}
    stores.update(overrides)
    path = tmp_path / "scratch.yaml"
    path.write_text(yaml.safe_dump({"stores": stores}))
    return str(path)


def exists(db) -> bool:
    try:
        db.connect().close()
    except Exception:
        return False
    return True


@pytest.fixture
def site_ctx(small_site):
    site = load_site(small_site.path)
    return small_site, site, open_catalog(site.catalog)


def test_drill_restores_the_newest_point_into_scratch_and_records_it(site_ctx, tmp_path):
    small_site, site, catalog = site_ctx
    live = {db.store_name: db for db in small_site.dbs.all()}
    older = backup(BackupRequest(site_file=str(small_site.path)))
    add_transfer(live["ledger-c-pg"].live, 1)
    add_transfer(live["ledger-s-my"].live, 1)
    newest = backup(BackupRequest(site_file=str(small_site.path)))
    add_transfer(live["ledger-c-pg"].live, 2)  # after the point: must not reach the scratch db
    pauses = pause_calls(small_site)

    result = drill(
        DrillRequest(site_file=str(small_site.path), target_file=scratch_file(small_site, tmp_path))
    )

    assert result["passed"] is True and result["point_id"] == newest
    names = [c["name"] for c in result["checks"]]
    assert "restore point complete and intact" in names
    assert {f"fingerprint ledger/{s}" for s in ("ledger-c-pg", "ledger-s-my")} <= set(names)
    assert "fingerprint auditor/auditor-c-pg" in names
    assert result["targets"]["ledger-c-pg"].endswith(f"/{live['ledger-c-pg'].restored_name}")
    assert pause_calls(small_site) == pauses, "a drill never pauses the site"
    assert read_state(live["ledger-c-pg"].restored)[1] == {1}
    assert read_state(live["ledger-s-my"].restored)[1] == {1}
    assert read_state(live["ledger-c-pg"].live)[1] == {1, 2}, "the site's data is untouched"

    # the record: one atomic JSON file under the point, read back by the catalog
    drills_dir = catalog.point_dir(site.site, newest) / layout.DRILLS
    files = [p for p in drills_dir.iterdir()]
    assert len(files) == 1 and layout.is_drill_name(files[0].name)
    on_disk = json.loads(files[0].read_text())
    assert on_disk["passed"] is True and on_disk["point_id"] == newest
    latest = catalog.latest_drill(site.site, newest)
    assert latest is not None and latest.passed and latest.error is None
    assert catalog.latest_drill(site.site, older) is None
    assert catalog.verify_point(site.site, newest) == []  # the record is not an artifact

    # scratch is replaced by the next drill; both drills are kept, newest first
    again = drill(
        DrillRequest(site_file=str(small_site.path), target_file=scratch_file(small_site, tmp_path))
    )
    assert again["passed"] is True
    drills = catalog.list_drills(site.site, newest)
    assert len(drills) == 2 and drills[0].started_at > drills[1].started_at


def test_drill_refuses_a_scratch_target_that_is_the_sites_own_database(site_ctx, tmp_path):
    small_site, site, catalog = site_ctx
    point_id = backup(BackupRequest(site_file=str(small_site.path)))
    dbs = {db.store_name: db for db in small_site.dbs.all()}
    before = {name: read_state(db.live) for name, db in dbs.items()}

    # the ledger's PostgreSQL store aimed at the auditor's live database
    bad = scratch_file(
        small_site, tmp_path, **{"ledger-c-pg": {"database": dbs["auditor-c-pg"].live_name}}
    )
    with pytest.raises(ScratchTargetError) as e:
        drill(DrillRequest(site_file=str(small_site.path), target_file=bad))
    msg = str(e.value)
    assert "store 'ledger-c-pg'" in msg and "live database of store auditor/auditor-c-pg" in msg
    assert dbs["auditor-c-pg"].live_name in msg
    assert "point it at a scratch database" in msg and "Nothing was touched" in msg

    # the MariaDB store mapped onto its own database, and a store left out of the target
    bad = scratch_file(
        small_site,
        tmp_path,
        **{
            "ledger-s-my": {
                "database_map": {dbs["ledger-s-my"].live_name: dbs["ledger-s-my"].live_name}
            }
        },
    )
    data = yaml.safe_load(Path(bad).read_text())
    del data["stores"]["auditor-c-pg"]
    Path(bad).write_text(yaml.safe_dump(data))
    with pytest.raises(ScratchTargetError) as e:
        drill(DrillRequest(site_file=str(small_site.path), target_file=bad))
    msg = str(e.value)
    assert "live database of store ledger/ledger-s-my" in msg
    assert "store 'auditor-c-pg' (auditor) has no entry in the scratch target" in msg

    # nothing was touched: no scratch database created, live data as before, no record
    assert not any(exists(db.restored) for db in dbs.values())
    assert {name: read_state(db.live) for name, db in dbs.items()} == before
    assert catalog.list_drills(site.site, point_id) == []


def test_a_failed_drill_is_recorded_and_fails_the_run(site_ctx, tmp_path):
    small_site, site, catalog = site_ctx
    point_id = backup(BackupRequest(site_file=str(small_site.path)))
    point = catalog.get_point(site.site, point_id)
    comp, capture = next(
        (c, s) for c, rec in point.components.items() for s in rec.stores if s.artifacts
    )
    victim = catalog.store_dir(site.site, point_id, comp, capture.name) / capture.artifacts[0].path
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))

    with pytest.raises(CorruptArtifactError):
        drill(
            DrillRequest(
                site_file=str(small_site.path), target_file=scratch_file(small_site, tmp_path)
            )
        )
    record = catalog.latest_drill(site.site, point_id)
    assert record is not None and not record.passed
    assert record.error.startswith("CorruptArtifactError:") and capture.artifacts[0].path in (
        record.error
    )
    assert not any(exists(db.restored) for db in small_site.dbs.all())


def clone_point(catalog, site: str, source_id: str, data_time: datetime) -> str:
    """A copy of a registered point whose data is from ``data_time`` (same artifacts)."""
    point = catalog.get_point(site, source_id)
    new_id = layout.new_point_id(data_time)
    shift = data_time - point.window.mid
    window = point.window.model_copy(
        update={
            "start": point.window.start + shift,
            "end": point.window.end + shift,
            "mid": data_time,
        }
    )
    clone = point.model_copy(
        update={"id": new_id, "window": window, "created_at": point.created_at + shift}
    )
    src, dst = catalog.point_dir(site, source_id), catalog.point_dir(site, new_id)
    for path in src.rglob("*"):
        rel = path.relative_to(src)
        if path.is_dir() or rel.parts[0] in (layout.DRILLS, layout.MANIFEST):
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        (dst / rel).write_bytes(path.read_bytes())
    (dst / layout.MANIFEST).write_bytes(dump_manifest(clone))
    return new_id


def test_prune_keeps_by_retention_and_never_the_newest_verified_point(site_ctx, tmp_path, capsys):
    small_site, site, catalog = site_ctx
    verified = backup(BackupRequest(site_file=str(small_site.path)))
    drill(
        DrillRequest(site_file=str(small_site.path), target_file=scratch_file(small_site, tmp_path))
    )
    newest = backup(BackupRequest(site_file=str(small_site.path)))  # newer, never drilled
    now = datetime.now(UTC)
    three_days = (now - timedelta(days=3)).replace(hour=12, minute=0, second=0, microsecond=0)
    day_older = clone_point(catalog, site.site, verified, three_days - timedelta(hours=2))
    day_newest = clone_point(catalog, site.site, verified, three_days)
    ancient = clone_point(catalog, site.site, verified, now - timedelta(days=40))
    # a failed run's leftovers: long idle (swept), and a backup that may still be running (kept)
    stale = catalog.point_dir(site.site, layout.new_point_id(now - timedelta(days=2)))
    (stale / "ledger" / "ledger-c-pg").mkdir(parents=True)
    (stale / "ledger" / "ledger-c-pg" / "toc.dat").write_bytes(b"partial")
    old = (now - timedelta(days=2)).timestamp()
    os.utime(stale / "ledger" / "ledger-c-pg" / "toc.dat", (old, old))
    running = catalog.begin_point(site.site).staging
    # lease history: an old released lease goes; the backups' own (recent) leases stay
    long_ago = now - timedelta(days=60)
    catalog.write_lease(
        Lease(
            site=site.site,
            run_id="old-run",
            owner="backup",
            nodes=[f"ledger/{small_site.ledger.targets[0]}"],
            created_at=long_ago,
            deadline=long_ago + timedelta(minutes=1),
        )
    )
    catalog.release_lease(site.site, "old-run", now=long_ago + timedelta(seconds=30))
    recent_leases = {x.run_id for x in catalog.list_leases(site.site)} - {"old-run"}
    assert len(recent_leases) == 2  # one per backup, released
    everything = {verified, newest, day_older, day_newest, ancient}
    assert {p.id for p in catalog.list_points(site.site)} == everything

    # dry run: the report says what would go, nothing goes
    assert (
        run(
            [
                "prune",
                "--site",
                str(small_site.path),
                "--keep-last",
                "1",
                "--keep-daily-days",
                "5",
                "--dry-run",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"would delete {ancient}" in out and f"would delete {day_older}" in out
    assert f"would sweep {stale}" in out
    assert "would delete ended lease of run old-run" in out
    assert {p.id for p in catalog.list_points(site.site)} == everything
    assert stale.exists()

    result = prune(PruneRequest(site_file=str(small_site.path), keep_last=1, keep_daily_days=5))
    assert set(result["kept"]) == {newest, verified, day_newest}
    assert set(result["deleted"]) == {day_older, ancient}
    assert result["newest_verified"] == verified
    assert result["kept"][verified] == ["newest verified point (its latest drill passed)"]
    assert result["kept"][newest][0] == "newest point"
    assert any("not the newest of" in why for why in result["deleted"][day_older])
    assert any("before the last 5 days" in why for why in result["deleted"][ancient])
    assert result["swept"] == [str(stale)]
    assert result["leases"] == ["old-run"]
    assert {x.run_id for x in catalog.list_leases(site.site)} == recent_leases

    assert {p.id for p in catalog.list_points(site.site)} == {newest, verified, day_newest}
    for gone in (day_older, ancient):
        assert not catalog.point_dir(site.site, gone).exists()
    assert not stale.exists() and running.exists()
    # the verified point keeps its drill record; `points show` shows it
    assert catalog.latest_drill(site.site, verified).passed
    assert run(["points", "show", verified, "--site", str(small_site.path)]) == 0
    assert "Drills (newest first):" in capsys.readouterr().out

    # again: nothing more to do (idempotent)
    again = prune(PruneRequest(site_file=str(small_site.path), keep_last=1, keep_daily_days=5))
    assert again["deleted"] == {} and again["swept"] == [] and again["leases"] == []
