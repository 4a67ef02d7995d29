"""ScalarDB-managed components: the site file's `scalardb:` model, the coverage of namespaces,
coordinator and metadata by the stores (as each kind maps namespaces), and which renames a
restore can follow with a metadata rewrite."""

from __future__ import annotations

import copy

import pytest

from pausepoint.errors import ConfigError, ScalarDbCoverageError, ScalarDbRenameError
from pausepoint.restore import RestoreTarget, place_stores
from pausepoint.scalardb import check_coverage, coverage_problems
from pausepoint.scalardb_restore import (
    PendingGroup,
    ScalarDbCheck,
    plan_rewrites,
    raise_if_unresolved,
)
from pausepoint.site import parse_site
from pausepoint.stores import registry

PG = {"kind": "postgres", "name": "ledger-pg", "user": "u", "database": "bank"}
MY = {"kind": "mysql", "name": "ledger-my", "user": "u"}


def site(pg: dict | None = None, my: dict | None = None, scalardb: dict | None = None):
    stores = [s for s in (pg, my) if s is not None]
    ledger = {"targets": {"static": ["127.0.0.1:50053"]}, "stores": stores}
    if scalardb is not None:
        ledger["scalardb"] = scalardb
    return parse_site({"site": "s", "catalog": {"path": "c"}, "ledger": ledger})


def full_site(**over):
    """pbank + coordinator + scalardb on PostgreSQL, mbank + scalardb on MariaDB."""
    pg = {**PG, "schemas": ["pbank", "coordinator", "scalardb"]}
    my = {**MY, "databases": ["mbank", "scalardb"]}
    sdb = {"namespaces": ["pbank", "mbank"]}
    for key, value in over.items():
        {"pg": pg, "my": my, "sdb": sdb}[key.split("_")[0]][key.split("_", 1)[1]] = value
    return site(pg, my, sdb)


# --- the model ------------------------------------------------------------------------------


def test_defaults_are_scalardbs_coordinator_and_metadata_namespaces():
    s = full_site()
    assert s.ledger.scalardb.coordinator_namespace == "coordinator"
    assert s.ledger.scalardb.metadata_namespace == "scalardb"
    assert s.ledger.scalardb.data_namespaces() == ["pbank", "mbank", "coordinator"]


def test_a_component_without_scalardb_is_not_checked():
    s = site({**PG, "schemas": ["x"]}, None)
    assert s.ledger.scalardb is None
    assert check_coverage(s) == []


@pytest.mark.parametrize(
    "sdb, words",
    [
        ({"namespaces": []}, "namespaces"),
        ({"namespaces": ["a", "a"]}, "listed twice"),
        ({"namespaces": ["coordinator"]}, "coordinator namespace"),
        ({"namespaces": ["a"], "metadata_namespace": "a"}, "metadata namespace"),
        ({"namespaces": ["a.b"]}, "namespaces"),
        ({"namespaces": ["a"], "coordinater": "c"}, "coordinater"),
    ],
)
def test_bad_declarations_are_refused_naming_the_field(sdb, words):
    with pytest.raises(ConfigError) as err:
        site({**PG}, None, sdb)
    assert "ledger.scalardb" in str(err.value) and words in str(err.value)


# --- coverage -------------------------------------------------------------------------------


def test_a_site_that_captures_everything_passes():
    assert check_coverage(full_site()) == [
        "ledger: namespaces pbank, mbank, coordinator 'coordinator' and metadata 'scalardb' "
        "captured"
    ]


def test_a_missing_namespace_is_named_with_the_setting_to_add_it_to():
    problems = coverage_problems("ledger", full_site(my_databases=["scalardb"]).ledger)
    assert len(problems) == 1
    assert "ScalarDB namespace 'mbank' is captured by no store" in problems[0]
    assert "`databases` of store 'ledger-my'" in problems[0]
    assert "`schemas` of store 'ledger-pg'" in problems[0]


def test_the_coordinator_is_named_with_its_table():
    problems = coverage_problems("ledger", full_site(pg_schemas=["pbank", "scalardb"]).ledger)
    assert problems == [
        "ledger: the coordinator namespace 'coordinator' (table coordinator.state) is captured "
        "by no store; add 'coordinator' to `schemas` of store 'ledger-pg' (as a schema of "
        "database 'bank') or `databases` of store 'ledger-my' (as a database), or add a store "
        "that captures it"
    ]


def test_each_storage_needs_its_own_metadata():
    # MariaDB holds mbank: its scalardb database must be captured, PostgreSQL's does not count.
    problems = coverage_problems("ledger", full_site(my_databases=["mbank"]).ledger)
    assert len(problems) == 1
    assert "metadata of the storage of store 'ledger-my'" in problems[0]
    assert "add 'scalardb' to `databases` of store 'ledger-my'" in problems[0]


def test_a_renamed_metadata_namespace_is_the_one_required():
    s = full_site(sdb_metadata_namespace="sdbmeta")
    problems = coverage_problems("ledger", s.ledger)
    assert [p.split("(")[0] for p in problems] == [
        "ledger: ScalarDB's table metadata of the storage of store 'ledger-pg' ",
        "ledger: ScalarDB's table metadata of the storage of store 'ledger-my' ",
    ]
    assert all("add 'sdbmeta'" in p for p in problems)


def test_postgres_without_schemas_captures_every_namespace_of_its_database():
    # pg_dump without --schema takes every user schema: pbank, coordinator and scalardb too.
    s = full_site(pg_schemas=[])
    assert coverage_problems("ledger", s.ledger) == []


def test_metadata_in_another_store_of_the_same_storage_counts():
    # Two MariaDB stores on one server are one ScalarDB storage: one metadata database.
    my2 = {**MY, "name": "ledger-my2", "databases": ["scalardb"]}
    pg = {**PG, "schemas": ["pbank", "coordinator", "scalardb"]}
    s = parse_site(
        {
            "site": "s",
            "catalog": {"path": "c"},
            "ledger": {
                "targets": {"static": ["127.0.0.1:1"]},
                "stores": [pg, {**MY, "databases": ["mbank"]}, my2],
                "scalardb": {"namespaces": ["pbank", "mbank"]},
            },
        }
    )
    assert coverage_problems("ledger", s.ledger) == []
    # ... but not one on another server (another storage).
    other = copy.deepcopy(my2) | {"host": "10.0.0.9"}
    s2 = parse_site(
        {
            "site": "s",
            "catalog": {"path": "c"},
            "ledger": {
                "targets": {"static": ["127.0.0.1:1"]},
                "stores": [pg, {**MY, "databases": ["mbank"]}, other],
                "scalardb": {"namespaces": ["pbank", "mbank"]},
            },
        }
    )
    assert "storage of store 'ledger-my'" in coverage_problems("ledger", s2.ledger)[0]


def test_check_coverage_raises_one_error_naming_every_problem():
    s = full_site(my_databases=["other"], pg_schemas=["pbank"])
    with pytest.raises(ScalarDbCoverageError) as err:
        check_coverage(s)
    text = str(err.value)
    for word in ("'mbank'", "'coordinator'", "metadata", "nothing was paused"):
        assert word in text
    assert ScalarDbCoverageError.exit_code == 3


def test_a_kind_without_scalardb_hooks_covers_nothing_and_says_so():
    entry = registry.get("mysql")
    blind = registry.StoreKind(
        kind="mysql", config=entry.config, store=entry.store, locations=entry.locations
    )
    registry.register(blind, replace=True)
    try:
        problems = coverage_problems("ledger", full_site().ledger)
    finally:
        registry.register(entry, replace=True)
    assert "'mbank' is captured by no store" in problems[0]
    assert "ledger-my (mysql) are of kinds that do not say" in problems[-1]


# --- renames on restore ------------------------------------------------------------------------


def places(s, stores: dict):
    return place_stores(s, RestoreTarget(stores=stores), what="the restore target")


def test_same_names_elsewhere_need_no_rewrite():
    s = full_site()
    moved = {"ledger-pg": {"database": "bank_r"}, "ledger-my": {"host": "10.0.0.9"}}
    assert plan_rewrites(s, places(s, moved)) == []


def test_a_rename_with_the_metadata_mapped_too_is_rewritten():
    s = full_site()
    target = {
        "ledger-pg": {"database": "bank_r"},
        "ledger-my": {"database_map": {"mbank": "mbank_r", "scalardb": "scalardb_r"}},
    }
    [plan] = plan_rewrites(s, places(s, target))
    assert (plan.store, plan.metadata, plan.renames) == (
        "ledger-my",
        "scalardb_r",
        {"mbank": "mbank_r"},
    )


def test_a_rename_on_another_server_keeps_the_metadata_name():
    s = full_site()
    target = {"ledger-my": {"host": "10.0.0.9", "database_map": {"mbank": "mbank_r"}}}
    [plan] = plan_rewrites(s, places(s, target))
    assert plan.metadata == "scalardb" and plan.renames == {"mbank": "mbank_r"}


def test_a_rename_whose_metadata_is_the_live_sites_is_refused():
    s = full_site()
    target = {
        "ledger-pg": {"database": "bank_r"},
        "ledger-my": {"database_map": {"mbank": "mbank_r"}},
    }
    with pytest.raises(ScalarDbRenameError) as err:
        plan_rewrites(s, places(s, target))
    text = str(err.value)
    assert "namespace 'mbank' as 'mbank_r'" in text
    assert "the live site's" in text and "scalardb: scalardb_r" in text
    assert "nothing was touched" in text


def test_a_rename_without_the_metadata_in_that_store_is_refused():
    my2 = {**MY, "name": "ledger-my2", "databases": ["scalardb"]}
    pg = {**PG, "schemas": ["pbank", "coordinator", "scalardb"]}
    s = parse_site(
        {
            "site": "s",
            "catalog": {"path": "c"},
            "ledger": {
                "targets": {"static": ["127.0.0.1:1"]},
                "stores": [pg, {**MY, "databases": ["mbank"]}, my2],
                "scalardb": {"namespaces": ["pbank", "mbank"]},
            },
        }
    )
    target = {"ledger-my": {"database_map": {"mbank": "mbank_r"}}}
    with pytest.raises(ScalarDbRenameError, match="not captured by that store"):
        plan_rewrites(s, places(s, target))


def test_a_rename_onto_another_captured_namespace_is_refused():
    s = full_site(my_databases=["mbank", "xbank", "scalardb"])
    target = {"ledger-my": {"database_map": {"mbank": "xbank", "xbank": "mbank"}}}
    with pytest.raises(ScalarDbRenameError, match="also a captured namespace"):
        plan_rewrites(s, places(s, target))


def test_renaming_a_database_that_is_no_namespace_needs_nothing():
    s = full_site(my_databases=["mbank", "scalardb", "other"])
    target = {"ledger-my": {"host": "10.0.0.9", "database_map": {"other": "other_r"}}}
    assert plan_rewrites(s, places(s, target)) == []


# --- the transaction check's verdict ------------------------------------------------------------


def group(record: str, coord: str, n: int = 1) -> PendingGroup:
    return PendingGroup(
        record_state=record, coordinator_state=coord, records=n, tables=["mbank.a"], examples=["t"]
    )


def test_records_the_coordinator_resolves_pass_and_orphans_fail():
    ok = ScalarDbCheck(
        component="ledger",
        tables=["mbank.a"],
        groups=[group("PREPARED", "COMMITTED", 2), group("DELETED", "ABORTED")],
    )
    assert ok.passed and ok.unresolved == 0
    raise_if_unresolved([ok], "p1")
    torn = ScalarDbCheck(
        component="ledger", tables=["mbank.a"], groups=[group("PREPARED", "none", 3)]
    )
    assert not torn.passed and torn.unresolved == 3
    assert "3 PREPARED records, no coordinator state: unresolved" in torn.summary()
    from pausepoint.errors import ScalarDbTransactionError

    with pytest.raises(ScalarDbTransactionError, match="restore of point p1"):
        raise_if_unresolved([ok, torn], "p1")


def test_an_unreadable_table_fails_the_check():
    check = ScalarDbCheck(component="ledger", tables=[], problems=["mbank.a missing"])
    assert not check.passed


# --- the point-in-time kinds without SQL access -----------------------------------------------

DYNAMO = {"kind": "dynamodb", "name": "ledger-ddb", "region": "eu-west-1", "table_prefix": "l_"}
COSMOS = {
    "kind": "cosmos",
    "name": "ledger-cosmos",
    "subscription_id": "00000000-0000-0000-0000-000000000001",
    "resource_group": "rg",
    "account": "scalardb-prod",
    "location": "westus2",
}


@pytest.mark.parametrize(
    ("store", "field", "unit"),
    [(DYNAMO, "namespaces", "namespace (DynamoDB"), (COSMOS, "databases", "database of")],
)
def test_dynamodb_and_cosmos_stores_say_which_namespaces_they_hold(store, field, unit):
    """The coverage preflight sees the namespaces, coordinator and metadata of these kinds
    (their registry hooks), and names the setting to fix when one is missing."""
    sdb = {"namespaces": ["scalar"]}
    whole = {**store, field: ["scalar", "coordinator", "scalardb"]}
    if store is DYNAMO:
        whole = {**store, "namespaces": ["scalar"]}  # coordinator and scalardb by default
    assert coverage_problems("ledger", site(whole, None, sdb).ledger) == []
    lacking = {**store, field: ["scalar", "scalardb"]}
    if store is DYNAMO:
        lacking = {**store, "namespaces": ["scalar"], "coordinator_namespace": None}
    problems = coverage_problems("ledger", site(lacking, None, sdb).ledger)
    assert len(problems) == 1
    assert "coordinator namespace 'coordinator'" in problems[0]
    assert f"`{field}` of store {store['name']!r} (as a {unit}" in problems[0]
    view = registry.scalardb_namespaces(
        parse_site(
            {
                "site": "s",
                "catalog": {"path": "c"},
                "ledger": {"targets": {"static": ["127.0.0.1:1"]}, "stores": [whole]},
            }
        ).ledger.stores[0],
        as_target=False,
    )
    assert view is not None and view.renamed == {}


def test_a_store_whose_kind_cannot_be_read_is_reported_not_checked():
    """DynamoDB and Cosmos DB stores have no SQL access here: the ScalarDB check says so
    instead of claiming every record COMMITTED."""
    check = ScalarDbCheck(component="ledger", tables=[], unchecked=["ledger-ddb"])
    text = check.summary()
    assert "NOT checked: store(s) ledger-ddb" in text
    assert "every record COMMITTED" not in text
    assert "every record COMMITTED" in ScalarDbCheck(component="l", tables=["a.b"]).summary()


# --- Cassandra: a namespace is a keyspace, the metadata is the cluster's schema ---------------

CASSANDRA = {
    "kind": "cassandra",
    "name": "ledger-cassandra",
    "contact_points": ["127.0.0.1", "127.0.0.2"],
    "nodes": [{"address": "127.0.0.1"}, {"address": "127.0.0.2"}],
}


def test_a_cassandra_store_holds_its_keyspaces_and_needs_no_metadata_namespace():
    """ScalarDB 3.16 on Cassandra keeps no metadata table (CassandraAdmin reads the cluster's
    schema, captured with each keyspace): the keyspaces and the coordinator suffice."""
    sdb = {"namespaces": ["scalar"]}
    whole = {**CASSANDRA, "keyspaces": ["scalar", "coordinator"]}
    assert coverage_problems("ledger", site(whole, None, sdb).ledger) == []
    assert check_coverage(site(whole, None, sdb)) == [
        "ledger: namespaces scalar, coordinator 'coordinator' and metadata in each namespace's "
        "own schema captured"
    ]
    view = registry.scalardb_namespaces(site(whole).ledger.stores[0], as_target=False)
    assert view is not None and view.captured == {"scalar", "coordinator"}
    assert view.renamed == {} and view.metadata_in_schema
    assert {x.database for x in view.location_of("scalar")} == {"scalar"}


def test_a_cassandra_store_without_the_coordinator_keyspace_is_named_with_the_fix():
    lacking = {**CASSANDRA, "keyspaces": ["scalar"]}
    problems = coverage_problems("ledger", site(lacking, None, {"namespaces": ["scalar"]}).ledger)
    assert len(problems) == 1, problems
    assert "the coordinator namespace 'coordinator' (table coordinator.state)" in problems[0]
    assert (
        "add 'coordinator' to `keyspaces` of store 'ledger-cassandra' (as a keyspace)"
        in (problems[0])
    )


def test_cassandra_beside_a_jdbc_storage_still_needs_that_storages_metadata():
    """The exemption is Cassandra's own: the PostgreSQL storage of a multi-storage component
    still needs its metadata schema captured."""
    sdb = {"namespaces": ["scalar", "pbank"]}
    cass = {**CASSANDRA, "keyspaces": ["scalar", "coordinator"]}
    problems = coverage_problems("ledger", site({**PG, "schemas": ["pbank"]}, None, sdb).ledger)
    assert any("coordinator" in p for p in problems)
    s = parse_site({"site": "s", "catalog": {"path": "c"}, "ledger": {
        "targets": {"static": ["127.0.0.1:50053"]},
        "stores": [cass, {**PG, "schemas": ["pbank"]}], "scalardb": sdb,
    }})  # fmt: skip
    problems = coverage_problems("ledger", s.ledger)
    assert len(problems) == 1, problems
    assert "add 'scalardb' to `schemas` of store 'ledger-pg'" in problems[0]
