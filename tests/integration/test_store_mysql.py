"""MysqlStore against a private MariaDB server: snapshot opened inside open_capture, capture
under load, restore with renamed databases, refusals."""

from __future__ import annotations

import re
import time
import uuid

import pymysql
import pytest

from harness.servers import MysqlServer
from pausepoint.errors import (
    CaptureError,
    CorruptArtifactError,
    StoreCheckError,
    TargetNotEmptyError,
    ToolMissingError,
)
from pausepoint.secrets import SecretRef, SecretResolver
from pausepoint.stores import mysql
from pausepoint.stores.mysql import MysqlStore, is_post_snapshot
from pausepoint.stores.mysql_config import MysqlConfig
from tests.support.workload import TransferWriter

pytestmark = pytest.mark.integration

ACCOUNTS = 200
INITIAL = 1_000


def make_store(
    server: MysqlServer, databases: list[str], password: str | None = None, **kw
) -> MysqlStore:
    config = MysqlConfig(
        name="ledger-my",
        host=server.host,
        port=server.port,
        user=server.user,
        password=SecretRef(env="PP_TEST_MY_PASSWORD"),
        databases=databases,
        **kw,
    )
    resolve = SecretResolver(environ={"PP_TEST_MY_PASSWORD": password or server.password})
    return MysqlStore(config, resolve)


@pytest.fixture
def dbs(mysql_server: MysqlServer) -> list[str]:
    """A ledger database and a coordinator database, like ScalarDL on multi-storage."""
    suffix = uuid.uuid4().hex[:8]
    ledger, coord = f"ledger_{suffix}", f"coord_{suffix}"
    with mysql_server.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {ledger} CHARACTER SET utf8mb4")
        cur.execute(f"CREATE DATABASE {coord}")
        cur.execute(
            f"CREATE TABLE {ledger}.account (id INT PRIMARY KEY, balance BIGINT NOT NULL, "
            "note TEXT NULL, data BLOB, updated TIMESTAMP(6) NULL, ratio DOUBLE) ENGINE=InnoDB"
        )
        cur.execute(
            f"CREATE TABLE {coord}.transfer (tx_id BIGINT AUTO_INCREMENT PRIMARY KEY, "
            "account INT NOT NULL, amount BIGINT NOT NULL) ENGINE=InnoDB"
        )
        cur.execute(f"CREATE TABLE {coord}.zz_marker (v VARCHAR(64)) ENGINE=InnoDB")
        cur.execute(
            f"INSERT INTO {ledger}.account SELECT seq, {INITIAL}, "
            "IF(seq % 3 = 0, NULL, CONCAT('n', seq, '\\n''quoted''')), UNHEX(MD5(seq)), "
            f"NOW(6), seq / 7 FROM {ledger}.seq_0_to_{ACCOUNTS - 1}"
        )
    return [ledger, coord]


def transfer_sql(dbs: list[str]):
    ledger, coord = dbs

    def transfer(conn: pymysql.Connection, account: int, amount: int) -> None:
        # One transaction over both databases.
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute(
                f"UPDATE {ledger}.account SET balance = balance - %s, updated = NOW(6) "
                "WHERE id = %s",
                (amount, account),
            )
            cur.execute(
                f"INSERT INTO {coord}.transfer (account, amount) VALUES (%s, %s)",
                (account, amount),
            )
            cur.execute("COMMIT")

    return transfer


def invariant(server: MysqlServer, dbs: list[str]) -> tuple[int, int]:
    ledger, coord = dbs
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT (SELECT SUM(balance) FROM {ledger}.account) "
            f"+ (SELECT COALESCE(SUM(amount), 0) FROM {coord}.transfer), "
            f"(SELECT COUNT(*) FROM {coord}.transfer)"
        )
        total, moved = cur.fetchone()
    return int(total), int(moved)


def renamed(dbs: list[str], tag: str) -> dict[str, str]:
    return {d: f"{d}_{tag}" for d in dbs}


@pytest.mark.parametrize("gzip_level", [0, 1], ids=["plain", "gzip1"])
def test_capture_under_writer_restores_the_exact_snapshot(mysql_server, dbs, tmp_path, gzip_level):
    store = make_store(mysql_server, dbs, gzip_level=gzip_level)
    seen: list[int] = []
    with TransferWriter(lambda: mysql_server.connect(), transfer_sql(dbs), ACCOUNTS) as writer:
        writer.wait_for(50)
        # As the backup flow does: the snapshot opens inside a pause.
        with writer.paused():
            handle = store.open_capture(tmp_path / "cap")
        writer.wait_for(writer.committed + 50)  # writes continue after the unpause
        result = store.finish_capture(handle, progress=lambda _s, n: seen.append(n))
    assert result.method == "mariadb-dump-single-transaction"
    assert [a.path for a in result.artifacts] == ["dump.sql.gz" if gzip_level else "dump.sql"]
    assert seen and seen[-1] == result.artifacts[0].size
    assert {f"{dbs[0]}.account", f"{dbs[1]}.transfer"} <= set(result.fingerprint)

    mapping = renamed(dbs, "copy")
    target = make_store(mysql_server, dbs, database_map=mapping)
    target.check_restore_target(result, replace=False)
    target.restore(result, tmp_path / "cap", replace=False)

    assert target.fingerprint() == result.fingerprint
    total, moved = invariant(mysql_server, list(mapping.values()))
    assert total == ACCOUNTS * INITIAL
    assert 0 < moved < invariant(mysql_server, dbs)[1]  # the snapshot, not the end state


@pytest.fixture(scope="module")
def big_dbs(mysql_server: MysqlServer) -> list[str]:
    """A database with a table of tens of MB (dumped first) and a small one dumped last."""
    suffix = uuid.uuid4().hex[:8]
    big, late = f"big_{suffix}", f"late_{suffix}"
    with mysql_server.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {big}")
        cur.execute(f"CREATE DATABASE {late}")
        cur.execute(f"CREATE TABLE {big}.payload (id INT PRIMARY KEY, body TEXT)")
        cur.execute(
            f"INSERT INTO {big}.payload SELECT seq, REPEAT(MD5(seq), 8) FROM {big}.seq_1_to_100000"
        )
        cur.execute(f"CREATE TABLE {late}.marker (v VARCHAR(64))")
    return [big, late]


def test_capture_without_pause_fingerprints_the_dumps_own_snapshot(mysql_server, dbs, tmp_path):
    """A site on one store is backed up without a pause, the writer never stops: the
    fingerprint comes from the dump itself, so it is that snapshot's, whatever commits."""
    store = make_store(mysql_server, dbs)
    with TransferWriter(lambda: mysql_server.connect(), transfer_sql(dbs), ACCOUNTS) as writer:
        writer.wait_for(50)
        handle = store.open_capture(tmp_path / "cap")  # the writer keeps going
        writer.wait_for(writer.committed + 50)
        result = store.finish_capture(handle)
    assert result.fingerprint_method == MysqlStore.fingerprint_method
    assert "commit_guard" not in result.details

    target = make_store(mysql_server, dbs, database_map=renamed(dbs, "nopause"))
    target.restore(result, tmp_path / "cap", replace=False)
    assert target.fingerprint() == result.fingerprint
    assert invariant(mysql_server, list(renamed(dbs, "nopause").values()))[0] == ACCOUNTS * INITIAL


def test_open_capture_is_fast_on_a_large_table(mysql_server, big_dbs, tmp_path):
    store = make_store(mysql_server, big_dbs)
    store.check()  # caches the tool version, as the backup flow's preflight does
    started = time.monotonic()
    handle = store.open_capture(tmp_path / "cap")
    elapsed = time.monotonic() - started
    store.abort_capture(handle)
    store.abort_capture(handle)  # idempotent
    assert elapsed < 2.0
    assert handle.dump.poll() is not None  # the aborted dump is gone


@pytest.mark.parametrize("signal", ["dump said", "processlist"])
def test_open_capture_returns_only_once_the_dump_snapshot_is_open(
    mysql_server, big_dbs, tmp_path, monkeypatch, signal
):
    if signal == "processlist":  # the fallback: as if the dump never said so on stderr
        monkeypatch.setattr(mysql, "POST_SNAPSHOT_MESSAGES", ())
        monkeypatch.setattr(mysql, "FALLBACK_AFTER_S", 0.0)
    late = big_dbs[1]
    with mysql_server.connect() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {late}.marker")  # big_dbs serves the whole module
        earlier = cur.fetchone()[0]
    store = make_store(mysql_server, big_dbs)
    store.check()
    handle = store.open_capture(tmp_path / "cap")
    marker = f"written-after-open-{uuid.uuid4().hex}"
    with mysql_server.connect() as conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO {late}.marker VALUES (%s)", (marker,))
    still_dumping = handle.dump.poll() is None
    result = store.finish_capture(handle)

    assert still_dumping, "the dump finished before the write: make the big table bigger"
    assert handle.signal.startswith(signal), handle.signal
    dump = (tmp_path / "cap" / "dump.sql").read_bytes()
    assert b"CREATE TABLE `marker`" in dump
    assert marker.encode() not in dump
    assert result.fingerprint[f"{late}.marker"].rows == earlier
    assert result.details["uncompressed_bytes"] > 10_000_000


def test_snapshot_signal_matches_what_the_dump_sends(mysql_server, big_dbs, tmp_path):
    """Reads the general log: the dump's statements before START TRANSACTION never count as
    the signal, and the ones after it do (the evidence behind POST_SNAPSHOT)."""
    log = mysql_server.general_log
    start = log.stat().st_size if log.exists() else 0
    with mysql_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SET GLOBAL general_log = 1")
        try:
            store = make_store(mysql_server, big_dbs)
            store.finish_capture(store.open_capture(tmp_path / "cap"))
        finally:
            cur.execute("SET GLOBAL general_log = 0")
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    # Lines look like "<time?>\t  <id> Query\t<statement>"; the dump is the connection that
    # sent START TRANSACTION ... WITH CONSISTENT SNAPSHOT.
    entries = re.findall(r"^\S*\s+(\d+) (Query|Init DB|Connect|Quit)\t(.*)$", text, re.M)
    dump_ids = {i for i, kind, s in entries if kind == "Query" and "WITH CONSISTENT SNAPSHOT" in s}
    assert len(dump_ids) == 1
    statements = [s for i, kind, s in entries if i in dump_ids and kind == "Query"]
    begin = next(n for n, s in enumerate(statements) if "WITH CONSISTENT SNAPSHOT" in s)
    assert begin > 0
    assert not any(is_post_snapshot(s) for s in statements[: begin + 1])
    assert all(
        is_post_snapshot(s) for s in statements[begin + 1 :] if not s.upper().startswith("SET")
    ), [s for s in statements[begin + 1 :] if not is_post_snapshot(s)]


def test_the_dumps_word_comes_after_its_snapshot_opened(mysql_server, big_dbs, tmp_path):
    """The evidence behind POST_SNAPSHOT_MESSAGES, from the server's general log (in a table,
    microseconds): the dump sends its first statement after START TRANSACTION only once that
    returned, and open_capture, on the dump's word, returns after the server received it."""
    store = make_store(mysql_server, big_dbs)
    store.check()
    with mysql_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SET GLOBAL log_output = 'TABLE'")
        cur.execute("SET GLOBAL general_log = 1")
        try:
            prepared = store.prepare_capture(tmp_path / "cap")
            handle = store.open_capture(tmp_path / "cap", prepared)
            returned = time.time()
            store.abort_capture(handle)
        finally:
            cur.execute("SET GLOBAL general_log = 0")
            cur.execute("SET GLOBAL log_output = 'FILE'")
        cur.execute(
            "SELECT thread_id, UNIX_TIMESTAMP(event_time), argument FROM mysql.general_log "
            "WHERE command_type = 'Query' ORDER BY event_time"
        )
        rows = [
            (t, float(at), arg if isinstance(arg, str) else bytes(arg).decode(errors="replace"))
            for t, at, arg in cur
        ]
        cur.execute("TRUNCATE mysql.general_log")
    assert handle.signal.startswith("dump said: -- "), handle.signal
    dump_ids = {t for t, _, arg in rows if "WITH CONSISTENT SNAPSHOT" in arg}
    assert len(dump_ids) == 1
    statements = [(at, arg) for t, at, arg in rows if t in dump_ids]
    begin = next(n for n, (_, arg) in enumerate(statements) if "WITH CONSISTENT SNAPSHOT" in arg)
    after_begin = statements[begin + 1][0]  # sent once START TRANSACTION had returned
    assert returned >= after_begin
    assert handle.opened_at.timestamp() >= after_begin


def test_dump_talk_counts_only_what_follows_the_start_of_its_transaction():
    talk = mysql.DumpTalk()
    assert talk("-- Connecting to 127.0.0.1...") is True  # progress talk: not in the error tail
    assert talk("-- Setting savepoint...") is True and not talk.opened.is_set()  # no START seen
    assert talk("mariadb-dump: Got error: 1045: Access denied") is False  # kept in the tail
    assert talk("-- Starting transaction...") is True and not talk.opened.is_set()
    assert talk("-- Disconnecting from 127.0.0.1...") is True and not talk.opened.is_set()
    assert talk("-- Warning: Skipping the data of table mysql.event.") is False
    talk("-- Retrieving table structure for table t...")
    assert talk.opened.is_set() and talk.message.startswith("-- Retrieving table structure")


def pausepoint_connections(server: MysqlServer) -> int:
    """Connections of the store's user other than this query's own."""
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
            "WHERE USER = %s AND ID <> CONNECTION_ID()",
            (server.user,),
        )
        return int(cur.fetchone()[0])


def test_prepared_capture_released_unopened_leaves_nothing_behind(mysql_server, dbs, tmp_path):
    store = make_store(mysql_server, dbs)
    before = pausepoint_connections(mysql_server)
    prepared = store.prepare_capture(tmp_path / "cap")
    assert prepared.monitor is not None and prepared.monitor.open  # authenticated beforehand
    assert pausepoint_connections(mysql_server) == before + 1
    assert not prepared.options.closed  # the option file, in memory
    prepared.release()
    prepared.release()  # idempotent
    assert pausepoint_connections(mysql_server) == before
    assert prepared.options.closed
    with pytest.raises(CaptureError, match="already released"):
        store.open_capture(tmp_path / "cap", prepared)  # a late open never runs on it


def test_open_capture_that_fails_frees_its_preparation(mysql_server, tmp_path):
    store = make_store(mysql_server, [f"missing_{uuid.uuid4().hex[:8]}"])
    before = pausepoint_connections(mysql_server)
    prepared = store.prepare_capture(tmp_path / "cap")
    with pytest.raises(CaptureError, match="failed before its snapshot opened"):
        store.open_capture(tmp_path / "cap", prepared)
    assert pausepoint_connections(mysql_server) == before
    assert prepared.options.closed
    assert prepared.state == "taken" and prepared.monitor is None
    prepared.release()  # the open took it over: nothing left to free, no error


def test_restore_into_non_empty_target_is_refused_then_replaced(mysql_server, dbs, tmp_path):
    store = make_store(mysql_server, dbs)
    result = store.finish_capture(store.open_capture(tmp_path / "cap"))
    with mysql_server.connect() as conn:
        transfer_sql(dbs)(conn, 1, 5)  # the live databases move on

    with pytest.raises(TargetNotEmptyError) as err:
        store.check_restore_target(result, replace=False)
    text = str(err.value)
    assert dbs[0] in text and "--replace" in text and f"{dbs[0]}.account" in text
    with pytest.raises(TargetNotEmptyError):
        store.restore(result, tmp_path / "cap", replace=False)

    store.restore(result, tmp_path / "cap", replace=True)
    assert store.fingerprint() == result.fingerprint
    assert invariant(mysql_server, dbs) == (ACCOUNTS * INITIAL, 0)


def test_restore_with_corrupt_artifact_is_refused_before_any_change(mysql_server, dbs, tmp_path):
    result = make_store(mysql_server, dbs).finish_capture(
        make_store(mysql_server, dbs).open_capture(tmp_path / "cap")
    )
    path = tmp_path / "cap" / result.artifacts[0].path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(data)

    mapping = renamed(dbs, "bad")
    with pytest.raises(CorruptArtifactError, match=r"dump\.sql"):
        make_store(mysql_server, dbs, database_map=mapping).restore(
            result, tmp_path / "cap", replace=False
        )
    with mysql_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE %s", ("%_bad",))
        assert cur.fetchall() == ()


def test_check_reports_versions_and_databases(mysql_server, dbs):
    facts = make_store(mysql_server, dbs).check()
    assert "MariaDB" in facts["server_version"]
    assert facts["tables"] == 3 and "mariadb-dump" in facts


def test_check_with_wrong_password_says_so_without_the_password(mysql_server, dbs):
    wrong = "not-the-Password-123"
    with pytest.raises(StoreCheckError) as err:
        make_store(mysql_server, dbs, password=wrong).check()
    text = str(err.value)
    assert "password" in text and "PP_TEST_MY_PASSWORD" in text and f"{mysql_server.port}" in text
    assert wrong not in text and mysql_server.password not in text


def test_check_with_missing_database_names_it(mysql_server, dbs):
    with pytest.raises(StoreCheckError, match="nope_db"):
        make_store(mysql_server, [*dbs, "nope_db"]).check()


def test_check_with_empty_bin_dir_reports_missing_tool(mysql_server, dbs, tmp_path):
    with pytest.raises(ToolMissingError) as err:
        make_store(mysql_server, dbs, bin_dir=str(tmp_path)).check()
    assert "mariadb-dump" in str(err.value) and "mariadb-client" in str(err.value)


def test_capture_leaves_no_secret_file_behind(mysql_server, dbs, tmp_path):
    store = make_store(mysql_server, dbs)
    handle = store.open_capture(tmp_path / "cap")
    assert not handle.prepared.options.closed
    assert mysql_server.password not in " ".join(handle.dump.argv)
    store.finish_capture(handle)
    assert handle.prepared.options.closed
    assert sorted(p.name for p in (tmp_path / "cap").iterdir()) == ["dump.sql"]


def test_capture_and_restore_as_dedicated_user_with_awkward_password(mysql_server, dbs, tmp_path):
    password = 'a"b#c\\d e'
    user = f"bk_{uuid.uuid4().hex[:6]}"
    with mysql_server.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s", (password,))
        cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{user}'@'127.0.0.1'")
    config = dict(
        name="ledger-my",
        host=mysql_server.host,
        port=mysql_server.port,
        user=user,
        password=SecretRef(env="PW"),
    )
    resolve = SecretResolver(environ={"PW": password})
    store = MysqlStore(MysqlConfig(databases=dbs, **config), resolve)
    store.check()
    handle = store.open_capture(tmp_path / "cap")
    assert handle.signal.startswith(("dump said", "processlist", "dump exited"))
    result = store.finish_capture(handle)
    mapping = renamed(dbs, "usr")
    target = MysqlStore(MysqlConfig(databases=dbs, database_map=mapping, **config), resolve)
    target.restore(result, tmp_path / "cap", replace=False)
    assert target.fingerprint(sorted(result.fingerprint)) == result.fingerprint


def test_capture_and_restore_check_as_a_read_only_user(mysql_server, dbs, tmp_path):
    """Backing up needs SELECT, SHOW VIEW and TRIGGER only (no RELOAD, no PROCESS)."""
    user = f"ro_{uuid.uuid4().hex[:6]}"
    with mysql_server.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw-ro-1'")
        for db in dbs:
            cur.execute(f"GRANT SELECT, SHOW VIEW, TRIGGER ON {db}.* TO '{user}'@'127.0.0.1'")
    config = dict(
        name="ledger-my",
        host=mysql_server.host,
        port=mysql_server.port,
        user=user,
        password=SecretRef(env="PW"),
        databases=dbs,
    )
    store = MysqlStore(MysqlConfig(**config), SecretResolver(environ={"PW": "pw-ro-1"}))
    store.check()
    result = store.finish_capture(store.open_capture(tmp_path / "cap"))
    assert result.fingerprint == store.fingerprint()
    assert result.fingerprint[f"{dbs[0]}.account"].rows == ACCOUNTS


# --- the fingerprint ------------------------------------------------------------------------

TYPED_ROWS = [
    "(1, 'a', 'x', 0x000A0D5C27, '2024-01-01 12:00:00.5', 0.1, 1.50, '{\"k\": [1]}', 1)",
    "(2, '', '', '', '1970-01-02 00:00:00', 0, 0, 'null', 0)",
    "(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    "(4, 'q''),(x\\\\', 'y', 'a),(b', NULL, 1e300, -1, '[]', 1)",
]


def typed_db(server: MysqlServer, rows: list[str], *statements: str) -> str:
    db = f"typed_{uuid.uuid4().hex[:8]}"
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db} CHARACTER SET utf8mb4")
        cur.execute(
            f"CREATE TABLE {db}.typed (id INT PRIMARY KEY, note TEXT, label VARCHAR(20), "
            "bin VARBINARY(20), ts TIMESTAMP(6) NULL, ratio DOUBLE, amount DECIMAL(10,3), "
            "doc JSON, flag BOOLEAN) ENGINE=InnoDB"
        )
        cur.execute(f"CREATE TABLE {db}.empty (id INT) ENGINE=InnoDB")
        cur.execute(f"INSERT INTO {db}.typed VALUES {', '.join(rows)}")
        for statement in statements:
            cur.execute(statement.format(db=db))
    return db


@pytest.fixture(scope="module")
def typed_fingerprint(mysql_server):
    db = typed_db(mysql_server, TYPED_ROWS)
    return make_store(mysql_server, [db]).fingerprint()


def test_fingerprint_is_the_same_whatever_the_insertion_order(mysql_server, typed_fingerprint):
    db = typed_db(mysql_server, TYPED_ROWS[::-1])
    assert make_store(mysql_server, [db]).fingerprint() == rekey(typed_fingerprint, db)
    assert {k.split(".")[1]: v.rows for k, v in typed_fingerprint.items()} == {
        "typed": 4,
        "empty": 0,
    }


def rekey(fingerprint, db: str):
    return {f"{db}.{k.split('.', 1)[1]}": v for k, v in fingerprint.items()}


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE {db}.typed SET note = 'b' WHERE id = 1",
        "UPDATE {db}.typed SET note = NULL WHERE id = 2",  # '' -> NULL
        "UPDATE {db}.typed SET note = '' WHERE id = 3",  # NULL -> ''
        "UPDATE {db}.typed SET bin = 0x000A0D5C28 WHERE id = 1",
        "UPDATE {db}.typed SET ts = '2024-01-01 12:00:00.500001' WHERE id = 1",
        "UPDATE {db}.typed SET ratio = 1e-300 WHERE id = 2",  # 0 -> nearly 0
        "UPDATE {db}.typed SET ratio = 1.0000000000000002e300 WHERE id = 4",  # the last bit
        # Rows trade a value.
        "UPDATE {db}.typed SET label = IF(id = 1, '', 'x') WHERE id IN (1, 2)",
        "INSERT INTO {db}.typed (id) VALUES (5)",  # one extra row
        "DELETE FROM {db}.typed WHERE id = 2",  # one missing row
        "INSERT INTO {db}.empty VALUES (NULL)",
    ],
)
def test_fingerprint_sees_every_difference(mysql_server, typed_fingerprint, change):
    db = typed_db(mysql_server, TYPED_ROWS, change)
    changed = make_store(mysql_server, [db]).fingerprint()
    expected = rekey(typed_fingerprint, db)
    table = f"{db}.empty" if ".empty" in change else f"{db}.typed"
    assert changed[table] != expected[table]
    assert {k: v for k, v in changed.items() if k != table} == {
        k: v for k, v in expected.items() if k != table
    }


def test_fingerprint_of_a_capture_matches_its_restore_for_every_type(mysql_server, tmp_path):
    db = typed_db(mysql_server, TYPED_ROWS)
    store = make_store(mysql_server, [db])
    result = store.finish_capture(store.open_capture(tmp_path / "cap"))
    assert result.fingerprint == store.fingerprint()
    target = make_store(mysql_server, [db], database_map={db: f"{db}_copy"})
    target.restore(result, tmp_path / "cap", replace=False)
    assert target.fingerprint() == result.fingerprint
    assert target.fingerprint([f"{db}.typed"]) == {f"{db}.typed": result.fingerprint[f"{db}.typed"]}


def test_connections_share_one_tls_context(mysql_server, dbs):
    """PyMySQL would load the CA certificates on every connect (~17 ms, inside the pause)."""
    store = make_store(mysql_server, dbs)
    with store._connect(StoreCheckError) as one, store._connect(StoreCheckError) as two:
        assert one.ctx is two.ctx is not None
        assert not one._ssl_required  # still PREFERRED: TLS when the server offers it
