"""Locations, for every kind: a restore or drill target that is the live location of any store
of the site counts as in place, however it is spelt (issue 10's hole, closed for every kind).

The site has two stores of the kind under test (the ledger's and the auditor's, on this
machine's default port); each adapter lists the spellings of its live location. What decides
is ``pausepoint.restore.RestoreRun.prepare`` / ``place_stores`` and
``pausepoint.drill.check_scratch_target``: the entry points a restore and a drill use. No
server is needed: nothing connects before a store is placed.
"""

from __future__ import annotations

import pytest

from pausepoint.catalog import Catalog, LocalDriver
from pausepoint.drill import check_scratch_target
from pausepoint.errors import RestoreTargetError, ScratchTargetError
from pausepoint.locations import locations
from pausepoint.restore import RestoreRun, RestoreTarget
from pausepoint.secrets import SecretResolver
from pausepoint.site import Site, parse_site
from tests.unit.test_catalog import SITE, make_point

LEDGER, AUDITOR = "ledger-db", "auditor-db"


def site_of(adapter) -> Site:
    return parse_site(
        {
            "site": SITE,
            "catalog": {"path": "/tmp/catalog"},
            "ledger": {
                "targets": {"static": ["127.0.0.1:50053"]},
                "stores": [adapter.site_store(LEDGER, "ledger")],
            },
            "auditor": {
                "targets": {"static": ["127.0.0.1:40053"]},
                "stores": [adapter.site_store(AUDITOR, "auditor")],
            },
        }
    )


def elsewhere(adapter) -> dict:
    """Every store into a database the site does not use."""
    return {
        LEDGER: adapter.moved_to("ledger", "ledger_r"),
        AUDITOR: adapter.moved_to("auditor", "auditor_r"),
    }


def prepared(tmp_path, adapter, stores: dict) -> RestoreRun:
    catalog = Catalog(LocalDriver(tmp_path / "catalog"))
    files = {("ledger", LEDGER): {"a": b"l"}, ("auditor", AUDITOR): {"a": b"a"}}
    point = make_point(catalog, files=files)
    target = RestoreTarget(replace=True, stores=stores)
    return RestoreRun.prepare(site_of(adapter), catalog, point.id, target, SecretResolver({}))


def test_a_restore_over_any_spelling_of_a_live_database_is_in_place(adapter, tmp_path, spelling):
    adapter.needs("in_place")
    stores = {**elsewhere(adapter), LEDGER: adapter.spellings("ledger")[spelling]}
    run = prepared(tmp_path, adapter, stores)
    assert run.in_place  # known before validate: the flow takes the pause lock on it
    run.validate()
    assert {s.store.name for s in run.slots if s.in_place} == {LEDGER}
    assert f"the live database of store ledger/{LEDGER}" in run.describe_in_place()


def test_a_restore_into_another_stores_live_database_is_in_place(adapter, tmp_path):
    adapter.needs("in_place")
    stores = {**elsewhere(adapter), LEDGER: adapter.moved_to("ledger", "auditor")}
    run = prepared(tmp_path, adapter, stores)
    assert run.in_place
    assert f"the live database of store auditor/{AUDITOR}" in run.describe_in_place()


def test_a_restore_without_a_target_is_in_place(adapter, tmp_path):
    adapter.needs("in_place_by_default")
    run = prepared(tmp_path, adapter, {})
    run.validate()
    assert run.in_place and all(s.in_place for s in run.slots)


def test_a_restore_elsewhere_is_not_in_place(adapter, tmp_path):
    run = prepared(tmp_path, adapter, elsewhere(adapter))
    run.validate()
    assert not run.in_place and run.describe_in_place() == ""
    for other in adapter.other_servers("ledger").values():
        assert not prepared(tmp_path / "o", adapter, {**elsewhere(adapter), LEDGER: other}).in_place


def test_two_stores_restored_into_one_database_are_refused(adapter, tmp_path):
    stores = {**elsewhere(adapter), AUDITOR: adapter.moved_to("auditor", "ledger_r")}
    with pytest.raises(RestoreTargetError) as e:
        prepared(tmp_path, adapter, stores)
    assert f"stores {LEDGER!r} and {AUDITOR!r} would both be restored into" in str(e.value)


def test_a_drill_into_any_spelling_of_a_live_database_is_refused(adapter, spelling):
    adapter.needs("in_place")
    stores = {**elsewhere(adapter), LEDGER: adapter.spellings("ledger")[spelling]}
    with pytest.raises(ScratchTargetError) as e:
        check_scratch_target(site_of(adapter), RestoreTarget(stores=stores))
    msg = str(e.value)
    assert f"store {LEDGER!r}" in msg and "which is the live database of store" in msg
    assert "Nothing was touched" in msg


def test_a_drill_elsewhere_passes(adapter):
    where = check_scratch_target(site_of(adapter), RestoreTarget(stores=elsewhere(adapter)))
    assert set(where) == {LEDGER, AUDITOR}


def test_every_spelling_is_the_live_location(adapter, spelling):
    """locations() itself: the spelt target shares a location with the live store."""
    adapter.needs("in_place")
    (_, live_cfg), _ = site_of(adapter).stores()
    spelt = live_cfg.model_validate(
        {**live_cfg.model_dump(), **adapter.spellings("ledger")[spelling]}
    )
    assert locations(spelt, as_target=True) & locations(live_cfg, as_target=False)
