"""The store protocol's point-in-time parts, through the real backup and restore flows, with a
PITR kind registered from the tests (tests/support/pitr_kind.py: SQLite + a change log) beside
a real PostgreSQL store, under the test admin node and a fake NTP server."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from flows.backup import backup
from harness.bank_app import create_schema
from harness.gate_server import start_gate_cluster
from harness.sites import SiteDbs
from pausepoint.catalog import open_catalog
from pausepoint.catalog.manifest import RestorePoint
from pausepoint.clock import ClockBound, required_hold_ms
from pausepoint.errors import PitrWindowError
from pausepoint.requests import BackupRequest
from pausepoint.site import load_site
from pausepoint.stores import registry
from tests.integration.test_in_place import restore_with
from tests.integration.test_prune_drill import exists
from tests.support.pitr_kind import (
    ENTRY,
    GRANULARITY_MS,
    LoggedDb,
    SqliteLogDetails,
    read_log,
    rows_of,
    user_version,
)
from tests.unit.test_clock import FakeNtpServer

pytestmark = [pytest.mark.integration]

_n = itertools.count()  # one database per test: names must not collide
BEFORE = [(i, f"before-{i}") for i in range(1, 8)]  # 7 rows + CREATE TABLE: 8 log entries


@dataclass
class PitrSite:
    path: Path
    dbs: SiteDbs
    app: LoggedDb  # the PITR store's live database and change log
    pg: object  # the PostgreSQL store's SiteDb

    def point(self, point_id: str) -> RestorePoint:
        site = load_site(self.path)
        return open_catalog(site.catalog).get_point(site.site, point_id)

    def target(self, tmp_path: Path, **pitr: object) -> str:
        path = tmp_path / f"target-{len(list(tmp_path.glob('target-*')))}.yaml"
        stores = {
            self.pg.store_name: self.pg.restore_override,
            "ledger-pitr": {"path": str(tmp_path / "restored.db"), **pitr},
        }
        path.write_text(yaml.safe_dump({"stores": stores}))
        return str(path)

    def restore(self, point_id: str, target: str, replace: bool = False) -> dict:
        return restore_with(self, point_id, target, replace)


@pytest.fixture
def pitr_site(pg_server, mysql_server, prefect_api, tmp_path, monkeypatch) -> Iterator[PitrSite]:
    dbs = SiteDbs(pg_server, mysql_server, monkeypatch, prefix=f"pitr{next(_n)}")
    pg = dbs.database("ledger_c", "postgres")
    create_schema(pg.live)
    app = LoggedDb(tmp_path / "live.db")
    app.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    for row in BEFORE:
        app.execute("INSERT INTO t VALUES (?, ?)", row)
    app.set_user_version(42)
    ntp = FakeNtpServer(offset_s=0.003, root_dispersion_s=0.002)
    with registry.registered(ENTRY), start_gate_cluster(1) as ledger:
        data = dbs.site_dict({"ledger": ledger.targets}, {"ledger": [pg]})
        data["ledger"]["stores"].append(
            {"kind": "sqlitelog", "name": "ledger-pitr", "path": str(app.path)}
        )
        data["clock"] = {"ntp_servers": [ntp.address], "required": True}
        path = tmp_path / "site.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        try:
            yield PitrSite(path, dbs, app, pg)
        finally:
            ntp.close()


@pytest.fixture
def backed_up(pitr_site) -> tuple[PitrSite, str]:
    point_id = backup(BackupRequest(site_file=str(pitr_site.path)))
    for i in range(100, 103):  # after the point: a restore to it must not bring these back
        pitr_site.app.execute("INSERT INTO t VALUES (?, ?)", (i, f"after-{i}"))
    pitr_site.app.set_user_version(7)
    return pitr_site, point_id


def test_the_pitr_timestamp_is_the_windows_mid_time_and_the_hold_derives_from_its_step(backed_up):
    site, point_id = backed_up
    point = site.point(point_id)
    _, capture = point.store("ledger-pitr")
    _, snapshot = point.store(site.pg.store_name)
    assert snapshot.pitr_timestamp is None and snapshot.snapshot_established_at is not None
    # the mid-time rounded to the kind's 10 ms step, inside the window
    mid_us = (point.window.mid - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1e6
    step = GRANULARITY_MS * 1000
    expected_us = round(mid_us / step) * step
    got_us = (capture.pitr_timestamp - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1e6
    assert abs(got_us - expected_us) < 1
    assert point.window.start < capture.pitr_timestamp < point.window.end
    # the hold: ceil(2 E + G) + 1, E the measured clock bound, G the kind's granularity
    assert point.clock is not None
    bound = ClockBound(
        point.clock.offset_s, point.clock.uncertainty_s, point.clock.server, point.clock.measured_at
    )
    assert point.window.hold_ms == required_hold_ms(bound, GRANULARITY_MS, 0, 0)
    assert point.window.hold_ms == math.ceil(2 * bound.error_s * 1000 + GRANULARITY_MS) + 1
    assert point.window.length_ms >= point.window.hold_ms
    # typed details, read back from the manifest
    assert isinstance(capture.details, SqliteLogDetails)
    assert capture.details.entries == 1 + len(BEFORE) and capture.details.user_version == 42


def test_a_crashed_restore_resumes_from_its_recorded_step_and_reapplies_settings(
    backed_up, tmp_path
):
    site, point_id = backed_up
    with pytest.raises(RuntimeError, match="simulated crash after 2 batches"):
        site.restore(point_id, site.target(tmp_path, crash_after_batches=2))
    trace = tmp_path / "restored.db.trace"
    assert trace.read_text().split() == ["0-3", "3-6"]
    assert not (tmp_path / "restored.db").exists()  # the database appears only when done
    config = load_site(site.path)
    journals = list(
        (config.catalog.path / config.site / "points" / point_id / "restores").glob("*.json")
    )
    assert len(journals) == 1
    record = json.loads(journals[0].read_text())
    assert record["stores"]["ledger-pitr"]["step"] == "replay"
    assert record["stores"]["ledger-pitr"]["data"] == {"offset": 6}

    # the same point into the same target: resumes at entry 6, not from the start
    result = site.restore(point_id, site.target(tmp_path), replace=True)
    assert trace.read_text().split() == ["0-3", "3-6", "6-8"]
    assert rows_of(tmp_path / "restored.db") == {"t": BEFORE}  # nothing written after the point
    assert user_version(tmp_path / "restored.db") == 42  # reset by the replay, re-applied
    assert all(ok for _, ok, _ in result["checks"]), result["checks"]
    # where the store says it restored to is in the restore report's checks
    reported = {name: detail for name, _, detail in result["checks"]}
    assert reported["restored into ledger/ledger-pitr"] == f"database {tmp_path / 'restored.db'}"
    record = json.loads(journals[0].read_text())
    assert record["runs"] == 2 and record["stores"]["ledger-pitr"]["step"] == "done"

    # a later restore of the point into that target starts afresh (the last one finished)
    site.restore(point_id, site.target(tmp_path), replace=True)
    assert trace.read_text().split()[-3:] == ["0-3", "3-6", "6-8"]


def test_a_point_outside_the_restorable_window_is_refused_before_any_change(backed_up, tmp_path):
    site, point_id = backed_up
    point = site.point(point_id)
    _, capture = point.store("ledger-pitr")
    # the provider's retention dropped everything up to the first write after the point
    after = [e for e in read_log(site.app.log) if e["params"] and e["params"][0] >= 100]
    site.app.drop_log_head(after[0]["ts_us"])
    with pytest.raises(PitrWindowError) as err:
        site.restore(point_id, site.target(tmp_path))
    message = str(err.value)
    assert "ledger-pitr" in message and capture.pitr_timestamp.isoformat() in message
    assert "outside the store's restorable window" in message and " .. " in message
    oldest = datetime.fromtimestamp(after[0]["ts_us"] / 1e6, UTC)
    assert oldest.isoformat() in message
    # nothing changed: neither the PostgreSQL target nor the PITR target exists
    assert not exists(site.pg.restored)
    assert not (tmp_path / "restored.db").exists()
    assert not (tmp_path / "restored.db.partial").exists()
