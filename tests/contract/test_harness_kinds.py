"""harness/kinds.py, which the contract adapters and bench/ share, for every kind: databases,
bulk rows, sizes, store configs the site file accepts, and the raw tools' round trip."""

from __future__ import annotations

import uuid

import pytest
from pydantic import TypeAdapter

from harness.bank_app import create_schema, read_state
from harness.kinds import KINDS
from pausepoint.stores import StoreConfig

pytestmark = pytest.mark.integration


def test_every_kind_has_a_contract_adapter():
    from tests.contract.adapters import ADAPTERS

    assert set(KINDS) <= set(ADAPTERS)  # cloud kinds have an adapter but no SQL server plumbing


def test_server_plumbing_round_trip(adapter, tmp_path):
    if adapter.kind not in KINDS:
        pytest.skip(f"{adapter.kind}: a cloud kind; harness/kinds.py is the SQL servers' plumbing")
    kind = adapter.harness
    name, fresh = f"hk_{uuid.uuid4().hex[:8]}", f"hk_{uuid.uuid4().hex[:8]}"
    try:
        kind.create_db(name)
        assert kind.db_exists(name)
        create_schema(kind.db(name))  # the bank app's tables, through the kind's connection
        assert read_state(kind.db(name))[1] == set()
        kind.create_bulk(name)
        steps: list[int] = []
        kind.grow_bulk(name, 120, progress=lambda done, _all: steps.append(done))
        kind.grow_bulk(name, 150)  # grows from where it is
        assert kind.bulk_rows(name) == 150 and steps == [120]
        kind.settle(name)
        assert kind.db_bytes(name) > 150 * 1024

        dump = kind.raw_dump(name, tmp_path / "dump")
        kind.create_db(fresh)
        kind.raw_restore(dump, fresh)
        assert kind.bulk_rows(fresh) == 150
        assert read_state(kind.db(fresh)) == read_state(kind.db(name))

        live = kind.store_config("ledger-store", name, **kind.bench_settings)
        config = TypeAdapter(StoreConfig).validate_python(live)
        assert config.kind == kind.name
        moved = {**live, **kind.moved_to(name, fresh)}
        TypeAdapter(StoreConfig).validate_python(moved)
        assert adapter.server.password not in str(live)  # by reference only
    finally:
        for db in (name, fresh):
            kind.drop_db(db)
    assert not kind.db_exists(name) and not kind.db_exists(fresh)
