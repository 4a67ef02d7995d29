"""PostgresStore against a private PostgreSQL server: capture under load, restore, refusals."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import psycopg
import pytest

from harness.servers import PostgresServer
from pausepoint.errors import (
    CaptureError,
    CorruptArtifactError,
    RestoreError,
    StoreCheckError,
    TargetNotEmptyError,
    ToolMissingError,
)
from pausepoint.secrets import SecretRef, SecretResolver
from pausepoint.stores.postgres import PostgresStore
from pausepoint.stores.postgres_config import PostgresConfig
from tests.support.workload import TransferWriter

pytestmark = pytest.mark.integration

ACCOUNTS = 200
INITIAL = 1_000


def make_store(
    server: PostgresServer, database: str, password: str | None = None, **kw
) -> PostgresStore:
    config = PostgresConfig(
        name="ledger-pg",
        host=server.host,
        port=server.port,
        user=server.user,
        password=SecretRef(env="PP_TEST_PG_PASSWORD"),
        database=database,
        **kw,
    )
    resolve = SecretResolver(environ={"PP_TEST_PG_PASSWORD": password or server.password})
    return PostgresStore(config, resolve)


def new_database(server: PostgresServer) -> str:
    name = f"pp_{uuid.uuid4().hex[:10]}"
    with server.connect() as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return name


@pytest.fixture
def source_db(pg_server: PostgresServer) -> str:
    """Two schemas like ScalarDL's (ledger tables + coordinator), NULLs, bytea, timestamps."""
    db = new_database(pg_server)
    with pg_server.connect(db) as conn:
        conn.execute(
            """
            CREATE SCHEMA scalar;
            CREATE SCHEMA coordinator;
            CREATE TABLE scalar.account (
                id int PRIMARY KEY, balance bigint NOT NULL, note text, data bytea,
                updated timestamptz DEFAULT now(), ratio double precision);
            CREATE TABLE coordinator.transfer (
                tx_id bigserial PRIMARY KEY, account int NOT NULL, amount bigint NOT NULL);
            CREATE TABLE public.empty_one (id int);
            """
        )
        conn.execute(
            "INSERT INTO scalar.account "
            "SELECT g, %s, CASE WHEN g %% 3 = 0 THEN NULL ELSE 'n' || g END, "
            "decode(md5(g::text), 'hex'), now(), g / 7.0 FROM generate_series(0, %s - 1) g",
            (INITIAL, ACCOUNTS),
        )
    return db


def transfer(conn: psycopg.Connection, account: int, amount: int) -> None:
    # One transaction over both schemas: balance down, transfer row in.
    with conn.transaction():
        conn.execute(
            "UPDATE scalar.account SET balance = balance - %s, updated = now() WHERE id = %s",
            (amount, account),
        )
        conn.execute(
            "INSERT INTO coordinator.transfer (account, amount) VALUES (%s, %s)", (account, amount)
        )


def invariant(server: PostgresServer, db: str) -> tuple[int, int]:
    with server.connect(db) as conn:
        total = conn.execute(
            "SELECT (SELECT sum(balance) FROM scalar.account) "
            "+ (SELECT coalesce(sum(amount), 0) FROM coordinator.transfer)"
        ).fetchone()[0]
        moved = conn.execute("SELECT count(*) FROM coordinator.transfer").fetchone()[0]
    return total, moved


def capture(store: PostgresStore, workdir: Path):
    handle = store.open_capture(workdir)
    return store.finish_capture(handle)


@pytest.mark.parametrize("schemas", [[], ["scalar", "coordinator"]], ids=["all-schemas", "listed"])
def test_capture_under_writer_restores_the_exact_snapshot(pg_server, source_db, tmp_path, schemas):
    store = make_store(pg_server, source_db, schemas=schemas)
    seen: list[int] = []
    with TransferWriter(lambda: pg_server.connect(source_db), transfer, ACCOUNTS) as writer:
        writer.wait_for(50)
        handle = store.open_capture(tmp_path / "cap")
        writer.wait_for(writer.committed + 50)  # writes continue after the snapshot
        result = store.finish_capture(handle, progress=lambda _s, n: seen.append(n))
    assert result.method == "pg_dump-directory"
    assert {"scalar.account", "coordinator.transfer"} <= set(result.fingerprint)
    paths = [a.path for a in result.artifacts]
    assert all(p.startswith("dump/") for p in paths[:-1]) and paths[-1] == "toc.list"
    assert all(len(a.sha256) == 64 for a in result.artifacts)
    assert seen and seen[-1] == sum(a.size for a in result.artifacts)
    assert "pg_dump" in result.tool_versions

    target_db = f"{source_db}_copy"  # does not exist yet: restore creates it
    target = make_store(pg_server, target_db, schemas=schemas)
    target.check_restore_target(result, replace=False)
    target.restore(result, tmp_path / "cap", replace=False)

    assert target.fingerprint() == result.fingerprint
    total, moved = invariant(pg_server, target_db)
    assert total == ACCOUNTS * INITIAL
    assert 0 < moved < invariant(pg_server, source_db)[1]  # the snapshot, not the end state


def test_restore_into_non_empty_target_is_refused_then_replaced(pg_server, source_db, tmp_path):
    store = make_store(pg_server, source_db)
    result = capture(store, tmp_path / "cap")
    with pg_server.connect(source_db) as conn:
        transfer(conn, 1, 5)  # the live database moves on

    with pytest.raises(TargetNotEmptyError) as err:
        store.check_restore_target(result, replace=False)
    text = str(err.value)
    assert source_db in text and "--replace" in text and "coordinator.transfer" in text
    with pytest.raises(TargetNotEmptyError):
        store.restore(result, tmp_path / "cap", replace=False)

    store.restore(result, tmp_path / "cap", replace=True)
    assert store.fingerprint() == result.fingerprint
    assert invariant(pg_server, source_db) == (ACCOUNTS * INITIAL, 0)


def test_restore_with_corrupt_artifact_is_refused_before_any_change(pg_server, source_db, tmp_path):
    result = capture(make_store(pg_server, source_db), tmp_path / "cap")
    victim = max(result.artifacts, key=lambda a: a.size)
    path = tmp_path / "cap" / victim.path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(data)

    target_db = f"{source_db}_bad"
    target = make_store(pg_server, target_db)
    with pytest.raises(CorruptArtifactError, match=victim.path):
        target.restore(result, tmp_path / "cap", replace=False)
    # Checked beside the target's checks: a corrupt file is what is reported, even over a
    # target that is not empty.
    with pytest.raises(CorruptArtifactError, match=victim.path):
        make_store(pg_server, source_db).restore(result, tmp_path / "cap", replace=False)
    with pg_server.connect() as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target_db,))
        assert exists.fetchone() is None


def test_check_reports_versions_and_schemas(pg_server, source_db):
    facts = make_store(pg_server, source_db).check()
    assert facts["server_version"].startswith("15")
    assert {"scalar", "coordinator", "public"} <= set(facts["schemas"])
    assert "pg_dump" in facts


def test_check_with_wrong_password_says_so_without_the_password(pg_server, source_db):
    wrong = "not-the-Password-123"
    with pytest.raises(StoreCheckError) as err:
        make_store(pg_server, source_db, password=wrong).check()
    text = str(err.value)
    assert "password" in text and "PP_TEST_PG_PASSWORD" in text and f"{pg_server.port}" in text
    assert wrong not in text and pg_server.password not in text


def test_check_with_missing_schema_names_it(pg_server, source_db):
    with pytest.raises(StoreCheckError, match="nope"):
        make_store(pg_server, source_db, schemas=["scalar", "nope"]).check()


def test_check_with_empty_bin_dir_reports_missing_tool(pg_server, source_db, tmp_path):
    with pytest.raises(ToolMissingError) as err:
        make_store(pg_server, source_db, bin_dir=str(tmp_path)).check()
    assert "pg_dump" in str(err.value) and "postgresql-client" in str(err.value)


def test_open_capture_is_fast_on_a_large_table(pg_server, source_db, tmp_path):
    with pg_server.connect(source_db) as conn:
        conn.execute(
            "CREATE TABLE scalar.big AS SELECT g AS id, repeat(md5(g::text), 4) AS payload "
            "FROM generate_series(1, 200000) g"
        )
        size = conn.execute("SELECT pg_total_relation_size('scalar.big')").fetchone()[0]
    assert size > 20_000_000
    store = make_store(pg_server, source_db)
    started = time.monotonic()
    handle = store.open_capture(tmp_path / "cap")
    elapsed = time.monotonic() - started
    store.abort_capture(handle)
    store.abort_capture(handle)  # idempotent
    assert elapsed < 2.0


def sessions(server: PostgresServer, db: str) -> int:
    with server.connect() as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = "
            "'pausepoint'",
            (db,),
        ).fetchone()[0]


def test_prepared_connection_opens_the_snapshot_or_is_released(pg_server, source_db, tmp_path):
    store = make_store(pg_server, source_db)
    prepared = store.prepare_capture(tmp_path / "cap")
    assert sessions(pg_server, source_db) == 1  # connected and authenticated before the pause
    handle = store.open_capture(tmp_path / "cap", prepared)
    assert handle.conn is prepared.conn  # the window only ran BEGIN and pg_export_snapshot()
    prepared.release()  # taken over: does not close the handle's connection
    assert not handle.conn.closed
    store.finish_capture(handle)
    assert sessions(pg_server, source_db) == 0

    unopened = store.prepare_capture(tmp_path / "cap2")
    assert sessions(pg_server, source_db) == 1
    unopened.release()
    unopened.release()
    assert sessions(pg_server, source_db) == 0
    with pytest.raises(CaptureError, match="already released"):
        store.open_capture(tmp_path / "cap2", unopened)


def test_prepared_connection_lost_before_the_window_is_replaced(pg_server, source_db, tmp_path):
    store = make_store(pg_server, source_db)
    prepared = store.prepare_capture(tmp_path / "cap")
    prepared.conn.close()
    handle = store.open_capture(tmp_path / "cap", prepared)
    assert handle.snapshot_id
    store.finish_capture(handle)


def test_abort_after_finish_is_harmless(pg_server, source_db, tmp_path):
    store = make_store(pg_server, source_db)
    handle = store.open_capture(tmp_path / "cap")
    store.finish_capture(handle)
    store.abort_capture(handle)
    with pg_server.connect() as conn:
        snapshots = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state LIKE 'idle in%%'",
            (source_db,),
        ).fetchone()[0]
    assert snapshots == 0


# --- the fingerprint ------------------------------------------------------------------------

TYPED_TABLE = """
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE TABLE public.typed (
        id int PRIMARY KEY, note text, label varchar(20), flag boolean, big bigint, small smallint,
        blob bytea, day date, at time, ts timestamp, tstz timestamptz, uid uuid, amount numeric,
        ratio double precision, span interval, doc jsonb, tags text[], feel mood, padded char(4));
    CREATE TABLE public.nothing ();
"""
TYPED_ROWS = """
    INSERT INTO public.typed VALUES
      (1, 'a', 'x', true, 9007199254740993, -2, '\\x00ff', '2024-02-29', '23:59:59.5',
       '2024-01-01 00:00:00', '2024-01-01 12:00:00+02', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
       1.50, '-0', '1 day', '{"k": [1, 2]}', '{a,NULL}', 'ok', 'ab'),
      (2, '', '', false, 0, 0, '\\x', '1970-01-01', '00:00', '1970-01-01', '1970-01-01+00',
       '00000000-0000-0000-0000-000000000000', 0, 0, '0', 'null', '{}', 'sad', ''),
      (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL);
    INSERT INTO public.nothing DEFAULT VALUES;
"""


def typed_db(server: PostgresServer, *statements: str) -> str:
    db = new_database(server)
    with server.connect(db) as conn:
        conn.execute(TYPED_TABLE)
        conn.execute(TYPED_ROWS)
        for statement in statements:
            conn.execute(statement)
    return db


@pytest.fixture(scope="module")
def typed_fingerprint(pg_server):
    return make_store(pg_server, typed_db(pg_server)).fingerprint()


def test_fingerprint_is_the_same_whatever_the_insertion_order(pg_server, typed_fingerprint):
    db = new_database(pg_server)
    with pg_server.connect(db) as conn:
        conn.execute(TYPED_TABLE)
        conn.execute(TYPED_ROWS)
        # Rewrite the table in the reverse physical order.
        conn.execute("CREATE TABLE public.tmp AS SELECT * FROM public.typed ORDER BY id DESC")
        conn.execute("DELETE FROM public.typed")
        conn.execute("INSERT INTO public.typed SELECT * FROM public.tmp")
        conn.execute("DROP TABLE public.tmp")
    assert make_store(pg_server, db).fingerprint() == typed_fingerprint
    assert typed_fingerprint["public.typed"].rows == 3
    assert typed_fingerprint["public.nothing"].rows == 1


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE public.typed SET note = 'b' WHERE id = 1",
        "UPDATE public.typed SET note = NULL WHERE id = 2",  # '' -> NULL
        "UPDATE public.typed SET note = '' WHERE id = 3",  # NULL -> ''
        "UPDATE public.typed SET blob = '\\x00fe' WHERE id = 1",
        "UPDATE public.typed SET amount = 1.5 WHERE id = 1",  # same value, other scale
        "UPDATE public.typed SET ratio = 0.0 WHERE id = 1",  # -0 -> 0
        "UPDATE public.typed SET span = '24 hours' WHERE id = 1",  # equal to '1 day'
        "UPDATE public.typed SET tstz = tstz + interval '1 microsecond' WHERE id = 1",
        "UPDATE public.typed SET feel = 'happy' WHERE id = 1",
        "UPDATE public.typed SET tags = '[0:1]={a,NULL}' WHERE id = 1",  # other bounds
        "UPDATE public.typed SET label = 'X' WHERE id = 1",
        # Rows trade a value: a fingerprint that combined columns linearly would not see it.
        "UPDATE public.typed SET big = CASE id WHEN 1 THEN 0 ELSE 9007199254740993 END "
        "WHERE id IN (1, 2)",
        "UPDATE public.typed SET note = CASE id WHEN 1 THEN '' ELSE 'a' END WHERE id IN (1, 2)",
        "INSERT INTO public.typed (id) VALUES (4)",  # one extra row
        "DELETE FROM public.typed WHERE id = 2",  # one missing row
        "INSERT INTO public.nothing DEFAULT VALUES",
    ],
)
def test_fingerprint_sees_every_difference(pg_server, typed_fingerprint, change):
    changed = make_store(pg_server, typed_db(pg_server, change)).fingerprint()
    table = "public.nothing" if "nothing" in change else "public.typed"
    assert changed[table] != typed_fingerprint[table]
    assert {k: v for k, v in changed.items() if k != table} == {
        k: v for k, v in typed_fingerprint.items() if k != table
    }


def test_fingerprint_of_a_capture_matches_its_restore_for_every_type(pg_server, tmp_path):
    db = typed_db(pg_server)
    result = capture(make_store(pg_server, db), tmp_path / "cap")
    assert result.fingerprint_method == PostgresStore.fingerprint_method
    assert result.fingerprint == make_store(pg_server, db).fingerprint()
    target = make_store(pg_server, f"{db}_copy")
    target.restore(result, tmp_path / "cap", replace=False)
    assert target.fingerprint() == result.fingerprint


def test_restore_after_caller_verified_checks_sizes_not_checksums(pg_server, source_db, tmp_path):
    result = capture(make_store(pg_server, source_db), tmp_path / "cap")
    victim = max(result.artifacts, key=lambda a: a.size)
    path = tmp_path / "cap" / victim.path
    data = bytearray(path.read_bytes())
    # Same size, other content: only a checksum sees it.
    data[-1] ^= 0x01
    path.write_bytes(data)
    with pytest.raises(CorruptArtifactError, match="sha256"):
        make_store(pg_server, f"{source_db}_a").restore(result, tmp_path / "cap", replace=False)
    path.write_bytes(data[:-1])  # truncated: the size check catches it even when verified
    with pytest.raises(CorruptArtifactError, match="bytes"):
        make_store(pg_server, f"{source_db}_b").restore(
            result, tmp_path / "cap", replace=False, verified=True
        )


def test_point_made_before_the_table_of_contents_file_restores(pg_server, source_db, tmp_path):
    """Points of earlier versions have no toc.list: their restore lists the dump itself."""
    result = capture(make_store(pg_server, source_db), tmp_path / "cap")
    (tmp_path / "cap" / result.details["toc"]).unlink()
    old = result.model_copy(
        update={
            "artifacts": [a for a in result.artifacts if a.path != "toc.list"],
            "details": {k: v for k, v in result.details.items() if k != "toc"},
        }
    )
    target = make_store(pg_server, f"{source_db}_old")
    target.restore(old, tmp_path / "cap", replace=False)
    assert target.fingerprint() == result.fingerprint


def test_pg_restore_that_cannot_read_the_dump_is_reported_and_restores_nothing(
    pg_server, source_db, tmp_path
):
    """pg_restore starts before the target checks and waits for its list; one that fails on
    the archive (here a toc.dat of the right size without the dump magic, passed as
    verified so the sizes-only check lets it through) ends the restore with its error."""
    result = capture(make_store(pg_server, source_db), tmp_path / "cap")
    toc_dat = tmp_path / "cap" / "dump" / "toc.dat"
    data = bytearray(toc_dat.read_bytes())
    data[:5] = b"XXXXX"  # the "PGDMP" magic
    toc_dat.write_bytes(data)
    target_db = f"{source_db}_unread"
    with pg_server.connect() as conn:
        conn.execute(f'CREATE DATABASE "{target_db}"')
    with pytest.raises(RestoreError, match=r"pg_restore exited with 1: .*magic string"):
        make_store(pg_server, target_db).restore(
            result, tmp_path / "cap", replace=False, verified=True
        )
    with pg_server.connect(target_db) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname IN ('scalar', 'coordinator', 'public')"
        ).fetchone()[0]
    assert tables == 0
