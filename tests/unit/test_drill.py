"""Drill pieces without servers: the scratch target check, and drill records in the catalog."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pausepoint.catalog import Catalog, DrillRecord, LocalDriver, layout
from pausepoint.drill import (
    ScratchTargetError,
    check_scratch_target,
    drill_markdown,
    drill_record,
    drills_summary,
)
from pausepoint.errors import CatalogError, ConfigError, RestorePointNotFoundError
from pausepoint.restore import RestoreTarget
from tests.unit.test_catalog import SITE, T0, make_point
from tests.unit.test_locations import site  # the three stores of the site

STARTED = datetime(2026, 11, 28, 3, 0, 0, 123456, tzinfo=UTC)


SCRATCH = {
    "ledger-pg": {"database": "ledger_drill"},
    "ledger-my": {"database_map": {"scalar": "scalar_drill"}},
    "auditor-pg": {"database": "auditor_drill"},
}


def target(**stores) -> RestoreTarget:
    return RestoreTarget(replace=True, stores={**SCRATCH, **stores})


# --- the scratch target ------------------------------------------------------------------------


def test_scratch_target_of_other_databases_is_accepted_and_described():
    where = check_scratch_target(site(), target())
    assert where == {
        "ledger-pg": "127.0.0.1:5432/ledger_drill",
        "ledger-my": "127.0.0.1:3306/scalar_drill",
        "auditor-pg": "127.0.0.1:5432/auditor_drill",
    }


def test_same_database_name_on_another_server_is_scratch():
    # an address literal: no resolver is asked (a name that does not resolve is refused)
    where = check_scratch_target(site(), target(**{"ledger-pg": {"host": "198.51.100.7"}}))
    assert where["ledger-pg"] == "198.51.100.7:5432/ledger"


def test_a_store_without_an_entry_would_restore_in_place():
    t = RestoreTarget(stores={k: v for k, v in SCRATCH.items() if k != "auditor-pg"})
    with pytest.raises(ScratchTargetError) as e:
        check_scratch_target(site(), t)
    assert "store 'auditor-pg' (auditor) has no entry in the scratch target" in str(e.value)
    assert "127.0.0.1:5432/auditor" in str(e.value)
    assert isinstance(e.value, ConfigError) and e.value.exit_code == 2


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ({"ledger-pg": {"database": "ledger"}}, "live database of store ledger/ledger-pg"),
        # localhost is 127.0.0.1
        (
            {"ledger-pg": {"host": "localhost", "database": "ledger"}},
            "live database of store ledger/ledger-pg",
        ),
        # another store's live database
        ({"ledger-pg": {"database": "auditor"}}, "live database of store auditor/auditor-pg"),
        (
            {"ledger-my": {"database_map": {"scalar": "scalar"}}},
            "live database of store ledger/ledger-my",
        ),
        ({"ledger-my": {"database_map": {}}}, "live database of store ledger/ledger-my"),
        (
            {"auditor-pg": {"database": "ledger_drill"}},
            "stores 'ledger-pg' and 'auditor-pg' would both be drilled into",
        ),
    ],
)
def test_scratch_target_on_a_live_or_shared_database_is_refused(override, says):
    with pytest.raises(ScratchTargetError) as e:
        check_scratch_target(site(), target(**override))
    assert says in str(e.value)
    assert "Nothing was touched" in str(e.value)


def test_scratch_target_naming_an_unknown_store_is_refused():
    with pytest.raises(ConfigError, match="does not have: \\['nope'\\]"):
        check_scratch_target(site(), target(nope={"database": "x"}))


def test_invalid_scratch_settings_name_the_store():
    with pytest.raises(ConfigError, match="store 'ledger-pg' is invalid"):
        check_scratch_target(site(), target(**{"ledger-pg": {"port": "not-a-port"}}))


# --- drill records in the catalog ----------------------------------------------------------------


@pytest.fixture
def catalog(tmp_path) -> Catalog:
    return Catalog(LocalDriver(tmp_path / "catalog"))


def record(point, started=STARTED, checks=None, error=None) -> DrillRecord:
    return drill_record(
        point,
        started,
        started + timedelta(seconds=42),
        checks if checks is not None else [("fingerprint ledger/ledger-pg", True, "2 tables")],
        error,
        targets={"ledger-pg": "127.0.0.1:5432/ledger_drill"},
        target_file="drill.yaml",
        flow_run_id=None,
    )


def test_drills_are_written_under_the_point_and_listed_newest_first(catalog):
    point = make_point(catalog)
    first = catalog.record_drill(record(point))
    failed = record(point, STARTED + timedelta(days=7), error=RuntimeError("disk full"))
    catalog.record_drill(failed)
    assert first.endswith(f"{SITE}/points/{point.id}/drills/20261128T030000.123456Z.json")
    drills = catalog.list_drills(SITE, point.id)
    assert [d.passed for d in drills] == [False, True]
    assert drills[0].error == "RuntimeError: disk full"
    assert catalog.latest_drill(SITE, point.id) == failed
    assert catalog.verify_point(SITE, point.id) == []
    assert [p.id for p in catalog.list_points(SITE)] == [point.id]


def test_a_point_never_drilled_has_no_latest_drill(catalog):
    point = make_point(catalog)
    assert catalog.latest_drill(SITE, point.id) is None


def test_temp_files_and_strangers_in_drills_are_ignored(catalog):
    point = make_point(catalog)
    catalog.record_drill(record(point))
    drills = catalog.point_dir(SITE, point.id) / layout.DRILLS
    (drills / ".20261128T030000.123456Z.json.abc.tmp").write_text("{half")
    (drills / "notes.txt").write_text("hello")
    assert len(catalog.list_drills(SITE, point.id)) == 1


def test_a_damaged_drill_record_is_named(catalog):
    point = make_point(catalog)
    where = catalog.record_drill(record(point))
    with open(where, "w") as f:
        f.write('{"format": 1, "site": "demo"}')
    with pytest.raises(CatalogError, match=r"drill record .*20261128T030000\.123456Z\.json"):
        catalog.latest_drill(SITE, point.id)


def test_a_drill_record_moved_to_another_point_is_refused(catalog):
    a = make_point(catalog)
    b = make_point(catalog, begun=T0 + timedelta(hours=1))
    src = catalog.record_drill(record(a))
    dst = catalog.point_dir(SITE, b.id) / layout.DRILLS
    dst.mkdir()
    (dst / "20261128T030000.123456Z.json").write_bytes(Path(src).read_bytes())
    with pytest.raises(CatalogError, match="copied or moved"):
        catalog.list_drills(SITE, b.id)


def test_no_drill_record_for_a_point_that_does_not_exist(catalog):
    point = make_point(catalog)
    catalog.delete_point(SITE, point.id)
    with pytest.raises(RestorePointNotFoundError):
        catalog.record_drill(record(point))
    assert not catalog.point_dir(SITE, point.id).exists()


def test_deleting_a_point_deletes_its_drills(catalog):
    point = make_point(catalog)
    catalog.record_drill(record(point))
    catalog.delete_point(SITE, point.id)
    assert not catalog.point_dir(SITE, point.id).exists()


def test_a_record_says_passed_only_when_every_check_passed(catalog):
    point = make_point(catalog)
    r = record(point, checks=[("fingerprint a", True, ""), ("fingerprint b", False, "differs")])
    assert not r.passed and r.error is None
    with pytest.raises(ValueError, match="a passed drill"):
        DrillRecord.model_validate({**r.model_dump(), "passed": True})
    with pytest.raises(ValueError, match="a failed drill names"):
        DrillRecord.model_validate({**record(point).model_dump(), "passed": False})
    md = drill_markdown(r)
    assert "**FAILED**" in md and "| fingerprint b | FAIL | differs |" in md
    assert drills_summary([r])[0].endswith("FAILED")
    assert json.loads(r.model_dump_json())["format"] == 1


def test_sweep_orphans_dry_run_removes_nothing(catalog):
    pending = catalog.begin_point(SITE, now=T0)
    (pending.store_dir("ledger", "ledger-pg") / "toc.dat").write_bytes(b"x")
    later = datetime.now(UTC) + timedelta(days=2)
    assert catalog.sweep_orphans(SITE, now=later, dry_run=True) == [pending.staging]
    assert pending.staging.exists()
    assert catalog.sweep_orphans(SITE, now=later) == [pending.staging]
    assert not pending.staging.exists()


@pytest.mark.parametrize(("name", "model"), [("prune", "PruneRequest"), ("drill", "DrillRequest")])
def test_prune_and_drill_flows_take_one_request_model(name, model):
    import importlib

    from prefect.utilities.callables import parameter_schema

    flow = getattr(importlib.import_module(f"flows.{name}"), name)
    assert flow.name == name
    schema = parameter_schema(flow.fn).model_dump()
    assert schema["required"] == ["request"]
    assert schema["properties"]["request"]["$ref"] == f"#/definitions/{model}"


def test_delete_lease_only_when_ended(catalog):
    from pausepoint.errors import LeaseError
    from tests.unit.test_catalog import lease

    catalog.write_lease(lease("run-1"))
    with pytest.raises(LeaseError, match="is active"):
        catalog.delete_lease(SITE, "run-1")
    catalog.release_lease(SITE, "run-1")
    catalog.delete_lease(SITE, "run-1")
    assert catalog.list_leases(SITE) == []
