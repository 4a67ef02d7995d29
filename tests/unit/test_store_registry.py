"""The store registry: the one place a kind is declared, and what the rest asks of it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pausepoint.backup import BackupRun, StoreSlot
from pausepoint.catalog.manifest import parse_manifest
from pausepoint.clock import ClockBound
from pausepoint.drill import check_scratch_target
from pausepoint.errors import (
    CatalogError,
    ConfigError,
    PitrWindowError,
    RestoreError,
    RestoreTargetError,
    ScratchTargetError,
    StoreKindError,
)
from pausepoint.restore import RestoreTarget, place_stores, refuse_unsupported_modes
from pausepoint.site import parse_site
from pausepoint.stores import open_store, registry
from pausepoint.stores.base import CaptureContext, CaptureWindow, StoreCapture
from pausepoint.stores.mysql_config import MysqlCaptureDetails
from pausepoint.stores.postgres_config import PostgresCaptureDetails, PostgresConfig
from tests.support.pitr_kind import ENTRY, SqliteLogConfig, SqliteLogDetails, SqliteLogStore

PG = {"kind": "postgres", "name": "pg", "user": "u", "database": "d"}


def site_with(*stores: dict, **extra) -> object:
    return parse_site(
        {
            "site": "demo",
            "catalog": {"path": "/tmp/catalog"},
            "ledger": {"targets": {"static": ["127.0.0.1:50053"]}, "stores": list(stores)},
            **extra,
        }
    )


@pytest.fixture
def pitr_kind():
    with registry.registered(ENTRY):
        yield ENTRY


def test_the_built_in_kinds_are_postgres_and_mysql_in_that_order():
    assert registry.names()[:2] == ["postgres", "mysql"]
    assert registry.store_class("postgres").__name__ == "PostgresStore"
    assert registry.store_class("mysql").__name__ == "MysqlStore"
    assert registry.get("postgres").capabilities.transactional
    assert registry.get("postgres").capabilities.capture == "snapshot"


def test_a_kind_registered_by_a_test_is_in_the_site_model_and_gone_after(tmp_path):
    store = {"kind": "sqlitelog", "name": "lite", "path": str(tmp_path / "x.db")}
    with registry.registered(ENTRY):
        site = site_with(PG, store)
        cfg = site.ledger.stores[1]
        assert isinstance(cfg, SqliteLogConfig) and cfg.path == str(tmp_path / "x.db")
        # the site dumps and reads back with each kind's own fields
        assert parse_site(site.model_dump(mode="json")) == site
        known = "'postgres', 'mysql', 'cassandra', 'sqlitelog'"
        with pytest.raises(ConfigError, match=f"use one of {known}"):
            site_with({"kind": "oracle", "name": "o"})
        with pytest.raises(
            ConfigError,
            match="a store needs 'kind:', one of: postgres, mysql, cassandra, sqlitelog",
        ):
            site_with({"name": "o"})
        with pytest.raises(ConfigError, match=r"ledger.stores.0.sqlitelog.path: is required"):
            site_with({"kind": "sqlitelog", "name": "lite"})
        assert isinstance(open_store(cfg, None), SqliteLogStore)
    with pytest.raises(
        ConfigError,
        match=r"kind 'sqlitelog' is not known; use one of 'postgres', 'mysql', 'cassandra'$",
    ):
        site_with(store)


def test_a_kind_is_registered_once_and_must_match_its_config_model():
    with registry.registered(ENTRY), pytest.raises(StoreKindError, match="registered already"):
        registry.register(ENTRY)
    with pytest.raises(StoreKindError, match="its config model says kind 'postgres'"):
        registry.StoreKind(kind="other", config=PostgresConfig, store="m:C", locations=len)
    with pytest.raises(StoreKindError, match="needs pitr_granularity_ms"):
        registry.Capabilities(capture="pitr")


def test_a_site_in_one_non_transactional_store_still_needs_a_pause(pitr_kind, tmp_path):
    assert not site_with(PG).needs_pause()
    lite = {"kind": "sqlitelog", "name": "lite", "path": str(tmp_path / "x.db")}
    assert site_with(lite).needs_pause()


def test_the_hold_derives_from_the_pitr_kinds_granularity(pitr_kind, tmp_path):
    lite = {"kind": "sqlitelog", "name": "lite", "path": str(tmp_path / "x.db")}
    site = site_with(PG, lite)
    run = BackupRun(site=site, catalog=None, client=None, resolver=None)  # type: ignore[arg-type]
    run.slots = [StoreSlot("ledger", open_store(cfg, None)) for _, cfg in site.stores()]
    run.clock = ClockBound(0.004, 0.001, "127.0.0.1:123", datetime.now(UTC))
    assert run.hold_ms() == 2 * 5 + 10 + 1  # ceil(2 E + G) + 1, E = 5 ms, G = 10 ms
    snapshot_only = BackupRun(site=site_with(PG), catalog=None, client=None, resolver=None)  # type: ignore[arg-type]
    snapshot_only.slots = [StoreSlot("ledger", open_store(site_with(PG).ledger.stores[0], None))]
    snapshot_only.clock = run.clock
    assert snapshot_only.hold_ms() == 0


@pytest.mark.parametrize(
    ("mid", "granularity", "expected"),
    [
        ("2026-01-01T00:00:00.014999+00:00", 10, "2026-01-01T00:00:00.010000+00:00"),
        ("2026-01-01T00:00:00.015000+00:00", 10, "2026-01-01T00:00:00.020000+00:00"),
        ("2026-01-01T00:00:00.123456+00:00", 1000, "2026-01-01T00:00:00+00:00"),
        ("2026-01-01T00:00:00.123456+00:00", 0, "2026-01-01T00:00:00.123456+00:00"),
    ],
)
def test_the_point_time_is_the_windows_mid_time_rounded_to_the_step(mid, granularity, expected):
    ctx = CaptureContext.local(Path("/nonexistent"), store="s")
    with pytest.raises(Exception, match="mid-time is not known yet"):
        ctx.point_time(granularity)
    at = datetime.fromisoformat(mid)
    ctx.window = CaptureWindow(start=at, end=at, mid=at)
    assert ctx.point_time(granularity) == datetime.fromisoformat(expected)


def manifest(kind: str, details: dict) -> bytes:
    now = datetime.now(UTC).isoformat()
    return json.dumps(
        {
            "format": 1,
            "id": "20260101T000000Z-abcd",
            "site": "demo",
            "created_at": now,
            "pausepoint_version": "0",
            "window": {
                "start": now, "end": now, "mid": now, "hold_ms": 0, "drain_ms": 0,
                "unpause_ms": 0, "write_stall_ms": 0,
            },
            "components": {
                "ledger": {
                    "targets": [],
                    "stores": [{"name": "s", "kind": kind, "method": "m", "details": details}],
                }
            },
        }
    ).encode()  # fmt: skip


def test_capture_details_are_read_into_the_kinds_typed_model():
    pg = {"database": "d", "schemas": ["public"], "snapshot_id": "1-2", "jobs": 2,
          "dump_dir": "dump", "toc": "toc.list"}  # fmt: skip
    point = parse_manifest(manifest("postgres", pg), "m.json")
    details = point.store("s")[1].details
    assert isinstance(details, PostgresCaptureDetails) and details.schemas == ["public"]
    assert details["toc"] == "toc.list" and "toc" in details  # the dict's spelling still reads
    # the JSON is the same object as before: format 1 stays
    assert json.loads(point.model_dump_json())["components"]["ledger"]["stores"][0]["details"] == pg
    # a point of an earlier version (no toc; a mysql point with the former commit_guard)
    old = parse_manifest(manifest("postgres", {k: v for k, v in pg.items() if k != "toc"}), "m")
    assert old.store("s")[1].details.toc is None
    my = {"databases": ["a"], "dump_file": "dump.sql", "gzip_level": 0,
          "uncompressed_bytes": 5, "snapshot_signal": "x", "commit_guard": "stage"}  # fmt: skip
    details = parse_manifest(manifest("mysql", my), "m").store("s")[1].details
    assert isinstance(details, MysqlCaptureDetails) and details.databases == ["a"]
    with pytest.raises(CatalogError, match=r"details\.schemas"):
        parse_manifest(manifest("postgres", {**pg, "schemas": "public"}), "m.json")


def test_a_capture_of_another_kind_is_refused_by_the_restore_before_any_change():
    store = open_store(PostgresConfig(name="pg", user="u", database="d"), None)
    capture = StoreCapture(name="pg", kind="postgres", method="m")  # no details recorded
    with pytest.raises(RestoreError, match=r"do not fit the postgres store kind.*schemas"):
        store.captured_details(capture)


def test_a_pitr_point_outside_the_restorable_window_names_the_window(pitr_kind, tmp_path):
    log = tmp_path / "x.db.log"
    log.write_text(json.dumps({"ts_us": 1_800_000_000_000_000, "sql": "", "params": []}) + "\n")
    store = open_store(SqliteLogConfig(name="lite", path=str(tmp_path / "x.db")), None)
    details = SqliteLogDetails(log=str(log), entries=0, user_version=0)
    at = datetime(2026, 1, 1, tzinfo=UTC)  # before the log's oldest entry (2027-01-15)
    capture = StoreCapture(name="lite", kind="sqlitelog", method="pitr", pitr_timestamp=at,
                           details=details)  # fmt: skip
    with pytest.raises(
        PitrWindowError, match=r"2026-01-01T00:00:00\+00:00 is outside .* 2027-01-15"
    ):
        store.check_restorable(capture)
    # a snapshot kind has no window: nothing to refuse
    open_store(PostgresConfig(name="pg", user="u", database="d"), None).check_restorable(capture)


def test_a_kind_that_cannot_restore_in_place_is_refused_in_place(tmp_path):
    entry = registry.StoreKind(
        kind=ENTRY.kind,
        config=ENTRY.config,
        store=ENTRY.store,
        locations=ENTRY.locations,
        capabilities=registry.Capabilities(
            capture="pitr",
            pitr_granularity_ms=10,
            transactional=False,
            restore_modes=frozenset({"side_by_side"}),
        ),
        details=ENTRY.details,
    )
    with registry.registered(entry):
        lite = {"kind": "sqlitelog", "name": "lite", "path": str(tmp_path / "x.db")}
        site = site_with(lite)
        in_place = place_stores(site, RestoreTarget(), what="the restore target")
        with pytest.raises(RestoreTargetError, match=r"'lite' .* cannot be restored in place"):
            refuse_unsupported_modes(in_place)
        beside = RestoreTarget(stores={"lite": {"path": str(tmp_path / "y.db")}})
        refuse_unsupported_modes(place_stores(site, beside, what="the restore target"))


def test_locations_come_from_the_kinds_entry_for_restore_and_drill(pitr_kind, tmp_path):
    lite = {"kind": "sqlitelog", "name": "lite", "path": str(tmp_path / "x.db")}
    site = site_with(lite)
    # the scratch file is the live change log under another spelling: a write over the site
    spelt = str(tmp_path / "sub" / ".." / "x.db.log")
    (tmp_path / "sub").mkdir()
    with pytest.raises(ScratchTargetError, match="live database of store ledger/lite"):
        check_scratch_target(site, RestoreTarget(stores={"lite": {"path": spelt}}))
    places = place_stores(
        site, RestoreTarget(stores={"lite": {"path": spelt}}), what="the restore target"
    )
    assert places[0].in_place
    assert check_scratch_target(
        site, RestoreTarget(stores={"lite": {"path": str(tmp_path / "s.db")}})
    )
