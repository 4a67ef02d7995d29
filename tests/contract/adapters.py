"""One adapter per store kind: everything the contract suite needs to know about a kind.

An adapter gives the suite a server (the session's, started only when a test asks for it), a
fresh place per test (the database(s) one store lives in), the bank-like schema and its rows,
a writer for "under load", the config of a live store and of a restore target, how to corrupt
a capture, the server's list of client connections, typed rows for the fingerprint and the
changes it must see, and the spellings of its location. Server plumbing that bench/ shares
(create and drop a database, connect) is in ``harness/kinds.py``.

A new store kind is done when an adapter for it, added to ``ADAPTERS``, passes the suite.
"""

from __future__ import annotations

import socket
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import pytest

from harness.kinds import KINDS, ServerKind
from pausepoint.secrets import SecretRef, SecretResolver
from pausepoint.stores.base import Fingerprint, Store, StoreConfigBase
from pausepoint.stores.mysql import MysqlStore
from pausepoint.stores.mysql_config import MysqlConfig
from pausepoint.stores.postgres import PostgresStore
from pausepoint.stores.postgres_config import PostgresConfig

ACCOUNTS = 200
INITIAL = 1_000
PASSWORD_ENV = "PP_TEST_CONTRACT_PASSWORD"  # what every store config of the suite names
OTHER_SERVER = "198.51.100.7"  # TEST-NET-2: never an address of this machine
# Every way of writing "this machine" as a host (locations.py: one server).
THIS_MACHINE_HOSTS = {
    "host localhost": "localhost",
    "host 127.1": "127.1",
    "host 127.0.0.2": "127.0.0.2",
    "host 0.0.0.0": "0.0.0.0",
    "host ::1": "::1",
    "host [::1]": "[::1]",
    "the machine's host name": socket.gethostname(),
    "a host list with this machine in it": f"{OTHER_SERVER},localhost",
}


@dataclass(frozen=True)
class Place:
    """Where one store's data lives for one test: its databases on the server and the
    qualified names of the bank tables (``account`` and ``transfer``) in them."""

    databases: tuple[str, ...]
    account: str = ""
    transfer: str = ""


class StoreAdapter(ABC):
    """The per-kind half of the contract suite."""

    kind: ClassVar[str]
    server_fixture: ClassVar[str]  # the session fixture that starts this kind's server
    store_class: ClassVar[type[Store]]
    config_model: ClassVar[type[StoreConfigBase]]
    dump_tool: ClassVar[str]  # check() reports its version; ToolMissingError names it
    tool_package: ClassVar[str]  # the package ToolMissingError tells the operator to install
    # Settings a capture must work with, by test id (each is captured under load).
    variants: ClassVar[dict[str, dict[str, Any]]] = {"default": {}}
    # SQL changes of typed rows that the fingerprint must see (format key {db}: the database).
    changes: ClassVar[list[str]] = []
    # What this kind cannot show in the suite, and why (feature -> reason); a test that needs
    # a feature skips with the reason (``needs``). Features: "exact_point" (a restore holds
    # exactly the captured snapshot, not the state at restore time), "capture_fingerprint"
    # (the capture records the data's fingerprint), "fingerprint" (the live data's), "rows",
    # "empty_target" (an existing empty target is restored into without --replace),
    # "server_snapshot" (the open snapshot holds a server connection), "tools" (dump tools,
    # bin_dir), "password", "in_place" (a restore over a live location),
    # "in_place_by_default" (no target entry means in place).
    lacks: ClassVar[dict[str, str]] = {}

    def needs(self, *features: str) -> None:
        for feature in features:
            if feature in self.lacks:
                pytest.skip(f"{self.kind}: {self.lacks[feature]}")

    def has(self, feature: str) -> bool:
        return feature not in self.lacks

    def __init__(self, request: pytest.FixtureRequest):
        self._request = request

    # --- the server ---------------------------------------------------------------------------

    @cached_property
    def server(self) -> Any:
        return self._request.getfixturevalue(self.server_fixture)

    @cached_property
    def harness(self) -> ServerKind:
        return KINDS[self.kind](self.server, PASSWORD_ENV)

    def resolver(self, password: str | None = None) -> SecretResolver:
        return SecretResolver(environ={PASSWORD_ENV: password or self.server.password})

    @abstractmethod
    def connections(self) -> set[int]:
        """Ids of the server's client connections, except the one asking."""

    # --- places -------------------------------------------------------------------------------

    @staticmethod
    def _name(prefix: str) -> str:
        return f"{prefix}_{uuid.uuid4().hex[:10]}"

    @abstractmethod
    def bank(self) -> Place:
        """A fresh place with the bank-like schema (two schemas or databases, like ScalarDL's
        tables and its coordinator), ACCOUNTS accounts of INITIAL each, NULLs, binary data,
        timestamps, an empty table."""

    def elsewhere(self, place: Place, tag: str) -> Place:
        """A place for a restore target of ``place`` (nothing created)."""
        return Place(
            tuple(f"{d}_{tag}" for d in place.databases),
            *(self._moved(t, place, tag) for t in (place.account, place.transfer)),
        )

    @staticmethod
    def _moved(table: str, place: Place, tag: str) -> str:
        for d in place.databases:
            table = table.replace(f"{d}.", f"{d}_{tag}.")
        return table

    def exists(self, place: Place) -> bool:
        return any(self.harness.db_exists(d) for d in place.databases)

    def create_empty(self, place: Place) -> None:
        for d in place.databases:
            self.harness.create_db(d)

    # --- configs and stores -------------------------------------------------------------------

    @abstractmethod
    def settings(self, place: Place) -> dict[str, Any]:
        """The site-file settings that name the place's databases."""

    @abstractmethod
    def target_settings(self, live: Place, target: Place) -> dict[str, Any]:
        """Restore-target settings that write the store of ``live`` into ``target``."""

    def _config(self, **settings: Any) -> StoreConfigBase:
        return self.config_model(
            name=f"ledger-{self.kind}",
            host=self.server.host,
            port=self.server.port,
            user=self.server.user,
            password=SecretRef(env=PASSWORD_ENV),
            **settings,
        )

    def live_config(self, place: Place, **settings: Any) -> StoreConfigBase:
        return self._config(**{**self.settings(place), **settings})

    def target_config(self, live: Place, target: Place, **settings: Any) -> StoreConfigBase:
        return self._config(**{**self.settings(live), **self.target_settings(live, target)},
                            **settings)  # fmt: skip

    def store(self, config: StoreConfigBase, password: str | None = None) -> Store:
        return self.store_class(config, self.resolver(password))

    def live(self, place: Place, **settings: Any) -> Store:
        return self.store(self.live_config(place, **settings))

    def target(self, live: Place, target: Place, **settings: Any) -> Store:
        return self.store(self.target_config(live, target, **settings))

    # --- the bank rows ------------------------------------------------------------------------

    @abstractmethod
    def writer_connection(self, place: Place) -> Any: ...

    @abstractmethod
    def transfer(self, place: Place) -> Callable[[Any, int, int], None]:
        """One transaction over both schemas/databases: balance down, transfer row in."""

    def _query(self, place: Place, sql: str) -> list[tuple]:
        conn = self.harness.connect(place.databases[0])
        try:
            cur = conn.cursor()
            cur.execute(sql)
            return [tuple(r) for r in cur.fetchall()]
        finally:
            conn.close()

    def invariant(self, place: Place) -> tuple[int, int]:
        """(sum of balances + sum of transfers, number of transfers): the first never moves."""
        (total, moved), *_ = self._query(
            place,
            f"SELECT (SELECT SUM(balance) FROM {place.account}) "
            f"+ (SELECT COALESCE(SUM(amount), 0) FROM {place.transfer}), "
            f"(SELECT COUNT(*) FROM {place.transfer})",
        )
        return int(total), int(moved)

    def rows(self, place: Place) -> list[tuple]:
        """Every bank row, in order: any change to the place shows here."""
        return self._query(place, f"SELECT id, balance FROM {place.account} ORDER BY id") + (
            self._query(place, f"SELECT * FROM {place.transfer} ORDER BY 1")
        )

    @abstractmethod
    def bank_tables(self, place: Place) -> set[str]:
        """Fingerprint keys of the two bank tables."""

    # --- what the suite checks per kind -------------------------------------------------------

    @abstractmethod
    def assert_capture_shape(self, capture: Any, settings: dict[str, Any]) -> None:
        """The kind's method, artifact names and tool versions."""

    @abstractmethod
    def assert_check_facts(self, facts: dict[str, Any], place: Place) -> None: ...

    @abstractmethod
    def non_empty_words(self, place: Place) -> list[str]:
        """What TargetNotEmptyError names for the bank place (besides --replace)."""

    @abstractmethod
    def missing(self, place: Place) -> tuple[dict[str, Any], str]:
        """Settings that list something the server lacks, and its name."""

    @abstractmethod
    def add_large_table(self, place: Place) -> int:
        """Add a table of tens of MB; returns its size in bytes."""

    # --- the fingerprint ----------------------------------------------------------------------

    @abstractmethod
    def typed(self, change: str | None = None, reverse: bool = False) -> Place:
        """A fresh place with rows of every common type (NULL and empty apart), an empty or
        row-only table; ``change`` applied; ``reverse``: the same rows in the reverse order."""

    @abstractmethod
    def apply_change(self, place: Place, change: str) -> None:
        """Run one of ``changes`` on a place made by ``typed`` (or restored from one)."""

    @abstractmethod
    def changed_table(self, change: str) -> str:
        """The relative fingerprint key (see ``relative``) that ``change`` touches."""

    @staticmethod
    def relative(fingerprint: Fingerprint, place: Place) -> Fingerprint:
        """The fingerprint with the place's database names taken out of the keys, so two
        places compare."""
        out = {}
        for key, value in fingerprint.items():
            for n, d in enumerate(place.databases):
                if key.startswith(f"{d}."):
                    key = f"#{n}.{key[len(d) + 1 :]}"
            out[key] = value
        return out

    # --- locations (no server needed) ---------------------------------------------------------

    @classmethod
    @abstractmethod
    def site_store(cls, name: str, database: str) -> dict:
        """The site-file entry of a store holding ``database`` on this machine's default port."""

    @classmethod
    def spellings(cls, database: str) -> dict[str, dict]:
        """Restore-target settings that name the live ``database`` of ``site_store`` without
        writing it as the site file does. Every one must count as in place."""
        return {label: {"host": host} for label, host in THIS_MACHINE_HOSTS.items()}

    @classmethod
    def moved_to(cls, database: str, other: str) -> dict:
        return KINDS[cls.kind].moved_to(database, other)

    @classmethod
    def other_servers(cls, database: str) -> dict[str, dict]:
        """Settings that keep the database name but reach another server: not in place."""
        return {
            "another host": {"host": OTHER_SERVER},
            "another port of this machine": {"port": cls.default_port + 1},
        }

    default_port: ClassVar[int]


# --- PostgreSQL -------------------------------------------------------------------------------

PG_TYPED_TABLE = """
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE TABLE public.typed (
        id int PRIMARY KEY, note text, label varchar(20), flag boolean, big bigint, small smallint,
        blob bytea, day date, at time, ts timestamp, tstz timestamptz, uid uuid, amount numeric,
        ratio double precision, span interval, doc jsonb, tags text[], feel mood, padded char(4));
    CREATE TABLE public.nothing ();
"""
PG_TYPED_ROWS = """
    INSERT INTO public.typed VALUES
      (1, 'a', 'x', true, 9007199254740993, -2, '\\x00ff', '2024-02-29', '23:59:59.5',
       '2024-01-01 00:00:00', '2024-01-01 12:00:00+02', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
       1.50, '-0', '1 day', '{"k": [1, 2]}', '{a,NULL}', 'ok', 'ab'),
      (2, '', '', false, 0, 0, '\\x', '1970-01-01', '00:00', '1970-01-01', '1970-01-01+00',
       '00000000-0000-0000-0000-000000000000', 0, 0, '0', 'null', '{}', 'sad', ''),
      (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL);
    INSERT INTO public.nothing DEFAULT VALUES;
"""


class PostgresAdapter(StoreAdapter):
    kind = "postgres"
    server_fixture = "pg_server"
    store_class = PostgresStore
    config_model = PostgresConfig
    dump_tool = "pg_dump"
    tool_package = "postgresql-client"
    default_port = 5432
    variants = {"all-schemas": {}, "listed": {"schemas": ["scalar", "coordinator"]}}
    changes = [
        "UPDATE public.typed SET note = 'b' WHERE id = 1",
        "UPDATE public.typed SET note = NULL WHERE id = 2",  # '' -> NULL
        "UPDATE public.typed SET note = '' WHERE id = 3",  # NULL -> ''
        "UPDATE public.typed SET blob = '\\x00fe' WHERE id = 1",
        "UPDATE public.typed SET amount = 1.5 WHERE id = 1",  # same value, other scale
        "UPDATE public.typed SET ratio = 0.0 WHERE id = 1",  # -0 -> 0
        "UPDATE public.typed SET span = '24 hours' WHERE id = 1",  # equal to '1 day'
        "UPDATE public.typed SET tstz = tstz + interval '1 microsecond' WHERE id = 1",
        "UPDATE public.typed SET feel = 'happy' WHERE id = 1",
        "UPDATE public.typed SET tags = '[0:1]={a,NULL}' WHERE id = 1",  # other bounds
        "UPDATE public.typed SET label = 'X' WHERE id = 1",
        # Rows trade a value: a fingerprint that combined columns linearly would not see it.
        "UPDATE public.typed SET big = CASE id WHEN 1 THEN 0 ELSE 9007199254740993 END "
        "WHERE id IN (1, 2)",
        "UPDATE public.typed SET note = CASE id WHEN 1 THEN '' ELSE 'a' END WHERE id IN (1, 2)",
        "INSERT INTO public.typed (id) VALUES (4)",  # one extra row
        "DELETE FROM public.typed WHERE id = 2",  # one missing row
        "INSERT INTO public.nothing DEFAULT VALUES",
    ]

    def connections(self) -> set[int]:
        with self.server.connect() as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' "
                "AND pid <> pg_backend_pid()"
            ).fetchall()
        return {r[0] for r in rows}

    def _new_db(self, prefix: str) -> str:
        name = self._name(prefix)
        self.harness.create_db(name)
        return name

    def bank(self) -> Place:
        db = self._new_db("pp")
        with self.server.connect(db) as conn:
            conn.execute(
                """
                CREATE SCHEMA scalar;
                CREATE SCHEMA coordinator;
                CREATE TABLE scalar.account (
                    id int PRIMARY KEY, balance bigint NOT NULL, note text, data bytea,
                    updated timestamptz DEFAULT now(), ratio double precision);
                CREATE TABLE coordinator.transfer (
                    tx_id bigserial PRIMARY KEY, account int NOT NULL, amount bigint NOT NULL);
                CREATE TABLE public.empty_one (id int);
                """
            )
            conn.execute(
                "INSERT INTO scalar.account "
                "SELECT g, %s, CASE WHEN g %% 3 = 0 THEN NULL ELSE 'n' || g END, "
                "decode(md5(g::text), 'hex'), now(), g / 7.0 FROM generate_series(0, %s - 1) g",
                (INITIAL, ACCOUNTS),
            )
        return Place((db,), "scalar.account", "coordinator.transfer")

    def elsewhere(self, place: Place, tag: str) -> Place:
        # one database; the schemas keep their names
        return Place((f"{place.databases[0]}_{tag}",), place.account, place.transfer)

    def settings(self, place: Place) -> dict[str, Any]:
        return {"database": place.databases[0]}

    def target_settings(self, live: Place, target: Place) -> dict[str, Any]:
        return self.moved_to(live.databases[0], target.databases[0])

    def writer_connection(self, place: Place) -> Any:
        return self.server.connect(place.databases[0])

    def transfer(self, place: Place) -> Callable[[Any, int, int], None]:
        def transfer(conn: Any, account: int, amount: int) -> None:
            with conn.transaction():
                conn.execute(
                    f"UPDATE {place.account} SET balance = balance - %s, updated = now() "
                    "WHERE id = %s",
                    (amount, account),
                )
                conn.execute(
                    f"INSERT INTO {place.transfer} (account, amount) VALUES (%s, %s)",
                    (account, amount),
                )

        return transfer

    def bank_tables(self, place: Place) -> set[str]:
        return {place.account, place.transfer}

    def assert_capture_shape(self, capture: Any, settings: dict[str, Any]) -> None:
        assert capture.method == "pg_dump-directory"
        paths = [a.path for a in capture.artifacts]
        assert all(p.startswith("dump/") for p in paths[:-1]) and paths[-1] == "toc.list"
        assert "pg_dump" in capture.tool_versions

    def assert_check_facts(self, facts: dict[str, Any], place: Place) -> None:
        assert facts["server_version"].startswith("15")
        assert {"scalar", "coordinator", "public"} <= set(facts["schemas"])

    def non_empty_words(self, place: Place) -> list[str]:
        return [place.databases[0], place.transfer]

    def missing(self, place: Place) -> tuple[dict[str, Any], str]:
        return {"schemas": ["scalar", "nope"]}, "nope"

    def add_large_table(self, place: Place) -> int:
        with self.server.connect(place.databases[0]) as conn:
            conn.execute(
                "CREATE TABLE scalar.big AS SELECT g AS id, repeat(md5(g::text), 4) AS payload "
                "FROM generate_series(1, 200000) g"
            )
            return conn.execute("SELECT pg_total_relation_size('scalar.big')").fetchone()[0]

    def typed(self, change: str | None = None, reverse: bool = False) -> Place:
        db = self._new_db("typed")
        with self.server.connect(db) as conn:
            conn.execute(PG_TYPED_TABLE)
            conn.execute(PG_TYPED_ROWS)
            if reverse:  # rewrite the table in the reverse physical order
                conn.execute(
                    "CREATE TABLE public.tmp AS SELECT * FROM public.typed ORDER BY id DESC"
                )
                conn.execute("DELETE FROM public.typed")
                conn.execute("INSERT INTO public.typed SELECT * FROM public.tmp")
                conn.execute("DROP TABLE public.tmp")
        place = Place((db,))
        if change:
            self.apply_change(place, change)
        return place

    def apply_change(self, place: Place, change: str) -> None:
        with self.server.connect(place.databases[0]) as conn:
            conn.execute(change)

    def changed_table(self, change: str) -> str:
        return "public.nothing" if "nothing" in change else "public.typed"

    @classmethod
    def site_store(cls, name: str, database: str) -> dict:
        return {"kind": "postgres", "name": name, "host": "127.0.0.1", "user": "u",
                "database": database}  # fmt: skip

    @classmethod
    def spellings(cls, database: str) -> dict[str, dict]:
        return {
            **super().spellings(database),
            "the socket directory": {"host": "/var/run/postgresql"},
            "the same database name": {"database": database},
            "the same name in other case": {"database": database.upper()},
            "a setting that does not move it (jobs: 1)": {"jobs": 1},
        }


# --- MySQL (the test server is MariaDB) -------------------------------------------------------

MY_TYPED_ROWS = [
    "(1, 'a', 'x', 0x000A0D5C27, '2024-01-01 12:00:00.5', 0.1, 1.50, '{\"k\": [1]}', 1)",
    "(2, '', '', '', '1970-01-02 00:00:00', 0, 0, 'null', 0)",
    "(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    "(4, 'q''),(x\\\\', 'y', 'a),(b', NULL, 1e300, -1, '[]', 1)",
]


class MysqlAdapter(StoreAdapter):
    kind = "mysql"
    server_fixture = "mysql_server"
    store_class = MysqlStore
    config_model = MysqlConfig
    dump_tool = "mariadb-dump"
    tool_package = "mariadb-client"
    default_port = 3306
    variants = {"plain": {"gzip_level": 0}, "gzip1": {"gzip_level": 1}}
    changes = [
        "UPDATE {db}.typed SET note = 'b' WHERE id = 1",
        "UPDATE {db}.typed SET note = NULL WHERE id = 2",  # '' -> NULL
        "UPDATE {db}.typed SET note = '' WHERE id = 3",  # NULL -> ''
        "UPDATE {db}.typed SET bin = 0x000A0D5C28 WHERE id = 1",
        "UPDATE {db}.typed SET ts = '2024-01-01 12:00:00.500001' WHERE id = 1",
        "UPDATE {db}.typed SET ratio = 1e-300 WHERE id = 2",  # 0 -> nearly 0
        "UPDATE {db}.typed SET ratio = 1.0000000000000002e300 WHERE id = 4",  # the last bit
        # Rows trade a value.
        "UPDATE {db}.typed SET label = IF(id = 1, '', 'x') WHERE id IN (1, 2)",
        "INSERT INTO {db}.typed (id) VALUES (5)",  # one extra row
        "DELETE FROM {db}.typed WHERE id = 2",  # one missing row
        "INSERT INTO {db}.empty VALUES (NULL)",
    ]

    def connections(self) -> set[int]:
        with self.server.connect() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT ID FROM information_schema.PROCESSLIST "
                "WHERE ID <> CONNECTION_ID() AND COMMAND NOT IN ('Daemon', 'Binlog Dump')"
            )
            return {int(r[0]) for r in cur.fetchall()}

    def _exec(self, *statements: str) -> None:
        with self.server.connect() as conn, conn.cursor() as cur:
            for s in statements:
                cur.execute(s)

    def bank(self) -> Place:
        """A ledger database and a coordinator database, like ScalarDL on multi-storage."""
        suffix = uuid.uuid4().hex[:8]
        ledger, coord = f"ledger_{suffix}", f"coord_{suffix}"
        self._exec(
            f"CREATE DATABASE {ledger} CHARACTER SET utf8mb4",
            f"CREATE DATABASE {coord}",
            f"CREATE TABLE {ledger}.account (id INT PRIMARY KEY, balance BIGINT NOT NULL, "
            "note TEXT NULL, data BLOB, updated TIMESTAMP(6) NULL, ratio DOUBLE) ENGINE=InnoDB",
            f"CREATE TABLE {coord}.transfer (tx_id BIGINT AUTO_INCREMENT PRIMARY KEY, "
            "account INT NOT NULL, amount BIGINT NOT NULL) ENGINE=InnoDB",
            f"CREATE TABLE {coord}.zz_marker (v VARCHAR(64)) ENGINE=InnoDB",
            f"INSERT INTO {ledger}.account SELECT seq, {INITIAL}, "
            "IF(seq % 3 = 0, NULL, CONCAT('n', seq, '\\n''quoted''')), UNHEX(MD5(seq)), "
            f"NOW(6), seq / 7 FROM {ledger}.seq_0_to_{ACCOUNTS - 1}",
        )
        return Place((ledger, coord), f"{ledger}.account", f"{coord}.transfer")

    def settings(self, place: Place) -> dict[str, Any]:
        return {"databases": list(place.databases)}

    def target_settings(self, live: Place, target: Place) -> dict[str, Any]:
        return {"database_map": dict(zip(live.databases, target.databases, strict=True))}

    def writer_connection(self, place: Place) -> Any:
        return self.server.connect()

    def transfer(self, place: Place) -> Callable[[Any, int, int], None]:
        def transfer(conn: Any, account: int, amount: int) -> None:
            with conn.cursor() as cur:  # one transaction over both databases
                cur.execute("BEGIN")
                cur.execute(
                    f"UPDATE {place.account} SET balance = balance - %s, updated = NOW(6) "
                    "WHERE id = %s",
                    (amount, account),
                )
                cur.execute(
                    f"INSERT INTO {place.transfer} (account, amount) VALUES (%s, %s)",
                    (account, amount),
                )
                cur.execute("COMMIT")

        return transfer

    def bank_tables(self, place: Place) -> set[str]:
        return {place.account, place.transfer}

    def assert_capture_shape(self, capture: Any, settings: dict[str, Any]) -> None:
        assert capture.method == "mariadb-dump-single-transaction"
        gzip = settings.get("gzip_level", 0)
        assert [a.path for a in capture.artifacts] == ["dump.sql.gz" if gzip else "dump.sql"]
        assert "commit_guard" not in capture.details

    def assert_check_facts(self, facts: dict[str, Any], place: Place) -> None:
        assert "MariaDB" in facts["server_version"]
        assert facts["tables"] == 3

    def non_empty_words(self, place: Place) -> list[str]:
        return [place.databases[0], place.account]

    def missing(self, place: Place) -> tuple[dict[str, Any], str]:
        return {"databases": [*place.databases, "nope_db"]}, "nope_db"

    def add_large_table(self, place: Place) -> int:
        db = place.databases[0]
        self._exec(
            f"CREATE TABLE {db}.big (id INT PRIMARY KEY, body TEXT)",
            f"INSERT INTO {db}.big SELECT seq, REPEAT(MD5(seq), 8) FROM {db}.seq_1_to_100000",
        )
        self.harness.settle(db)  # InnoDB's sizes are statistics: fresh ones
        return self.harness.db_bytes(db)

    def typed(self, change: str | None = None, reverse: bool = False) -> Place:
        db = self._name("typed")
        rows = MY_TYPED_ROWS[::-1] if reverse else MY_TYPED_ROWS
        self._exec(
            f"CREATE DATABASE {db} CHARACTER SET utf8mb4",
            f"CREATE TABLE {db}.typed (id INT PRIMARY KEY, note TEXT, label VARCHAR(20), "
            "bin VARBINARY(20), ts TIMESTAMP(6) NULL, ratio DOUBLE, amount DECIMAL(10,3), "
            "doc JSON, flag BOOLEAN) ENGINE=InnoDB",
            f"CREATE TABLE {db}.empty (id INT) ENGINE=InnoDB",
            f"INSERT INTO {db}.typed VALUES {', '.join(rows)}",
        )
        place = Place((db,))
        if change:
            self.apply_change(place, change)
        return place

    def apply_change(self, place: Place, change: str) -> None:
        self._exec(change.format(db=place.databases[0]))

    def changed_table(self, change: str) -> str:
        return "#0.empty" if ".empty" in change else "#0.typed"

    @classmethod
    def site_store(cls, name: str, database: str) -> dict:
        return {"kind": "mysql", "name": name, "host": "127.0.0.1", "user": "u",
                "databases": [database]}  # fmt: skip

    @classmethod
    def spellings(cls, database: str) -> dict[str, dict]:
        return {
            **super().spellings(database),
            "an identity database_map": {"database_map": {database: database}},
            "an empty database_map": {"database_map": {}},
            "the same name in other case": {"database_map": {database: database.upper()}},
            "a setting that does not move it (gzip_level: 1)": {"gzip_level": 1},
        }


# The kinds the suite runs for: a new kind adds its adapter here.
ADAPTERS: dict[str, type[StoreAdapter]] = {a.kind: a for a in (PostgresAdapter, MysqlAdapter)}

from tests.contract.aws_adapters import DynamoAdapter, RdsAdapter  # noqa: E402 (uses the above)

ADAPTERS.update({a.kind: a for a in (DynamoAdapter, RdsAdapter)})
