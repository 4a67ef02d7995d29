"""Where a store's data lives decides whether a restore or drill writes over the live site,
however a target file spells it (issue 10). No servers: a restore run is prepared and
validated against a catalog point, which decides each store's place without connecting."""

from __future__ import annotations

import socket

import pytest

from pausepoint.catalog import Catalog, LocalDriver
from pausepoint.drill import ScratchTargetError, check_scratch_target
from pausepoint.errors import ConfigError, LocationError, RestoreTargetError
from pausepoint.locations import THIS_MACHINE, Location, locations
from pausepoint.restore import RestoreRun, RestoreTarget
from pausepoint.secrets import SecretResolver
from pausepoint.site import parse_site
from tests.unit.test_catalog import SITE, make_point

SOCKET_DIR = "/var/run/postgresql"
OTHER_SERVER = "198.51.100.7"  # TEST-NET-2: never an address of this machine


def site(ledger_pg_host: str = "127.0.0.1"):
    return parse_site(
        {
            "site": SITE,
            "catalog": {"path": "/tmp/catalog"},
            "ledger": {
                "targets": {"static": ["127.0.0.1:50053"]},
                "stores": [
                    {
                        "kind": "postgres",
                        "name": "ledger-pg",
                        "host": ledger_pg_host,
                        "user": "u",
                        "database": "ledger",
                    },
                    {"kind": "mysql", "name": "ledger-my", "user": "u", "databases": ["scalar"]},
                ],
            },
            "auditor": {
                "targets": {"static": ["127.0.0.1:40053"]},
                "stores": [
                    {"kind": "postgres", "name": "auditor-pg", "user": "u", "database": "auditor"}
                ],
            },
        }
    )


# Every store into a database the site does not use.
ELSEWHERE = {
    "ledger-pg": {"database": "ledger_r"},
    "ledger-my": {"database_map": {"scalar": "scalar_r"}},
    "auditor-pg": {"database": "auditor_r"},
}

# How the issue spelt "the live database" in target files that passed as "not in place".
SPELLINGS = {
    "jobs: 1 only": {"ledger-pg": {"jobs": 1}},
    "the same database name": {"ledger-pg": {"database": "ledger"}},
    "the same name in other case": {"ledger-pg": {"database": "LEDGER"}},
    "host 127.1": {"ledger-pg": {"host": "127.1"}},
    "host 127.0.0.2": {"ledger-pg": {"host": "127.0.0.2"}},
    "host localhost": {"ledger-pg": {"host": "localhost"}},
    "the machine's host name": {"ledger-pg": {"host": socket.gethostname()}},
    "host ::1": {"ledger-pg": {"host": "::1"}},
    "host [::1]": {"ledger-pg": {"host": "[::1]"}},
    "host 0.0.0.0": {"ledger-pg": {"host": "0.0.0.0"}},
    "the socket directory": {"ledger-pg": {"host": SOCKET_DIR}},
    "a host list with this machine in it": {"ledger-pg": {"host": f"{OTHER_SERVER},localhost"}},
    "identity database_map": {"ledger-my": {"database_map": {"scalar": "scalar"}}},
    "empty database_map": {"ledger-my": {"database_map": {}}},
    "mysql on localhost": {"ledger-my": {"host": "localhost", "port": 3306}},
    # the ledger's store pointed at the auditor's live database (the auditor moved away)
    "the auditor's live database as ledger target": {"ledger-pg": {"database": "auditor"}},
}


@pytest.fixture
def catalog(tmp_path) -> Catalog:
    return Catalog(LocalDriver(tmp_path / "catalog"))


def prepared(catalog: Catalog, stores: dict, the_site=None) -> RestoreRun:
    files = {
        ("ledger", "ledger-pg"): {"toc.dat": b"t"},
        ("ledger", "ledger-my"): {"dump.sql": b"d"},
        ("auditor", "auditor-pg"): {"toc.dat": b"a"},
    }
    point = make_point(catalog, files=files)
    target = RestoreTarget(replace=True, stores=stores)
    return RestoreRun.prepare(the_site or site(), catalog, point.id, target, SecretResolver({}))


# --- restore -----------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_a_restore_over_any_spelling_of_a_live_database_is_in_place(catalog, spelling):
    run = prepared(catalog, {**ELSEWHERE, **SPELLINGS[spelling]})
    # known before validate: the flow takes the pause lock on it before its first step
    assert run.in_place
    run.validate()
    assert run.in_place
    in_place = {s.store.name for s in run.slots if s.in_place}
    assert in_place == set(SPELLINGS[spelling])
    assert "the live database of store" in run.describe_in_place()


def test_a_restore_without_a_target_is_in_place(catalog):
    run = prepared(catalog, {})
    run.validate()
    assert run.in_place and all(s.in_place for s in run.slots)


@pytest.mark.parametrize(
    "override",
    [
        {"database": "ledger_r"},
        {"host": OTHER_SERVER, "database": "ledger"},  # same name, another server
        {"port": 5433, "database": "ledger"},  # same name, another server of this machine
    ],
)
def test_a_restore_into_databases_the_site_does_not_use_is_not_in_place(catalog, override):
    run = prepared(catalog, {**ELSEWHERE, "ledger-pg": override})
    run.validate()
    assert not run.in_place and not any(s.in_place for s in run.slots)
    assert run.describe_in_place() == ""


def test_a_site_spelt_by_host_name_matches_a_target_spelt_by_address(catalog):
    run = prepared(
        catalog,
        {**ELSEWHERE, "ledger-pg": {"host": "127.0.0.1"}},
        the_site=site(ledger_pg_host=socket.gethostname()),
    )
    assert run.in_place


@pytest.mark.parametrize(
    "stores",
    [
        {**ELSEWHERE, "auditor-pg": {"database": "ledger_r"}},
        {**ELSEWHERE, "auditor-pg": {"host": "localhost", "database": "ledger_r"}},
        # the ledger into the auditor's live database while the auditor restores in place
        {"ledger-pg": {"host": "127.1", "database": "auditor"}},
    ],
)
def test_two_stores_restored_into_one_database_are_refused(catalog, stores):
    with pytest.raises(RestoreTargetError) as e:
        prepared(catalog, stores)
    assert "stores 'ledger-pg' and 'auditor-pg' would both be restored into" in str(e.value)
    assert "Nothing was touched" in str(e.value)


def test_a_database_both_stores_share_on_the_live_site_may_be_restored_in_place(catalog):
    shared = site()
    data = shared.model_dump(mode="json")
    data["auditor"]["stores"][0]["database"] = "ledger"  # one database, two stores
    run = prepared(catalog, {}, the_site=parse_site(data))
    assert run.in_place


def test_a_host_that_does_not_resolve_is_refused_not_taken_for_elsewhere(catalog):
    def no_dns(host, port):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    point = make_point(
        catalog,
        files={
            ("ledger", "ledger-pg"): {"t": b"t"},
            ("ledger", "ledger-my"): {"d": b"d"},
            ("auditor", "auditor-pg"): {"t": b"a"},
        },
    )
    target = RestoreTarget(stores={**ELSEWHERE, "ledger-pg": {"host": "scratch-db"}})
    with pytest.raises(LocationError) as e:
        RestoreRun.prepare(site(), catalog, point.id, target, SecretResolver({}), resolve=no_dns)
    msg = str(e.value)
    assert "host 'scratch-db' (in the restore target) does not resolve" in msg
    assert "write the server's IP address" in msg
    assert isinstance(e.value, ConfigError) and e.value.exit_code == 2


# --- locations ---------------------------------------------------------------------------------


def test_every_spelling_of_this_machine_is_one_server():
    cfg = site().stores()[0][1]
    live = locations(cfg, as_target=False)
    assert live == {Location(f"{THIS_MACHINE}:5432", "ledger")}
    for host in ("127.1", "127.0.0.2", "localhost", "::1", socket.gethostname(), SOCKET_DIR):
        moved = cfg.model_copy(update={"host": host})
        assert locations(moved, as_target=True) == live, host
        assert str(next(iter(locations(moved, as_target=True)))).startswith(
            f"{'[::1]' if host == '::1' else host}:5432/"
        )


def test_names_of_one_remote_server_are_one_server_and_ports_differ():
    addresses = {"db-a": ["10.1.2.3"], "db-a.example": ["::ffff:10.1.2.3"], "db-b": ["10.9.9.9"]}

    def resolve(host, port):
        return addresses[host]

    cfg = site().stores()[0][1]
    where = {
        h: locations(cfg.model_copy(update={"host": h}), as_target=False, resolve=resolve)
        for h in addresses
    }
    assert where["db-a"] == where["db-a.example"] != where["db-b"]
    assert locations(cfg.model_copy(update={"port": 5433}), as_target=False) != locations(
        cfg, as_target=False
    )


def test_database_map_applies_only_as_a_target():
    my = site().stores()[1][1].model_copy(update={"database_map": {"scalar": "scalar_r"}})
    assert {x.database for x in locations(my, as_target=False)} == {"scalar"}
    assert {x.database for x in locations(my, as_target=True)} == {"scalar_r"}


# --- drill -------------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_a_drill_into_any_spelling_of_a_live_database_is_refused(spelling):
    with pytest.raises(ScratchTargetError) as e:
        check_scratch_target(site(), RestoreTarget(stores={**ELSEWHERE, **SPELLINGS[spelling]}))
    msg = str(e.value)
    (store,) = SPELLINGS[spelling]
    assert f"store {store!r}" in msg and "which is the live database of store" in msg
    assert "Nothing was touched" in msg


def test_a_drill_target_host_that_does_not_resolve_is_refused():
    def no_dns(host, port):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    target = RestoreTarget(stores={**ELSEWHERE, "ledger-pg": {"host": "scratch-db"}})
    with pytest.raises(LocationError, match=r"host 'scratch-db'.*does not resolve"):
        check_scratch_target(site(), target, resolve=no_dns)
