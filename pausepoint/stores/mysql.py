"""MySQL and MariaDB: ``--single-transaction`` dump whose snapshot is opened inside the pause.

A dump tool cannot join a snapshot that another connection opened (MariaDB and MySQL cannot
share one), so the dump itself must START its transaction inside the pause window.
``open_capture`` launches ``mariadb-dump`` (or ``mysqldump``) and returns as soon as the dump's
connection is seen, in ``information_schema.PROCESSLIST``, running a statement that the dump
sends only after ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` (see ``POST_SNAPSHOT``), or
once the dump has exited successfully. The copying goes on after the unpause.

The fingerprint runs on a separate connection that starts its own consistent snapshot inside
the same pause, so it sees the same state as the dump.

Passwords reach the tools only through a 0600 ``--defaults-extra-file``, never argv.
"""

from __future__ import annotations

import contextlib
import gzip
import re
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymysql

from pausepoint.errors import (
    CaptureError,
    PausepointError,
    RestoreError,
    StoreCheckError,
    TargetNotEmptyError,
)
from pausepoint.stores._common import (
    CHUNK,
    PipeToFile,
    ProgressPoller,
    ServerStore,
    ToolProcess,
    find_tool,
    fold_row_hashes,
    make_private_dir,
    private_dir,
    redact,
    remove_private_dir,
    tool_version,
    verify_artifacts,
    write_private_file,
)
from pausepoint.stores.base import (
    Artifact,
    CaptureHandle,
    Fingerprint,
    ProgressFn,
    StoreCapture,
    TableFingerprint,
)
from pausepoint.stores.mysql_config import MysqlConfig

CLIENT_PACKAGE = "mariadb-client"
SNAPSHOT_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.002

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


def is_post_snapshot(statement: str | None) -> bool:
    """True when a dump connection running ``statement`` has its snapshot open."""
    if not statement:
        return False
    normalized = " ".join(statement.split()).upper()
    return normalized.startswith(POST_SNAPSHOT)


def quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def option_file(user: str, password: str | None) -> str:
    """A [client] option file with the password double-quoted: inside quotes the option
    parser reads backslash escapes, and an unescaped quote would end the value early (a ``#``
    after it would start a comment), so backslashes, quotes and line breaks are escaped.
    Checked against mariadb 10.11 with passwords like ``a"b#c`` and ``x\\y``."""
    lines = ["[client]", f"user={user}"]
    if password is not None:
        escaped = (
            password.replace("\\", "\\\\")
            .replace('"', '\\"')
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
        lines.append(f'password="{escaped}"')
    return "\n".join(lines) + "\n"


# The dump names its databases only on `CREATE DATABASE /*!32312 IF NOT EXISTS*/ `db` ...` and
# `USE `db`;` lines (with --databases). Rows can never start such a line: mariadb-dump escapes
# newlines inside values as \n, so every line of an INSERT starts with `INSERT` or `(`, and
# CREATE TABLE bodies are indented. Rewriting just those two line kinds is therefore safe.
_DB_LINE = re.compile(
    rb"^(?P<head>CREATE DATABASE /\*!32312 IF NOT EXISTS\*/ |USE )`(?P<name>(?:[^`]|``)+)`",
    re.MULTILINE,
)


def rename_databases(chunks: Iterable[bytes], mapping: Mapping[str, str]) -> Iterator[bytes]:
    """The dump stream with database names rewritten on CREATE DATABASE and USE lines only."""
    if not mapping:
        yield from chunks
        return
    table = {quote_ident(k).encode(): quote_ident(v).encode() for k, v in mapping.items()}

    def swap(m: re.Match[bytes]) -> bytes:
        quoted = b"`" + m.group("name") + b"`"
        return m.group("head") + table.get(quoted, quoted)

    pending = b""
    for chunk in chunks:
        data = pending + chunk
        cut = data.rfind(b"\n") + 1  # only whole lines are rewritten
        block, pending = data[:cut], data[cut:]
        if block:
            yield _DB_LINE.sub(swap, block) if b"DATABASE" in block or b"USE" in block else block
    if pending:
        yield _DB_LINE.sub(swap, pending)


def _read_chunks(path: Path) -> Iterator[bytes]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


@dataclass
class MysqlCaptureHandle(CaptureHandle):
    workdir: Path
    opened_at: datetime
    secret_dir: Path
    dump: ToolProcess
    sink: PipeToFile
    fp_conn: pymysql.Connection
    databases: list[str]
    dump_version: str
    signal: str  # how the open snapshot was detected (for the record)
    commit_guard: str  # what stalled commits while the snapshots opened
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class MysqlStore(ServerStore[MysqlCaptureHandle]):
    kind = "mysql"
    fingerprint_method = "mysql-md5-quote-v1"
    product = "MySQL/MariaDB"
    handle_type = MysqlCaptureHandle
    config: MysqlConfig

    def __init__(self, config: MysqlConfig, resolve):
        super().__init__(config, resolve)
        self._dump_version: str | None = None
        self._server_version: str | None = None

    # --- connections and tools --------------------------------------------------------------

    def _connect(self, error: type[PausepointError], database: str | None = None):
        password = self._password()
        try:
            return pymysql.connect(
                host=self.config.host,
                port=self.config.port,
                user=self.config.user,
                password=password or "",
                database=database,
                charset="utf8mb4",
                autocommit=True,
                connect_timeout=10,
                init_command="SET SESSION time_zone = '+00:00'",
            )
        except pymysql.err.MySQLError as exc:
            raise error(self._connect_failure(exc, password)) from None

    def _connect_failure(self, exc: pymysql.err.MySQLError, password: str | None) -> str:
        code = exc.args[0] if exc.args else None
        if code == 1045:
            return self._auth_failed("access denied")
        return self._unreachable(redact(str(exc.args[-1] if exc.args else exc), [password or ""]))

    def _dump_tool(self) -> Path:
        # mariadb-dump first: on MariaDB installs mysqldump is a deprecated alias of it.
        return find_tool(
            ["mariadb-dump", "mysqldump"],
            bin_dir=self.config.bin_dir,
            package=CLIENT_PACKAGE,
            store=self.name,
        )

    def _client_tool(self) -> Path:
        return find_tool(
            ["mariadb", "mysql"],
            bin_dir=self.config.bin_dir,
            package=CLIENT_PACKAGE,
            store=self.name,
        )

    def _dump_tool_version(self, tool: Path) -> str:
        if self._dump_version is None:
            self._dump_version = tool_version(tool)
        return self._dump_version

    def _tool_args(self, option_path: Path) -> list[str]:
        c = self.config
        # --defaults-extra-file must come first; it carries the user and the password.
        return [
            f"--defaults-extra-file={option_path}",
            f"--host={c.host}",
            f"--port={c.port}",
            "--protocol=TCP",
        ]

    def _target(self, database: str) -> str:
        """The live name of a captured database (``database_map`` applies on restore targets)."""
        return self.config.database_map.get(database, database)

    # --- catalog queries --------------------------------------------------------------------

    @staticmethod
    def _base_tables(cur, databases: list[str]) -> list[tuple[str, str]]:
        if not databases:
            return []
        marks = ", ".join(["%s"] * len(databases))
        cur.execute(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES "
            f"WHERE TABLE_SCHEMA IN ({marks}) AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1, 2",
            databases,
        )
        return [(r[0], r[1]) for r in cur.fetchall()]

    @staticmethod
    def _fingerprint_on(cur, tables: list[tuple[str, str, str]]) -> Fingerprint:
        """Row count and folded md5 per table: (key, live database, table) -> fingerprint.

        ``QUOTE()`` renders NULL as the bare word NULL and quotes every value, so the rendering
        is NULL-safe and unambiguous; casting to BINARY avoids collation clashes in CONCAT_WS.
        """
        result: Fingerprint = {}
        for key, database, table in tables:
            cur.execute(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                (database, table),
            )
            columns = [r[0] for r in cur.fetchall()]
            rendered = ", ".join(f"CAST(QUOTE({quote_ident(c)}) AS BINARY)" for c in columns)
            cur.execute(
                "SELECT COUNT(*), SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(',', "
                f"{rendered})), 16), 16, 10) AS UNSIGNED)) "
                f"FROM {quote_ident(database)}.{quote_ident(table)}"
            )
            rows, total = cur.fetchone()
            result[key] = TableFingerprint(rows=int(rows), hash=fold_row_hashes(total))
        return result

    # --- preflight ----------------------------------------------------------------------------

    def check(self) -> dict[str, Any]:
        dump, client = self._dump_tool(), self._client_tool()
        dump_version = self._dump_tool_version(dump)
        with self._connect(StoreCheckError) as conn, conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            server_version = cur.fetchone()[0]
            problems: list[str] = []
            for db in self.config.databases:
                try:
                    cur.execute(f"SHOW TABLES FROM {quote_ident(db)}")
                except pymysql.err.MySQLError as exc:
                    problems.append(f"database {db!r}: {exc.args[-1]}")
            if problems:
                raise StoreCheckError(
                    f"store {self.name}: at {self._where} user {self.config.user!r} cannot read "
                    f"{'; '.join(problems)}; fix `databases` or grant SELECT, SHOW VIEW and "
                    "TRIGGER on them"
                )
            tables = self._base_tables(cur, list(self.config.databases))
            marks = ", ".join(["%s"] * len(self.config.databases))
            cur.execute(
                "SELECT CONCAT(TABLE_SCHEMA, '.', TABLE_NAME, ' (', ENGINE, ')') "
                "FROM information_schema.TABLES "
                f"WHERE TABLE_SCHEMA IN ({marks}) AND TABLE_TYPE = 'BASE TABLE' "
                "AND ENGINE <> 'InnoDB' ORDER BY 1 LIMIT 5",
                list(self.config.databases),
            )
            non_innodb = [r[0] for r in cur.fetchall()]
            for database, table in tables:
                try:
                    cur.execute(
                        f"SELECT 1 FROM {quote_ident(database)}.{quote_ident(table)} LIMIT 0"
                    )
                except pymysql.err.MySQLError as exc:
                    problems.append(f"{database}.{table}: {exc.args[-1]}")
        guard_problem = self._check_commit_guard(server_version)
        if guard_problem:
            raise StoreCheckError(guard_problem)
        if non_innodb:
            raise StoreCheckError(
                f"store {self.name}: tables {', '.join(non_innodb)} at {self._where} are not "
                "InnoDB; a --single-transaction dump is consistent for InnoDB tables only: "
                "convert them (ALTER TABLE ... ENGINE=InnoDB)"
            )
        if problems:
            raise StoreCheckError(
                f"store {self.name}: user {self.config.user!r} cannot read "
                f"{'; '.join(problems[:3])} at {self._where}; grant SELECT on the databases"
            )
        return {
            "server_version": server_version,
            "databases": list(self.config.databases),
            "tables": len(tables),
            dump.name: dump_version,
            client.name: tool_version(client),
        }

    def _check_commit_guard(self, server_version: str) -> str | None:
        """Try the commit guard once (BACKUP STAGE START/END block nothing); None when fine."""
        self._server_version = server_version
        if not self.config.commit_guard or "MariaDB" not in server_version:
            return None
        with self._connect(StoreCheckError) as conn, conn.cursor() as cur:
            try:
                cur.execute("SET SESSION lock_wait_timeout = 5")
                cur.execute("BACKUP STAGE START")
                cur.execute("BACKUP STAGE END")
            except pymysql.err.MySQLError as exc:
                return (
                    f"store {self.name}: user {self.config.user!r} cannot use BACKUP STAGE at "
                    f"{self._where} ({exc.args[-1]}); it stalls commits for a few ms so the "
                    "dump and the fingerprint see one state: grant RELOAD ON *.* or set "
                    "commit_guard: false (then only the pause aligns them)"
                )
        return None

    # --- capture ----------------------------------------------------------------------------

    def _dump_argv(self, tool: Path, option_path: Path) -> list[str]:
        argv = [
            str(tool),
            *self._tool_args(option_path),
            "--single-transaction",
            "--skip-lock-tables",
            "--quick",
            "--default-character-set=utf8mb4",
            # Triggers are dumped (default); routines and events are not: ScalarDB creates none,
            # and dumping them needs privileges on the mysql schema.
            "--triggers",
            "--no-tablespaces",
        ]
        if "MariaDB" not in self._dump_tool_version(tool):
            # MySQL 8.0.32+ takes FLUSH TABLES WITH READ LOCK for GTID info unless told not to.
            argv.append("--set-gtid-purged=OFF")
        return [*argv, "--databases", *self.config.databases]

    def open_capture(self, workdir: Path) -> MysqlCaptureHandle:
        tool = self._dump_tool()
        self._dump_tool_version(tool)  # cached: normally read by check() before the pause
        workdir.mkdir(parents=True, exist_ok=True)
        # Uncompressed by default. Measured on this project's 2-core machines (MariaDB 10.11,
        # a 295 MB dump of 800k ScalarDL-shaped rows, medians of 5 runs): plain
        # `mariadb-dump > file` 2.37 s; through PipeToFile uncompressed (sha256 on the way)
        # 2.35 s = 1.0x; with gzip level 1 2.60 s = 0.91x (0.83-0.89x in noisier runs) for an
        # artifact of 46% of the size. Server, dump and zlib compete for two cores, so gzip
        # cannot promise >= 0.9x there; gzip_level trades speed for space where cores are free.
        artifact = workdir / ("dump.sql.gz" if self.config.gzip_level else "dump.sql")
        secret_dir = make_private_dir("pausepoint-mysql-")
        password = self._password()
        option_path = write_private_file(
            secret_dir / "client.cnf", option_file(self.config.user, password)
        )
        monitor = fp_conn = dump = sink = None
        guard = "off"
        try:
            monitor = self._connect(CaptureError)
            guard = self._begin_commit_guard(monitor)
            fp_conn = self._connect(CaptureError)
            with fp_conn.cursor() as cur:
                # Inside the pause (and the guard), like the dump: the same committed state.
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            with monitor.cursor() as cur:
                cur.execute(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s",
                    (self.config.user,),
                )
                before = {r[0] for r in cur.fetchall()}
            dump = ToolProcess(
                self._dump_argv(tool, option_path), stdout=subprocess.PIPE, secrets=[password or ""]
            )
            assert dump.proc.stdout is not None
            sink = PipeToFile(
                dump.proc.stdout, artifact, gzip_level=self.config.gzip_level, name=self.name
            )
            signal = self._wait_for_snapshot(monitor, before, dump)
            opened_at = datetime.now(UTC)
        except BaseException:
            if dump is not None:
                dump.kill()
            if sink is not None:
                sink.join(5)
            if fp_conn is not None:
                fp_conn.close()
            remove_private_dir(secret_dir)
            raise
        finally:
            if monitor is not None:
                self._end_commit_guard(monitor, guard)
                monitor.close()
        return MysqlCaptureHandle(
            workdir=workdir,
            opened_at=opened_at,
            secret_dir=secret_dir,
            dump=dump,
            sink=sink,
            fp_conn=fp_conn,
            databases=list(self.config.databases),
            dump_version=self._dump_tool_version(tool),
            signal=signal,
            commit_guard=guard,
        )

    def _is_mariadb(self, cur) -> bool:
        if self._server_version is None:
            cur.execute("SELECT VERSION()")
            self._server_version = str(cur.fetchone()[0])
        return "MariaDB" in self._server_version

    def _begin_commit_guard(self, conn) -> str:
        """Stall commits (MariaDB BACKUP STAGE BLOCK_COMMIT) until _end_commit_guard.

        The dump and the fingerprint connection cannot share a snapshot; with commits stalled
        while both open theirs, they see the same state even when no pause surrounds the
        capture (a site on one store) or something else writes. Reads go on meanwhile.
        """
        if not self.config.commit_guard:
            return "off"
        with conn.cursor() as cur:
            if not self._is_mariadb(cur):
                return "none: MySQL has no commit-only lock; the pause aligns the snapshots"
            try:
                cur.execute("SET SESSION lock_wait_timeout = 10")
                cur.execute("BACKUP STAGE START")
                cur.execute("BACKUP STAGE BLOCK_COMMIT")
            except pymysql.err.MySQLError as exc:
                raise CaptureError(
                    f"store {self.name}: could not stall commits at {self._where} "
                    f"(BACKUP STAGE BLOCK_COMMIT): {exc.args[-1]}; grant RELOAD to "
                    f"{self.config.user!r} or set commit_guard: false"
                ) from exc
        return "BACKUP STAGE BLOCK_COMMIT"

    @staticmethod
    def _end_commit_guard(conn, guard: str) -> None:
        if guard.startswith("BACKUP STAGE"):
            with contextlib.suppress(pymysql.err.MySQLError), conn.cursor() as cur:
                cur.execute("BACKUP STAGE END")  # closing the session would end it too

    def _wait_for_snapshot(self, monitor, before: set[int], dump: ToolProcess) -> str:
        """Block until the dump's snapshot is open; return which signal said so.

        A connection id that did not exist before the launch, of our user, running one of the
        POST_SNAPSHOT statements: that is the dump, past its START TRANSACTION. INNODB_TRX is
        not used: it is refreshed at most every 100 ms.
        """
        deadline = time.monotonic() + SNAPSHOT_TIMEOUT_S
        with monitor.cursor() as cur:
            while True:
                rc = dump.poll()
                if rc == 0:
                    return "dump exited successfully"
                if rc is not None:
                    raise CaptureError(
                        dump.failure(
                            f"store {self.name}: the dump of {', '.join(self.config.databases)} "
                            f"at {self._where} failed before its snapshot opened"
                        )
                    )
                cur.execute(
                    "SELECT ID, INFO FROM information_schema.PROCESSLIST "
                    "WHERE USER = %s AND INFO IS NOT NULL AND ID <> CONNECTION_ID()",
                    (self.config.user,),
                )
                for conn_id, info in cur.fetchall():
                    if conn_id not in before and is_post_snapshot(info):
                        return f"processlist: {' '.join(info.split())[:60]}"
                if time.monotonic() > deadline:
                    raise CaptureError(
                        f"store {self.name}: the dump at {self._where} did not open its snapshot "
                        f"within {SNAPSHOT_TIMEOUT_S:.0f} s (it must connect as "
                        f"{self.config.user!r}; is the server overloaded?)"
                    )
                time.sleep(POLL_INTERVAL_S)

    def _finish(self, h: MysqlCaptureHandle, progress: ProgressFn | None) -> StoreCapture:
        with ProgressPoller(self.name, progress, lambda: h.sink.bytes_written):
            try:
                with h.fp_conn.cursor() as cur:
                    # Runs while the dump copies; the server does the work on another thread.
                    tables = [(f"{d}.{t}", d, t) for d, t in self._base_tables(cur, h.databases)]
                    fingerprint = self._fingerprint_on(cur, tables)
                    cur.execute("SELECT VERSION()")
                    server_version = cur.fetchone()[0]
            except pymysql.err.MySQLError as exc:
                raise CaptureError(
                    f"store {self.name}: the fingerprint query at {self._where} failed: "
                    f"{exc.args[-1]}; no restore point was registered"
                ) from exc
            rc = h.dump.wait()
            h.sink.join()
        # A failed write is the root cause when both failed (the dump then dies of SIGPIPE).
        if h.sink.error is not None:
            raise CaptureError(
                f"store {self.name}: writing {h.sink.path} failed: {h.sink.error}; "
                "check free space and permissions of the capture directory"
            ) from h.sink.error
        if rc != 0:
            raise CaptureError(
                h.dump.failure(
                    f"store {self.name}: the dump of {', '.join(h.databases)} at {self._where} "
                    "failed; no restore point was registered"
                )
            )
        return StoreCapture(
            name=self.name,
            kind=self.kind,
            method="mariadb-dump-single-transaction"
            if "MariaDB" in h.dump_version
            else "mysqldump-single-transaction",
            artifacts=[
                Artifact(
                    path=h.sink.path.name,
                    size=h.sink.bytes_written,
                    sha256=h.sink.sha256,
                )
            ],
            fingerprint=fingerprint,
            fingerprint_method=self.fingerprint_method,
            tool_versions={h.dump.name: h.dump_version, "server": server_version},
            snapshot_established_at=h.opened_at,
            details={
                "databases": h.databases,
                "dump_file": h.sink.path.name,
                "gzip_level": self.config.gzip_level,
                "uncompressed_bytes": h.sink.bytes_in,
                "snapshot_signal": h.signal,
                "commit_guard": h.commit_guard,
            },
        )

    def abort_capture(self, handle: CaptureHandle) -> None:
        h = self._own(handle)
        with h.lock:
            h.closed = True
            h.dump.kill()
            h.sink.join(10)
            if h.fp_conn.open:
                h.fp_conn.close()  # ends the fingerprint transaction
            remove_private_dir(h.secret_dir)

    # --- restore ----------------------------------------------------------------------------

    def _captured_databases(self, capture: StoreCapture) -> list[str]:
        databases = capture.details.get("databases")
        if not isinstance(databases, list) or not databases:
            raise RestoreError(
                f"store {self.name}: the capture does not list its databases; it was not made "
                "by the mysql store kind"
            )
        return databases

    def check_restore_target(self, capture: StoreCapture, replace: bool) -> None:
        targets = [self._target(d) for d in self._captured_databases(capture)]
        marks = ", ".join(["%s"] * len(targets))
        with self._connect(RestoreError) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT CONCAT(TABLE_SCHEMA, '.', TABLE_NAME) FROM information_schema.TABLES "
                f"WHERE TABLE_SCHEMA IN ({marks}) ORDER BY 1 LIMIT 4",
                targets,
            )
            found = [r[0] for r in cur.fetchall()]
        if found and not replace:
            shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
            raise TargetNotEmptyError(
                f"store {self.name}: the target databases {', '.join(targets)} at {self._where} "
                f"are not empty ({shown}); restore into empty or new databases (database_map "
                "renames them), or pass --replace to drop and recreate them"
            )

    def restore(
        self, capture: StoreCapture, source_dir: Path, replace: bool, *, verified: bool = False
    ) -> None:
        # Before any change.
        verify_artifacts(source_dir, capture.artifacts, store=self.name, checksums=not verified)
        client = self._client_tool()
        captured = self._captured_databases(capture)
        dump_file = source_dir / str(capture.details.get("dump_file", capture.artifacts[0].path))
        self.check_restore_target(capture, replace)
        if replace:
            with self._connect(RestoreError) as conn, conn.cursor() as cur:
                for db in captured:
                    # The dump's CREATE DATABASE recreates it with its captured character set.
                    cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(self._target(db))}")
        mapping = {d: self._target(d) for d in captured if self._target(d) != d}
        password = self._password()
        with private_dir("pausepoint-mysql-") as tmp:
            option_path = write_private_file(
                tmp / "client.cnf", option_file(self.config.user, password)
            )
            tool = ToolProcess(
                [str(client), *self._tool_args(option_path), "--default-character-set=utf8mb4"],
                stdin=subprocess.PIPE,
                secrets=[password or ""],
            )
            self._feed(tool, rename_databases(_read_chunks(dump_file), mapping))
        if tool.proc.returncode != 0:
            raise RestoreError(
                tool.failure(
                    f"store {self.name}: loading the dump into "
                    f"{', '.join(self._target(d) for d in captured)} at {self._where} failed; "
                    "the target is partly restored: run again with --replace"
                )
            )

    @staticmethod
    def _feed(tool: ToolProcess, chunks: Iterable[bytes]) -> None:
        assert tool.proc.stdin is not None
        try:
            for chunk in chunks:
                tool.proc.stdin.write(chunk)
            tool.proc.stdin.close()
        except BrokenPipeError:
            pass  # the client stopped reading: its exit status and stderr say why
        except BaseException:
            tool.kill()
            raise
        tool.wait()

    # --- verification -----------------------------------------------------------------------

    def fingerprint(self, tables: list[str] | None = None) -> Fingerprint:
        """Keys are ``database.table`` with the captured database names; on a restore target
        with ``database_map`` the mapped (live) databases are read."""
        with self._connect(RestoreError) as conn, conn.cursor() as cur:
            live = {self._target(d): d for d in self.config.databases}
            found = [(f"{live[d]}.{t}", d, t) for d, t in self._base_tables(cur, list(live))]
            if tables is not None:
                wanted = set(tables)
                found = [f for f in found if f[0] in wanted]
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            try:
                return self._fingerprint_on(cur, found)
            finally:
                cur.execute("COMMIT")
