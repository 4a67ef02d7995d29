"""A password written inline in a restore or drill target file is refused, and its value is
neither printed nor stored anywhere: not in the error, the command's output, the flow and task
runs, their logs, the artifacts, the events or the catalog (issue 10: it was printed 7 times
and stored 12 times in the Prefect database)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from prefect import get_client
from prefect.client.schemas.filters import LogFilter

from flows.backup import backup
from flows.drill import drill
from flows.restore import restore
from pausepoint.cli import main
from pausepoint.errors import ConfigError
from pausepoint.requests import BackupRequest, DrillRequest, RestoreRequest
from pausepoint.site import load_site
from tests.support.prefect_api import read_events

pytestmark = [pytest.mark.integration]

SECRET = "Inline-Target-Secret-4711"


def _everything_stored(small_site, since: datetime) -> dict[str, str]:
    site = load_site(small_site.path)
    stored = {
        str(p): p.read_bytes().decode("latin-1")
        for p in site.catalog.path.rglob("*")
        if p.is_file()
    }
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200)
        stored["flow runs"] = "\n".join(
            f"{r.name} {json.dumps(r.parameters, default=str)} "
            f"{r.state.message if r.state else ''} {r.state.data if r.state else ''}"
            for r in runs
        )
        tasks = client.read_task_runs(limit=200)
        stored["task runs"] = "\n".join(
            f"{t.name} {t.state.message if t.state else ''} {t.task_inputs}" for t in tasks
        )
        stored["logs"] = "\n".join(log.message for log in client.read_logs(LogFilter(), limit=200))
        stored["artifacts"] = "\n".join(
            f"{a.key} {a.description} {a.data}" for a in client.read_artifacts(limit=200)
        )
    names = ["pausepoint.restore.failed", "pausepoint.restore.completed"]
    stored["events"] = json.dumps([read_events(n, since) for n in names])
    return stored


def test_an_inline_password_in_a_target_is_refused_and_never_printed_or_stored(
    small_site, tmp_path, capsys
):
    since = datetime.now(UTC) - timedelta(seconds=1)
    point_id = backup(BackupRequest(site_file=str(small_site.path)))
    stores = {db.store_name: dict(db.restore_override) for db in small_site.dbs.all()}
    stores["ledger-c-pg"]["password"] = SECRET
    target = tmp_path / "target.yaml"
    target.write_text(yaml.safe_dump({"stores": stores}))
    capsys.readouterr()

    errors = []
    with pytest.raises(ConfigError) as e:
        restore(
            RestoreRequest(
                site_file=str(small_site.path),
                point_id=point_id,
                confirm=point_id,
                target_file=str(target),
                replace=True,
            )
        )
    errors.append(e.value)
    with pytest.raises(ConfigError) as e:
        drill(DrillRequest(site_file=str(small_site.path), target_file=str(target)))
    errors.append(e.value)
    codes = []
    for argv in (
        ["restore", "--site", str(small_site.path), "--point", point_id, "--target", str(target)],
        ["drill", "--site", str(small_site.path), "--target", str(target)],
    ):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        codes.append(exit_.value.code)

    for err in errors:
        msg = str(err)
        assert str(target) in msg and "store 'ledger-c-pg' gives 'password' inline" in msg
        assert "{env: VARIABLE_NAME}" in msg and "{block: prefect-secret-block-name}" in msg
        assert SECRET not in msg
    assert codes == [2, 2]
    out = capsys.readouterr()
    assert "gives 'password' inline" in out.err
    assert SECRET not in out.out and SECRET not in out.err

    stored = _everything_stored(small_site, since)
    assert point_id in stored["flow runs"]  # the search looked somewhere real
    assert [where for where, text in stored.items() if SECRET in text] == []
