"""No restore or drill writes over a database the live site uses while it runs, however the
target file spells that database (issue 10). The small site: real PostgreSQL + MariaDB, test
admin nodes that answer like running ScalarDL nodes."""

from __future__ import annotations

import socket

import pytest
import yaml

from flows.backup import backup
from flows.drill import drill
from flows.restore import restore
from harness.bank_app import _exec, read_state
from pausepoint.catalog import open_catalog
from pausepoint.errors import RestoreError, RestoreTargetError, ScratchTargetError
from pausepoint.requests import BackupRequest, DrillRequest, RestoreRequest
from pausepoint.site import load_site
from tests.integration.test_prune_drill import add_transfer, exists

pytestmark = [pytest.mark.integration]


def rows(db) -> list[tuple]:
    """Every row of the bank tables, in order: any change to live data shows here."""
    conn = db.connect()
    try:
        out = [tuple(r) for r in _exec(conn, "SELECT * FROM account ORDER BY id")]
        out += [tuple(r) for r in _exec(conn, "SELECT * FROM transfer ORDER BY id")]
        conn.commit()
        return out
    finally:
        conn.close()


def live_rows(small_site) -> dict[str, list[tuple]]:
    return {db.store_name: rows(db.live) for db in small_site.dbs.all()}


def target_file(tmp_path, stores: dict, name: str = "target.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"stores": stores}))
    return str(path)


def spelt_targets(small_site) -> dict[str, dict]:
    """Targets that name live databases without writing them as the site file does."""
    dbs = {db.store_name: db for db in small_site.dbs.all()}
    elsewhere = {name: db.restore_override for name, db in dbs.items()}
    my_live = dbs["ledger-s-my"].live_name
    return {
        "host name, jobs: 1, identity database_map, 127.1": {
            "ledger-c-pg": {"host": socket.gethostname(), "jobs": 1},
            "ledger-s-my": {"database_map": {my_live: my_live}},
            "auditor-c-pg": {"host": "127.1"},
        },
        "the ledger into the auditor's live database": {
            **elsewhere,
            "ledger-c-pg": {"database": dbs["auditor-c-pg"].live_name},
        },
        "the PostgreSQL socket directory, MariaDB as localhost": {
            **elsewhere,
            "ledger-c-pg": {"host": str(small_site.dbs.pg.socket_dir)},
            "ledger-s-my": {"host": "localhost"},
        },
        "only jobs: 1": {**elsewhere, "auditor-c-pg": {"jobs": 1}},
    }


@pytest.fixture
def backed_up(small_site):
    point_id = backup(BackupRequest(site_file=str(small_site.path)))
    # after the point: a restore over the live databases would take these rows away
    for db in small_site.dbs.all():
        add_transfer(db.live, 77)
    return small_site, point_id


def restore_with(small_site, point_id, target: str, replace: bool = True) -> dict:
    return restore(
        RestoreRequest(
            site_file=str(small_site.path),
            point_id=point_id,
            confirm=point_id,
            target_file=target,
            replace=replace,
        )
    )


@pytest.mark.parametrize(
    "spelling",
    [
        "host name, jobs: 1, identity database_map, 127.1",
        "the ledger into the auditor's live database",
        "the PostgreSQL socket directory, MariaDB as localhost",
        "only jobs: 1",
    ],
)
def test_a_restore_over_a_running_site_is_refused_however_the_target_spells_it(
    backed_up, tmp_path, spelling
):
    small_site, point_id = backed_up
    before = live_rows(small_site)
    target = target_file(tmp_path, spelt_targets(small_site)[spelling])

    with pytest.raises(RestoreError) as e:
        restore_with(small_site, point_id, target)

    msg = str(e.value)
    assert "still answer" in msg and "writes over databases the site uses" in msg
    assert "the live database of store" in msg and "nothing was restored" in msg
    assert live_rows(small_site) == before, "no live row changed"
    assert [s.target for s in small_site.servers if s.gate.check_paused()] == []
    for s in small_site.servers:  # the nodes still answer
        assert s.gate.check_paused() is False and s.calls.get("CheckPaused", 0) > 0
    assert not any(exists(db.restored) for db in small_site.dbs.all())


def test_two_stores_restored_into_one_live_database_are_refused_before_anything(
    backed_up, tmp_path
):
    small_site, point_id = backed_up
    dbs = {db.store_name: db for db in small_site.dbs.all()}
    before = live_rows(small_site)
    calls = sum(s.calls.get("CheckPaused", 0) for s in small_site.servers)
    # the ledger's store into the auditor's live database, which the auditor restores too
    target = target_file(
        tmp_path, {"ledger-c-pg": {"host": "localhost", "database": dbs["auditor-c-pg"].live_name}}
    )
    with pytest.raises(RestoreTargetError, match="'ledger-c-pg' and 'auditor-c-pg' would both"):
        restore_with(small_site, point_id, target)
    assert live_rows(small_site) == before
    assert sum(s.calls.get("CheckPaused", 0) for s in small_site.servers) == calls


def test_with_the_nodes_stopped_a_spelt_target_restores_in_place_under_the_lock(
    backed_up, tmp_path
):
    small_site, point_id = backed_up
    spelt = spelt_targets(small_site)["host name, jobs: 1, identity database_map, 127.1"]
    for s in small_site.servers:
        s.stop()
    try:
        result = restore_with(small_site, point_id, target_file(tmp_path, spelt))
    finally:
        for s in small_site.servers:
            s.start()
    checks = {name: detail for name, _, detail in result["checks"]}
    assert checks["ScalarDL nodes"].startswith("every admin endpoint is down; restoring over")
    assert all(ok for _, ok, _ in result["checks"])
    for db in small_site.dbs.all():  # back at the point: the later transfer is gone
        assert 77 not in read_state(db.live)[1]


def test_the_drill_refuses_the_machines_host_name_for_a_live_database(small_site, tmp_path):
    point_id = backup(BackupRequest(site_file=str(small_site.path)))
    site = load_site(small_site.path)
    dbs = {db.store_name: db for db in small_site.dbs.all()}
    stores = {name: db.restore_override for name, db in dbs.items()}
    stores["ledger-c-pg"] = {"host": socket.gethostname()}  # its live database, by another name
    for db in small_site.dbs.all():
        add_transfer(db.live, 78)
    before = live_rows(small_site)

    with pytest.raises(ScratchTargetError) as e:
        drill(
            DrillRequest(site_file=str(small_site.path), target_file=target_file(tmp_path, stores))
        )

    msg = str(e.value)
    assert f"{socket.gethostname()}:{small_site.dbs.pg.port}/{dbs['ledger-c-pg'].live_name}" in msg
    assert "live database of store ledger/ledger-c-pg" in msg and "Nothing was touched" in msg
    assert live_rows(small_site) == before
    assert not any(exists(db.restored) for db in dbs.values())
    assert open_catalog(site.catalog).list_drills(site.site, point_id) == []
