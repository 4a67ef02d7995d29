"""What a person and an automation see of a backup and a restore, read back through the API:
the restore point as markdown, as a table and as a link to its catalog entry; the copy's progress
bar; the events pausepoint.backup.completed / .failed and pausepoint.restore.completed / .failed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from flows.backup import backup
from flows.restore import restore
from pausepoint.errors import PreflightError, TargetNotEmptyError
from pausepoint.report import store_checksum, store_fingerprint_digest
from pausepoint.requests import BackupRequest, RestoreRequest
from tests.support.prefect_api import latest_artifact, read_events, wait_for

pytestmark = [pytest.mark.integration]


def _site(small_site) -> str:
    return yaml.safe_load(small_site.path.read_text())["site"]


def _events(name: str, since: datetime, point_id: str | None = None) -> list[dict]:
    def fetch() -> list[dict]:
        found = read_events(name, since)
        if point_id is not None:
            found = [e for e in found if e["payload"].get("point_id") == point_id]
        return found

    return wait_for(fetch)


def test_a_backup_shows_its_point_as_table_link_and_progress_and_announces_it(small_site):
    since = datetime.now(UTC) - timedelta(seconds=1)
    site = _site(small_site)
    first = backup(BackupRequest(site_file=str(small_site.path), labels={"reason": "test"}))
    second = backup(BackupRequest(site_file=str(small_site.path)))  # has a previous size
    point = next(p for p in small_site.points() if p.id == second)

    table = latest_artifact(f"{site}-restore-point-stores")
    assert table.type == "table"
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    stores = {s.name: s for c in point.components.values() for s in c.stores}
    assert {r["store"] for r in rows} == set(stores)
    for r in rows:
        s = stores[r["store"]]
        assert r["point"] == second and r["size_bytes"] == s.total_bytes > 0
        assert r["sha256"] == store_checksum(s) and len(r["sha256"]) == 64
        assert r["fingerprint"] == store_fingerprint_digest(s)
        assert r["mid_time"] == point.window.mid.isoformat()
        assert r["write_stall_ms"] == round(point.window.write_stall_ms, 1) > 0
    assert f"write stall {point.window.write_stall_ms:.1f} ms" in table.description

    link = latest_artifact(f"{site}-catalog-entry")
    assert str(link.data).startswith(f"[{site} / {second} (manifest)](file://")  # a link artifact
    manifest = Path(urlparse(str(link.data).split("](")[-1].rstrip(")")).path)
    assert manifest.name == "manifest.json" and json.loads(manifest.read_text())["id"] == second

    progress = latest_artifact(f"{site}-capture-progress")
    assert progress.type == "progress" and float(progress.data) == pytest.approx(100.0)

    completed = _events("pausepoint.backup.completed", since, second)
    [event] = completed
    assert event["resource"]["prefect.resource.id"] == f"pausepoint.site.{site}"
    related = {r["prefect.resource.id"] for r in event["related"]}
    assert f"pausepoint.restore-point.{site}.{second}" in related
    assert event["payload"]["write_stall_ms"] == round(point.window.write_stall_ms, 1)
    [labelled] = _events("pausepoint.backup.completed", since, first)
    assert labelled["payload"]["labels"] == {"reason": "test"}
    assert next(p for p in small_site.points() if p.id == first).labels == {"reason": "test"}


def test_a_failed_backup_is_announced_with_its_error(small_site):
    since = datetime.now(UTC) - timedelta(seconds=1)
    with small_site.node_down() as dead, pytest.raises(PreflightError):
        backup(BackupRequest(site_file=str(small_site.path)))
    [event] = _events("pausepoint.backup.failed", since)
    assert event["resource"]["prefect.resource.id"] == f"pausepoint.site.{_site(small_site)}"
    assert event["payload"]["error_type"] == "PreflightError"
    assert f"ledger/{dead.target}" in event["payload"]["error"]
    small_site.assert_nothing_paused_or_registered()


def test_restores_are_announced_with_their_checks(small_site, tmp_path):
    since = datetime.now(UTC) - timedelta(seconds=1)
    point_id = backup(BackupRequest(site_file=str(small_site.path)))
    target = tmp_path / "target.yaml"
    overrides = {db.store_name: db.restore_override for db in small_site.dbs.all()}
    target.write_text(yaml.safe_dump({"stores": overrides}))
    request = RestoreRequest(
        site_file=str(small_site.path), point_id=point_id, confirm=point_id, target_file=str(target)
    )
    restore(request)
    [done] = _events("pausepoint.restore.completed", since, point_id)
    checks = done["payload"]["checks"]
    assert checks and all(c["passed"] for c in checks)
    assert any(c["check"].startswith("fingerprint ") for c in checks)
    assert done["payload"]["target"] == "other databases (restore target)"

    with pytest.raises(TargetNotEmptyError):
        restore(request)  # the target now holds data and replace is off
    [failed] = _events("pausepoint.restore.failed", since, point_id)
    assert failed["payload"]["error_type"] == "TargetNotEmptyError"
