"""Point-in-time recovery on real servers: PostgreSQL ``pitr: wal`` (a WAL-archiving server of
its own) and MariaDB ``pitr: binlog`` (a server with the binary log on), backed up under the
bank app's load through the real flows and restored BY TIME: nothing of the data is copied at
backup time, so what comes back is what the WAL / binary logs replay to the point's time.

Each transfer of the bank app spans both databases (debit in PostgreSQL, credit in MariaDB):
a restore to any moment but a paused one tears transfers or brings back ones sent after the
window, and the bank checker (``check_consistent``) and the fingerprints (taken on a snapshot
opened inside the window) see it. The negative control restores to mid-time + 2 s and asserts
that the same checks catch it.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from flows.backup import backup
from flows.restore import restore
from harness import servers
from harness.bank_app import BankApp, Db, check_consistent, create_schema
from harness.gate_server import start_gate_cluster
from harness.kinds import for_servers
from harness.processes import HOST, free_port
from pausepoint.catalog import open_catalog
from pausepoint.catalog.manifest import RestorePoint
from pausepoint.cli import run as cli
from pausepoint.errors import ClockSkewError, PitrNotYetRestorableError, PitrWindowError
from pausepoint.readiness import point_readiness
from pausepoint.requests import BackupRequest, RestoreRequest
from pausepoint.restore import RestoreRun, compare_fingerprints, load_target
from pausepoint.secrets import SecretResolver
from pausepoint.site import load_site
from pausepoint.stores import open_store
from pausepoint.stores.base import StoreCapture
from pausepoint.stores.postgres_wal import segment_name
from tests.support.pitr_servers import WalServer, start_binlog_mariadb, wal_postgres
from tests.support.prefect_api import latest_artifact
from tests.unit.test_clock import FakeNtpServer

pytestmark = [pytest.mark.integration]

PG_ENV, MY_ENV = "PP_PITRDB_PG_PASSWORD", "PP_PITRDB_MY_PASSWORD"
_n = itertools.count()


@pytest.fixture(scope="module")
def wal_pg(servers_dir: Path) -> Iterator[WalServer]:
    """A PostgreSQL of its own that archives its WAL (archive_mode, archive_command)."""
    with wal_postgres(servers_dir / "pg-wal") as wal:
        yield wal


@pytest.fixture(scope="module")
def binlog_my(servers_dir: Path) -> Iterator[servers.MysqlServer]:
    server = start_binlog_mariadb(servers_dir / "mariadb-binlog")
    try:
        yield server
    finally:
        server.stop()


@dataclass
class PitrDbSite:
    """A ledger whose data lives in a pitr: wal PostgreSQL database (debits) and a
    pitr: binlog MariaDB database (credits), one test admin node, a fake NTP server."""

    path: Path
    wal: WalServer
    my: servers.MysqlServer
    pg_db: Db
    my_db: Db
    my_name: str
    gates: list
    tmp: Path

    @property
    def site(self):
        return load_site(self.path)

    def catalog(self):
        return open_catalog(self.site.catalog)

    def point(self, point_id: str) -> RestorePoint:
        return self.catalog().get_point(self.site.site, point_id)

    def live_stores(self) -> dict:
        return {cfg.name: open_store(cfg, SecretResolver()) for _, cfg in self.site.stores()}

    def backup(self) -> str:
        return backup(BackupRequest(site_file=str(self.path)))

    def wait_restorable(self, point_id: str, timeout_s: float = 90) -> None:
        """WAL segments are archived by the server in the background: wait for them."""
        deadline = time.monotonic() + timeout_s
        stores = self.live_stores()
        while True:
            ready = point_readiness(self.point(point_id), stores)
            if ready.restorable:
                return
            assert time.monotonic() < deadline, ready
            time.sleep(0.5)

    def target(self) -> tuple[Path, SimpleNamespace, str]:
        """A restore target: a new PostgreSQL server directory and port, a new database."""
        n = len(self.wal.restored)
        restore_dir = self.wal.archive.parent.parent / f"pg-restored-{self.path.parent.name}-{n}"
        self.wal.restored.append(restore_dir)
        port = free_port()
        restored_my = f"{self.my_name}_r{n}"
        path = self.tmp / f"target-{n}.yaml"
        stores = {
            "ledger-pg": {"port": port, "restore_dir": str(restore_dir), "os_user": "postgres"},
            "ledger-my": {"database_map": {self.my_name: restored_my}},
        }
        if os.geteuid() != 0:
            del stores["ledger-pg"]["os_user"]
        path.write_text(yaml.safe_dump({"stores": stores}))
        login = SimpleNamespace(
            host=HOST, port=port, user=self.wal.server.user, password=self.wal.server.password
        )
        return path, login, restored_my

    def restored_pair(self, login, restored_my: str) -> tuple[Db, Db]:
        pg = Db(
            "restored-pg", lambda: servers.connect_postgres(login, self.pg_db.name, False), "pg"
        )
        my = Db("restored-my", lambda: servers.connect_mysql(self.my, restored_my, False), "my")
        return pg, my


@pytest.fixture
def pitrdb_site(wal_pg, binlog_my, prefect_api, tmp_path, monkeypatch) -> Iterator[PitrDbSite]:
    n = next(_n)
    monkeypatch.setenv(PG_ENV, servers.PASSWORD)
    monkeypatch.setenv(MY_ENV, servers.PASSWORD)
    kinds = for_servers(wal_pg.server, binlog_my, {"postgres": PG_ENV, "mysql": MY_ENV})
    pg_name, my_name = f"pitrdb{n}_debit", f"pitrdb{n}_credit"
    kinds["postgres"].create_db(pg_name)
    kinds["mysql"].create_db(my_name)
    pg_db, my_db = kinds["postgres"].db(pg_name), kinds["mysql"].db(my_name)
    create_schema(pg_db)
    create_schema(my_db)
    ntp = FakeNtpServer(offset_s=0.004, root_dispersion_s=0.003)
    my_archive = tmp_path / "my-archive"
    with start_gate_cluster(1) as ledger:
        data = {
            "site": f"pitrdb{n}",
            "catalog": {"path": "catalog"},
            "pause": {"call_timeout_ms": 3000, "drain_timeout_ms": 5000},
            "clock": {"ntp_servers": [ntp.address], "required": True},
            "ledger": {
                "targets": {"static": [str(t) for t in ledger.targets]},
                "stores": [
                    kinds["postgres"].store_config(
                        "ledger-pg", pg_name, pitr="wal", archive_dir=str(wal_pg.archive)
                    ),
                    kinds["mysql"].store_config(
                        "ledger-my", my_name, pitr="binlog", archive_dir=str(my_archive)
                    ),
                ],
            },
        }
        path = tmp_path / "site.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        try:
            yield PitrDbSite(
                path, wal_pg, binlog_my, pg_db, my_db, my_name, ledger.servers, tmp_path
            )
        finally:
            ntp.close()


def shifted(capture: StoreCapture, seconds: float) -> StoreCapture:
    assert capture.pitr_timestamp is not None
    return capture.model_copy(
        update={"pitr_timestamp": capture.pitr_timestamp + timedelta(seconds=seconds)}
    )


def test_backups_under_load_restore_by_time_to_exactly_the_paused_state(pitrdb_site, capsys):
    site = pitrdb_site
    app = BankApp(
        components=[([g.gate for g in site.gates], [(site.pg_db, site.my_db)])], writers=4
    ).start()
    points = []
    try:
        app.wait_for_acks(40)
        for _ in range(3):
            points.append(site.backup())
            app.wait_for_acks(len(app.acks) + 40)  # writes go on between the points
    finally:
        app.stop()
    assert not any(g.gate.check_paused() for g in site.gates)

    first = site.point(points[0])
    _, pg_capture = first.store("ledger-pg")
    _, my_capture = first.store("ledger-my")
    # Nothing copied; the times: PostgreSQL's the mid-time, MariaDB's rounded to the second.
    assert pg_capture.method == "pitr-wal" and not pg_capture.artifacts
    assert my_capture.method == "pitr-binlog" and not my_capture.artifacts
    assert pg_capture.pitr_timestamp == first.window.mid
    assert my_capture.pitr_timestamp.microsecond == 0
    assert first.window.start < my_capture.pitr_timestamp < first.window.end
    # the hold covers twice the clock bound and the coarser (binary-log) step
    assert first.window.hold_ms > 1000

    # The restore point's artifact shows the time and its bound (the newest point's).
    md = str(latest_artifact(f"{site.site.site}-restore-point").data)
    assert "clock error bound" in md and "| ledger/ledger-my |" in md and "1000 ms" in md
    assert "OUTSIDE" not in md

    for point_id in points:
        site.wait_restorable(point_id)
    assert cli(["points", "list", "--site", str(site.path)]) == 0
    listed = capsys.readouterr().out
    assert all(f"{p}" in listed for p in points)
    rows = listed.splitlines()
    assert rows[0].split()[-1] == "RESTORABLE", listed
    assert [r.split()[-1] for r in rows[1:] if r.split()[0] in points] == ["yes"] * len(points)

    for point_id in points:
        point = site.point(point_id)
        target, login, restored_my = site.target()
        result = restore(
            RestoreRequest(
                site_file=str(site.path),
                point_id=point_id,
                confirm=point_id,
                target_file=str(target),
            )
        )
        assert all(ok for _, ok, _ in result["checks"]), result["checks"]
        verdict = check_consistent(
            [site.restored_pair(login, restored_my)], app.acks, point.window.start, point.window.end
        )
        assert verdict["ok"], verdict
        assert verdict["acked_before_window"] >= 40

    # Negative control: the same point restored to mid-time + 2 s, through the same stores;
    # the bank checker and the fingerprints must both catch it.
    target, login, restored_my = site.target()
    config = load_target(str(target))
    late = {}
    for _, cfg in site.site.stores():
        _, capture = first.store(cfg.name)
        store = open_store(cfg.retarget(config.stores[cfg.name]), SecretResolver())
        moved = shifted(capture, 2)
        store.check_restorable(moved)  # inside the window: the WAL/binlogs reach further
        store.restore(moved, site.tmp, replace=False)
        late[cfg.name] = compare_fingerprints(
            cfg.name, capture.fingerprint, store.fingerprint(sorted(capture.fingerprint))
        )
    verdict = check_consistent(
        [site.restored_pair(login, restored_my)], app.acks, first.window.start, first.window.end
    )
    assert not verdict["ok"], "a restore 2 s after the window was not caught by the checker"
    assert verdict["present_sent_after_window"], verdict
    assert all(late.values()), f"the fingerprints did not see the late restore: {late}"


def test_points_outside_the_window_or_not_yet_archived_are_refused_before_any_change(
    pitrdb_site,
):
    site = pitrdb_site
    point_id = site.backup()
    site.wait_restorable(point_id)
    point = site.point(point_id)
    stores = site.live_stores()
    for name in ("ledger-pg", "ledger-my"):
        _, capture = point.store(name)
        # not yet: an hour after anything archived
        with pytest.raises(PitrNotYetRestorableError, match="not restorable yet"):
            stores[name].check_restorable(shifted(capture, 3600))
        # before the oldest base backup / base dump
        with pytest.raises(PitrWindowError, match="outside the store's restorable window"):
            stores[name].check_restorable(shifted(capture, -30 * 86400))

    # The binary-log store's archive moves on: a new base dump, the old one deleted (its
    # retention); then the point lies before the window and the restore flow refuses it,
    # naming the window and the points restorable now, before anything is created.
    my_store = stores["ledger-my"]
    old = my_store._archive().bases()
    my_store.take_base_dump()
    for b in old:
        shutil.rmtree(b.path)
    later = site.backup()
    site.wait_restorable(later)
    target, _, restored_my = site.target()
    with pytest.raises(PitrWindowError) as err:
        restore(
            RestoreRequest(
                site_file=str(site.path),
                point_id=point_id,
                confirm=point_id,
                target_file=str(target),
            )
        )
    message = str(err.value)
    assert "ledger-my" in message and "outside the store's restorable window" in message
    assert f"Restorable now (newest first): {later}" in message
    assert not Path(
        yaml.safe_load(target.read_text())["stores"]["ledger-pg"]["restore_dir"]
    ).exists()
    assert not for_servers(site.wal.server, site.my)["mysql"].db_exists(restored_my)
    points = {p.id: p for p in site.catalog().list_points(site.site.site)}
    assert point_readiness(points[point_id], stores).label() == "no"
    assert point_readiness(points[later], stores).label() == "yes"


def test_a_wal_segment_missing_from_the_archive_is_named_and_refused(pitrdb_site):
    site = pitrdb_site
    with site.wal.server.connect(site.pg_db.name) as conn:
        for i in range(3):  # segments between the base backup and the point
            conn.execute("UPDATE account SET balance = balance WHERE id = %s", (i,))
            conn.execute("SELECT pg_switch_wal()")
    point_id = site.backup()
    site.wait_restorable(point_id)
    _, capture = site.point(point_id).store("ledger-pg")
    store = site.live_stores()["ledger-pg"]
    span = store._archive().span(capture.pitr_timestamp)
    assert span.last_segment is not None
    gone = segment_name(span.base.timeline, span.base.start_seq + 1)
    segment = site.wal.archive / "wal" / gone
    aside = segment.with_name(gone + ".aside")
    segment.rename(aside)
    try:
        with pytest.raises(PitrWindowError) as err:
            store.check_restorable(capture)
        assert f"WAL segment {gone} is missing" in str(err.value)
        assert point_readiness(site.point(point_id), {"ledger-pg": store}).label() == "no"
    finally:
        aside.rename(segment)
    store.check_restorable(capture)  # back in place: restorable again


def test_binary_logs_purged_before_they_were_fetched_are_named_and_refused(
    servers_dir, prefect_api, tmp_path, monkeypatch
):
    """A MariaDB of its own: PURGE BINARY LOGS must not touch the other tests' archives."""
    my = start_binlog_mariadb(servers_dir / f"mariadb-purge-{next(_n)}")
    ntp = FakeNtpServer(offset_s=0.002, root_dispersion_s=0.002)
    try:
        monkeypatch.setenv(MY_ENV, servers.PASSWORD)
        kind = for_servers(None, my, {"mysql": MY_ENV})["mysql"]
        kind.create_db("purge_a")
        db = kind.db("purge_a")
        create_schema(db)
        with start_gate_cluster(1) as ledger:
            path = tmp_path / "site.yaml"
            path.write_text(
                yaml.safe_dump(
                    {
                        "site": "pitrdb-purge",
                        "catalog": {"path": "catalog"},
                        "clock": {"ntp_servers": [ntp.address], "required": True},
                        "ledger": {
                            "targets": {"static": [str(t) for t in ledger.targets]},
                            "stores": [
                                kind.store_config(
                                    "ledger-my",
                                    "purge_a",
                                    pitr="binlog",
                                    archive_dir=str(tmp_path / "archive"),
                                )
                            ],
                        },
                    }
                )
            )
            backup(BackupRequest(site_file=str(path)))  # base dump and first fetch
            with my.connect("purge_a") as conn, conn.cursor() as cur:
                for i in range(2):
                    cur.execute("UPDATE account SET balance = balance + 1 WHERE id = %s", (i,))
                    cur.execute("FLUSH BINARY LOGS")
                # Never fetched: lost. MariaDB keeps a file until InnoDB's log has caught up
                # with it (its binlog checkpoint, about a second here): purge until it went.
                deadline = time.monotonic() + 30
                while True:
                    cur.execute("SHOW BINARY LOGS")
                    listed = [r[0] for r in cur.fetchall()]
                    if len(listed) == 1:
                        break
                    assert time.monotonic() < deadline, f"binary logs not purged: {listed}"
                    cur.execute(f"PURGE BINARY LOGS TO '{listed[-1]}'")
                    time.sleep(0.5)
            point_id = backup(BackupRequest(site_file=str(path)))
        site = load_site(path)
        point = open_catalog(site.catalog).get_point(site.site, point_id)
        _, capture = point.store("ledger-my")
        store = open_store(site.ledger.stores[0], SecretResolver())
        with pytest.raises(PitrWindowError) as err:
            store.check_restorable(capture)
        assert "is missing from" in str(err.value) and "purged" in str(err.value)
    finally:
        ntp.close()
        my.stop()


def test_a_clock_bound_wider_than_the_site_accepts_refuses_the_backup(pitrdb_site):
    site = pitrdb_site
    data = yaml.safe_load(site.path.read_text())
    wide = FakeNtpServer(offset_s=0.8, root_dispersion_s=0.1)
    try:
        data["clock"] = {"ntp_servers": [wide.address], "required": True, "max_error_ms": 500}
        site.path.write_text(yaml.safe_dump(data, sort_keys=False))
        with pytest.raises(ClockSkewError) as err:
            site.backup()
    finally:
        wide.close()
    message = str(err.value)
    assert "clock.max_error_ms = 500 ms" in message and "Nothing was paused" in message
    assert "NTP" in message and "raise clock.max_error_ms to at least 9" in message
    assert not any(g.gate.check_paused() for g in site.gates)
    assert site.catalog().list_points(site.site.site) == []


def test_a_restore_run_waits_for_a_point_not_yet_restorable_then_says_so(pitrdb_site, tmp_path):
    """The drill's bounded wait, on the real stores: a point an hour ahead never becomes
    restorable in the wait, and the refusal says how long it waited."""
    site = pitrdb_site
    point_id = site.backup()
    site.wait_restorable(point_id)
    target, _, _ = site.target()
    run = RestoreRun.prepare(
        site.site, site.catalog(), point_id, load_target(str(target)), SecretResolver()
    )
    run.validate()
    run.wait_restorable_s = 1.0
    slot = next(s for s in run.slots if s.store.name == "ledger-my")
    slot.capture = shifted(slot.capture, 3600)
    t0 = time.monotonic()
    with pytest.raises(PitrNotYetRestorableError) as err:
        run.check_target(slot)
    assert time.monotonic() - t0 >= 1.0
    assert "waited 1 s for it" in str(err.value)
    assert f"Restorable now (newest first): {point_id}" in str(err.value)


def test_a_restored_server_directory_is_replaced_only_when_asked_and_only_if_ours(
    pitrdb_site,
):
    from pausepoint.errors import TargetNotEmptyError

    site = pitrdb_site
    point_id = site.backup()
    site.wait_restorable(point_id)
    target, login, restored_my = site.target()

    def again(replace: bool, target_file: Path = target) -> dict:
        return restore(
            RestoreRequest(
                site_file=str(site.path),
                point_id=point_id,
                confirm=point_id,
                target_file=str(target_file),
                replace=replace,
            )
        )

    assert all(ok for _, ok, _ in again(False)["checks"])
    with pytest.raises(TargetNotEmptyError, match="holds an earlier restore"):
        again(False)
    # --replace: the earlier restore's server is stopped, its directory replaced
    assert all(ok for _, ok, _ in again(True)["checks"])
    with servers.connect_postgres(login, site.pg_db.name, True) as conn:
        assert conn.execute("SELECT count(*) FROM account").fetchone()[0] == 20
    # A directory no restore made is never deleted, --replace or not.
    foreign = site.tmp / "not-a-restore"
    foreign.mkdir()
    (foreign / "PG_VERSION").write_text("15\n")
    data = yaml.safe_load(target.read_text())
    data["stores"]["ledger-pg"].update(restore_dir=str(foreign), port=free_port())
    data["stores"]["ledger-my"]["database_map"] = {site.my_name: restored_my + "x"}
    other = site.tmp / "foreign-target.yaml"
    other.write_text(yaml.safe_dump(data))
    with pytest.raises(TargetNotEmptyError, match="was not made by a pausepoint restore"):
        again(True, other)
    assert (foreign / "PG_VERSION").read_text() == "15\n"
