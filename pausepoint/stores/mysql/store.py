"""MySQL and MariaDB: ``--single-transaction`` dump whose snapshot is opened inside the pause.

The store protocol's primitives; the jobs they use live beside this module: ``dump`` (the dump
tool's command line and the signal that its snapshot is open), ``fingerprint`` (the rows of a
dump, counted and hashed), ``restore`` (the dump fed into the client tool, databases renamed),
``connection`` (PyMySQL's connection, the tools' option file in memory).

``_prepare`` (before the pause) resolves the tool, makes the option file, builds the command
line and opens the watcher connection. ``_open`` (inside the window) launches ``mariadb-dump``
(or ``mysqldump``) with ``--verbose`` and returns as soon as the dump's snapshot is open
(``dump.wait_for_snapshot``). The copying goes on after the unpause (``_finish``).

The fingerprint is read from the dump itself as it streams by (``DumpFingerprint``): every row
of every table, from the dump's one snapshot. After a restore, ``fingerprint()`` dumps the live
databases the same way and reads the same numbers from that dump.

Passwords reach the tools only through ``--defaults-extra-file=/dev/fd/N``: an option file in
memory (``SecretFile``, a 0600 memfd the tool inherits), never argv and never a file on disk, so
a run that fails or is killed leaves no password behind.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
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
    PipeToFile,
    ProgressPoller,
    SecretFile,
    ServerStore,
    ToolProcess,
    artifacts_checked_beside,
    find_tool,
    read_pipe,
    redact,
)
from pausepoint.stores.base import (
    CaptureContext,
    CaptureHandle,
    Fingerprint,
    PreparedCapture,
    ProgressFn,
    StoreCapture,
    StoreJournal,
)
from pausepoint.stores.mysql.connection import (
    CLIENT_PACKAGE,
    Connection,
    client_options,
    quote_ident,
    tool_args,
)
from pausepoint.stores.mysql.dump import (
    DumpTalk,
    dump_argv,
    dump_statement,
    start_dump,
    wait_for_snapshot,
)
from pausepoint.stores.mysql.fingerprint import FINGERPRINT, FINGERPRINT_SHA256, DumpFingerprint
from pausepoint.stores.mysql.restore import load_dump
from pausepoint.stores.mysql_config import MysqlCaptureDetails, MysqlConfig


class MysqlPreparedCapture(PreparedCapture):
    """Made before the pause: the dump's command line and its option file (in memory), the
    artifact's path, and the watcher connection (open, authenticated) for the PROCESSLIST
    fallback with the connection ids that existed before. Freed by the handle that takes it
    over, or release()."""

    def __init__(
        self,
        ctx: CaptureContext,
        *,
        artifact: Path,
        options: SecretFile,
        argv: list[str],
        password: str | None,
        dump_version: str,
    ):
        super().__init__(ctx)
        self.artifact = artifact
        self.options = options
        self.argv = argv
        self.password = password
        self.dump_version = dump_version
        self.monitor: pymysql.connections.Connection | None = None
        self.before: set[int] = set()

    def close_monitor(self) -> None:
        monitor, self.monitor = self.monitor, None
        if monitor is not None:
            with contextlib.suppress(Exception):
                monitor.close()

    def free(self) -> None:
        self.close_monitor()
        self.options.close()


@dataclass(kw_only=True)
class MysqlCaptureHandle(CaptureHandle):
    prepared: MysqlPreparedCapture
    dump: ToolProcess
    sink: PipeToFile
    rows: DumpFingerprint  # fed by the sink's thread
    databases: list[str]
    dump_version: str
    server_version: str
    signal: str  # how the open snapshot was detected (for the record)


class MysqlStore(ServerStore[MysqlCaptureHandle]):
    kind = "mysql"
    fingerprint_method = FINGERPRINT
    earlier_fingerprint_methods = (FINGERPRINT_SHA256,)
    product = "MySQL/MariaDB"
    prepared_type = MysqlPreparedCapture
    handle_type = MysqlCaptureHandle
    config: MysqlConfig

    def __init__(self, config: MysqlConfig, resolve):
        super().__init__(config, resolve)
        self._server_version: str | None = None

    # --- connections and tools --------------------------------------------------------------

    def _connect(self, error: type[PausepointError], database: str | None = None):
        password = self._password()
        try:
            return Connection(
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

    def _tool_args(self, options: SecretFile) -> list[str]:
        return tool_args(self.config.host, self.config.port, options)

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

    # --- preflight ----------------------------------------------------------------------------

    def check(self) -> dict[str, Any]:
        dump, client = self._dump_tool(), self._client_tool()
        dump_version = self._tool_version(dump)
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
        self._server_version = server_version
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
            client.name: self._tool_version(client),
        }

    # --- capture ----------------------------------------------------------------------------

    def _option_file(self) -> tuple[SecretFile, str | None]:
        """The tools' option file (user and password), in memory, and the password. Start the
        tool with ``pass_fds=[options.fd]`` and close it after."""
        password = self._password()
        return client_options(self.config.user, password), password

    def _dump_argv(self, tool: Path, options: SecretFile, databases: list[str]) -> list[str]:
        mariadb = "MariaDB" in self._tool_version(tool)
        return dump_argv(tool, self._tool_args(options), databases, mariadb=mariadb)

    def _prepare(self, ctx: CaptureContext) -> MysqlPreparedCapture:
        """Before the pause, everything but starting the dump: measured on the test machine,
        opening the watcher connection alone took 1-18 ms inside the window."""
        tool = self._dump_tool()
        dump_version = self._tool_version(tool)  # cached: normally read by check()
        # Uncompressed by default. Measured on this project's 2-core machines (MariaDB 10.11,
        # a 295 MB dump of 800k ScalarDL-shaped rows, medians of 5 runs): plain
        # `mariadb-dump > file` 2.37 s; through PipeToFile uncompressed (sha256 on the way)
        # 2.35 s = 1.0x; with gzip level 1 2.60 s = 0.91x (0.83-0.89x in noisier runs) for an
        # artifact of 46% of the size. Server, dump and zlib compete for two cores, so gzip
        # cannot promise >= 0.9x there; gzip_level trades speed for space where cores are free.
        # A file the dump's reader writes and hashes on the way (PipeToFile): a spool path.
        artifact = ctx.sink.spool("dump.sql.gz" if self.config.gzip_level else "dump.sql")
        options, password = self._option_file()
        prepared: MysqlPreparedCapture | None = None
        try:
            argv = self._dump_argv(tool, options, list(self.config.databases))
            # After --defaults-extra-file, which must stay first: the snapshot signal.
            argv.insert(2, "--verbose")
            prepared = MysqlPreparedCapture(
                ctx,
                artifact=artifact,
                options=options,
                argv=argv,
                password=password,
                dump_version=dump_version,
            )
            prepared.monitor = self._connect(CaptureError)
            with prepared.monitor.cursor() as cur:
                if self._server_version is None:  # normally read by check()
                    cur.execute("SELECT VERSION()")
                    self._server_version = str(cur.fetchone()[0])
                cur.execute(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s",
                    (self.config.user,),
                )
                prepared.before = {r[0] for r in cur.fetchall()}
        except BaseException:
            if prepared is not None:
                prepared.free()
            options.close()
            raise
        return prepared

    def _open(self, p: MysqlPreparedCapture) -> MysqlCaptureHandle:
        dump = sink = None
        rows = DumpFingerprint()
        talk = DumpTalk()
        try:
            dump = start_dump(p.argv, p.options, p.password, on_stderr=talk)
            assert dump.proc.stdout is not None
            sink = PipeToFile(
                dump.proc.stdout,
                p.artifact,
                gzip_level=self.config.gzip_level,
                name=self.name,
                tap=rows.feed,
                # Copy only in finish_capture, after the unpause: in the window the dump then
                # stops once the pipe is full, and neither it nor the reader (hashing every row,
                # with the GIL) competes with the window's own steps for the cores.
                start=False,
            )
            signal = self._wait_for_snapshot(p, dump, talk)
            opened_at = datetime.now(UTC)
        except BaseException:  # the caller frees p
            if dump is not None:
                dump.kill()
            if sink is not None:
                sink.join(5)
            raise
        p.close_monitor()  # not needed while copying
        assert self._server_version is not None
        return MysqlCaptureHandle(
            ctx=p.ctx,
            opened_at=opened_at,
            prepared=p,
            dump=dump,
            sink=sink,
            rows=rows,
            databases=list(self.config.databases),
            dump_version=p.dump_version,
            server_version=self._server_version,
            signal=signal,
        )

    def _wait_for_snapshot(self, p: MysqlPreparedCapture, dump: ToolProcess, talk: DumpTalk) -> str:
        return wait_for_snapshot(
            dump,
            talk,
            lambda dump_id: self._dump_statement(p, dump, dump_id),
            store=self.name,
            where=self._where,
            databases=list(self.config.databases),
            user=self.config.user,
        )

    def _dump_statement(
        self, p: MysqlPreparedCapture, dump: ToolProcess, dump_id: int | None
    ) -> tuple[int | None, str | None]:
        """(the dump's connection id once known, the statement it runs now), on the watcher
        connection (reopened when it was closed)."""
        if p.monitor is None:
            p.monitor = self._connect(CaptureError)
        with p.monitor.cursor() as cur:
            return dump_statement(cur, dump, self.config.user, p.before, dump_id)

    def _finish(self, h: MysqlCaptureHandle, progress: ProgressFn | None) -> StoreCapture:
        h.sink.start()
        with ProgressPoller(self.name, progress, lambda: h.sink.bytes_written):
            rc = h.dump.wait()
            h.sink.join()
        # A failed write is the root cause when both failed (the dump then dies of SIGPIPE).
        if h.sink.error is not None:
            raise CaptureError(
                f"store {self.name}: writing {h.sink.path} failed: {h.sink.error}; no restore "
                "point was registered. Check free space and permissions of the capture directory"
            ) from h.sink.error
        if rc != 0:
            raise CaptureError(
                h.dump.failure(
                    f"store {self.name}: the dump of {', '.join(h.databases)} at {self._where} "
                    "failed; no restore point was registered"
                )
            )
        try:
            if h.sink.tap_error is not None:
                raise h.sink.tap_error
            fingerprint = h.rows.result()
        except ValueError as exc:
            raise CaptureError(
                f"store {self.name}: the dump of {', '.join(h.databases)} at {self._where} "
                f"could not be read for its fingerprint: {exc}; no restore point was registered"
            ) from exc
        return StoreCapture(
            name=self.name,
            kind=self.kind,
            method="mariadb-dump-single-transaction"
            if "MariaDB" in h.dump_version
            else "mysqldump-single-transaction",
            artifacts=[h.ctx.sink.written(h.sink.path, h.sink.bytes_written, h.sink.sha256)],
            fingerprint=fingerprint,
            fingerprint_method=self.fingerprint_method,
            tool_versions={h.dump.name: h.dump_version, "server": h.server_version},
            snapshot_established_at=h.opened_at,
            details=MysqlCaptureDetails(
                databases=h.databases,
                dump_file=h.ctx.sink.name_of(h.sink.path),
                gzip_level=self.config.gzip_level,
                uncompressed_bytes=h.sink.bytes_in,
                snapshot_signal=h.signal,
            ),
        )

    def _release(self, h: MysqlCaptureHandle) -> None:
        h.dump.kill()
        h.sink.join(10)  # the option file and the watcher go with h.prepared

    # --- restore ----------------------------------------------------------------------------

    def _captured_databases(self, capture: StoreCapture) -> list[str]:
        return list(self.captured_details(capture).databases)

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
        self,
        capture: StoreCapture,
        source_dir: Path,
        replace: bool,
        *,
        verified: bool = False,
        journal: StoreJournal | None = None,
    ) -> None:
        client = self._client_tool()
        captured = self._captured_databases(capture)
        with artifacts_checked_beside(
            source_dir, capture.artifacts, store=self.name, checksums=not verified
        ):
            self.check_restore_target(capture, replace)
        dump_file = source_dir / self.captured_details(capture).dump_file
        if replace:
            with self._connect(RestoreError) as conn, conn.cursor() as cur:
                for db in captured:
                    # The dump's CREATE DATABASE recreates it with its captured character set.
                    cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(self._target(db))}")
        mapping = {d: self._target(d) for d in captured if self._target(d) != d}
        options, password = self._option_file()
        with options:
            argv = [str(client), *self._tool_args(options), "--default-character-set=utf8mb4"]
            tool = load_dump(argv, dump_file, mapping, options, password)
        if tool.proc.returncode != 0:
            raise RestoreError(
                tool.failure(
                    f"store {self.name}: loading the dump into "
                    f"{', '.join(self._target(d) for d in captured)} at {self._where} failed; "
                    "the target is partly restored: run again with --replace"
                )
            )

    # --- verification -----------------------------------------------------------------------

    def fingerprint(
        self, tables: list[str] | None = None, method: str | None = None
    ) -> Fingerprint:
        """Read from a dump of the live databases, as a capture reads its own (FINGERPRINT,
        or ``method``: one of earlier_fingerprint_methods).

        Keys are ``database.table`` with the captured database names; on a restore target with
        ``database_map`` the mapped (live) databases are dumped."""
        live = {self._target(d): d for d in self.config.databases}
        rows = DumpFingerprint(live, method or FINGERPRINT)
        what = f"store {self.name}: dumping {', '.join(live)} at {self._where} to fingerprint it"
        options, password = self._option_file()
        with options:
            argv = self._dump_argv(self._dump_tool(), options, list(live))
            dump = start_dump(argv, options, password)
            assert dump.proc.stdout is not None
            try:
                read_pipe(dump.proc.stdout, lambda block: rows.feed(bytes(block)))
                rc = dump.wait()
                if rc != 0:
                    raise RestoreError(dump.failure(f"{what} failed"))
                found = rows.result()
            except ValueError as exc:
                raise RestoreError(f"{what}: the dump could not be read: {exc}") from exc
            finally:
                dump.kill()
        if tables is not None:
            wanted = set(tables)
            found = {k: v for k, v in found.items() if k in wanted}
        return found
