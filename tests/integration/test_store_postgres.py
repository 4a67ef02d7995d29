"""PostgresStore: what only the postgres kind does. What every kind does (capture under load,
restore, refusals, fingerprints, abort, check) is in the store contract suite, tests/contract/,
which runs for this kind through ``tests/contract/adapters.PostgresAdapter``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.servers import PostgresServer
from pausepoint.errors import RestoreError
from pausepoint.stores.postgres import PostgresStore
from tests.contract import protocol
from tests.contract.adapters import Place, PostgresAdapter

pytestmark = pytest.mark.integration


@pytest.fixture
def pg(request) -> PostgresAdapter:
    return PostgresAdapter(request)


@pytest.fixture
def source(pg) -> Place:
    """The contract's bank place: two schemas like ScalarDL's, NULLs, bytea, timestamps."""
    return pg.bank()


def make_store(pg: PostgresAdapter, database: str) -> PostgresStore:
    return pg.store(pg.live_config(Place((database,))))


def capture(store: PostgresStore, workdir: Path):
    return protocol.capture(store, workdir)


def sessions(server: PostgresServer, db: str) -> int:
    with server.connect() as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = "
            "'pausepoint'",
            (db,),
        ).fetchone()[0]


def test_the_prepared_connection_is_the_one_that_opens_the_snapshot(
    pg, pg_server, source, tmp_path
):
    """Release without open, and release after open, are in the contract suite; here: the
    window only runs BEGIN and pg_export_snapshot() on the connection prepared before it."""
    db = source.databases[0]
    store = pg.live(source)
    prepared = store.prepare_capture(tmp_path / "cap")
    assert sessions(pg_server, db) == 1  # connected and authenticated before the pause
    handle = store.open_capture(tmp_path / "cap", prepared)
    assert handle.conn is prepared.conn
    prepared.release()  # taken over: does not close the handle's connection
    assert not handle.conn.closed
    store.finish_capture(handle)
    # The client closed it; the server's backend ends a moment later (pg_stat_activity lags).
    deadline = time.monotonic() + 30
    while sessions(pg_server, db) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sessions(pg_server, db) == 0


def test_prepared_connection_lost_before_the_window_is_replaced(pg, pg_server, source, tmp_path):
    store = pg.live(source)
    prepared = store.prepare_capture(tmp_path / "cap")
    prepared.conn.close()
    handle = store.open_capture(tmp_path / "cap", prepared)
    assert handle.snapshot_id
    store.finish_capture(handle)


# --- the fingerprint ------------------------------------------------------------------------


def test_point_made_before_the_table_of_contents_file_restores(pg, pg_server, source, tmp_path):
    """Points of earlier versions have no toc.list: their restore lists the dump itself."""
    result = capture(pg.live(source), tmp_path / "cap")
    (tmp_path / "cap" / result.details["toc"]).unlink()
    old = result.model_copy(
        update={
            "artifacts": [a for a in result.artifacts if a.path != "toc.list"],
            "details": {k: v for k, v in result.details.items() if k != "toc"},
        }
    )
    target = make_store(pg, f"{source.databases[0]}_old")
    target.restore(old, tmp_path / "cap", replace=False)
    assert target.fingerprint() == result.fingerprint


def test_pg_restore_that_cannot_read_the_dump_is_reported_and_restores_nothing(
    pg, pg_server, source, tmp_path
):
    """pg_restore starts before the target checks and waits for its list; one that fails on
    the archive (here a toc.dat of the right size without the dump magic, passed as
    verified so the sizes-only check lets it through) ends the restore with its error."""
    result = capture(pg.live(source), tmp_path / "cap")
    toc_dat = tmp_path / "cap" / "dump" / "toc.dat"
    data = bytearray(toc_dat.read_bytes())
    data[:5] = b"XXXXX"  # the "PGDMP" magic
    toc_dat.write_bytes(data)
    target_db = f"{source.databases[0]}_unread"
    with pg_server.connect() as conn:
        conn.execute(f'CREATE DATABASE "{target_db}"')
    with pytest.raises(RestoreError, match=r"pg_restore exited with 1: .*magic string"):
        make_store(pg, target_db).restore(result, tmp_path / "cap", replace=False, verified=True)
    with pg_server.connect(target_db) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname IN ('scalar', 'coordinator', 'public')"
        ).fetchone()[0]
    assert tables == 0
