"""Credentials come from Prefect Secret blocks (or the environment) and go nowhere else.

The site names its database passwords by Secret block only (the environment variables are
removed); a backup and a restore run; then every place pausepoint writes is searched for the
password: the catalog's files, the flow and task run logs, the artifacts and the events.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from prefect.blocks.system import Secret

from flows.backup import backup
from flows.restore import restore
from harness.servers import PASSWORD
from harness.sites import MY_ENV, PG_ENV
from pausepoint.errors import SecretError
from pausepoint.requests import BackupRequest, RestoreRequest
from tests.support.prefect_api import everything_stored

pytestmark = [pytest.mark.integration]

BLOCKS = {"postgres": "pp-test-pg-password", "mysql": "pp-test-my-password"}


def _use_blocks(data: dict) -> None:
    for comp in ("ledger", "auditor"):
        for store in data[comp]["stores"]:
            store["password"] = {"block": BLOCKS[store["kind"]]}


def test_passwords_from_secret_blocks_never_reach_logs_artifacts_events_or_catalog(
    small_site, tmp_path, monkeypatch
):
    since = datetime.now(UTC) - timedelta(seconds=1)
    for name in BLOCKS.values():
        Secret(value=PASSWORD).save(name, overwrite=True)
    monkeypatch.delenv(PG_ENV)
    monkeypatch.delenv(MY_ENV)
    small_site.edit(_use_blocks)

    point_id = backup(BackupRequest(site_file=str(small_site.path)))
    target = tmp_path / "target.yaml"
    overrides = {db.store_name: db.restore_override for db in small_site.dbs.all()}
    target.write_text(yaml.safe_dump({"stores": overrides}))
    result = restore(
        RestoreRequest(
            site_file=str(small_site.path),
            point_id=point_id,
            confirm=point_id,
            target_file=str(target),
        )
    )
    assert all(ok for _, ok, _ in result["checks"])

    written = everything_stored(
        small_site.path, since, ["pausepoint.backup.completed", "pausepoint.restore.completed"]
    )
    assert any(point_id in text for text in written.values())  # the search looked somewhere real
    assert "manifest.json" in "".join(written)
    leaked = [where for where, text in written.items() if PASSWORD in text]
    assert leaked == []


def test_a_missing_secret_block_is_named_before_anything_is_paused(small_site, monkeypatch):
    monkeypatch.delenv(PG_ENV)
    small_site.edit(_use_blocks)
    small_site.edit(
        lambda d: d["ledger"]["stores"][0].update(password={"block": "no-such-secret-block"})
    )
    for name in BLOCKS.values():
        Secret(value=PASSWORD).save(name, overwrite=True)
    with pytest.raises(SecretError, match="Prefect Secret block 'no-such-secret-block'"):
        backup(BackupRequest(site_file=str(small_site.path)))
    small_site.assert_nothing_paused_or_registered()
