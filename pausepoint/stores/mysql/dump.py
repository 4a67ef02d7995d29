"""The dump tool (``mariadb-dump`` or ``mysqldump``) of a capture: its command line, starting it
with the option file in memory, and the signal that its snapshot is open.

A dump tool cannot join a snapshot that another connection opened, so the dump itself must
START its transaction inside the pause window. With ``--verbose`` it says on its stderr when it
is past ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` (``DumpTalk``, ``POST_SNAPSHOT_MESSAGES``);
should it not say so (an option file sending its messages elsewhere, another wording), the
dump's own connection seen in ``information_schema.PROCESSLIST`` running a post-snapshot
statement (``POST_SNAPSHOT``) is the fallback (``wait_for_snapshot``).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pausepoint.errors import CaptureError
from pausepoint.stores._common import SecretFile, ToolProcess

SNAPSHOT_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.002
# The PROCESSLIST fallback starts when the dump has not reported its snapshot by then. It is
# not free: each poll is a query, and finding the dump's connection reads /proc/net/tcp (5 ms
# per read on the test machine, whatever its size), on the cores the dump needs.
FALLBACK_AFTER_S = 0.1

# What mariadb-dump and mysqldump print with --verbose (to stderr, each message flushed at
# once) after their START TRANSACTION WITH CONSISTENT SNAPSHOT has returned. In both tools'
# main(), `start_transaction()` prints "-- Starting transaction..." BEFORE sending SET SESSION
# TRANSACTION ISOLATION LEVEL and START TRANSACTION; on success the dump goes on to UNLOCK TABLES
# and then per database prints "-- Setting savepoint..." (SAVEPOINT sp), and per table
# "-- Retrieving table structure for table t...", "-- Sending SELECT query...",
# "-- Retrieving rows...", "-- Rolling back to savepoint sp...", "-- Releasing savepoint...".
# On failure it jumps to its exit path, which prints only "-- Disconnecting from ..." (not in
# this list). MariaDB 10.11 with `--databases a b`, as timed here: "-- Connecting to
# 127.0.0.1..." 5.0 ms after the start, "-- Starting transaction..." 5.6 ms, "-- Setting
# savepoint..." 5.9 ms. A message only counts once "-- Starting transaction" was seen: the
# dump did run with --single-transaction. tests/integration/test_store_mysql.py checks, against
# the server's general log, that the signal comes after the dump's first post-snapshot statement.
SNAPSHOT_STARTING = "-- Starting transaction"
POST_SNAPSHOT_MESSAGES = (
    "-- Setting savepoint",
    "-- Retrieving table structure for table",
    "-- Retrieving view structure for table",
    "-- Sending SELECT query",
    "-- Retrieving rows",
    "-- Rolling back to savepoint",
    "-- Releasing savepoint",
)

# Statements a dump sends only AFTER its `START TRANSACTION WITH CONSISTENT SNAPSHOT` has
# returned. Evidence: MariaDB 10.11's general log of
#   mariadb-dump --single-transaction --skip-lock-tables --databases a b
# shows, on the dump's one connection, in this order:
#   /*!40100 SET @@SQL_MODE='' */ ; /*!40103 SET TIME_ZONE='+00:00' */ ;
#   /*M!100100 SET @@MAX_STATEMENT_TIME=0.000000 */ ; /*M!100100 SET WAIT_TIMEOUT=DEFAULT */ ;
#   SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ ;
#   START TRANSACTION /*!40100 WITH CONSISTENT SNAPSHOT */            <- snapshot opens here
#   UNLOCK TABLES ; set optimizer_switch='semijoin=off' ;
#   SELECT LOGFILE_GROUP_NAME ... ; SELECT DISTINCT TABLESPACE_NAME ... (without --no-tablespaces)
#   then per database: [Init DB] ; SHOW CREATE DATABASE IF NOT EXISTS `a` ; SAVEPOINT sp ;
#   SHOW FULL TABLES ; SELECT engine, table_type FROM INFORMATION_SCHEMA.TABLES ... ;
#   show create table `t1` ; select column_name, extra, ... from information_schema.columns ... ;
#   SELECT /*!40001 SQL_NO_CACHE */ `id`, `v` FROM `t1` ; select @@collation_database ;
#   SELECT TRIGGER_NAME FROM INFORMATION_SCHEMA.TRIGGERS ... ; ROLLBACK TO SAVEPOINT sp ;
#   RELEASE SAVEPOINT sp
# Everything before START TRANSACTION is a SET, and with --flush-logs, --master-data or -x a
# FLUSH would run there too: none of those prefixes is in this list, and neither is any SET.
# MySQL's mysqldump (same code lineage) sends UNLOCK TABLES, SHOW CREATE DATABASE, SAVEPOINT sp,
# show tables, show table status, show create table, show fields, SELECT /*!40001 ...,
# SHOW TRIGGERS and ROLLBACK TO SAVEPOINT sp after its START TRANSACTION as well.
POST_SNAPSHOT = (
    "UNLOCK TABLES",
    "SELECT LOGFILE_GROUP_NAME",
    "SELECT DISTINCT TABLESPACE_NAME",
    "SHOW CREATE DATABASE",
    "SAVEPOINT SP",
    "SHOW FULL TABLES",
    "SHOW TABLES",
    "SELECT ENGINE, TABLE_TYPE FROM INFORMATION_SCHEMA.TABLES",
    "SHOW TABLE STATUS",
    "SHOW CREATE TABLE",
    "SELECT COLUMN_NAME, EXTRA",
    "SHOW FIELDS",
    "SELECT /*!40001 SQL_NO_CACHE */",
    "SELECT @@COLLATION_DATABASE",
    "SELECT TRIGGER_NAME",
    "SHOW TRIGGERS",
    "ROLLBACK TO SAVEPOINT SP",
    "RELEASE SAVEPOINT SP",
)


class DumpTalk:
    """Reads a dump's --verbose stderr (as ToolProcess's on_stderr): ``opened`` is set once the
    dump says it is past its START TRANSACTION (POST_SNAPSHOT_MESSAGES). Its progress messages
    are kept out of the error tail; warnings and errors stay in it."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.message = ""
        self._starting = False

    def __call__(self, line: str) -> bool:
        if not line.startswith("-- ") or "rror" in line or "arning" in line:
            return False
        if line.startswith(SNAPSHOT_STARTING):
            self._starting = True
        elif (
            self._starting and not self.opened.is_set() and line.startswith(POST_SNAPSHOT_MESSAGES)
        ):
            self.message = line
            self.opened.set()
        return True


def is_post_snapshot(statement: str | None) -> bool:
    """True when a dump connection running ``statement`` has its snapshot open."""
    if not statement:
        return False
    normalized = " ".join(statement.split()).upper()
    return normalized.startswith(POST_SNAPSHOT)


def _socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets a process holds open (Linux /proc)."""
    fd_dir = f"/proc/{pid}/fd"
    inodes: set[int] = set()
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def client_ports(pid: int) -> set[int]:
    """Local TCP ports of a process's connections.

    The server's PROCESSLIST names a TCP client as "address:port", so this tells the dump's
    OWN connection from every other connection of the same user: another store's dump on the
    same server, another site's backup, a cron dump. Matching on user and statement alone once
    let a store take another dump's open snapshot for its own and close the window early.
    """
    inodes = _socket_inodes(pid)
    ports: set[int] = set()
    if not inodes:
        return ports
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    cols = line.split()
                    if len(cols) > 9 and int(cols[9]) in inodes:
                        ports.add(int(cols[1].rsplit(":", 1)[1], 16))
        except OSError:
            continue
    return ports


def host_port(host: str | None) -> int | None:
    """The client port of a PROCESSLIST HOST value ("127.0.0.1:54321"), if it has one."""
    if not host or ":" not in host:
        return None
    tail = host.rsplit(":", 1)[1]
    return int(tail) if tail.isdigit() else None


def dump_argv(
    tool: Path, connection: list[str], databases: list[str], *, mariadb: bool
) -> list[str]:
    """The dump's command line: ``connection`` (``tool_args``, the option file first), then
    the options the snapshot and the fingerprint rely on."""
    argv = [
        str(tool),
        *connection,
        # TCP even for "localhost": the snapshot signal finds the dump by its client port.
        "--protocol=TCP",
        "--single-transaction",
        "--skip-lock-tables",
        "--quick",
        "--default-character-set=utf8mb4",
        # Triggers are dumped (default); routines and events are not: ScalarDB creates none,
        # and dumping them needs privileges on the mysql schema.
        "--triggers",
        "--no-tablespaces",
        # DumpFingerprint reads the data section markers, the extended INSERTs and values
        # as rendered (TIMESTAMPs in UTC): say so here, so that an option file ([mysqldump]
        # skip-comments, compact, skip-tz-utc, ...) cannot change them.
        "--comments",
        "--extended-insert",
        "--tz-utc",
    ]
    if not mariadb:
        # MySQL 8.0.32+ takes FLUSH TABLES WITH READ LOCK for GTID info unless told not to.
        argv.append("--set-gtid-purged=OFF")
    return [*argv, "--databases", *databases]


def start_dump(
    argv: list[str],
    options: SecretFile,
    password: str | None,
    on_stderr: Callable[[str], bool] | None = None,
) -> ToolProcess:
    """The dump, started with its option file (``pass_fds``) and its stdout a pipe."""
    return ToolProcess(
        argv,
        stdout=subprocess.PIPE,
        secrets=[password or ""],
        on_stderr=on_stderr,
        pass_fds=[options.fd],
    )


def wait_for_snapshot(
    dump: ToolProcess,
    talk: DumpTalk,
    statement: Callable[[int | None], tuple[int | None, str | None]],
    *,
    store: str,
    where: str,
    databases: list[str],
    user: str,
) -> str:
    """Block until the dump's snapshot is open; return which signal said so.

    First choice, the dump's own word (``DumpTalk``): no query, no polling, and no doubt
    that it is the dump we started. Fallback after FALLBACK_AFTER_S: the dump's OWN
    connection (a new connection id whose client port is one of the dump process's sockets,
    see ``client_ports``) running one of the POST_SNAPSHOT statements (``statement(dump_id)``,
    see ``dump_statement``); once that connection is found, only its row is read. When the
    dump's port cannot be told (no /proc, a NAT between us and the server), only the dump's
    successful exit counts: slower, never wrong. INNODB_TRX is not used: it is refreshed at
    most every 100 ms.
    """
    started = time.monotonic()
    deadline = started + SNAPSHOT_TIMEOUT_S
    fallback_at = started + FALLBACK_AFTER_S
    dump_id: int | None = None
    while True:
        if talk.opened.wait(POLL_INTERVAL_S):
            return f"dump said: {talk.message[:60]}"
        rc = dump.poll()
        if rc == 0:
            return "dump exited successfully"
        if rc is not None:
            raise CaptureError(
                dump.failure(
                    f"store {store}: the dump of {', '.join(databases)} "
                    f"at {where} failed before its snapshot opened"
                )
            )
        now = time.monotonic()
        if now >= fallback_at:
            dump_id, info = statement(dump_id)
            if is_post_snapshot(info):
                return f"processlist: {' '.join(str(info).split())[:60]}"
        if now > deadline:
            raise CaptureError(
                f"store {store}: the dump at {where} did not open its snapshot "
                f"within {SNAPSHOT_TIMEOUT_S:.0f} s (it must connect as "
                f"{user!r}; is the server overloaded?)"
            )


def dump_statement(
    cur, dump: ToolProcess, user: str, before: set[int], dump_id: int | None
) -> tuple[int | None, str | None]:
    """(the dump's connection id once known, the statement it runs now) from PROCESSLIST, read
    on the watcher connection's cursor; ``before`` holds the connection ids that existed before
    the dump started."""
    if dump_id is not None:
        cur.execute("SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = %s", (dump_id,))
        row = cur.fetchone()
        return dump_id, row[0] if row else None
    ports = client_ports(dump.proc.pid)
    cur.execute(
        "SELECT ID, HOST, INFO FROM information_schema.PROCESSLIST "
        "WHERE USER = %s AND ID <> CONNECTION_ID()",
        (user,),
    )
    for conn_id, host, info in cur.fetchall():
        if conn_id in before or host_port(host) not in ports:
            continue  # not our dump: another connection of the same user
        return conn_id, info
    return None, None
