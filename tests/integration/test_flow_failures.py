"""Bad input through the real flows: a clear error, nothing left paused, nothing registered.

One small site (ledger: 2 nodes, PostgreSQL + MariaDB; auditor: 1 node, PostgreSQL) per test,
against the real database servers and the test admin nodes over gRPC.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from flows.backup import backup
from flows.restore import restore
from harness.sites import MY_ENV
from pausepoint.admin.client import Reason
from pausepoint.catalog import open_catalog
from pausepoint.errors import (
    ConfigError,
    CorruptArtifactError,
    IncompleteRestorePointError,
    NodeAlreadyPausedError,
    PauseError,
    PauseStillPausedError,
    PreflightError,
    StoreCheckError,
    TargetNotEmptyError,
    ToolMissingError,
)
from pausepoint.requests import BackupRequest, RestoreRequest
from pausepoint.site import load_site
from tests.support.small_site import pause_calls

pytestmark = [pytest.mark.integration]


# --- backup -------------------------------------------------------------------------------


def test_backup_node_unreachable_at_preflight_pauses_nothing(small_site):
    dead = small_site.ledger.servers[1]
    dead.stop()
    with pytest.raises(PreflightError) as e:
        backup(BackupRequest(site_file=str(small_site.path)))
    assert f"ledger/{dead.target}" in str(e.value)
    assert "Nothing was paused" in str(e.value)
    assert pause_calls(small_site) == 0
    dead.start()
    small_site.assert_nothing_paused_or_registered()


def test_backup_node_fails_pause_rolls_back_partial_pause(small_site):
    bad = small_site.auditor.servers[0]
    bad.refuse_with = Reason.UNAVAILABLE  # reachable at preflight, then Pause fails
    # That Pause may still land, so the run watches the node until its lease deadline: keep the
    # deadline near (drain 5 s + open-capture 2 s + margin 1 s).
    small_site.edit(lambda d: d["pause"].update(open_capture_timeout_ms=2000, lease_margin_ms=1000))
    with pytest.raises(PauseError) as e:
        backup(BackupRequest(site_file=str(small_site.path)))
    assert f"auditor/{bad.target}: UNAVAILABLE" in str(e.value)
    assert "being unpaused" in str(e.value)
    # the two ledger nodes were paused and must have been unpaused again
    for s in small_site.ledger.servers:
        assert s.calls.get("Pause", 0) == 1 and s.calls.get("Unpause", 0) >= 1
    assert bad.calls.get("Unpause", 0) == 0
    assert bad.calls.get("CheckPaused", 0) >= 2  # preflight, then the watch for a late Pause
    site = load_site(small_site.path)
    [lease] = open_catalog(site.catalog).list_leases(site.site)
    assert lease.state == "released"  # nothing landed late
    small_site.assert_nothing_paused_or_registered()


def test_backup_node_already_paused_refuses_and_leaves_that_pause(small_site):
    owned = small_site.ledger.servers[0]
    owned.gate.pause(wait_outstanding=True, max_wait_ms=1000)  # someone else's pause
    with pytest.raises(NodeAlreadyPausedError) as e:
        backup(BackupRequest(site_file=str(small_site.path)))
    assert f"ledger/{owned.target} already report PAUSED" in str(e.value)
    assert owned.gate.check_paused(), "pausepoint must not revoke another caller's pause"
    assert pause_calls(small_site) == 0 and owned.calls.get("Unpause", 0) == 0
    owned.gate.unpause()
    small_site.assert_nothing_paused_or_registered()


def test_backup_timed_out_still_paused_never_unpauses_that_node(small_site):
    node = small_site.ledger.servers[1]
    node.refuse_with = Reason.TIMED_OUT_STILL_PAUSED
    with pytest.raises(PauseStillPausedError) as e:
        backup(BackupRequest(site_file=str(small_site.path)))
    assert "EARLIER pause that another caller owns" in str(e.value)
    assert node.calls.get("Unpause", 0) == 0
    others = [s for s in small_site.servers if s is not node]
    assert all(s.calls.get("Unpause", 0) >= 1 for s in others)
    small_site.assert_nothing_paused_or_registered()


def test_backup_wrong_database_password_caught_before_any_pause(small_site, monkeypatch):
    monkeypatch.setenv(MY_ENV, "not-the-password")
    with pytest.raises(StoreCheckError) as e:
        backup(BackupRequest(site_file=str(small_site.path)))
    msg = str(e.value)
    assert "ledger-s-my" in msg and "not-the-password" not in msg
    assert "password" in msg.lower()
    assert pause_calls(small_site) == 0
    small_site.assert_nothing_paused_or_registered()


def test_backup_missing_pg_dump_caught_before_any_pause(small_site, tmp_path):
    empty = tmp_path / "no-tools"
    empty.mkdir()
    small_site.edit(lambda d: d["auditor"]["stores"][0].update(bin_dir=str(empty)))
    with pytest.raises(ToolMissingError) as e:
        backup(BackupRequest(site_file=str(small_site.path)))
    assert "pg_dump" in str(e.value)
    assert pause_calls(small_site) == 0
    small_site.assert_nothing_paused_or_registered()


def test_backup_malformed_site_file_names_the_problem(small_site):
    small_site.edit(lambda d: d["ledger"]["targets"].update(static=["nohost"]))
    with pytest.raises(ConfigError, match=r"ledger\.targets\.static"):
        backup(BackupRequest(site_file=str(small_site.path)))
    assert pause_calls(small_site) == 0


# --- restore ------------------------------------------------------------------------------


@pytest.fixture
def backed_up(small_site):
    point_id = backup(BackupRequest(site_file=str(small_site.path)))
    site = load_site(small_site.path)
    return small_site, point_id, open_catalog(site.catalog), site


def restore_elsewhere(small_site, point_id, tmp_path, replace=False):
    target = tmp_path / "target.yaml"
    target.write_text(
        yaml.safe_dump(
            {"stores": {db.store_name: db.restore_override for db in small_site.dbs.all()}}
        )
    )
    return restore(
        RestoreRequest(
            site_file=str(small_site.path),
            point_id=point_id,
            confirm=point_id,
            target_file=str(target),
            replace=replace,
        )
    )


def test_restore_non_empty_target_refused_then_replaced(backed_up, tmp_path):
    small_site, point_id, _, _ = backed_up
    restore_elsewhere(small_site, point_id, tmp_path)
    with pytest.raises(TargetNotEmptyError) as e:
        restore_elsewhere(small_site, point_id, tmp_path)
    assert "--replace" in str(e.value)
    result = restore_elsewhere(small_site, point_id, tmp_path, replace=True)
    assert all(ok for _, ok, _ in result["checks"])


def test_restore_corrupt_artifact_refused_before_touching_targets(backed_up, tmp_path):
    small_site, point_id, catalog, site = backed_up
    point = catalog.get_point(site.site, point_id)
    comp, capture = next(
        (c, s) for c, rec in point.components.items() for s in rec.stores if s.artifacts
    )
    victim = catalog.store_dir(site.site, point_id, comp, capture.name) / capture.artifacts[0].path
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError) as e:
        restore_elsewhere(small_site, point_id, tmp_path)
    assert capture.artifacts[0].path in str(e.value)
    # nothing was created: every restore target database is still absent
    for db in small_site.dbs.all():
        with pytest.raises(Exception):  # noqa: B017 - either driver's "no such database"
            db.restored.connect().close()


def test_restore_point_missing_component_refused(backed_up, tmp_path):
    small_site, point_id, catalog, site = backed_up
    manifest = catalog.point_dir(site.site, point_id) / "manifest.json"
    data = json.loads(manifest.read_text())
    del data["components"]["auditor"]
    manifest.write_text(json.dumps(data))
    shutil.rmtree(catalog.point_dir(site.site, point_id) / "auditor", ignore_errors=True)
    with pytest.raises(IncompleteRestorePointError) as e:
        restore_elsewhere(small_site, point_id, tmp_path)
    assert "lacks component 'auditor'" in str(e.value)
    assert "same point" in str(e.value)


def test_restore_unknown_point_lists_what_exists(backed_up, tmp_path):
    small_site, point_id, _, _ = backed_up
    with pytest.raises(Exception) as e:
        restore_elsewhere(small_site, "20200101T000000Z-dead", tmp_path)
    assert point_id in str(e.value)
