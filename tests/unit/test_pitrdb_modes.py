"""The point-in-time modes of the built-in kinds (postgres ``pitr: wal``, mysql ``pitr: binlog``)
without servers: registry modes, the hold and the clock gate they bring, their archives' windows
read from files, readiness and its bounded wait, and the restore point's time in the report."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pausepoint.backup import BackupRun, StoreSlot
from pausepoint.catalog.manifest import (
    ClockBoundRecord,
    ComponentRecord,
    PauseWindowRecord,
    RestorePoint,
)
from pausepoint.clock import ClockBound, check_bound
from pausepoint.errors import (
    ClockSkewError,
    ConfigError,
    PitrNotYetRestorableError,
    PitrWindowError,
    StoreKindError,
)
from pausepoint.readiness import point_readiness, wait_restorable
from pausepoint.report import restore_point_markdown
from pausepoint.site import parse_site
from pausepoint.stores import open_store, registry
from pausepoint.stores.base import Store, StoreCapture
from pausepoint.stores.mysql.binlog import BinlogArchive, MysqlBinlogStore
from pausepoint.stores.mysql_config import MysqlBinlogDetails, MysqlConfig
from pausepoint.stores.postgres_config import PostgresConfig, PostgresWalDetails
from pausepoint.stores.postgres_wal import (
    BASE_META,
    PostgresWalStore,
    WalArchive,
    segment_name,
    segment_seq,
)

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
WAL = {
    "kind": "postgres",
    "name": "pg",
    "user": "u",
    "database": "d",
    "pitr": "wal",
    "archive_dir": "/srv/pp/wal-archive",
}
BINLOG = {
    "kind": "mysql",
    "name": "my",
    "user": "u",
    "databases": ["a"],
    "pitr": "binlog",
    "archive_dir": "/srv/pp/binlog-archive",
}


def site_with(*stores: dict, **extra):
    return parse_site(
        {
            "site": "demo",
            "catalog": {"path": "/tmp/catalog"},
            "ledger": {"targets": {"static": ["127.0.0.1:50053"]}, "stores": list(stores)},
            **extra,
        }
    )


# --- registry modes -----------------------------------------------------------------------


def test_a_config_setting_selects_the_kinds_mode_its_class_capabilities_and_details():
    wal, plain = PostgresConfig(**WAL), PostgresConfig(**{**WAL, "pitr": None})
    assert isinstance(open_store(wal, None), PostgresWalStore)
    assert type(open_store(plain, None)).__name__ == "PostgresStore"
    caps = registry.capabilities(wal)
    assert caps.capture == "pitr" and caps.pitr_granularity_ms == 1
    assert caps.restore_modes == frozenset({"side_by_side"})  # a new server, never in place
    assert registry.capabilities(plain).capture == "snapshot"
    binlog = MysqlConfig(**BINLOG)
    assert isinstance(open_store(binlog, None), MysqlBinlogStore)
    assert registry.capabilities(binlog).pitr_granularity_ms == 1000
    # a manifest's details are read back by the capture's method
    cap = StoreCapture.model_validate(
        {
            "name": "pg",
            "kind": "postgres",
            "method": "pitr-wal",
            "details": {"database": "d", "schemas": ["public"], "archive_dir": "/x"},
        }
    )
    assert isinstance(cap.details, PostgresWalDetails)
    cap = StoreCapture.model_validate(
        {
            "name": "my",
            "kind": "mysql",
            "method": "pitr-binlog",
            "details": {"databases": ["a"], "archive_dir": "/x"},
        }
    )
    assert isinstance(cap.details, MysqlBinlogDetails)


def test_pitr_settings_are_checked_in_the_site_file():
    with pytest.raises(ConfigError, match="pitr: wal needs archive_dir"):
        site_with({k: v for k, v in WAL.items() if k != "archive_dir"})
    with pytest.raises(ConfigError, match="archive_dir must be an absolute path"):
        site_with({**BINLOG, "archive_dir": "relative/dir"})
    with pytest.raises(ConfigError, match="pitr"):
        site_with({**WAL, "pitr": "binlog"})  # postgres has no binlog mode


def test_an_unknown_mode_is_a_store_kind_error():
    class Odd(PostgresConfig):
        def store_mode(self) -> str | None:
            return "snapshots-of-snapshots"

    with pytest.raises(StoreKindError, match="has no mode 'snapshots-of-snapshots'"):
        registry.get("postgres").mode(Odd(**{**WAL, "pitr": None}))


def test_a_site_in_one_pitr_store_still_pauses():
    assert site_with(WAL).needs_pause() and site_with(BINLOG).needs_pause()


# --- the hold and the gate ----------------------------------------------------------------


def run_for(site) -> BackupRun:
    run = BackupRun(site=site, catalog=None, client=None, resolver=None)  # type: ignore[arg-type]
    run.slots = [StoreSlot("ledger", open_store(cfg, None)) for _, cfg in site.stores()]
    return run


def test_the_hold_covers_the_clock_bound_twice_and_the_coarsest_step():
    run = run_for(site_with(WAL, BINLOG))
    run.clock = ClockBound(0.004, 0.001, "127.0.0.1:123", T0)
    assert run.hold_ms() == 2 * 5 + 1000 + 1
    run = run_for(site_with(WAL))
    run.clock = ClockBound(-0.004, 0.001, "127.0.0.1:123", T0)
    assert run.hold_ms() == 2 * 5 + 1 + 1


def test_a_bound_wider_than_max_error_ms_refuses_naming_bound_limit_hold_and_fix():
    run = run_for(site_with(WAL, BINLOG, clock={"max_error_ms": 200}))
    run.clock = ClockBound(0.150, 0.060, "ntp.example:123", T0)
    with pytest.raises(ClockSkewError) as err:
        run.hold_ms()
    msg = str(err.value)
    assert "clock error bound 210.0 ms" in msg and "ntp.example:123" in msg
    assert "clock.max_error_ms = 200 ms" in msg
    assert f"{2 * 210 + 1000 + 1} ms" in msg  # the hold it would take
    assert "raise clock.max_error_ms to at least 210" in msg and "NTP" in msg
    run.clock = ClockBound(0.150, 0.050, "ntp.example:123", T0)
    assert run.hold_ms() == 2 * 200 + 1000 + 1  # exactly the limit passes


def test_check_bound_is_silent_within_the_limit():
    check_bound(ClockBound(0.0, 0.5, "s", T0), 500, 1000)
    with pytest.raises(ClockSkewError):
        check_bound(ClockBound(0.0, 0.501, "s", T0), 500, 1000)


def test_a_snapshot_only_site_is_not_gated_by_the_bound():
    pg = {k: v for k, v in WAL.items() if k not in ("pitr", "archive_dir")}
    run = run_for(site_with(pg, clock={"max_error_ms": 1}))
    run.clock = ClockBound(5.0, 1.0, "s", T0)
    assert run.hold_ms() == 0


# --- the archives' windows, from files ------------------------------------------------------


def test_wal_segment_names_round_trip():
    assert segment_seq("000000010000000A000000FF") == (1, 0xA * 0x100 + 0xFF)
    assert segment_name(1, 0xA * 0x100 + 0xFF) == "000000010000000A000000FF"
    assert segment_name(2, 0x100) == "000000020000000100000000"
    assert segment_seq("000000010000000A000000FF.00000028.backup") is None


def wal_archive(root: Path, bases: list[tuple[datetime, int]], segments: list[int]) -> WalArchive:
    for i, (ready, start) in enumerate(bases):
        d = root / "base" / f"b{i}"
        d.mkdir(parents=True)
        (d / BASE_META).write_text(
            json.dumps({"ready_at": ready.isoformat(), "start_segment": segment_name(1, start)})
        )
    (root / "base" / ".b9.partial").mkdir(parents=True)  # unfinished: not a base
    (root / "wal").mkdir(parents=True)
    for s in segments:
        (root / "wal" / segment_name(1, s)).write_bytes(b"")
    return WalArchive(root, waldump=None)


def test_the_wal_window_starts_at_the_oldest_base_and_a_gap_is_named(tmp_path):
    archive = wal_archive(tmp_path, [(T0, 2), (T0 + timedelta(hours=1), 8)], [2, 3, 4, 6, 8, 9])
    span = archive.span(T0 + timedelta(minutes=30))
    assert span.base.path.name == "b0" and span.oldest == T0
    assert span.last_segment == segment_name(1, 4) and span.missing == segment_name(1, 5)
    later = archive.span(T0 + timedelta(hours=2))
    assert later.base.path.name == "b1" and later.missing is None
    assert later.last_segment == segment_name(1, 9)
    before = archive.span(T0 - timedelta(days=1))  # before every base: the oldest, refused
    assert before.base.path.name == "b0"


def test_the_binlog_window_ends_where_the_archive_is_complete(tmp_path):
    base = tmp_path / "base" / "d0"
    base.mkdir(parents=True)
    (base / "base.json").write_text(
        json.dumps({"ready_at": T0.isoformat(), "file": "binlog.000002", "pos": 300})
    )
    logs = tmp_path / "binlog"
    logs.mkdir()
    for n in (2, 3, 4):
        (logs / f"binlog.{n:06d}").write_bytes(b"")
    until = T0 + timedelta(minutes=5)
    (logs / "state.json").write_text(
        json.dumps({"complete_until": until.isoformat(), "last_file": "binlog.000004"})
    )
    span = BinlogArchive(tmp_path, binlog_tool=None).span(T0 + timedelta(minutes=1))
    assert span.files == ["binlog.000002", "binlog.000003", "binlog.000004"]
    assert span.missing is None and (span.oldest, span.newest) == (T0, until)
    (logs / "binlog.000003").unlink()  # purged before it was fetched
    (logs / "binlog.000005").write_bytes(b"")
    span = BinlogArchive(tmp_path, binlog_tool=None).span(T0 + timedelta(minutes=1))
    assert span.files == ["binlog.000002"] and span.missing == "binlog.000003"
    assert span.newest == T0  # nothing known past the gap: only the base's own time


def test_a_binlog_store_refuses_a_point_past_a_purged_file(tmp_path):
    test_the_binlog_window_ends_where_the_archive_is_complete(tmp_path)  # leaves the gap
    store = MysqlBinlogStore(MysqlConfig(**{**BINLOG, "archive_dir": str(tmp_path)}), None)
    capture = StoreCapture(
        name="my",
        kind="mysql",
        method="pitr-binlog",
        pitr_timestamp=T0 + timedelta(minutes=1),
        details={"databases": ["a"], "archive_dir": str(tmp_path)},
    )
    with pytest.raises(PitrWindowError, match=r"binary log binlog\.000003 is missing"):
        store.check_restorable(capture)


# --- readiness ----------------------------------------------------------------------------


def point_with(*captures: StoreCapture, mid: datetime = T0) -> RestorePoint:
    window = PauseWindowRecord(
        start=mid - timedelta(milliseconds=600),
        end=mid + timedelta(milliseconds=600),
        mid=mid,
        hold_ms=1011,
        drain_ms=1.0,
        unpause_ms=1.0,
        write_stall_ms=1203.0,
    )
    return RestorePoint(
        id="20261207T090000Z-abcd",
        site="demo",
        created_at=mid,
        pausepoint_version="0",
        window=window,
        clock=ClockBoundRecord(offset_s=0.004, uncertainty_s=0.001, server="s", measured_at=mid),
        components={"ledger": ComponentRecord(targets=[], stores=list(captures))},
    )


class _Window:
    """A store whose restorable window is given (what a provider would say)."""

    def __init__(self, name: str, oldest: datetime, newest: datetime):
        self.name, self.window = name, (oldest, newest)

    def restorable_window(self, capture):
        return self.window

    check_restorable = Store.check_restorable  # the protocol's own check


def test_readiness_says_not_yet_restorable_and_left_the_window():
    cap = StoreCapture(name="pg", kind="postgres", method="pitr-wal", pitr_timestamp=T0)
    snap = StoreCapture(name="other", kind="postgres", method="pg_dump-directory")
    point = point_with(cap, snap)
    ahead = {"pg": _Window("pg", T0 - timedelta(hours=1), T0 - timedelta(seconds=1))}
    assert point_readiness(point, ahead).label() == "not yet"
    inside = {"pg": _Window("pg", T0 - timedelta(hours=1), T0 + timedelta(seconds=1))}
    assert point_readiness(point, inside).label() == "yes"
    gone = {"pg": _Window("pg", T0 + timedelta(hours=1), T0 + timedelta(hours=2))}
    assert point_readiness(point, gone).label() == "no"
    assert point_readiness(point, {}).label() == "?"  # the store left the site file
    assert point_readiness(point_with(snap), {}).label() == "-"


def test_the_wait_for_a_point_not_yet_restorable_is_bounded_and_says_so():
    calls, slept = [], []

    def never() -> None:
        calls.append(1)
        raise PitrNotYetRestorableError("store pg: not restorable yet")

    with pytest.raises(PitrNotYetRestorableError, match=r"waited \d+ s for it, the limit"):
        wait_restorable(never, 0.05, poll_s=0.01, sleep=lambda s: slept.append(s) or None)
    assert len(calls) >= 2 and all(s <= 0.05 for s in slept)

    answers = iter([PitrNotYetRestorableError("not yet"), None])

    def soon() -> None:
        err = next(answers)
        if err:
            raise err

    assert wait_restorable(soon, 10, poll_s=0.0, sleep=lambda s: None) >= 0
    with pytest.raises(PitrNotYetRestorableError, match=r"^not yet$"):
        wait_restorable(lambda: (_ for _ in ()).throw(PitrNotYetRestorableError("not yet")), 0)


# --- the restore point's time in its artifact ----------------------------------------------


def test_the_restore_points_markdown_shows_the_time_its_bound_and_each_stores_step():
    wal = StoreCapture(name="pg", kind="postgres", method="pitr-wal", pitr_timestamp=T0)
    binlog = StoreCapture(
        name="my", kind="mysql", method="pitr-binlog", pitr_timestamp=T0 + timedelta(seconds=1)
    )
    md = restore_point_markdown(point_with(wal, binlog))
    assert f"| mid-time | {T0.isoformat()} |" in md
    assert "| clock error bound | ± 5.0 ms |" in md
    assert "| half the window | 600.0 ms (hold 1011 ms) |" in md
    assert f"| ledger/pg | {T0.isoformat()} | 1 ms | 595.0 ms |" in md
    assert "| ledger/my |" in md and "1000 ms | **OUTSIDE**" in md  # 1 s past a 0.6 s half
    snapshot = StoreCapture(name="s", kind="postgres", method="pg_dump-directory")
    assert "point in time" not in restore_point_markdown(point_with(snapshot))


def test_the_pitr_example_site_and_restore_target_are_valid():
    from pausepoint.restore import load_target
    from pausepoint.site import load_site

    root = Path(__file__).resolve().parents[2] / "deployments" / "pitr"
    site = load_site(root / "site.yaml")
    modes = {cfg.name: cfg.store_mode() for _, cfg in site.stores()}
    assert modes == {"ledger-pg": "wal", "ledger-my": "binlog"}
    target = load_target(root / "restore-target.yaml")
    assert set(target.stores) == set(modes)
    for _, cfg in site.stores():
        assert cfg.retarget(target.stores[cfg.name]).store_mode() == modes[cfg.name]
