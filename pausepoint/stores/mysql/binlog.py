"""MySQL/MariaDB with ``pitr: binlog``: a base dump plus the binary logs, replayed by time.

Nothing is copied per backup. pausepoint keeps, in ``archive_dir``:

- ``base/<stamp>/dump.sql``: a ``--single-transaction --master-data=2`` dump of the configured
  databases with the binary-log position of its snapshot (``base.json``), taken by preflight
  when none is younger than ``base_dump_max_age_s``;
- ``binlog/``: the server's closed binary logs, fetched over the replication protocol
  (``mariadb-binlog --read-from-remote-server --raw``) after ``FLUSH BINARY LOGS``, by preflight
  and after every backup's window. ``binlog/state.json`` says up to when the archive is complete
  (the server's time just before the last flush that closed a file it fetched).

The point's time is the window's mid-time rounded to the second (binary-log events carry whole
seconds; ``--stop-datetime`` stops at the first event at or after it). A restore loads the base
dump into the target databases, then, per database, pipes ``mariadb-binlog --start-position
--stop-datetime --database [--rewrite-db]`` over the archived files into the client.

The fingerprint is computed by SQL (row count and a sum of per-row SHA-2 prefixes) on a
consistent snapshot opened inside the pause window, and the same way on the restored databases.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pymysql

from pausepoint.errors import CaptureError, PitrWindowError, RestoreError, StoreCheckError
from pausepoint.stores._common import fold_row_hashes, redact
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
from pausepoint.stores.mysql.connection import quote_ident
from pausepoint.stores.mysql.restore import load_dump
from pausepoint.stores.mysql.store import MysqlStore
from pausepoint.stores.mysql_config import MysqlBinlogDetails

METHOD = "pitr-binlog"
GRANULARITY_MS = 1000  # binary-log event times are whole seconds
FINGERPRINT_SQL = "mysql-sql-sha2-v1"
_MASTER = re.compile(rb"MASTER_LOG_FILE='([^']+)', MASTER_LOG_POS=(\d+)")
_EVENT_TIME = re.compile(r"^#(\d{6})\s+(\d{1,2}:\d\d:\d\d) server id", re.M)
_BINLOG = re.compile(r"^(.+)\.(\d{6,})$")


def binlog_seq(name: str) -> tuple[str, int] | None:
    m = _BINLOG.match(name)
    return (m[1], int(m[2])) if m else None


@dataclass(frozen=True)
class BaseDump:
    path: Path  # the directory: dump.sql and base.json
    ready_at: datetime  # server time after the dump ended
    file: str  # binary log and position of the dump's snapshot
    pos: int

    @property
    def dump_file(self) -> Path:
        return self.path / "dump.sql"


@dataclass(frozen=True)
class BinlogSpan:
    oldest: datetime
    newest: datetime
    base: BaseDump
    files: list[str]  # archived binary logs from the base's file on, without a gap
    missing: str | None  # the first file missing after them, when later ones exist


class BinlogArchive:
    def __init__(self, root: Path, binlog_tool: Path | None):
        self.root = root
        self.tool = binlog_tool
        self._last_event: dict[str, datetime | None] = {}

    @property
    def base_dir(self) -> Path:
        return self.root / "base"

    @property
    def binlog_dir(self) -> Path:
        return self.root / "binlog"

    @property
    def state_file(self) -> Path:
        return self.binlog_dir / "state.json"

    def bases(self) -> list[BaseDump]:
        out = []
        if self.base_dir.is_dir():
            for d in self.base_dir.iterdir():
                meta = d / "base.json"
                if meta.is_file():
                    m = json.loads(meta.read_text())
                    out.append(
                        BaseDump(d, datetime.fromisoformat(m["ready_at"]), m["file"], m["pos"])
                    )
        return sorted(out, key=lambda b: b.ready_at)

    def files(self) -> list[str]:
        if not self.binlog_dir.is_dir():
            return []
        return sorted(
            (f for f in os.listdir(self.binlog_dir) if binlog_seq(f) is not None),
            key=lambda f: binlog_seq(f)[1],  # type: ignore[index]
        )

    def state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def last_event(self, name: str) -> datetime | None:
        """The newest event time in one archived file (whole seconds, UTC)."""
        if name in self._last_event:
            return self._last_event[name]
        found = None
        if self.tool is not None:
            r = subprocess.run(
                [str(self.tool), str(self.binlog_dir / name)],
                capture_output=True,
                text=True,
                env={**os.environ, "TZ": "UTC"},
                timeout=600,
                check=False,
            )
            times = [
                datetime.strptime(f"{d} {t}", "%y%m%d %H:%M:%S").replace(tzinfo=UTC)
                for d, t in _EVENT_TIME.findall(r.stdout)
            ]
            found = max(times) if times else None
        self._last_event[name] = found
        return found

    def span(self, at: datetime | None) -> BinlogSpan | None:
        bases = self.bases()
        if not bases:
            return None
        fit = [b for b in bases if at is None or b.ready_at <= at]
        base = fit[-1] if fit else bases[0]
        start = binlog_seq(base.file)
        have = {binlog_seq(f)[1]: f for f in self.files() if binlog_seq(f)[0] == start[0]}  # type: ignore[index]
        assert start is not None
        seq, chain = start[1], []
        while seq in have:
            chain.append(have[seq])
            seq += 1
        later = any(s > seq for s in have)
        missing = f"{start[0]}.{seq:06d}" if later else None
        state = self.state()
        newest = base.ready_at
        if chain and not missing and state.get("last_file") == chain[-1]:
            newest = max(newest, datetime.fromisoformat(state["complete_until"]))
        elif chain:
            last = self.last_event(chain[-1])
            # Events in its last second may still have had company in the next file.
            if last is not None:
                newest = max(newest, last - timedelta(seconds=1))
        return BinlogSpan(bases[0].ready_at, newest, base, chain, missing)


def sql_fingerprint(cur: Any, tables: list[tuple[str, str, str]]) -> Fingerprint:
    """Per table (live database, table, key database): row count and the sum of every row's
    64-bit SHA-2 prefix over its columns' quoted values, modulo 2^64 (order-independent)."""
    out: Fingerprint = {}
    for db, table, key_db in tables:
        cur.execute(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
            "AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        columns = [r[0] for r in cur.fetchall()]
        values = ", ".join(f"QUOTE({quote_ident(c)})" for c in columns)
        cur.execute(
            f"SELECT COUNT(*), SUM(CAST(CONV(LEFT(SHA2(CONCAT_WS(0x1f, {values}), 256), 16), "
            f"16, 10) AS DECIMAL(20, 0))) FROM {quote_ident(db)}.{quote_ident(table)}"
        )
        rows, total = cur.fetchone()
        out[f"{key_db}.{table}"] = TableFingerprint(rows=int(rows), hash=fold_row_hashes(total))
    return out


class BinlogPrepared(PreparedCapture):
    def __init__(self, ctx: CaptureContext, conn: Any):
        super().__init__(ctx)
        self.conn = conn

    def free(self) -> None:
        with contextlib.suppress(Exception):  # already closed or lost: nothing to free
            self.conn.close()


@dataclass(kw_only=True)
class BinlogHandle(CaptureHandle):
    prepared: BinlogPrepared


class MysqlBinlogStore(MysqlStore):
    """``mysql`` with ``pitr: binlog`` (registry mode ``binlog``)."""

    fingerprint_method = FINGERPRINT_SQL
    earlier_fingerprint_methods = ()
    prepared_type = BinlogPrepared
    handle_type = BinlogHandle

    def _binlog_tool(self) -> Path:
        from pausepoint.stores._common import find_tool
        from pausepoint.stores.mysql.connection import CLIENT_PACKAGE

        return find_tool(
            ["mariadb-binlog", "mysqlbinlog"],
            bin_dir=self.config.bin_dir,
            package=CLIENT_PACKAGE,
            store=self.name,
        )

    def _archive(self, root: str | None = None) -> BinlogArchive:
        root = root or self.config.archive_dir
        assert root is not None  # required with pitr: binlog
        try:
            tool: Path | None = self._binlog_tool()
        except Exception:  # no tool: the window then rests on the archive's state alone
            tool = None
        return BinlogArchive(Path(root), tool)

    # --- the archive -------------------------------------------------------------------------

    def take_base_dump(self) -> BaseDump:
        archive = self._archive()
        archive.base_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        partial = archive.base_dir / f".{stamp}.partial"
        partial.mkdir()
        options, password = self._option_file()
        with options:
            argv = self._dump_argv(self._dump_tool(), options, list(self.config.databases))
            argv.insert(argv.index("--databases"), "--master-data=2")
            with open(partial / "dump.sql", "wb") as out:
                r = subprocess.run(
                    argv, stdout=out, stderr=subprocess.PIPE, pass_fds=[options.fd],
                    timeout=24 * 3600, check=False,
                )  # fmt: skip
        if r.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise StoreCheckError(
                f"store {self.name}: the base dump at {self._where} failed: "
                f"{redact(r.stderr.decode(errors='replace').strip()[-600:], [password or ''])}; "
                f"user {self.config.user!r} needs RELOAD and REPLICATION CLIENT (BINLOG MONITOR) "
                "besides SELECT for --master-data"
            )
        with open(partial / "dump.sql", "rb") as f:
            head = f.read(64 * 1024)
        m = _MASTER.search(head)
        if not m:
            shutil.rmtree(partial, ignore_errors=True)
            raise StoreCheckError(
                f"store {self.name}: the base dump recorded no binary-log position: is log_bin "
                f"on at {self._where}?"
            )
        with self._connect(StoreCheckError) as conn, conn.cursor() as cur:
            cur.execute("SELECT NOW(6)")
            ready = cur.fetchone()[0].replace(tzinfo=UTC)
        meta = {"ready_at": ready.isoformat(), "file": m[1].decode(), "pos": int(m[2])}
        (partial / "base.json").write_text(json.dumps(meta))
        final = archive.base_dir / stamp
        partial.rename(final)
        return BaseDump(final, ready, meta["file"], meta["pos"])

    def archive_binlogs(self, error: type[CaptureError] | type[StoreCheckError]) -> list[str]:
        """Close the current binary log and fetch every closed one the archive lacks; then the
        archive is complete up to the server's time read just before the flush."""
        archive = self._archive()
        incoming = archive.binlog_dir / ".incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        try:
            with self._connect(error) as conn, conn.cursor() as cur:
                cur.execute("SELECT NOW(6)")
                until = cur.fetchone()[0].replace(tzinfo=UTC)
                cur.execute("FLUSH BINARY LOGS")
                cur.execute("SHOW BINARY LOGS")
                on_server = [r[0] for r in cur.fetchall()]
        except pymysql.err.MySQLError as exc:
            raise error(
                f"store {self.name}: could not rotate and list the binary logs at "
                f"{self._where}: {exc.args[-1] if exc.args else exc}; user "
                f"{self.config.user!r} needs RELOAD (or BINLOG ADMIN) and BINLOG MONITOR"
            ) from None
        closed = on_server[:-1]
        have = set(archive.files())
        fetched = []
        tool = self._binlog_tool()
        options, password = self._option_file()
        with options:
            for name in closed:
                if name in have:
                    continue
                r = subprocess.run(
                    [
                        str(tool), *self._tool_args(options), "--read-from-remote-server",
                        "--raw", f"--result-file={incoming}/", name,
                    ],
                    capture_output=True, pass_fds=[options.fd], timeout=3600, check=False,
                )  # fmt: skip
                if r.returncode != 0:
                    why = redact(r.stderr.decode(errors="replace").strip()[-500:], [password or ""])
                    raise error(
                        f"store {self.name}: fetching binary log {name} from {self._where} "
                        f"failed: {why}; user {self.config.user!r} needs REPLICATION SLAVE"
                    )
                os.replace(incoming / name, archive.binlog_dir / name)
                fetched.append(name)
        if closed:
            tmp = archive.state_file.with_suffix(".tmp")
            tmp.write_text(
                json.dumps({"complete_until": until.isoformat(), "last_file": closed[-1]})
            )
            os.replace(tmp, archive.state_file)
        return fetched

    # --- preflight ----------------------------------------------------------------------------

    def check(self) -> dict[str, Any]:
        facts = super().check()
        self._binlog_tool()
        with self._connect(StoreCheckError) as conn, conn.cursor() as cur:
            cur.execute("SELECT @@log_bin, @@binlog_format")
            log_bin, fmt = cur.fetchone()
        if not log_bin or fmt != "ROW":
            raise StoreCheckError(
                f"store {self.name}: the server at {self._where} has log_bin={log_bin} and "
                f"binlog_format={fmt}; pitr: binlog needs the binary log on in ROW format: "
                "set log_bin, binlog_format = ROW and server_id in the server's configuration "
                "and restart it (docs/stores.md)"
            )
        archive = self._archive()
        bases = archive.bases()
        took = None
        max_age = timedelta(seconds=self.config.base_dump_max_age_s)
        if not bases or datetime.now(UTC) - bases[-1].ready_at > max_age:
            took = self.take_base_dump()
        fetched = self.archive_binlogs(StoreCheckError)
        span = archive.span(None)
        return {
            **facts,
            "archive": str(archive.root),
            "base_dump_taken": str(took.path) if took else None,
            "binlogs_fetched": fetched,
            "restorable": [span.oldest.isoformat(), span.newest.isoformat()] if span else None,
        }

    # --- capture: a snapshot for the fingerprint; nothing is copied ---------------------------

    def _prepare(self, ctx: CaptureContext) -> BinlogPrepared:
        return BinlogPrepared(ctx, self._connect(CaptureError))

    def _open(self, p: BinlogPrepared) -> BinlogHandle:
        try:
            with p.conn.cursor() as cur:
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        except pymysql.err.MySQLError as exc:
            raise CaptureError(
                f"store {self.name}: could not open a snapshot at {self._where}: {exc}"
            ) from exc
        return BinlogHandle(ctx=p.ctx, prepared=p, opened_at=datetime.now(UTC))

    def _finish(self, h: BinlogHandle, progress: ProgressFn | None) -> StoreCapture:
        at = h.ctx.point_time(GRANULARITY_MS)
        dbs = list(self.config.databases)
        try:
            with h.prepared.conn.cursor() as cur:
                tables = self._base_tables(cur, dbs)
                fingerprint = sql_fingerprint(cur, [(d, t, d) for d, t in tables])
                cur.execute("SELECT VERSION()")
                server_version = str(cur.fetchone()[0])
                cur.execute("COMMIT")
        except pymysql.err.MySQLError as exc:
            raise CaptureError(
                f"store {self.name}: the fingerprint on the window's snapshot failed: {exc}; no "
                "restore point was registered"
            ) from exc
        self.archive_binlogs(CaptureError)
        span = self._archive().span(at)
        return StoreCapture(
            name=self.name,
            kind=self.kind,
            method=METHOD,
            fingerprint=fingerprint,
            fingerprint_method=self.fingerprint_method,
            tool_versions={"server": server_version},
            snapshot_established_at=h.opened_at,
            pitr_timestamp=at,
            details=MysqlBinlogDetails(
                databases=dbs,
                archive_dir=str(self.config.archive_dir),
                server_version=server_version,
                base_dump=span.base.path.name if span else None,
            ),
        )

    def _release(self, h: BinlogHandle) -> None:
        """The snapshot's connection goes with h.prepared."""

    # --- restore ------------------------------------------------------------------------------

    def _details(self, capture: StoreCapture) -> MysqlBinlogDetails:
        if capture.method != METHOD:
            raise RestoreError(
                f"store {self.name}: the point holds a {capture.method} capture, not a "
                "point-in-time one; restore it with a target whose store has no `pitr` setting"
            )
        return self.captured_details(capture)

    def restorable_window(self, capture: StoreCapture) -> tuple[datetime, datetime] | None:
        span = self._archive(self._details(capture).archive_dir).span(capture.pitr_timestamp)
        if span is None:
            now = datetime.now(UTC)
            return (now, now)
        return (span.oldest, span.newest)

    def check_restorable(self, capture: StoreCapture) -> None:
        details = self._details(capture)
        at = capture.pitr_timestamp
        archive = self._archive(details.archive_dir)
        span = archive.span(at)
        if span is None:
            raise PitrWindowError(
                f"store {self.name}: {archive.base_dir} holds no base dump, so no point can be "
                "restored; a backup's preflight takes one (check the archive directory)"
            )
        if at is not None and span.missing and span.newest < at:
            raise PitrWindowError(
                f"store {self.name}: binary log {span.missing} is missing from "
                f"{archive.binlog_dir} (purged from the server before pausepoint fetched it?), "
                f"so replay from base dump {span.base.path.name} stops at "
                f"{span.newest.isoformat()}, before the restore point's time {at.isoformat()}; "
                "nothing was changed. Put the file back from a copy, or pick a point before "
                "that time or one after a newer base dump; keep binary logs on the server "
                "(binlog_expire_logs_seconds) longer than the time between backups"
            )
        super().check_restorable(capture)

    def check_restore_target(self, capture: StoreCapture, replace: bool) -> None:
        self._details(capture)
        super().check_restore_target(capture, replace)

    def restore(
        self,
        capture: StoreCapture,
        source_dir: Path,
        replace: bool,
        *,
        verified: bool = False,
        journal: StoreJournal | None = None,
    ) -> None:
        details = self._details(capture)
        at = capture.pitr_timestamp
        assert at is not None
        self.check_restorable(capture)
        self.check_restore_target(capture, replace)
        archive = self._archive(details.archive_dir)
        span = archive.span(at)
        assert span is not None
        captured = list(details.databases)
        targets = ", ".join(self._target(d) for d in captured)
        if replace:
            with self._connect(RestoreError) as conn, conn.cursor() as cur:
                for db in captured:
                    cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(self._target(db))}")
        mapping = {d: self._target(d) for d in captured if self._target(d) != d}
        client = self._client_tool()
        binlog = self._binlog_tool()
        stop = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        files = [str(archive.binlog_dir / f) for f in span.files]
        options, password = self._option_file()
        with options:
            argv = [str(client), *self._tool_args(options), "--default-character-set=utf8mb4"]
            tool = load_dump(argv, span.base.dump_file, mapping, options, password)
            if tool.proc.returncode != 0:
                raise RestoreError(
                    tool.failure(
                        f"store {self.name}: loading base dump {span.base.path.name} into "
                        f"{targets} at {self._where} failed; run again with --replace"
                    )
                )
            if not files:
                return
            for db in captured:
                replay = [
                    str(binlog), f"--start-position={span.base.pos}", f"--stop-datetime={stop}",
                    f"--database={db}",
                    *([f"--rewrite-db={db}->{mapping[db]}"] if db in mapping else []),
                    *files,
                ]  # fmt: skip
                self._pipe(replay, argv, options.fd, password, db)

    def _pipe(
        self, replay: list[str], client: list[str], fd: int, password: str | None, db: str
    ) -> None:
        """``replay | client``, both checked."""
        src = subprocess.Popen(
            replay, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "TZ": "UTC"}
        )
        try:
            dst = subprocess.run(
                client, stdin=src.stdout, capture_output=True, pass_fds=[fd], check=False
            )
        finally:
            assert src.stdout is not None
            src.stdout.close()
            src_err = src.stderr.read() if src.stderr else b""
            src.wait()
        if src.returncode != 0 or dst.returncode != 0:
            why = (src_err + dst.stderr).decode(errors="replace").strip()[-600:]
            raise RestoreError(
                f"store {self.name}: replaying the binary logs of {db} into "
                f"{self._target(db)} at {self._where} failed: {redact(why, [password or ''])}; "
                "the target is partly restored: run again with --replace"
            )

    # --- verification -------------------------------------------------------------------------

    def fingerprint(
        self, tables: list[str] | None = None, method: str | None = None
    ) -> Fingerprint:
        if method not in (None, FINGERPRINT_SQL):
            raise RestoreError(f"store {self.name}: no fingerprint method {method!r}")
        live = {self._target(d): d for d in self.config.databases}
        with self._connect(RestoreError) as conn, conn.cursor() as cur:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            found = sql_fingerprint(
                cur, [(d, t, live[d]) for d, t in self._base_tables(cur, list(live))]
            )
            cur.execute("COMMIT")
        if tables is not None:
            wanted = set(tables)
            found = {k: v for k, v in found.items() if k in wanted}
        return found
