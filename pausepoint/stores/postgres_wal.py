"""PostgreSQL with ``pitr: wal``: point-in-time recovery from base backups and archived WAL.

Nothing is copied per backup. The server archives every WAL segment into
``<archive_dir>/wal`` itself (``archive_mode = on``, an ``archive_command`` that copies there:
docs/stores.md); pausepoint keeps base backups (``pg_basebackup``) in ``<archive_dir>/base``:

- preflight (``check``) verifies the archiving settings and that the archiver is not failing,
  and takes a base backup when none is younger than ``base_backup_max_age_s``;
- inside the pause window ``open_capture`` exports a snapshot (as the snapshot kind does), so
  that after the unpause the fingerprint is computed on exactly the paused state; then a
  commit record is written (an xid is assigned and committed: no data changes) and the WAL
  segment is switched, so the archive soon holds a commit later than the point;
- the point's time is the pause window's mid-time (the WAL's timestamps are microseconds);
- the restorable window runs from the oldest base backup's end to the newest commit found in
  the WAL archived without a gap after the base backup the point replays from;
- a restore copies that base backup into ``restore_dir`` (a NEW server directory), sets
  ``restore_command``, ``recovery_target_time`` = the point's time and
  ``recovery_target_action = promote``, starts the server on the target's host:port and waits
  until it has promoted. The restored server keeps running; the operator points ScalarDB at it.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from pausepoint.errors import (
    CaptureError,
    PitrWindowError,
    RestoreError,
    StoreCheckError,
    TargetNotEmptyError,
)
from pausepoint.stores.base import ProgressFn, StoreCapture, StoreJournal
from pausepoint.stores.postgres import PostgresCaptureHandle, PostgresStore
from pausepoint.stores.postgres_config import PostgresWalDetails

log = logging.getLogger(__name__)

METHOD = "pitr-wal"
GRANULARITY_MS = 1  # commit timestamps are microseconds
SEGMENTS_PER_XLOGID = 0x100  # 16 MB segments (the default wal_segment_size)
_SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
_COMMIT = re.compile(r"desc: (?:COMMIT|ABORT) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC")
_LABEL_START = re.compile(r"^START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)", re.M)
BASE_META = "pausepoint-base.json"
RECOVERY_LOG = "pausepoint-recovery.log"
RESTORED_MARK = "pausepoint-restored.json"  # only such a directory is ever replaced


def segment_seq(name: str) -> tuple[int, int] | None:
    """(timeline, sequence number) of a WAL segment file name; None for other files."""
    m = _SEGMENT.match(name)
    if not m:
        return None
    return int(m[1], 16), int(m[2], 16) * SEGMENTS_PER_XLOGID + int(m[3], 16)


def segment_name(timeline: int, seq: int) -> str:
    return f"{timeline:08X}{seq // SEGMENTS_PER_XLOGID:08X}{seq % SEGMENTS_PER_XLOGID:08X}"


@dataclass(frozen=True)
class BaseBackup:
    path: Path
    ready_at: datetime  # server time after pg_basebackup ended: any later time is reachable
    start_segment: str

    @property
    def timeline(self) -> int:
        return segment_seq(self.start_segment)[0]  # type: ignore[index]

    @property
    def start_seq(self) -> int:
        return segment_seq(self.start_segment)[1]  # type: ignore[index]


@dataclass(frozen=True)
class WalSpan:
    """What the archive can replay from one base backup."""

    oldest: datetime  # the oldest base backup's end
    newest: datetime  # the newest commit in the WAL archived after ``base`` without a gap
    base: BaseBackup
    last_segment: str | None  # the last segment of the gap-free run
    missing: str | None  # the first segment missing after it, when later ones exist


class WalArchive:
    """``<archive_dir>``: ``base/<stamp>/`` (plain base backups) and ``wal/`` (segments)."""

    def __init__(self, root: Path, waldump: Path | None):
        self.root = root
        self.waldump = waldump
        self._commit_cache: dict[str, datetime | None] = {}

    @property
    def wal_dir(self) -> Path:
        return self.root / "wal"

    @property
    def base_dir(self) -> Path:
        return self.root / "base"

    def bases(self) -> list[BaseBackup]:
        out = []
        if not self.base_dir.is_dir():
            return out
        for d in sorted(self.base_dir.iterdir()):
            meta = d / BASE_META
            if not meta.is_file():  # unfinished (.partial) or not ours
                continue
            data = json.loads(meta.read_text())
            out.append(
                BaseBackup(d, datetime.fromisoformat(data["ready_at"]), data["start_segment"])
            )
        return sorted(out, key=lambda b: b.ready_at)

    def segments(self, timeline: int) -> set[int]:
        if not self.wal_dir.is_dir():
            return set()
        found = set()
        for f in os.listdir(self.wal_dir):
            parsed = segment_seq(f)
            if parsed is not None and parsed[0] == timeline:
                found.add(parsed[1])
        return found

    def _last_commit(self, name: str) -> datetime | None:
        """The newest commit (or abort) timestamp in one archived segment (pg_waldump)."""
        if name in self._commit_cache:
            return self._commit_cache[name]
        if self.waldump is None:
            return None
        r = subprocess.run(
            [str(self.waldump), f"--path={self.wal_dir}", name, name],
            capture_output=True,
            text=True,
            env={**os.environ, "TZ": "UTC"},
            timeout=120,
            check=False,
        )
        # pg_waldump ends with an error at the zeroed tail of a switched segment: the records
        # before it are printed all the same.
        times = [_parse_ts(m) for m in _COMMIT.findall(r.stdout)]
        found = max(times) if times else None
        self._commit_cache[name] = found
        return found

    def span(self, at: datetime | None) -> WalSpan | None:
        """The span of times reachable from the base backup a point at ``at`` replays from
        (the newest that ended at or before it; the oldest when none did). None: no base."""
        bases = self.bases()
        if not bases:
            return None
        fit = [b for b in bases if at is None or b.ready_at <= at]
        base = fit[-1] if fit else bases[0]
        have = self.segments(base.timeline)
        seq = base.start_seq
        last = None
        while seq in have:
            last, seq = seq, seq + 1
        missing = segment_name(base.timeline, seq) if any(s > seq for s in have) else None
        newest = base.ready_at
        if last is not None:
            # Newest segment first: usually the last one holds a commit (the capture wrote one).
            for s in range(last, max(base.start_seq, last - 64) - 1, -1):
                found = self._last_commit(segment_name(base.timeline, s))
                if found is not None:
                    newest = max(newest, found)
                    break
        return WalSpan(
            oldest=bases[0].ready_at,
            newest=newest,
            base=base,
            last_segment=segment_name(base.timeline, last) if last is not None else None,
            missing=missing,
        )


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _os_user(name: str | None) -> dict[str, Any]:
    """Popen arguments to run as ``name`` (or, as root without a name, refuse)."""
    if name is None:
        if os.geteuid() == 0:
            raise RestoreError(
                "PostgreSQL refuses to run as root and pausepoint runs as root: set os_user in "
                "the restore target (the OS user that owns restore_dir and runs the restored "
                "server, e.g. postgres)"
            )
        return {}
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise RestoreError(
            f"os_user {name!r} of the restore target is not a user on this host; create it or "
            "name another (e.g. postgres)"
        ) from None
    if pw.pw_uid == os.geteuid():
        return {}
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def _chown_tree(path: Path, user: str | None) -> None:
    if user is None or os.geteuid() != 0:
        return
    pw = pwd.getpwnam(user)
    for dirpath, _dirs, files in os.walk(path):
        os.chown(dirpath, pw.pw_uid, pw.pw_gid)
        for f in files:
            os.chown(os.path.join(dirpath, f), pw.pw_uid, pw.pw_gid, follow_symlinks=False)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class PostgresWalStore(PostgresStore):
    """``postgres`` with ``pitr: wal`` (registry mode ``wal``)."""

    # --- the archive -------------------------------------------------------------------------

    def _archive(self, root: str | None = None) -> WalArchive:
        root = root or self.config.archive_dir
        assert root is not None  # the config model requires it with pitr: wal
        try:
            waldump: Path | None = self._tool("pg_waldump")
        except Exception:  # no pg_waldump: the window is then the base backups alone
            waldump = None
        return WalArchive(Path(root), waldump)

    def take_base_backup(self) -> BaseBackup:
        """pg_basebackup (plain format, the WAL it needs fetched into it) into
        ``<archive_dir>/base/<UTC stamp>``; appears under its name only when complete."""
        archive = self._archive()
        archive.base_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        final = archive.base_dir / stamp
        partial = archive.base_dir / f".{stamp}.partial"
        env = {**os.environ, **self._env()}
        r = subprocess.run(
            [
                str(self._tool("pg_basebackup")), *self._conn_args(), "-D", str(partial),
                "--format=plain", "--wal-method=fetch", "--checkpoint=fast",
                "--label=pausepoint",
            ],
            capture_output=True, text=True, env=env, timeout=24 * 3600, check=False,
        )  # fmt: skip
        if r.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise StoreCheckError(
                f"store {self.name}: pg_basebackup from {self._where} failed: "
                f"{r.stderr.strip()[-800:]}; user {self.config.user!r} needs the REPLICATION "
                "attribute and pg_hba.conf must allow it a `replication` connection"
            )
        label = (partial / "backup_label").read_text()
        m = _LABEL_START.search(label)
        if not m:
            raise StoreCheckError(f"store {self.name}: base backup without a start WAL segment")
        with self._connect(StoreCheckError) as conn:
            ready = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
        (partial / BASE_META).write_text(
            json.dumps({"ready_at": ready.astimezone(UTC).isoformat(), "start_segment": m[1]})
        )
        partial.rename(final)
        return BaseBackup(final, ready.astimezone(UTC), m[1])

    # --- preflight ----------------------------------------------------------------------------

    def check(self) -> dict[str, Any]:
        for tool in ("pg_basebackup", "pg_waldump"):
            self._tool(tool)
        archive = self._archive()
        with self._connect(StoreCheckError) as conn:
            settings = dict(
                conn.execute(  # type: ignore[arg-type]
                    "SELECT name, setting FROM pg_settings WHERE name IN "
                    "('archive_mode', 'archive_command', 'wal_level', 'server_version_num', "
                    "'wal_segment_size')"
                ).fetchall()
            )
            archiver = conn.execute(
                "SELECT last_archived_wal, last_archived_time, last_failed_wal, "
                "last_failed_time FROM pg_stat_archiver"
            ).fetchone()
            schemas = self._schemas(conn, StoreCheckError)
        problems = []
        if settings.get("archive_mode") not in ("on", "always"):
            problems.append(f"archive_mode is {settings.get('archive_mode')!r}, not on")
        if not settings.get("archive_command"):
            problems.append("archive_command is empty")
        if settings.get("wal_level") not in ("replica", "logical"):
            problems.append(f"wal_level is {settings.get('wal_level')!r}, not replica")
        if settings.get("wal_segment_size") not in (None, str(16 * 1024 * 1024)):
            problems.append("wal_segment_size is not the default 16 MB")
        if problems:
            raise StoreCheckError(
                f"store {self.name}: the server at {self._where} does not archive its WAL as "
                f"pitr: wal needs: {'; '.join(problems)}. Set archive_mode = on, wal_level = "
                f"replica and an archive_command that copies %p to {archive.wal_dir}/%f "
                "(docs/stores.md), then restart the server"
            )
        assert archiver is not None
        last_wal, last_ok, failed_wal, failed_at = archiver
        if failed_at is not None and (last_ok is None or failed_at > last_ok):
            raise StoreCheckError(
                f"store {self.name}: the server at {self._where} fails to archive WAL segment "
                f"{failed_wal} (last failure {failed_at.isoformat()}): point-in-time recovery "
                "would stop there. Fix archive_command (the server's log says why it failed) "
                f"and check that {archive.wal_dir} is writable by the server's OS user"
            )
        if last_wal is not None and not (archive.wal_dir / last_wal).exists():
            raise StoreCheckError(
                f"store {self.name}: the server archived {last_wal} but it is not in "
                f"{archive.wal_dir}: archive_command copies elsewhere. Make it copy to "
                f"{archive.wal_dir}/%f, or set archive_dir to where it copies"
            )
        bases = archive.bases()
        took = None
        max_age = timedelta(seconds=self.config.base_backup_max_age_s)
        if not bases or datetime.now(UTC) - bases[-1].ready_at > max_age:
            took = self.take_base_backup()
        span = archive.span(None)
        return {
            "server_version_num": settings.get("server_version_num"),
            "schemas": schemas,
            "archive": str(archive.root),
            "base_backup_taken": str(took.path) if took else None,
            "restorable": [span.oldest.isoformat(), span.newest.isoformat()] if span else None,
        }

    # --- capture: the exported snapshot gives the fingerprint; nothing is copied -------------

    def _finish(self, h: PostgresCaptureHandle, progress: ProgressFn | None) -> StoreCapture:
        at = h.ctx.point_time(GRANULARITY_MS)
        try:
            schemas = self._schemas(h.conn, CaptureError)
            tables = self._tables(h.conn, schemas)
            server_version = h.conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            h.conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            fingerprint = self._fingerprint_on(h.conn, tables)
            h.conn.execute("COMMIT")
        except psycopg.Error as exc:
            raise CaptureError(
                f"store {self.name}: the fingerprint on the window's snapshot failed: {exc}; no "
                "restore point was registered"
            ) from exc
        self._mark_and_switch(h.conn)
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
            details=PostgresWalDetails(
                database=self.config.database,
                schemas=schemas,
                archive_dir=str(self.config.archive_dir),
                server_version=server_version,
                base_backup=span.base.path.name if span else None,
                base_ready_at=span.base.ready_at if span else None,
            ),
        )

    def _mark_and_switch(self, conn: psycopg.Connection) -> None:
        """A commit record after the point (an xid assigned and committed: no data changes;
        recovery to a time stops at the first commit after it), then a WAL switch so the
        segment holding it is archived now, not when it fills."""
        try:
            conn.execute("SELECT pg_current_xact_id()")
            conn.execute("SELECT pg_switch_wal()")
        except psycopg.Error as exc:
            # The point still becomes restorable once the segment is archived by itself.
            log.warning(
                "store %s: could not switch the WAL segment after the window (%s); the point "
                "becomes restorable when the server archives that segment (archive_timeout). "
                "Grant EXECUTE ON FUNCTION pg_switch_wal() to %s",
                self.name,
                str(exc).strip(),
                self.config.user,
            )

    # --- restore ------------------------------------------------------------------------------

    def _details(self, capture: StoreCapture) -> PostgresWalDetails:
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
            return (now, now)  # no base backup at all: nothing is restorable
        return (span.oldest, span.newest)

    def check_restorable(self, capture: StoreCapture) -> None:
        details = self._details(capture)
        at = capture.pitr_timestamp
        archive = self._archive(details.archive_dir)
        span = archive.span(at)
        if span is None:
            raise PitrWindowError(
                f"store {self.name}: {archive.base_dir} holds no base backup, so no point can "
                "be restored; a backup's preflight takes one (check the archive directory)"
            )
        if at is not None and span.missing and span.newest < at:
            raise PitrWindowError(
                f"store {self.name}: WAL segment {span.missing} is missing from "
                f"{archive.wal_dir}, so replay from base backup {span.base.path.name} stops at "
                f"{span.newest.isoformat()}, before the restore point's time {at.isoformat()}; "
                "nothing was changed. Put the segment back from a copy of the archive, or pick "
                "a point before that time or one after a newer base backup"
            )
        super().check_restorable(capture)

    def _restore_dir(self) -> Path:
        if not self.config.restore_dir:
            raise RestoreError(
                f"store {self.name}: a pitr: wal restore creates a new server: give restore_dir "
                "(its data directory) and host/port (where it listens) in the restore target"
            )
        return Path(self.config.restore_dir)

    def check_restore_target(self, capture: StoreCapture, replace: bool) -> None:
        self._details(capture)
        target = self._restore_dir()
        ours = (target / RESTORED_MARK).is_file()
        if target.exists() and any(target.iterdir()):
            if not ours:
                # Never delete a data directory pausepoint did not create (a live server's).
                raise TargetNotEmptyError(
                    f"store {self.name}: restore_dir {target} is not empty and was not made by "
                    "a pausepoint restore; give a new directory (even --replace deletes only "
                    "directories a restore created)"
                )
            if not replace:
                raise TargetNotEmptyError(
                    f"store {self.name}: restore_dir {target} holds an earlier restore; give a "
                    "new directory, or pass --replace to stop its server and delete it first"
                )
        if not (ours and replace) and _listening(self.config.host, self.config.port):
            raise TargetNotEmptyError(
                f"store {self.name}: something already listens on {self._where}, where the "
                "restored server is to listen; give the restore target a free port"
            )
        _os_user(self.config.os_user)

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
        target = self._restore_dir()
        run_as = _os_user(self.config.os_user)
        if target.exists():
            stop_restored(target)  # an earlier restore's server (check_restore_target allowed it)
            shutil.rmtree(target)
        shutil.copytree(span.base.path, target, symlinks=True)
        (target / BASE_META).unlink(missing_ok=True)
        (target / "postmaster.pid").unlink(missing_ok=True)
        settings = {
            "port": str(self.config.port),
            "listen_addresses": _quote(self.config.host),
            "unix_socket_directories": "''",
            # The restored server must never write into the source's archive.
            "archive_mode": "off",
            "archive_command": "''",
            "restore_command": _quote(f'cp "{archive.wal_dir}/%f" "%p"'),
            "recovery_target_time": _quote(at.isoformat()),
            "recovery_target_action": "promote",
            "recovery_target_timeline": "current",
        }
        with open(target / "postgresql.auto.conf", "a") as f:
            f.write("\n# pausepoint: point-in-time restore\n")
            f.writelines(f"{k} = {v}\n" for k, v in settings.items())
        (target / "recovery.signal").touch()
        (target / RESTORED_MARK).write_text(
            json.dumps({"store": self.name, "recovery_target_time": at.isoformat()})
        )
        _chown_tree(target, self.config.os_user)
        target.chmod(0o700)
        self._start_and_promote(target, run_as)

    def _start_and_promote(self, target: Path, run_as: dict[str, Any]) -> None:
        logfile = target / RECOVERY_LOG
        timeout = self.config.recovery_timeout_s
        r = subprocess.run(
            [
                str(self._tool("pg_ctl")), "-D", str(target), "-l", str(logfile), "-w",
                "-t", str(timeout), "start",
            ],
            capture_output=True, text=True, env={**os.environ, "LANG": "C.UTF-8"},
            timeout=timeout + 30, check=False, **run_as,
        )  # fmt: skip
        if r.returncode != 0:
            raise RestoreError(
                f"store {self.name}: the restored server in {target} did not start: "
                f"{_log_problem(logfile) or r.stderr.strip()[-500:]}; the directory is left "
                "for inspection: delete it (or pass --replace) before restoring again"
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self._connect(RestoreError) as conn:
                    if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:  # type: ignore[index]
                        return
            except RestoreError:
                if not (target / "postmaster.pid").exists():
                    raise RestoreError(
                        f"store {self.name}: recovery of {target} failed: "
                        f"{_log_problem(logfile) or 'see ' + str(logfile)}"
                    ) from None
            if time.monotonic() > deadline:
                raise RestoreError(
                    f"store {self.name}: recovery of {target} did not end within "
                    f"{timeout} s (recovery_timeout_s); the server is left running: see {logfile}"
                )
            time.sleep(0.2)


def _log_problem(logfile: Path) -> str:
    """The FATAL/PANIC lines of the recovery log (what an operator needs first)."""
    try:
        lines = logfile.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    bad = [ln for ln in lines if " FATAL: " in ln or " PANIC: " in ln]
    return " | ".join(bad[-3:])


def stop_restored(restore_dir: str | Path, timeout_s: float = 60) -> bool:
    """Stop a server a restore started (fast shutdown, by the pid in its postmaster.pid).
    Returns whether one ran. For tests and operators' scripts."""
    pid_file = Path(restore_dir) / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, 2)  # SIGINT: PostgreSQL's fast shutdown
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    return True


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped yet does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status
