"""PostgreSQL: an exported snapshot inside the pause, ``pg_dump --snapshot`` after it.

Before the pause ``prepare_capture`` opens and authenticates the connection; inside the pause
window ``open_capture`` only opens a REPEATABLE READ, READ ONLY transaction on it and calls
``pg_export_snapshot()``: milliseconds, whatever the data size. After the unpause
``pg_dump -Fd -j N --snapshot=ID`` copies exactly that snapshot while the fingerprint is computed
on the exporting connection (so it sees the same snapshot), then the transaction ends.

Passwords reach the PostgreSQL tools only through ``PGPASSWORD`` in the child's environment.
"""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pausepoint.errors import (
    CaptureError,
    InternalError,
    PausepointError,
    RestoreError,
    StoreCheckError,
    TargetNotEmptyError,
)
from pausepoint.stores._common import (
    ProgressPoller,
    ServerStore,
    ToolProcess,
    artifacts_checked_beside,
    feeding,
    find_tool,
    fold_row_hashes,
    major_version,
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
    TableFingerprint,
)
from pausepoint.stores.postgres_config import PostgresCaptureDetails, PostgresConfig

CLIENT_PACKAGE = "postgresql-client"
DUMP_DIR = "dump"  # pg_dump's directory-format output, relative to the capture workdir
# The dump's table of contents (`pg_restore --list`), beside it: a restore edits it (see
# _toc_without) and would otherwise have to list the dump first, ~10 ms of a 0.13 s restore of
# 10 MB. Points made before it have none; their restore lists the dump.
TOC_FILE = "toc.list"

# Session settings that make a row's text rendering the same on every server and after a
# restore (dates, time zones, floats, bytea), and keep an idle exported snapshot alive.
_SESSION_OPTIONS = (
    "-c DateStyle=ISO,YMD -c TimeZone=UTC -c IntervalStyle=postgres -c extra_float_digits=1 "
    "-c bytea_output=hex -c statement_timeout=0 -c idle_in_transaction_session_timeout=0"
)
_SYSTEM_SCHEMA = "nspname NOT IN ('information_schema') AND nspname NOT LIKE 'pg\\_%'"

# --- the fingerprint -----------------------------------------------------------------------
#
# A row's hash is hash_record_extended (PostgreSQL 14+) over its columns, then hashed once more
# as a 64-bit value: hash_record combines its columns linearly (h * 31 + next), and a sum of
# linear row hashes would not change when rows trade a column's values; the second hash breaks
# that. A table's fingerprint is its row count and the sum of its row hashes modulo 2^64, which
# no scan order changes.
#
# Columns of these types are hashed as stored, by their type's hash function: bool, bytea,
# int8, int2, int4, oid, date, time, timestamp, timestamptz, uuid (for these, equal values have
# one text form, so nothing the text would show is lost), and text and varchar byte by byte
# (COLLATE "C": a non-deterministic collation would hash 'a' like 'A'). Every other column is
# hashed by its text form under _SESSION_OPTIONS, as before, so numeric keeps its scale, floats
# their sign of zero, enums their label (not their OID), arrays their bounds.
#
# Why not md5 of ROW(t.*)::text, as before: rendering every row as text is what costs. Measured
# on the test server (PostgreSQL 15, 2 cores; 1M rows of id, int, 1 KB text; server CPU of one
# full scan, median of 2): count(*) 0.3 s, md5(ROW(t.*)::text) 5.2 s, hashtextextended(ROW(t.*)
# ::text) 3.4 s, this 0.75 s. pg_dump -Fd of the same table spends ~28 s of CPU (mostly gzip),
# so the fingerprint in the same snapshot now adds ~3% CPU instead of ~17%.
FINGERPRINT = "pg-hash-record-v1"
MIN_SERVER_MAJOR = 14  # hash_record_extended; 13 reached its end of life in November 2025
_HASHED_AS_STORED = frozenset({16, 17, 20, 21, 23, 26, 1082, 1083, 1114, 1184, 2950})
_HASHED_AS_BYTES = frozenset({25, 1043})  # text, varchar


def row_hash_column(name: str, type_oid: int) -> sql.Composable:
    """How one column enters the row hash (see FINGERPRINT)."""
    column = sql.SQL("t.{}").format(sql.Identifier(name))
    if type_oid in _HASHED_AS_STORED:
        return column
    if type_oid in _HASHED_AS_BYTES:
        return sql.SQL('{} COLLATE "C"').format(column)
    return sql.SQL('({})::text COLLATE "C"').format(column)


class PostgresPreparedCapture(PreparedCapture):
    """Made before the pause: the connection that will export the snapshot, open and idle."""

    def __init__(self, ctx: CaptureContext, conn: psycopg.Connection):
        super().__init__(ctx)
        self.conn = conn

    def free(self) -> None:
        if not self.conn.closed:
            self.conn.close()  # ends the transaction: the snapshot is released


@dataclass(kw_only=True)
class PostgresCaptureHandle(CaptureHandle):
    prepared: PostgresPreparedCapture  # its connection holds the exporting transaction
    snapshot_id: str
    dump: ToolProcess | None = None

    @property
    def conn(self) -> psycopg.Connection:
        return self.prepared.conn


class PostgresStore(ServerStore[PostgresCaptureHandle]):
    kind = "postgres"
    fingerprint_method = FINGERPRINT
    product = "PostgreSQL"
    prepared_type = PostgresPreparedCapture
    handle_type = PostgresCaptureHandle
    config: PostgresConfig

    # --- connections ------------------------------------------------------------------------

    def _raw_connect(self, dbname: str, password: str | None) -> psycopg.Connection:
        return psycopg.connect(
            host=self.config.host,
            port=self.config.port,
            user=self.config.user,
            password=password,
            dbname=dbname,
            connect_timeout=10,
            application_name="pausepoint",
            options=_SESSION_OPTIONS,
            autocommit=True,
        )

    def _connect(
        self, error: type[PausepointError], dbname: str | None = None
    ) -> psycopg.Connection:
        """An autocommit connection; failures become ``error`` with the operator's fix."""
        dbname = dbname or self.config.database
        password = self._password()
        try:
            return self._raw_connect(dbname, password)
        except psycopg.Error as exc:
            raise error(self._connect_failure(exc, dbname, password)) from None

    def _connect_failure(self, exc: psycopg.Error, dbname: str, password: str | None) -> str:
        cause = redact(str(exc).strip(), [password or ""])
        if "password authentication failed" in cause or "no password supplied" in cause:
            return self._auth_failed("password authentication failed")
        if f'database "{dbname}" does not exist' in cause:
            return (
                f"store {self.name}: PostgreSQL at {self._where} has no database {dbname!r}; "
                "fix `database` in the site file or create it (a restore target may be "
                "missing: restore creates it)"
            )
        return self._unreachable(f"(database {dbname!r}) {cause}")

    def _env(self) -> dict[str, str]:
        password = self._password()
        env = {"PGCONNECT_TIMEOUT": "10", "PGAPPNAME": "pausepoint"}
        if password is not None:
            env["PGPASSWORD"] = password
        return env

    def _conn_args(self) -> list[str]:
        c = self.config
        return ["--host", c.host, "--port", str(c.port), "--username", c.user, "--no-password"]

    def _tool(self, name: str) -> Path:
        return find_tool(
            [name], bin_dir=self.config.bin_dir, package=CLIENT_PACKAGE, store=self.name
        )

    # --- catalog queries --------------------------------------------------------------------

    def _schemas(self, conn: psycopg.Connection, error: type[PausepointError]) -> list[str]:
        """The configured schemas (all must exist) or every user schema."""
        present = [
            r[0]
            for r in conn.execute(
                f"SELECT nspname FROM pg_namespace WHERE {_SYSTEM_SCHEMA} ORDER BY 1"
            )
        ]
        if not self.config.schemas:
            return present
        missing = [s for s in self.config.schemas if s not in present]
        if missing:
            raise error(
                f"store {self.name}: database {self.config.database!r} at {self._where} has no "
                f"schema {', '.join(map(repr, missing))}; fix `schemas` in the site file"
            )
        return list(self.config.schemas)

    @staticmethod
    def _tables(conn: psycopg.Connection, schemas: list[str]) -> list[tuple[str, str]]:
        return [
            (r[0], r[1])
            for r in conn.execute(
                "SELECT n.nspname, c.relname FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
                "AND n.nspname = ANY(%s) ORDER BY 1, 2",
                (schemas,),
            )
        ]

    @staticmethod
    def _columns(
        conn: psycopg.Connection, tables: list[tuple[str, str]]
    ) -> dict[tuple[str, str], list[tuple[str, int]]]:
        """(name, type oid) of every live column, in order, per table."""
        columns: dict[tuple[str, str], list[tuple[str, int]]] = {t: [] for t in tables}
        for schema, table, name, type_oid in conn.execute(
            "SELECT n.nspname, c.relname, a.attname, a.atttypid::int FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY 1, 2, a.attnum",
            (sorted({s for s, _ in tables}),),
        ):
            if (schema, table) in columns:
                columns[(schema, table)].append((name, type_oid))
        return columns

    @classmethod
    def _fingerprint_on(
        cls, conn: psycopg.Connection, tables: list[tuple[str, str]]
    ) -> Fingerprint:
        """Row count and the sum of every row's 64-bit hash, per table, in SQL (FINGERPRINT)."""
        result: Fingerprint = {}
        for (schema, table), columns in cls._columns(conn, tables).items():
            query = sql.SQL(
                "SELECT count(*), sum(hashtextextended("
                "hash_record_extended(ROW({}), 0)::text, 0)) FROM {}.{} AS t"
            ).format(
                sql.SQL(", ").join(row_hash_column(n, oid) for n, oid in columns),
                sql.Identifier(schema),
                sql.Identifier(table),
            )
            rows, total = conn.execute(query).fetchone()  # type: ignore[misc]
            result[f"{schema}.{table}"] = TableFingerprint(rows=rows, hash=fold_row_hashes(total))
        return result

    # --- preflight ----------------------------------------------------------------------------

    def check(self) -> dict[str, Any]:
        dump, restore = self._tool("pg_dump"), self._tool("pg_restore")
        with self._connect(StoreCheckError) as conn:
            server_num = conn.execute("SHOW server_version_num").fetchone()[0]  # type: ignore[index]
            server_version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            schemas = self._schemas(conn, StoreCheckError)
            no_usage = [
                r[0]
                for r in conn.execute(
                    "SELECT s FROM unnest(%s::text[]) s WHERE NOT has_schema_privilege(s, 'USAGE')",
                    (schemas,),
                )
            ]
            unreadable = [
                f"{r[0]}.{r[1]}"
                for r in conn.execute(
                    "SELECT n.nspname, c.relname FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind IN ('r', 'p', 'S', 'm') AND n.nspname = ANY(%s) "
                    "AND has_schema_privilege(n.oid, 'USAGE') "
                    "AND NOT has_table_privilege(c.oid, 'SELECT') ORDER BY 1, 2 LIMIT 6",
                    (schemas,),
                )
            ]
            tables = len(self._tables(conn, schemas))
        server_major = int(server_num) // 10000
        if server_major < MIN_SERVER_MAJOR:
            raise StoreCheckError(
                f"store {self.name}: the server at {self._where} runs PostgreSQL {server_version}; "
                f"pausepoint needs {MIN_SERVER_MAJOR} or newer (its fingerprint uses "
                "hash_record_extended): upgrade the server"
            )
        if no_usage or unreadable:
            what = ", ".join((no_usage + unreadable)[:5])
            raise StoreCheckError(
                f"store {self.name}: user {self.config.user!r} may not read {what} in database "
                f"{self.config.database!r} at {self._where}; grant USAGE on the schemas and "
                "SELECT on their tables and sequences (or use the owner)"
            )
        versions = {}
        for tool in (dump, restore):
            line = self._tool_version(tool)
            major = major_version(line)
            if major is None or major < server_major:
                raise StoreCheckError(
                    f"store {self.name}: {tool} is version {major or '?'} but the server at "
                    f"{self._where} runs {server_major}; {tool.name} must be at least as new as "
                    f"the server: install postgresql-client-{server_major} and set bin_dir to "
                    f"/usr/lib/postgresql/{server_major}/bin"
                )
            versions[tool.name] = line
        return {
            "server_version": server_version,
            "schemas": schemas,
            "tables": tables,
            **versions,
        }

    # --- capture ----------------------------------------------------------------------------

    def _prepare(self, ctx: CaptureContext) -> PostgresPreparedCapture:
        """Before the pause: the connection (a TCP connect and a SCRAM exchange, 5-15 ms on
        the test machine, more on a loaded one) is opened here, not inside the window."""
        return PostgresPreparedCapture(ctx, self._connect(CaptureError))

    def _open(self, p: PostgresPreparedCapture) -> PostgresCaptureHandle:
        try:
            if p.conn.closed or p.conn.broken:  # lost since the preparation: connect again
                p.conn.close()
                p.conn = self._connect(CaptureError)
            p.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snapshot_id = p.conn.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
        except psycopg.Error as exc:
            raise CaptureError(
                f"store {self.name}: could not export a snapshot of database "
                f"{self.config.database!r} at {self._where}: {exc}"
            ) from exc
        return PostgresCaptureHandle(
            ctx=p.ctx, prepared=p, snapshot_id=snapshot_id, opened_at=datetime.now(UTC)
        )

    def _finish(self, h: PostgresCaptureHandle, progress: ProgressFn | None) -> StoreCapture:
        dump_tool = self._tool("pg_dump")
        sink = h.ctx.sink
        out = sink.spool(DUMP_DIR)  # pg_dump -Fd writes a directory: a local spool
        try:
            # Catalog reads inside the transaction see the snapshot: same schemas as the dump.
            schemas = self._schemas(h.conn, CaptureError)
            tables = self._tables(h.conn, schemas)
            server_version = h.conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        except psycopg.Error as exc:
            raise CaptureError(f"store {self.name}: reading the snapshot failed: {exc}") from exc
        argv = [
            str(dump_tool), *self._conn_args(), "--format=directory", f"--jobs={self.config.jobs}",
            f"--snapshot={h.snapshot_id}", f"--file={out}",
            # A quoted pattern matches exactly one schema name (no wildcards, no case folding).
            *(f'--schema="{s.replace(chr(34), chr(34) * 2)}"' for s in schemas),
            self.config.database,
        ]  # fmt: skip
        env = self._env()
        with h.lock:
            if h.closed:
                raise CaptureError(f"store {self.name}: the capture was aborted")
            h.dump = ToolProcess(argv, env=env, secrets=[env.get("PGPASSWORD", "")])
        # The sink is this store's alone: the dump and, once written, its TOC_FILE.
        with ProgressPoller(self.name, progress, sink.size):
            try:
                # On the exporting connection: exactly the snapshot pg_dump copies, and it runs
                # while pg_dump works (server-side work on another backend). One backend only:
                # parallel workers would take the cores pg_dump's gzip needs.
                h.conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
                fingerprint = self._fingerprint_on(h.conn, tables)
            except psycopg.Error as exc:
                raise CaptureError(
                    f"store {self.name}: the fingerprint query failed: {exc}; no restore point "
                    "was registered"
                ) from exc
            rc = h.dump.wait()
            if rc != 0:
                raise CaptureError(
                    h.dump.failure(
                        f"store {self.name}: pg_dump of database {self.config.database!r} at "
                        f"{self._where} failed; no restore point was registered"
                    )
                )
            h.conn.execute("COMMIT")
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.name}-toc") as pool:
                listing = pool.submit(
                    self._table_of_contents, self._tool("pg_restore"), out, CaptureError
                )
                artifacts = sink.collect(p for p in out.rglob("*") if p.is_file())
                with sink.open(TOC_FILE) as toc:
                    toc.write(listing.result().encode())
                    toc_artifact = toc.close()
        return StoreCapture(
            name=self.name,
            kind=self.kind,
            method="pg_dump-directory",
            artifacts=[*artifacts, toc_artifact],
            fingerprint=fingerprint,
            fingerprint_method=self.fingerprint_method,
            tool_versions={"pg_dump": self._tool_version(dump_tool), "server": server_version},
            snapshot_established_at=h.opened_at,
            details=PostgresCaptureDetails(
                database=self.config.database,
                schemas=schemas,
                snapshot_id=h.snapshot_id,
                jobs=self.config.jobs,
                dump_dir=DUMP_DIR,
                toc=TOC_FILE,
            ),
        )

    def _release(self, h: PostgresCaptureHandle) -> None:
        if h.dump is not None:
            h.dump.kill()  # the connection (and its snapshot) goes with h.prepared

    # --- restore ----------------------------------------------------------------------------

    def _open_target(self) -> psycopg.Connection | None:
        """A connection to the restore target's database; None when it does not exist yet."""
        password = self._password()
        try:
            return self._raw_connect(self.config.database, password)
        except psycopg.Error as exc:
            if f'database "{self.config.database}" does not exist' in str(exc):
                return None
            raise RestoreError(self._connect_failure(exc, self.config.database, password)) from None

    def _refuse_non_empty(
        self, conn: psycopg.Connection, schemas: list[str], replace: bool
    ) -> set[str]:
        """Refuse a target with tables in the captured schemas (unless ``replace``); returns
        which of those schemas it has (one round trip for both)."""
        rows = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_namespace n LEFT JOIN LATERAL ("
            "SELECT relname FROM pg_class WHERE relnamespace = n.oid "
            "AND relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY 1 LIMIT 4) c ON true "
            "WHERE n.nspname = ANY(%s) ORDER BY 1, 2",
            (schemas,),
        ).fetchall()
        found = [f"{schema}.{table}" for schema, table in rows if table is not None][:4]
        if found and not replace:
            shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
            raise TargetNotEmptyError(
                f"store {self.name}: database {self.config.database!r} at {self._where} already "
                f"has tables in the captured schemas ({shown}); restore into an empty or new "
                f"database, or pass --replace to drop schemas {', '.join(schemas)} first"
            )
        return {schema for schema, _ in rows}

    def check_restore_target(self, capture: StoreCapture, replace: bool) -> None:
        schemas = self.captured_details(capture).schemas
        conn = self._open_target()
        if conn is None:
            return  # restore creates it
        with conn:
            self._refuse_non_empty(conn, schemas, replace)

    def restore(
        self,
        capture: StoreCapture,
        source_dir: Path,
        replace: bool,
        *,
        verified: bool = False,
        journal: StoreJournal | None = None,
    ) -> None:
        restore_tool = self._tool("pg_restore")
        details: PostgresCaptureDetails = self.captured_details(capture)
        schemas = details.schemas
        dump_dir = source_dir / details.dump_dir
        db = self.config.database
        env = self._env()
        # pg_restore starts first and waits: it reads its list (--use-list; /dev/stdin, Linux)
        # before it connects, so its start and its reading of the archive overlap the checks
        # below, and it changes nothing until they pass and the list is written. Measured on a
        # 10 MB restore (0.12 s of pg_restore): 15-19 ms before pg_restore started, when it
        # started after the checks.
        tool = ToolProcess(
            [
                str(restore_tool), *self._conn_args(), f"--dbname={db}",
                f"--jobs={self.config.jobs}", "--no-owner", "--exit-on-error",
                "--use-list=/dev/stdin", str(dump_dir),
            ],
            env=env,
            secrets=[env.get("PGPASSWORD", "")],
            stdin=subprocess.PIPE,
        )  # fmt: skip
        try:
            # One connection for the checks and the preparation (each costs a SCRAM
            # handshake); the artifacts are verified meanwhile.
            with artifacts_checked_beside(
                source_dir, capture.artifacts, store=self.name, checksums=not verified
            ) as checked:
                conn = self._open_target()
                if conn is None:
                    checked()  # creating the database is a change
                    self._refuse_ended(tool)
                    self._create_database(db)
                    conn = self._connect(RestoreError)
                with conn:
                    existing = self._refuse_non_empty(conn, schemas, replace)
                    checked()
                    self._refuse_ended(tool)
                    if replace:
                        with conn.transaction():
                            for s in schemas:
                                conn.execute(
                                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                                        sql.Identifier(s)
                                    )
                                )
                        existing = set()  # every captured schema was just dropped
            toc = details.toc
            contents = (
                (source_dir / str(toc)).read_text()
                if toc  # for a point made before TOC_FILE, list the dump
                else self._table_of_contents(restore_tool, dump_dir, RestoreError)
            )
            with feeding(tool) as pipe:
                pipe.write(_toc_without(contents, existing).encode())
            rc = tool.wait()
        except BaseException:
            tool.kill()
            raise
        if rc != 0:
            raise RestoreError(
                tool.failure(
                    f"store {self.name}: pg_restore into database {db!r} at {self._where} "
                    "failed; the target is partly restored: run again with --replace"
                )
            )

    def _refuse_ended(self, tool: ToolProcess) -> None:
        """Before the first change: pg_restore must still be waiting for its list."""
        if tool.poll() is not None:
            tool.wait()
            raise RestoreError(
                tool.failure(
                    f"store {self.name}: pg_restore could not start on the dump; nothing was "
                    "changed on the target"
                )
            )

    def _create_database(self, db: str) -> None:
        try:
            with self._connect(RestoreError, dbname="postgres") as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        except psycopg.Error as exc:
            raise RestoreError(
                f"store {self.name}: could not create database {db!r} at {self._where}: {exc}; "
                f"create it (CREATE DATABASE) or grant CREATEDB to {self.config.user!r}"
            ) from exc

    def _table_of_contents(
        self, restore_tool: Path, dump_dir: Path, error: type[PausepointError]
    ) -> str:
        """``pg_restore --list`` of the dump."""
        listing = subprocess.run(
            [str(restore_tool), "--list", str(dump_dir)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if listing.returncode != 0:
            raise error(
                f"store {self.name}: pg_restore cannot read the dump in {dump_dir}: "
                f"{listing.stderr.strip()[-500:]}"
            )
        return listing.stdout

    # --- verification -----------------------------------------------------------------------

    def fingerprint(
        self, tables: list[str] | None = None, method: str | None = None
    ) -> Fingerprint:
        if method not in (None, FINGERPRINT):  # the only one there has been
            raise InternalError(f"store {self.name}: no fingerprint method {method!r}")
        with self._connect(RestoreError) as conn:
            schemas = self._schemas(conn, RestoreError)
            found = self._tables(conn, schemas)
            if tables is not None:
                wanted = set(tables)
                found = [t for t in found if f"{t[0]}.{t[1]}" in wanted]
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                return self._fingerprint_on(conn, found)


_SCHEMA_ENTRY = re.compile(r"^\d+; \d+ \d+ (?:SCHEMA - |COMMENT - SCHEMA )(?P<name>.+) \S+$")


def _toc_without(contents: str, schemas: set[str]) -> str:
    """A table of contents (``pg_restore --list``) minus CREATE/COMMENT of ``schemas``, which
    the target already has.

    pg_dump writes ``CREATE SCHEMA public`` when public is selected explicitly, which fails on
    every database (it always has public); the schema's contents restore as usual.
    """
    kept = []
    for line in contents.splitlines():
        m = _SCHEMA_ENTRY.match(line)
        if m and m.group("name") in schemas:
            continue
        kept.append(line)
    return "\n".join(kept) + "\n"
