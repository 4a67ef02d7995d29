"""MySQL and MariaDB: ``--single-transaction`` dump whose snapshot is opened inside the pause.

A dump tool cannot join a snapshot that another connection opened (MariaDB and MySQL cannot
share one), so the dump itself must START its transaction inside the pause window.
``prepare_capture`` (before the pause) resolves the tool, makes the option file, builds the
command line and opens the watcher connection. ``open_capture`` (inside the window) launches
``mariadb-dump`` (or ``mysqldump``) with ``--verbose`` and returns as soon as the dump itself
says, on its stderr, that it is past ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` (see
``POST_SNAPSHOT_MESSAGES``), or once the dump has exited successfully. Should the dump not say
so (an option file sending its messages elsewhere, another wording), the dump's own connection
seen in ``information_schema.PROCESSLIST`` running a post-snapshot statement (``POST_SNAPSHOT``)
is the fallback. The copying goes on after the unpause.

The fingerprint is read from the dump itself as it streams by (``DumpFingerprint``): every row
of every table, from the dump's one snapshot. After a restore, ``fingerprint()`` dumps the live
databases the same way and reads the same numbers from that dump.

Passwords reach the tools only through ``--defaults-extra-file=/dev/fd/N``: an option file in
memory (``SecretFile``, a 0600 memfd the tool inherits), never argv and never a file on disk, so
a run that fails or is killed leaves no password behind.
"""

from __future__ import annotations

import contextlib
import gzip
import mmap
import operator
import os
import re
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from typing import Any, ClassVar

import pymysql

from pausepoint.errors import (
    CaptureError,
    PausepointError,
    RestoreError,
    StoreCheckError,
    TargetNotEmptyError,
)
from pausepoint.stores import rowsum
from pausepoint.stores._common import (
    CHUNK,
    PipeToFile,
    ProgressPoller,
    SecretFile,
    ServerStore,
    ToolProcess,
    artifacts_checked_beside,
    feeding,
    find_tool,
    fold_row_hashes,
    read_pipe,
    redact,
    sum_row_hashes,
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
from pausepoint.stores.mysql_config import MysqlCaptureDetails, MysqlConfig

CLIENT_PACKAGE = "mariadb-client"
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
Edit = tuple[int, int, bytes]  # replace dump[start:end] with the bytes


def _renamer(mapping: Mapping[str, str]) -> Callable[[bytes], bytes]:
    """Rewrites the database names of the CREATE DATABASE and USE lines in a piece of dump."""
    table = {quote_ident(k).encode(): quote_ident(v).encode() for k, v in mapping.items()}

    def swap(m: re.Match[bytes]) -> bytes:
        quoted = b"`" + m.group("name") + b"`"
        return m.group("head") + table.get(quoted, quoted)

    return lambda text: _DB_LINE.sub(swap, text)


def rename_databases(chunks: Iterable[bytes], mapping: Mapping[str, str]) -> Iterator[bytes]:
    """The dump stream with database names rewritten on CREATE DATABASE and USE lines only."""
    if not mapping:
        yield from chunks
        return
    rename = _renamer(mapping)
    pending = b""
    for chunk in chunks:
        data = pending + chunk
        cut = data.rfind(b"\n") + 1  # only whole lines are rewritten
        block, pending = data[:cut], data[cut:]
        if block:
            yield rename(block) if b"DATABASE" in block or b"USE" in block else block
    if pending:
        yield rename(pending)


_DB_LINE_HEADS = (b"USE ", b"CREATE DATABASE /*!32312 IF NOT EXISTS*/ ")


def database_lines(dump: bytes | mmap.mmap, mapping: Mapping[str, str]) -> list[Edit]:
    """The CREATE DATABASE and USE lines of a whole dump that ``mapping`` renames, as
    (start, end, new text). Found through the backquote after their head: memchr for a backquote
    reads a 1 GB dump in ~0.15 s of CPU, a search for `\nUSE `` in ~0.6 s."""
    if not mapping:
        return []
    rename = _renamer(mapping)
    edits = []
    i = dump.find(b"`")
    while i >= 0:
        for head in _DB_LINE_HEADS:
            start = i - len(head)
            if start >= 0 and dump[start:i] == head and (start == 0 or dump[start - 1] == 0x0A):
                end = dump.find(b"\n", i)
                end = len(dump) if end < 0 else end
                line = dump[start:end]
                if (new := rename(line)) != line:
                    edits.append((start, end, new))
                i = end
                break
        i = dump.find(b"`", i + 1)
    return edits


def _read_chunks(path: Path) -> Iterator[bytes]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


# --- the fingerprint, read from a dump ------------------------------------------------------
#
# A table's rows are the `INSERT INTO `t` [(columns)] VALUES ...;` statements that follow its
# `-- Dumping data for table `t`` line. The dump escapes line breaks inside values (\n, \r), so
# a raw line break never falls inside a row. MariaDB's dump writes one row per line, `(1,'a'),`,
# the statement's last one ending in `);` (when the INSERT lists columns, its first row is on
# the INSERT line); MySQL's mysqldump writes all rows of a statement on its one line,
# `(1,'a'),(2,'b');`, split here at the `),(` that are outside quoted values. A row's hash is
# the 64-bit XXH3 of its text as the dump writes it, `(...)` plus `,` (the last row of a
# statement gets the comma it lacks): the dump renders every value (NULL unquoted, strings
# quoted and escaped), so the text is NULL-safe and unambiguous. Rows are summed
# (order-independent), see rowsum.sum_row_xxh3. Points made before it hashed rows with sha256
# (FINGERPRINT_SHA256); a restore of such a point is still compared, with that hash.
#
# Why from the dump rather than SQL on the server (the previous way): it is the captured
# snapshot itself, with no second snapshot to align, and it costs less. Measured on the test
# MariaDB 10.11 (2 cores; 1M rows of id, int, 1 KB text; CPU of a 1 GB dump): mariadb-dump
# 6-7.5 s and its server thread 1-2 s; SUM(MD5(CONCAT_WS(',', QUOTE(col), ...))) in a second
# scan 5.0 s of server CPU; reading the rows out of the stream here ~1.9 s of Python CPU with
# sha256 (split 0.5, sha256 1.1), ~0.8 s with XXH3, in the thread that already copies the stream.
# XXH3 replaced sha256 because a short row (a ScalarDL asset record, a bank transfer) cost 0.36 us
# to hash: 100k of them made a 10 MB capture a quarter slower than the raw dump (BENCHMARKS.md).
FINGERPRINT = "mysql-dump-rows-xxh3-v2"
FINGERPRINT_SHA256 = "mysql-dump-rows-sha256-v1"
_ROW_SUMS: dict[str, Callable[[Iterable[bytes]], int]] = {
    FINGERPRINT: rowsum.sum_row_xxh3,
    FINGERPRINT_SHA256: sum_row_hashes,
}

_DUMP_LINE = re.compile(
    rb"^(?:USE `(?P<database>(?:[^`\n]|``)+)`;$"
    rb"|-- Dumping data for table `(?P<data>(?:[^`\n]|``)+)`$"
    rb"|(?P<delimiter>DELIMITER )"
    rb"|INSERT INTO `(?P<insert>(?:[^`\n]|``)+)`(?: \([^\n]*?\))? VALUES(?P<inline> )?\n?)",
    re.MULTILINE,
)
_ESCAPE = re.compile(rb"\\.", re.DOTALL)


def _unquote(name: bytes) -> str:
    return name.replace(b"``", b"`").decode("utf-8", "surrogateescape")


def _quotes(text: bytes) -> int:
    """Quote characters in ``text`` that are not escaped by a backslash."""
    return (_ESCAPE.sub(b"", text) if b"\\" in text else text).count(b"'")


def _split_rows(line: bytes) -> list[bytes]:
    """`(r1),(r2),...,(rn),` as rows `(r1),` ... Splits at `),(` outside quoted values only."""
    # First every `),(` (in C, no Python per row): right when no row has an odd number of
    # quotes, which a `),(` inside a quoted value would leave on both sides of it.
    rows = line.replace(b"),(", b"),\n(").split(b"\n")
    texts = map(_ESCAPE.sub, repeat(b""), rows) if b"\\" in line else rows
    if not any(map(operator.and_, map(bytes.count, texts, repeat(b"'")), repeat(1))):
        return rows
    rows = []
    part = b""
    for piece in line[1:-2].split(b"),("):
        part = part + b"),(" + piece if part else piece
        if _quotes(part) % 2 == 0:
            rows.append(b"(" + part + b"),")
            part = b""
    if part:
        raise ValueError(f"a row of the dump has an unbalanced quote: {line[:80]!r}...")
    return rows


def _line_end_semicolon(buf: bytes, pos: int, end: int) -> int:
    """Where the first line in buf[pos:end] that ends in `;` has it, or -1. Looks for `;` and
    then checks the next byte: a search for the two bytes `;\n` reads 1 GB in 0.74 s, memchr
    for `;` in 0.03 s."""
    i = buf.find(b";", pos, end)
    while i >= 0 and buf[i + 1] != 0x0A:  # buf[end - 1] is a line break: i + 1 < end
        i = buf.find(b";", i + 1, end)
    return i


class DumpFingerprint:
    """Per table, the row count and the row-hash sum of a dump, fed as it streams (``feed``).

    ``databases`` maps a database name as the dump writes it to the name the fingerprint keys
    use (a restore target's database back to the captured one). ``method`` picks the row hash
    (FINGERPRINT, or an earlier one that a point to compare was made with).
    """

    def __init__(self, databases: Mapping[str, str] | None = None, method: str = FINGERPRINT):
        self._names = dict(databases or {})
        self._sum = _ROW_SUMS[method]
        self._native = method == FINGERPRINT and rowsum.available()
        self._tables: dict[str, list[int]] = {}  # "db.table" -> [rows, sum]
        self._rest = b""  # an incomplete last line, kept for the next block
        self._database = ""
        self._data_of: str | None = None  # the table whose data section this is
        self._open: list[int] | None = None  # an INSERT whose rows, one per line, go on

    def feed(self, data: bytes) -> None:
        buf = self._rest + data if self._rest else data
        end = buf.rfind(b"\n") + 1
        self._rest = buf[end:]
        self._lines: list[bytes] | None = None  # buf split at line breaks, when rows need it
        pos = 0
        while pos < end:
            if self._open is not None:
                pos = self._row_lines(self._open, buf, pos, end)
                continue
            line = _DUMP_LINE.search(buf, pos, end)
            if line is None:
                break
            pos = line.end()
            if line["database"]:
                self._database = self._names.get(n := _unquote(line["database"]), n)
            elif line["data"]:
                self._data_of = f"{self._database}.{_unquote(line['data'])}"
                self._tables.setdefault(self._data_of, [0, 0])
            elif line["delimiter"]:
                self._data_of = None  # triggers follow: their bodies are not rows
            elif f"{self._database}.{_unquote(line['insert'])}" == self._data_of:
                table = self._tables[self._data_of]
                if not line["inline"]:
                    self._open = table
                    continue
                # Rows start on the INSERT line: all of them (the line ends the statement) or
                # the first one, the others following one per line.
                eol = buf.index(b"\n", pos, end)
                if buf[eol - 1] == 0x3B:  # ";"
                    self._add(table, _split_rows(buf[pos : eol - 1] + b","))
                else:
                    self._add(table, [buf[pos:eol]])
                    self._open = table
                pos = eol + 1

    def _row_lines(self, table: list[int], buf: bytes, pos: int, end: int) -> int:
        """Take the rows (one per line) of the open INSERT in buf[pos:end]; returns where
        reading goes on.

        The rows that end in `,` (every line up to `end`, or up to the statement's last line)
        are summed in C when it is built (rowsum), else as items of one split of the whole
        block, found by counting line breaks: a slice of the block per statement, then a split
        of it, cost twice the memory traffic (8 ms per 15 MB of short rows)."""
        stop = _line_end_semicolon(buf, pos, end)
        upto = end if stop < 0 else max(buf.rfind(b"\n", pos, stop) + 1, pos)
        if self._native:
            total, count = rowsum.sum_lines_xxh3(buf, pos, upto)
            table[0] += count
            table[1] += total
        elif pos < upto:
            if self._lines is None:
                self._lines = buf.split(b"\n")
            first = buf.count(b"\n", 0, pos)
            self._add(table, self._lines[first : first + buf.count(b"\n", pos, upto)])
        if stop < 0:
            return end
        self._open = None
        self._add(table, [buf[upto:stop] + b","])  # the last row: `(...);` -> `(...),`
        return stop + 2

    def result(self) -> Fingerprint:
        if self._open is not None or self._rest.strip():
            raise ValueError("the dump ended inside a table's data")
        return {
            key: TableFingerprint(rows=rows, hash=fold_row_hashes(total))
            for key, (rows, total) in sorted(self._tables.items())
        }

    def _add(self, table: list[int], rows: list[bytes]) -> None:
        table[0] += len(rows)
        table[1] += self._sum(rows)


class _Connection(pymysql.connections.Connection):
    """PyMySQL's connection, minus one cost: without TLS options it uses TLS when the server
    offers it (PREFERRED, no certificate check) and builds a new SSL context for that on every
    connect, loading the system's CA certificates: 17 ms of the 18 ms a connect took on the test
    machine. That context is the same every time, so it is built once. open_capture connects
    inside the pause window, and a 10 MB dump takes ~80 ms."""

    _preferred: ClassVar[ssl.SSLContext | None] = None

    def _create_ssl_ctx(self, sslp, *args, **kwargs):
        if sslp != {}:  # explicit TLS options: as PyMySQL does
            return super()._create_ssl_ctx(sslp, *args, **kwargs)
        if _Connection._preferred is None:
            _Connection._preferred = super()._create_ssl_ctx(sslp, *args, **kwargs)
        return _Connection._preferred


class MysqlPreparedCapture(PreparedCapture):
    """Made before the pause: the dump's command line and its option file (in memory), the
    artifact's
    path, and the watcher connection (open, authenticated) for the PROCESSLIST fallback with the
    connection ids that existed before. Freed by the handle that takes it over, or release()."""

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
            return _Connection(
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
        c = self.config
        # --defaults-extra-file must come first; it carries the user and the password.
        return [
            f"--defaults-extra-file={options.path}",
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
        options = SecretFile(option_file(self.config.user, password), "pausepoint-client.cnf")
        return options, password

    def _dump_argv(self, tool: Path, options: SecretFile, databases: list[str]) -> list[str]:
        argv = [
            str(tool),
            *self._tool_args(options),
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
        if "MariaDB" not in self._tool_version(tool):
            # MySQL 8.0.32+ takes FLUSH TABLES WITH READ LOCK for GTID info unless told not to.
            argv.append("--set-gtid-purged=OFF")
        return [*argv, "--databases", *databases]

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
            dump = ToolProcess(
                p.argv,
                stdout=subprocess.PIPE,
                secrets=[p.password or ""],
                on_stderr=talk,
                pass_fds=[p.options.fd],
            )
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
        """Block until the dump's snapshot is open; return which signal said so.

        First choice, the dump's own word (``DumpTalk``): no query, no polling, and no doubt
        that it is the dump we started. Fallback after FALLBACK_AFTER_S: the dump's OWN
        connection (a new connection id whose client port is one of the dump process's sockets,
        see ``client_ports``) running one of the POST_SNAPSHOT statements; once that connection
        is found, only its row is read. When the dump's port cannot be told (no /proc, a NAT
        between us and the server), only the dump's successful exit counts: slower, never
        wrong. INNODB_TRX is not used: it is refreshed at most every 100 ms.
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
                        f"store {self.name}: the dump of {', '.join(self.config.databases)} "
                        f"at {self._where} failed before its snapshot opened"
                    )
                )
            now = time.monotonic()
            if now >= fallback_at:
                dump_id, info = self._dump_statement(p, dump, dump_id)
                if is_post_snapshot(info):
                    return f"processlist: {' '.join(str(info).split())[:60]}"
            if now > deadline:
                raise CaptureError(
                    f"store {self.name}: the dump at {self._where} did not open its snapshot "
                    f"within {SNAPSHOT_TIMEOUT_S:.0f} s (it must connect as "
                    f"{self.config.user!r}; is the server overloaded?)"
                )

    def _dump_statement(
        self, p: MysqlPreparedCapture, dump: ToolProcess, dump_id: int | None
    ) -> tuple[int | None, str | None]:
        """(the dump's connection id once known, the statement it runs now) from PROCESSLIST."""
        if p.monitor is None:
            p.monitor = self._connect(CaptureError)
        with p.monitor.cursor() as cur:
            if dump_id is not None:
                cur.execute(
                    "SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = %s", (dump_id,)
                )
                row = cur.fetchone()
                return dump_id, row[0] if row else None
            ports = client_ports(dump.proc.pid)
            cur.execute(
                "SELECT ID, HOST, INFO FROM information_schema.PROCESSLIST "
                "WHERE USER = %s AND ID <> CONNECTION_ID()",
                (self.config.user,),
            )
            for conn_id, host, info in cur.fetchall():
                if conn_id in p.before or host_port(host) not in ports:
                    continue  # not our dump: another connection of the same user
                return conn_id, info
        return None, None

    def _finish(self, h: MysqlCaptureHandle, progress: ProgressFn | None) -> StoreCapture:
        h.sink.start()
        with ProgressPoller(self.name, progress, lambda: h.sink.bytes_written):
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
            tool = ToolProcess(
                [str(client), *self._tool_args(options), "--default-character-set=utf8mb4"],
                stdin=subprocess.PIPE,
                secrets=[password or ""],
                pass_fds=[options.fd],
            )
            if dump_file.name.endswith(".gz"):
                self._feed(tool, rename_databases(_read_chunks(dump_file), mapping))
            else:
                self._send(tool, dump_file, mapping)
        if tool.proc.returncode != 0:
            raise RestoreError(
                tool.failure(
                    f"store {self.name}: loading the dump into "
                    f"{', '.join(self._target(d) for d in captured)} at {self._where} failed; "
                    "the target is partly restored: run again with --replace"
                )
            )

    @staticmethod
    def _send(tool: ToolProcess, dump_file: Path, mapping: Mapping[str, str]) -> None:
        """An uncompressed dump goes from the file into the client by sendfile(2), in the
        kernel and in bursts (PipeWriter); only the few lines that rename a database pass
        through here. Measured loading 1 GB: the former read-rewrite-write loop through a
        64 KiB pipe cost 2.1 s of Python CPU, this ~0.3 s."""
        with feeding(tool) as pipe, open(dump_file, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            edits: list[Edit] = []
            if size and mapping:
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as dump:
                    edits = database_lines(dump, mapping)
            pos = 0
            for start, end, text in edits:
                pipe.send_file(f.fileno(), pos, start)
                pipe.write(text)
                pos = end
            pipe.send_file(f.fileno(), pos, size)

    @staticmethod
    def _feed(tool: ToolProcess, chunks: Iterable[bytes]) -> None:
        with feeding(tool) as pipe:
            for chunk in chunks:
                pipe.write(chunk)

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
            dump = ToolProcess(
                argv,
                stdout=subprocess.PIPE,
                secrets=[password or ""],
                pass_fds=[options.fd],
            )
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
