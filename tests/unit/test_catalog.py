"""The catalog on the real local driver: registration, verification, sweeping and leases.

Restore points are built with ``stage``/``make_point`` (like Medusa's make_node_backup): real
files in a pending point's store directories, and a manifest that describes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pausepoint.catalog import Catalog, Lease, LocalDriver, PendingPoint, open_catalog
from pausepoint.catalog.manifest import (
    MANIFEST_FORMAT,
    ComponentRecord,
    PauseWindowRecord,
    RestorePoint,
)
from pausepoint.errors import (
    CatalogError,
    CorruptArtifactError,
    LeaseError,
    RestorePointNotFoundError,
)
from pausepoint.site import CatalogSettings
from pausepoint.stores.base import Artifact, StoreCapture

SITE = "demo"
T0 = datetime(2026, 11, 28, 0, 31, 19, tzinfo=UTC)
ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{4}$")

Files = dict[tuple[str, str], dict[str, bytes]]

DEFAULT_FILES: Files = {
    ("ledger", "ledger-pg"): {"dump/toc.dat": b"toc" * 100, "dump/3001.dat.gz": b"rows" * 1000},
    ("auditor", "auditor-pg"): {"auditor.sql": b"INSERT INTO t VALUES (1);\n"},
}


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(LocalDriver(tmp_path / "catalog"))


def stage(
    catalog: Catalog,
    site: str = SITE,
    files: Files | None = None,
    *,
    begun: datetime = T0,
    mid: datetime | None = None,
) -> tuple[PendingPoint, RestorePoint]:
    """Write the files of every store into a pending point and build its manifest."""
    pending = catalog.begin_point(site, now=begun)
    components: dict[str, list[StoreCapture]] = {}
    for (component, store), content in (files or DEFAULT_FILES).items():
        directory = pending.store_dir(component, store)
        artifacts = []
        for rel, data in content.items():
            (directory / rel).parent.mkdir(parents=True, exist_ok=True)
            (directory / rel).write_bytes(data)
            artifacts.append(
                Artifact(path=rel, size=len(data), sha256=hashlib.sha256(data).hexdigest())
            )
        components.setdefault(component, []).append(
            StoreCapture(
                name=store, kind="postgres", method="pg_dump-directory", artifacts=artifacts
            )
        )
    mid = mid or begun + timedelta(seconds=5)
    point = RestorePoint(
        id=pending.id,
        site=site,
        created_at=mid + timedelta(seconds=30),
        pausepoint_version="0.1.0",
        window=PauseWindowRecord(
            start=mid - timedelta(seconds=2.5),
            end=mid + timedelta(seconds=2.5),
            mid=mid,
            hold_ms=5000,
            drain_ms=12.0,
            unpause_ms=3.0,
            write_stall_ms=5015.0,
        ),
        components={
            name: ComponentRecord(targets=[f"127.0.0.1:5005{i}"], stores=stores)
            for i, (name, stores) in enumerate(components.items())
        },
    )
    return pending, point


def make_point(catalog: Catalog, site: str = SITE, **kwargs) -> RestorePoint:
    pending, point = stage(catalog, site, **kwargs)
    catalog.register(pending, point)
    return point


def manifest_path(catalog: Catalog, point_id: str, site: str = SITE) -> Path:
    return catalog.point_dir(site, point_id) / "manifest.json"


def lease(run_id: str = "run-1", **kw) -> Lease:
    fields = {
        "site": SITE,
        "run_id": run_id,
        "owner": "backup/host-a pid 4242",
        "nodes": ["ledger/10.0.0.1:50053", "auditor/[::1]:40053"],
        "created_at": T0,
        "deadline": T0 + timedelta(minutes=2),
        **kw,
    }
    return Lease(**fields)


# --- beginning a point -------------------------------------------------------------------------


def test_begin_point_id_is_sortable_utc_time_with_random_suffix(catalog):
    pending = catalog.begin_point(SITE, now=datetime(2026, 11, 28, 9, 31, 19, tzinfo=UTC))
    assert ID_RE.match(pending.id)
    assert pending.id.startswith("20261128T093119Z-")
    assert pending.site == SITE
    assert pending.staging == catalog.point_dir(SITE, pending.id)
    assert pending.staging.is_dir()


def test_begin_point_same_second_ids_never_collide(catalog):
    ids = {catalog.begin_point(SITE, now=T0).id for _ in range(60)}
    assert len(ids) == 60


def test_begin_point_taken_id_is_retried(catalog, monkeypatch):
    from pausepoint.catalog import layout

    ids = iter(["20261128T003119Z-aaaa", "20261128T003119Z-aaaa", "20261128T003119Z-bbbb"])
    monkeypatch.setattr(layout, "new_point_id", lambda now=None: next(ids))
    assert catalog.begin_point(SITE).id == "20261128T003119Z-aaaa"
    assert catalog.begin_point(SITE).id == "20261128T003119Z-bbbb"


def test_begin_point_store_dir_is_the_restore_source(catalog):
    pending = catalog.begin_point(SITE)
    d = pending.store_dir("ledger", "ledger-pg")
    assert d.is_dir()
    assert d == catalog.store_dir(SITE, pending.id, "ledger", "ledger-pg")


@pytest.mark.parametrize("component", ["..", "a/b", "", "."])
def test_begin_point_unsafe_component_name_raises_catalog_error(catalog, component):
    pending = catalog.begin_point(SITE)
    with pytest.raises(CatalogError, match="cannot be used in the catalog"):
        pending.store_dir(component, "pg")


def test_begin_point_invalid_site_raises_catalog_error(catalog):
    with pytest.raises(CatalogError, match="is not a site name"):
        catalog.begin_point("../etc")


def test_begin_point_catalog_root_is_a_file_raises_catalog_error_naming_it(tmp_path):
    root = tmp_path / "not-a-dir"
    root.write_text("x")
    with pytest.raises(CatalogError) as info:
        Catalog(LocalDriver(root)).begin_point(SITE)
    assert str(root) in str(info.value) and "writable" in str(info.value)


# --- registering -------------------------------------------------------------------------------


def test_register_valid_point_is_listed_and_read_back(catalog):
    point = make_point(catalog)
    assert catalog.list_points(SITE) == [point]
    assert catalog.get_point(SITE, point.id) == point
    data = json.loads(manifest_path(catalog, point.id).read_text())
    assert data["format"] == MANIFEST_FORMAT == 1
    assert data["id"] == point.id


def test_register_publishes_artifacts_before_the_manifest(catalog, monkeypatch):
    pending, point = stage(catalog)
    calls: list[str] = []
    driver = catalog.driver
    real_publish, real_create = driver.publish, driver.create_if_absent
    monkeypatch.setattr(driver, "publish", lambda k: (calls.append("publish"), real_publish(k)))
    monkeypatch.setattr(
        driver, "create_if_absent", lambda k, d: (calls.append(f"create {k}"), real_create(k, d))
    )
    catalog.register(pending, point)
    assert calls == ["publish", f"create demo/points/{point.id}/manifest.json"]
    leftovers = [p.name for p in pending.staging.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the temp file was renamed, not copied


def test_register_missing_artifact_raises_corrupt_artifact_error_and_registers_nothing(catalog):
    pending, point = stage(catalog)
    missing = pending.store_dir("ledger", "ledger-pg") / "dump/toc.dat"
    missing.unlink()
    with pytest.raises(CorruptArtifactError) as info:
        catalog.register(pending, point)
    msg = str(info.value)
    assert f"{missing} (store 'ledger-pg' of ledger): missing" in msg
    assert "NOT registered" in msg and "back up again" in msg
    assert catalog.list_points(SITE) == []
    assert not manifest_path(catalog, point.id).exists()


def test_register_every_bad_artifact_is_named_in_one_error(catalog):
    pending, point = stage(catalog)
    ledger = pending.store_dir("ledger", "ledger-pg")
    (ledger / "dump/toc.dat").write_bytes(b"short")
    auditor = pending.store_dir("auditor", "auditor-pg") / "auditor.sql"
    data = bytearray(auditor.read_bytes())
    data[0] ^= 0xFF  # same size, different content
    auditor.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError) as info:
        catalog.register(pending, point)
    msg = str(info.value)
    assert "2 artifact problem(s)" in msg
    assert f"{ledger / 'dump/toc.dat'} (store 'ledger-pg' of ledger): wrong size: 5 bytes" in msg
    assert f"{auditor} (store 'auditor-pg' of auditor): wrong sha256" in msg


@pytest.mark.parametrize("bad_path", ["../../../../etc/passwd", "/etc/passwd", "a/../../b"])
def test_register_artifact_path_outside_store_dir_is_refused(catalog, bad_path):
    pending, point = stage(catalog)
    _, capture = point.store("ledger-pg")
    evil = capture.model_copy(
        update={"artifacts": [Artifact(path=bad_path, size=1, sha256="0" * 64)]}
    )
    components = dict(point.components)
    components["ledger"] = ComponentRecord(targets=[], stores=[evil])
    point = point.model_copy(update={"components": components})
    with pytest.raises(CorruptArtifactError, match="leaves the store's directory"):
        catalog.register(pending, point)


def test_register_point_of_another_pending_raises_catalog_error(catalog):
    _, point = stage(catalog)
    other = catalog.begin_point(SITE)
    with pytest.raises(CatalogError, match="cannot be registered as the pending point"):
        catalog.register(other, point)


def test_register_twice_raises_catalog_error(catalog):
    pending, point = stage(catalog)
    catalog.register(pending, point)
    with pytest.raises(CatalogError, match="already registered"):
        catalog.register(pending, point)


def test_register_write_fails_before_rename_leaves_no_manifest_and_no_temp(catalog, monkeypatch):
    from pausepoint.catalog import local

    pending, point = stage(catalog)

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(local.os, "link", full_disk)
    with pytest.raises(CatalogError) as info:
        catalog.register(pending, point)
    assert "No space left on device" in str(info.value)
    assert "manifest.json" in str(info.value)
    monkeypatch.undo()
    assert sorted(p.name for p in pending.staging.iterdir()) == ["auditor", "ledger"]
    assert catalog.list_points(SITE) == []


def test_register_crash_between_artifacts_and_manifest_point_not_listed_and_swept(catalog):
    """A real crash: the process is SIGKILLed after the manifest's temp file is written and
    synced, just before the link that would make the point exist."""
    root = catalog.driver.root
    child = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path[:0] = {sys.path!r}
        from tests.unit.test_catalog import stage
        from pausepoint.catalog import Catalog, LocalDriver, local
        catalog = Catalog(LocalDriver({str(root)!r}))
        pending, point = stage(catalog)
        print(pending.id, flush=True)
        local.os.link = lambda src, dst: os.kill(os.getpid(), signal.SIGKILL)
        catalog.register(pending, point)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", child],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert proc.returncode == -9, proc.stderr
    point_id = proc.stdout.strip()
    point_dir = catalog.point_dir(SITE, point_id)
    assert any(p.name.startswith(".manifest.json.") for p in point_dir.iterdir())  # the crash
    assert not (point_dir / "manifest.json").exists()

    assert catalog.list_points(SITE) == []
    with pytest.raises(RestorePointNotFoundError, match="unfinished"):
        catalog.get_point(SITE, point_id)
    assert catalog.sweep_orphans(SITE, older_than=timedelta(hours=1)) == []  # still fresh
    later = datetime.now(UTC) + timedelta(hours=2)
    assert catalog.sweep_orphans(SITE, older_than=timedelta(hours=1), now=later) == [point_dir]
    assert not point_dir.exists()


# --- discarding --------------------------------------------------------------------------------


def test_discard_failed_run_removes_its_staging(catalog):
    pending, _ = stage(catalog)
    assert catalog.discard(pending) is True
    assert not pending.staging.exists()
    assert catalog.discard(pending) is True  # twice is harmless


def test_discard_registered_point_is_kept(catalog):
    pending, point = stage(catalog)
    catalog.register(pending, point)
    assert catalog.discard(pending) is False
    assert catalog.get_point(SITE, point.id) == point
    assert catalog.verify_point(SITE, point.id) == []


# --- listing and reading -----------------------------------------------------------------------


def test_list_points_newest_first_without_unfinished_or_foreign_dirs(catalog):
    old = make_point(catalog, begun=T0)
    new = make_point(catalog, begun=T0 + timedelta(days=1))
    mid = make_point(catalog, begun=T0 + timedelta(hours=3))
    stage(catalog, begun=T0 + timedelta(days=2))  # unfinished: no manifest
    (catalog.driver.root / SITE / "points" / "lost+found").mkdir()
    assert [p.id for p in catalog.list_points(SITE)] == [new.id, mid.id, old.id]
    assert catalog.point_ids(SITE) == [new.id, mid.id, old.id]


def test_list_points_sites_are_separate(catalog):
    a = make_point(catalog, site="site-a")
    b = make_point(catalog, site="site-b")
    assert catalog.list_points("site-a") == [a]
    assert catalog.list_points("site-b") == [b]
    assert catalog.list_points("site-c") == []


def test_list_points_empty_catalog_is_empty(tmp_path):
    assert Catalog(LocalDriver(tmp_path / "nowhere")).list_points(SITE) == []


def test_get_point_unknown_id_lists_existing_ids_and_the_fix(catalog):
    a = make_point(catalog, begun=T0)
    b = make_point(catalog, begun=T0 + timedelta(hours=1))
    with pytest.raises(RestorePointNotFoundError) as info:
        catalog.get_point(SITE, "20200101T000000Z-0000")
    msg = str(info.value)
    assert "site 'demo' has no restore point 20200101T000000Z-0000" in msg
    assert f"Existing points (newest first): {b.id}, {a.id}." in msg
    assert "pausepoint points list" in msg
    assert isinstance(info.value, CatalogError)


def test_get_point_no_points_says_run_a_backup(catalog):
    with pytest.raises(RestorePointNotFoundError) as info:
        catalog.get_point(SITE, "20200101T000000Z-0000")
    msg = str(info.value)
    assert "has no restore points in" in msg and "run a backup first" in msg
    assert "catalog.path" in msg


@pytest.mark.parametrize("bad_id", ["../../etc", "latest", "20261128T003119Z-3F9A", ""])
def test_get_point_malformed_id_raises_not_found(catalog, bad_id):
    make_point(catalog)
    with pytest.raises(RestorePointNotFoundError, match="is not a restore point id"):
        catalog.get_point(SITE, bad_id)


def test_get_point_many_points_lists_ten_and_counts_the_rest(catalog):
    ids = [make_point(catalog, begun=T0 + timedelta(minutes=i)).id for i in range(12)]
    with pytest.raises(RestorePointNotFoundError) as info:
        catalog.get_point(SITE, "20200101T000000Z-0000")
    msg = str(info.value)
    assert ids[-1] in msg and ids[2] in msg and ids[1] not in msg
    assert "and 2 older" in msg


def test_store_dir_and_point_dir_are_under_the_catalog_root(catalog):
    point = make_point(catalog)
    root = catalog.driver.root
    assert catalog.point_dir(SITE, point.id) == root / SITE / "points" / point.id
    store = catalog.store_dir(SITE, point.id, "ledger", "ledger-pg")
    assert (store / "dump/toc.dat").read_bytes() == b"toc" * 100


def test_open_catalog_uses_the_site_catalog_path(tmp_path):
    catalog = open_catalog(CatalogSettings(path=tmp_path / "cat"))
    point = make_point(catalog)
    assert (tmp_path / "cat" / SITE / "points" / point.id / "manifest.json").is_file()


# --- damaged manifests -------------------------------------------------------------------------


def test_manifest_corrupt_json_raises_catalog_error_naming_the_file(catalog):
    point = make_point(catalog)
    path = manifest_path(catalog, point.id)
    path.write_text('{"format": 1, "id": ')
    with pytest.raises(CatalogError) as info:
        catalog.get_point(SITE, point.id)
    msg = str(info.value)
    assert f"manifest {path} is not valid JSON" in msg
    assert "copy of the catalog" in msg
    assert not isinstance(info.value, RestorePointNotFoundError)
    # A listing skips it and names it (tests/unit/test_catalog_damage.py)
    [bad] = catalog.scan_points(SITE).unreadable
    assert bad.problem == msg


@pytest.mark.parametrize(
    ("fmt", "hint"),
    [
        (2, "newer pausepoint. Upgrade pausepoint"),
        ("1", "not written by pausepoint"),
        (None, "not written by pausepoint"),
        (True, "not written by pausepoint"),
    ],
)
def test_manifest_unknown_format_raises_catalog_error_with_what_to_do(catalog, fmt, hint):
    point = make_point(catalog)
    path = manifest_path(catalog, point.id)
    data = json.loads(path.read_text())
    data["format"] = fmt
    path.write_text(json.dumps(data))
    with pytest.raises(CatalogError) as info:
        catalog.get_point(SITE, point.id)
    msg = str(info.value)
    assert f"manifest {path} has format {fmt!r}, this pausepoint reads format 1" in msg
    assert hint in msg


def test_manifest_invalid_fields_raise_catalog_error_naming_the_field(catalog):
    point = make_point(catalog)
    path = manifest_path(catalog, point.id)
    data = json.loads(path.read_text())
    del data["window"]
    path.write_text(json.dumps(data))
    with pytest.raises(CatalogError, match=r"does not describe a valid restore point \(window"):
        catalog.get_point(SITE, point.id)


def test_manifest_json_array_raises_catalog_error(catalog):
    point = make_point(catalog)
    manifest_path(catalog, point.id).write_text("[]")
    with pytest.raises(CatalogError, match="not an object"):
        catalog.get_point(SITE, point.id)


def test_manifest_moved_to_another_point_dir_raises_catalog_error(catalog):
    a = make_point(catalog)
    b = make_point(catalog)
    manifest_path(catalog, b.id).write_bytes(manifest_path(catalog, a.id).read_bytes())
    with pytest.raises(CatalogError, match="copied or moved"):
        catalog.get_point(SITE, b.id)


# --- verifying ---------------------------------------------------------------------------------


def test_verify_point_intact_has_no_problems(catalog):
    point = make_point(catalog)
    assert catalog.verify_point(SITE, point.id) == []


def test_verify_point_corrupt_artifact_is_named(catalog):
    point = make_point(catalog)
    path = catalog.store_dir(SITE, point.id, "ledger", "ledger-pg") / "dump/3001.dat.gz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    problems = catalog.verify_point(SITE, point.id)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path} (store 'ledger-pg' of ledger): wrong sha256: ")
    expected = point.store("ledger-pg")[1].artifacts[1].sha256
    assert problems[0].endswith(f"the manifest says {expected}")


def test_verify_point_lists_every_problem(catalog):
    point = make_point(catalog)
    ledger = catalog.store_dir(SITE, point.id, "ledger", "ledger-pg")
    auditor = catalog.store_dir(SITE, point.id, "auditor", "auditor-pg")
    (ledger / "dump/toc.dat").unlink()
    (ledger / "dump/3001.dat.gz").write_bytes(b"x")
    (auditor / "auditor.sql").write_bytes(b"INSERT INTO t VALUES (2);\n")
    problems = catalog.verify_point(SITE, point.id)
    assert problems == [
        f"{ledger / 'dump/toc.dat'} (store 'ledger-pg' of ledger): missing",
        f"{ledger / 'dump/3001.dat.gz'} (store 'ledger-pg' of ledger): wrong size: 1 bytes, "
        "the manifest says 4000",
        f"{auditor / 'auditor.sql'} (store 'auditor-pg' of auditor): wrong sha256: "
        f"{hashlib.sha256(b'INSERT INTO t VALUES (2);' + bytes([10])).hexdigest()}, "
        f"the manifest says {point.store('auditor-pg')[1].artifacts[0].sha256}",
    ]


def test_verify_point_unknown_point_raises_not_found(catalog):
    with pytest.raises(RestorePointNotFoundError):
        catalog.verify_point(SITE, "20200101T000000Z-0000")


# --- sweeping and deleting ---------------------------------------------------------------------


def test_sweep_orphans_removes_only_idle_unfinished_points(catalog):
    now = datetime.now(UTC)
    done = make_point(catalog, begun=now - timedelta(days=3))
    old_orphan, _ = stage(catalog, begun=now - timedelta(days=3))
    young_orphan, _ = stage(catalog, begun=now - timedelta(minutes=5))
    busy_orphan, _ = stage(catalog, begun=now - timedelta(days=3))  # old id, still writing
    foreign = catalog.driver.root / SITE / "points" / "keep-me"
    foreign.mkdir()
    day_ago = (now - timedelta(days=2)).timestamp()
    for pending in (old_orphan,):
        for p in pending.staging.rglob("*"):
            os.utime(p, (day_ago, day_ago))

    swept = catalog.sweep_orphans(SITE, older_than=timedelta(hours=24), now=now)

    assert swept == [old_orphan.staging]
    assert not old_orphan.staging.exists()
    assert young_orphan.staging.exists() and busy_orphan.staging.exists() and foreign.exists()
    assert catalog.list_points(SITE) == [done]


def test_sweep_orphans_empty_orphan_uses_its_id_time(catalog):
    now = datetime.now(UTC)
    pending = catalog.begin_point(SITE, now=now - timedelta(days=2))  # crashed at once
    assert catalog.sweep_orphans(SITE, now=now) == [pending.staging]


def test_delete_point_removes_it(catalog):
    keep = make_point(catalog)
    gone = make_point(catalog)
    catalog.delete_point(SITE, gone.id)
    assert catalog.list_points(SITE) == [keep]
    assert not catalog.point_dir(SITE, gone.id).exists()


def test_delete_point_unknown_raises_not_found(catalog):
    with pytest.raises(RestorePointNotFoundError, match="has no restore point"):
        catalog.delete_point(SITE, "20200101T000000Z-0000")


def test_delete_point_interrupted_after_manifest_leaves_unlisted_orphan(catalog, monkeypatch):
    point = make_point(catalog)

    def crash(prefix):
        raise CatalogError("disk went away")

    monkeypatch.setattr(catalog.driver, "delete_prefix", crash)
    with pytest.raises(CatalogError):
        catalog.delete_point(SITE, point.id)
    monkeypatch.undo()
    assert catalog.list_points(SITE) == []
    later = datetime.now(UTC) + timedelta(days=2)
    assert catalog.sweep_orphans(SITE, now=later) == [catalog.point_dir(SITE, point.id)]


# --- leases ------------------------------------------------------------------------------------


def test_lease_lifecycle_active_then_released(catalog):
    written = catalog.write_lease(lease())
    assert catalog.get_lease(SITE, "run-1") == written
    assert catalog.list_leases(SITE, state="active") == [written]

    released = catalog.release_lease(SITE, "run-1", now=T0 + timedelta(seconds=9))
    assert released.state == "released"
    assert released.updated_at == T0 + timedelta(seconds=9)
    assert released.broken_reason is None
    assert catalog.get_lease(SITE, "run-1") == released
    assert catalog.list_leases(SITE, state="active") == []
    assert catalog.list_leases(SITE) == [released]

    assert catalog.release_lease(SITE, "run-1") == released  # idempotent
    assert catalog.mark_broken(SITE, "run-1", "late") == released  # ended leases stay ended


def test_lease_lifecycle_active_then_broken_stays_broken(catalog):
    catalog.write_lease(lease())
    broken = catalog.mark_broken(
        SITE,
        "run-1",
        "deadline passed and run crashed; watchdog unpaused 2 nodes",
        now=T0 + timedelta(minutes=3),
    )
    assert broken.state == "broken"
    assert "watchdog unpaused" in (broken.broken_reason or "")
    assert catalog.list_leases(SITE, state="broken") == [broken]
    assert catalog.release_lease(SITE, "run-1") == broken  # the watchdog's record is kept


def test_lease_expired_only_when_active_and_past_deadline():
    lz = lease()
    assert not lz.expired(T0 + timedelta(minutes=1))
    assert lz.expired(T0 + timedelta(minutes=2))
    released = lz.model_copy(update={"state": "released"})
    assert not released.expired(T0 + timedelta(hours=1))


def test_write_lease_extends_an_active_lease(catalog):
    catalog.write_lease(lease())
    extended = catalog.write_lease(lease(deadline=T0 + timedelta(minutes=10)))
    assert catalog.get_lease(SITE, "run-1").deadline == extended.deadline


def test_write_lease_after_it_ended_raises_lease_error(catalog):
    catalog.write_lease(lease())
    catalog.release_lease(SITE, "run-1")
    with pytest.raises(LeaseError, match="already ended its lease"):
        catalog.write_lease(lease())


def test_write_lease_not_active_raises_lease_error(catalog):
    with pytest.raises(LeaseError, match="must be active"):
        catalog.write_lease(lease(state="released"))


def test_list_leases_newest_first_ignores_temp_files(catalog):
    catalog.write_lease(lease("run-1"))
    catalog.write_lease(
        lease("run-2", created_at=T0 + timedelta(minutes=5), deadline=T0 + timedelta(minutes=7))
    )
    leases_dir = catalog.driver.root / SITE / "leases"
    (leases_dir / ".run-3.json.abc.tmp").write_text("{half")
    assert [x.run_id for x in catalog.list_leases(SITE)] == ["run-2", "run-1"]
    assert sorted(p.name for p in leases_dir.iterdir()) == [
        ".run-3.json.abc.tmp",
        "run-1.json",
        "run-2.json",
    ]
    assert json.loads((leases_dir / "run-1.json").read_text())["format"] == 1


def test_get_lease_missing_raises_lease_error_naming_the_run(catalog):
    with pytest.raises(LeaseError, match="no lease for run 'run-9'"):
        catalog.get_lease(SITE, "run-9")
    with pytest.raises(LeaseError):
        catalog.release_lease(SITE, "run-9")


def test_lease_corrupt_file_raises_lease_error_naming_file_and_risk(catalog):
    catalog.write_lease(lease())
    path = catalog.driver.root / SITE / "leases" / "run-1.json"
    path.write_text("not json")
    with pytest.raises(LeaseError) as info:
        catalog.get_lease(SITE, "run-1")
    assert str(path) in str(info.value)
    assert "may still be paused" in str(info.value)
    # A listing skips it and names it, so the other leases are still handled.
    assert catalog.list_leases(SITE) == []
    [bad] = catalog.scan_leases(SITE).damaged
    assert (bad.id, bad.location, bad.problem) == ("run-1", str(path), str(info.value))


def test_lease_unknown_format_raises_lease_error(catalog):
    catalog.write_lease(lease())
    path = catalog.driver.root / SITE / "leases" / "run-1.json"
    data = json.loads(path.read_text())
    data["format"] = 7
    path.write_text(json.dumps(data))
    with pytest.raises(LeaseError, match="newer pausepoint"):
        catalog.get_lease(SITE, "run-1")


def test_lease_write_failure_raises_lease_error_naming_nodes(catalog, monkeypatch):
    def fail(key, data):
        raise CatalogError("cannot write x: Read-only file system")

    monkeypatch.setattr(catalog.driver, "create_if_absent", fail)
    with pytest.raises(LeaseError, match=r"ledger/10\.0\.0\.1:50053.*Read-only"):
        catalog.write_lease(lease())


@pytest.mark.parametrize(
    "kw",
    [
        {"nodes": ["10.0.0.1:50053"]},  # no component
        {"nodes": []},
        {"state": "broken"},  # no reason
        {"broken_reason": "why"},  # reason on an active lease
        {"deadline": T0 - timedelta(seconds=1)},
        {"created_at": T0.replace(tzinfo=None)},
        {"run_id": "../x"},
        {"site": "Demo"},
    ],
)
def test_lease_invalid_fields_are_refused(kw):
    with pytest.raises(ValueError):
        lease(**kw)
