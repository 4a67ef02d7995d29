"""A password written inline in a restore or drill target file is refused, and its value is
neither printed nor stored anywhere: not in the error, the command's output, the flow and task
runs, their logs, the artifacts, the events or the catalog (issue 10: it was printed 7 times
and stored 12 times in the Prefect database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from flows.backup import backup
from flows.drill import drill
from flows.restore import restore
from pausepoint.cli import main
from pausepoint.errors import ConfigError
from pausepoint.requests import BackupRequest, DrillRequest, RestoreRequest
from tests.support.prefect_api import everything_stored

pytestmark = [pytest.mark.integration]

SECRET = "Inline-Target-Secret-4711"


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

    stored = everything_stored(
        small_site.path, since, ["pausepoint.restore.failed", "pausepoint.restore.completed"]
    )
    assert point_id in stored["flow runs"]  # the search looked somewhere real
    assert [where for where, text in stored.items() if SECRET in text] == []
