"""MysqlStore: what only the mysql kind does (the dump's word that its snapshot is open, the
option file in memory, users and TLS). What every kind does (capture under load, restore,
refusals, fingerprints, abort, check) is in the store contract suite, tests/contract/, which
runs for this kind through ``tests/contract/adapters.MysqlAdapter``."""

from __future__ import annotations

import re
import time
import uuid

import pytest

from harness.servers import MysqlServer
from pausepoint.errors import CaptureError, StoreCheckError
from pausepoint.secrets import SecretRef, SecretResolver
from pausepoint.stores.mysql import MysqlStore, is_post_snapshot
from pausepoint.stores.mysql import dump as mysql_dump
from pausepoint.stores.mysql_config import MysqlConfig
from tests.contract.adapters import ACCOUNTS, MysqlAdapter

pytestmark = pytest.mark.integration


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
def dbs(request) -> list[str]:
    """The contract's bank place: a ledger database and a coordinator database, like ScalarDL
    on multi-storage."""
    return list(MysqlAdapter(request).bank().databases)


def renamed(dbs: list[str], tag: str) -> dict[str, str]:
    return {d: f"{d}_{tag}" for d in dbs}


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


@pytest.mark.parametrize("signal", ["dump said", "processlist"])
def test_open_capture_returns_only_once_the_dump_snapshot_is_open(
    mysql_server, big_dbs, tmp_path, monkeypatch, signal
):
    if signal == "processlist":  # the fallback: as if the dump never said so on stderr
        monkeypatch.setattr(mysql_dump, "POST_SNAPSHOT_MESSAGES", ())
        monkeypatch.setattr(mysql_dump, "FALLBACK_AFTER_S", 0.0)
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
    talk = mysql_dump.DumpTalk()
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


def test_prepared_capture_holds_its_option_file_in_memory_until_released(
    mysql_server, dbs, tmp_path
):
    """That a release frees every connection is in the contract suite; here: what it frees."""
    store = make_store(mysql_server, dbs)
    prepared = store.prepare_capture(tmp_path / "cap")
    assert prepared.monitor is not None and prepared.monitor.open  # authenticated beforehand
    assert not prepared.options.closed  # the option file, in memory
    prepared.release()
    assert prepared.options.closed and prepared.monitor is None


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


def test_connections_share_one_tls_context(mysql_server, dbs):
    """PyMySQL would load the CA certificates on every connect (~17 ms, inside the pause)."""
    store = make_store(mysql_server, dbs)
    with store._connect(StoreCheckError) as one, store._connect(StoreCheckError) as two:
        assert one.ctx is two.ctx is not None
        assert not one._ssl_required  # still PREFERRED: TLS when the server offers it
