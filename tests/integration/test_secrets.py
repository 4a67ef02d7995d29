"""Credentials come from Prefect Secret blocks (or the environment) and go nowhere else.

The site names its database passwords by Secret block only (the environment variables are
removed); a backup and a restore run; then every place pausepoint writes is searched for the
password: the catalog's files, the flow and task run logs, the artifacts and the events.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from prefect import get_client
from prefect.blocks.system import Secret
from prefect.client.schemas.filters import LogFilter

from flows.backup import backup
from flows.restore import restore
from harness.servers import PASSWORD
from harness.sites import MY_ENV, PG_ENV
from pausepoint.errors import SecretError
from pausepoint.requests import BackupRequest, RestoreRequest
from pausepoint.site import load_site
from tests.support.prefect_api import read_events

pytestmark = [pytest.mark.integration]

BLOCKS = {"postgres": "pp-test-pg-password", "mysql": "pp-test-my-password"}


def _use_blocks(data: dict) -> None:
    for comp in ("ledger", "auditor"):
        for store in data[comp]["stores"]:
            store["password"] = {"block": BLOCKS[store["kind"]]}


def _everything_written(small_site, since: datetime) -> dict[str, str]:
    site = load_site(small_site.path)
    written = {
        str(p): p.read_bytes().decode("latin-1")
        for p in site.catalog.path.rglob("*")
        if p.is_file()
    }
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(), limit=200)
        written["logs"] = "\n".join(log.message for log in logs)
        artifacts = client.read_artifacts(limit=200)
        written["artifacts"] = "\n".join(f"{a.key} {a.description} {a.data}" for a in artifacts)
    names = ["pausepoint.backup.completed", "pausepoint.restore.completed"]
    written["events"] = json.dumps([read_events(n, since) for n in names])
    return written


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

    written = _everything_written(small_site, since)
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
