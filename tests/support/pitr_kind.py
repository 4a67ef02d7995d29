"""A small point-in-time-recovery store kind, for tests only (never shipped): it proves that the
store protocol's PITR parts work through the real backup and restore flows.

The "provider" is a SQLite database whose every write is also appended, with its time, to a
change log (``LoggedDb.execute``). Like a cloud database's PITR:

- a capture copies nothing: it records the point's time (the pause window's mid-time, rounded
  to GRANULARITY_MS) and how many log entries lie at or before it;
- a restore builds a NEW database by replaying the log up to that time, in batches of ``batch``
  entries, recording the last offset applied in the restore journal after each batch (a
  restore that dies resumes from there); the database appears under its name only when done;
- the restorable window is [oldest log entry, now]: entries dropped from the log's head (a
  provider's retention) make older points unrestorable;
- ``PRAGMA user_version`` stands for the settings a provider's restore resets: the replay does
  not carry it, ``reapply_settings`` writes back the value captured.

Register it for a test with ``registry.registered(ENTRY)`` (fixture ``pitr_kind``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from pausepoint.errors import CaptureError, RestoreError, StoreCheckError, TargetNotEmptyError
from pausepoint.locations import THIS_MACHINE, Location
from pausepoint.stores._common import fold_row_hashes, verify_artifacts
from pausepoint.stores.base import (
    CaptureDetails,
    CaptureHandle,
    Fingerprint,
    PreparedCapture,
    ProgressFn,
    Store,
    StoreCapture,
    StoreConfigBase,
    StoreJournal,
    TableFingerprint,
)
from pausepoint.stores.registry import Capabilities, StoreKind

KIND = "sqlitelog"
GRANULARITY_MS = 10
REPLAY = "replay"  # the journal step of the replay; data: {"offset": entries applied}


class SqliteLogConfig(StoreConfigBase):
    kind: Literal["sqlitelog"] = "sqlitelog"
    path: str = Field(description="the database file")
    log: str | None = Field(None, description="its change log (JSON lines); default <path>.log")
    batch: int = Field(3, ge=1, description="log entries a restore applies per step")
    # Test knob: the restore raises after this many batches (a crash after the step is saved).
    crash_after_batches: int | None = None

    @property
    def log_path(self) -> Path:
        return Path(self.log or f"{self.path}.log")


class SqliteLogDetails(CaptureDetails):
    log: str  # the source's change log: a restore replays it
    entries: int  # log entries at or before the point's time
    user_version: int  # the setting a restore resets


def _us(at: datetime) -> int:
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // _US


_US = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class LoggedDb:
    """The application side: every write goes to the database and, timestamped, to the log."""

    def __init__(self, path: Path, log: Path | None = None):
        self.path, self.log = path, log or Path(f"{path}.log")

    def execute(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> None:
        with sqlite3.connect(self.path) as conn:
            conn.execute(sql, params)
        entry = {"ts_us": time.time_ns() // 1000, "sql": sql, "params": list(params)}
        with open(self.log, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def set_user_version(self, value: int) -> None:
        """A setting, not data: never in the change log."""
        with sqlite3.connect(self.path) as conn:
            conn.execute(f"PRAGMA user_version = {int(value)}")

    def drop_log_head(self, keep_from_us: int) -> None:
        """Retention: forget log entries older than ``keep_from_us``."""
        kept = [e for e in read_log(self.log) if e["ts_us"] >= keep_from_us]
        self.log.write_text("".join(json.dumps(e) + "\n" for e in kept))


def rows_of(path: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute(_TABLES)]
        return {t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables}


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"


def _fingerprint(conn: sqlite3.Connection, tables: list[str] | None = None) -> Fingerprint:
    out: Fingerprint = {}
    for (table,) in conn.execute(_TABLES).fetchall():
        if tables is not None and table not in tables:
            continue
        rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
        total = sum(
            int.from_bytes(hashlib.sha256(repr(tuple(r)).encode()).digest()[-8:]) for r in rows
        )
        out[table] = TableFingerprint(rows=len(rows), hash=fold_row_hashes(total))
    return out


class SqliteLogStore(Store[SqliteLogConfig]):
    kind = KIND
    fingerprint_method = "sqlitelog-rows-v1"
    prepared_type = PreparedCapture
    handle_type = CaptureHandle

    @property
    def _db(self) -> Path:
        return Path(self.config.path)

    def check(self) -> dict[str, Any]:
        if not self.config.log_path.is_file():
            raise StoreCheckError(f"store {self.name}: change log {self.config.log_path} missing")
        return {"log_entries": len(read_log(self.config.log_path))}

    # --- capture: nothing to establish; the point's time is the window's mid-time --------------

    def _open(self, prepared: PreparedCapture) -> CaptureHandle:
        return CaptureHandle(ctx=prepared.ctx, prepared=prepared, opened_at=datetime.now(UTC))

    def _finish(self, h: CaptureHandle, progress: ProgressFn | None) -> StoreCapture:
        at = h.ctx.point_time(GRANULARITY_MS)
        entries = [e for e in read_log(self.config.log_path) if e["ts_us"] <= _us(at)]
        with sqlite3.connect(":memory:") as mem:
            for e in entries:
                mem.execute(e["sql"], e["params"])
            fingerprint = _fingerprint(mem)
        if not self._db.exists():
            raise CaptureError(f"store {self.name}: database {self._db} is missing")
        with h.ctx.sink.open("pitr.json") as out:
            out.write(json.dumps({"point": at.isoformat(), "entries": len(entries)}).encode())
            artifact = out.close()
        return StoreCapture(
            name=self.name,
            kind=self.kind,
            method="pitr",
            artifacts=[artifact],
            fingerprint=fingerprint,
            fingerprint_method=self.fingerprint_method,
            snapshot_established_at=h.opened_at,
            pitr_timestamp=at,
            details=SqliteLogDetails(
                log=str(self.config.log_path.resolve()),
                entries=len(entries),
                user_version=user_version(self._db),
            ),
        )

    # --- restore --------------------------------------------------------------------------------

    def restorable_window(self, capture: StoreCapture) -> tuple[datetime, datetime] | None:
        # The SOURCE's log (the provider's backups of the captured database), not the target's.
        entries = read_log(Path(self.captured_details(capture).log))
        now = datetime.now(UTC)
        if not entries:
            return (now, now)
        return (datetime(1970, 1, 1, tzinfo=UTC) + entries[0]["ts_us"] * _US, now)

    def check_restore_target(self, capture: StoreCapture, replace: bool) -> None:
        if self._db.exists() and rows_of(self._db) and not replace:
            raise TargetNotEmptyError(
                f"store {self.name}: database {self._db} is not empty; pass --replace"
            )

    def _batches(self, entries: list[dict], start: int) -> Iterator[tuple[int, list[dict]]]:
        for i in range(start, len(entries), self.config.batch):
            yield i, entries[i : i + self.config.batch]

    def restore(
        self,
        capture: StoreCapture,
        source_dir: Path,
        replace: bool,
        *,
        verified: bool = False,
        journal: StoreJournal | None = None,
    ) -> None:
        verify_artifacts(source_dir, capture.artifacts, store=self.name, checksums=not verified)
        details: SqliteLogDetails = self.captured_details(capture)
        entries = read_log(Path(details.log))[: details.entries]
        partial = Path(f"{self._db}.partial")
        start = 0
        if journal is not None and journal.step == REPLAY:
            start = int(journal.data["offset"])
        elif partial.exists():
            partial.unlink()  # a partial build without a journal: start over
        trace = Path(f"{self._db}.trace")  # which batches each run applied (for the tests)
        done = 0
        with sqlite3.connect(partial) as conn:
            for i, batch in self._batches(entries, start):
                for e in batch:
                    conn.execute(e["sql"], e["params"])
                conn.commit()
                with open(trace, "a") as f:
                    f.write(f"{i}-{i + len(batch)}\n")
                if journal is not None:
                    journal.record(REPLAY, {"offset": i + len(batch)})
                done += 1
                if self.config.crash_after_batches == done:
                    raise RuntimeError(f"store {self.name}: simulated crash after {done} batches")
        if self._db.exists():
            if not replace and rows_of(self._db):
                raise RestoreError(f"store {self.name}: {self._db} filled meanwhile")
            self._db.unlink()
        os.replace(partial, self._db)

    def reapply_settings(self, capture: StoreCapture) -> None:
        details: SqliteLogDetails = self.captured_details(capture)
        with sqlite3.connect(self._db) as conn:
            conn.execute(f"PRAGMA user_version = {int(details.user_version)}")

    def restored_to(self) -> dict[str, str]:
        """Where the restore wrote (as a provider's restore names its new endpoint)."""
        return {"database": str(self._db)}

    def fingerprint(
        self, tables: list[str] | None = None, method: str | None = None
    ) -> Fingerprint:
        with sqlite3.connect(self._db) as conn:
            return _fingerprint(conn, tables)


def _locations(
    cfg: SqliteLogConfig, *, as_target: bool, where: str | None = None, resolve: Any = None
) -> frozenset[Location]:
    """The database file (and, live, its change log): a restore writes the file only."""
    paths = [Path(cfg.path)] if as_target else [Path(cfg.path), cfg.log_path]
    return frozenset(
        Location(f"{THIS_MACHINE}:files", os.path.realpath(p).casefold(), str(p)) for p in paths
    )


ENTRY = StoreKind(
    kind=KIND,
    config=SqliteLogConfig,
    store="tests.support.pitr_kind:SqliteLogStore",
    locations=_locations,
    capabilities=Capabilities(
        capture="pitr", pitr_granularity_ms=GRANULARITY_MS, transactional=False
    ),
    details=SqliteLogDetails,
)
