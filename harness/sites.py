"""Build test sites: databases on the test servers, their site file and restore targets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg
import pymysql
import yaml

from harness.bank_app import Db
from harness.servers import PASSWORD, MysqlServer, PostgresServer

PG_ENV = "PP_TEST_PG_PASSWORD"
MY_ENV = "PP_TEST_MY_PASSWORD"


@dataclass
class SiteDb:
    """One store of a test site: the live database and the one it is restored into."""

    store_name: str
    kind: str
    live_name: str
    restored_name: str
    live: Db
    restored: Db

    @property
    def restore_override(self) -> dict:
        if self.kind == "postgres":
            return {"database": self.restored_name}
        return {"database_map": {self.live_name: self.restored_name}}


class SiteDbs:
    def __init__(self, pg: PostgresServer, my: MysqlServer, monkeypatch, prefix: str):
        self.pg, self.my, self.prefix = pg, my, prefix
        self._dbs: list[SiteDb] = []
        monkeypatch.setenv(PG_ENV, PASSWORD)
        monkeypatch.setenv(MY_ENV, PASSWORD)

    def pg_db(self, name: str) -> Db:
        pg = self.pg

        def connect():
            return psycopg.connect(
                host=pg.host, port=pg.port, user=pg.user, password=PASSWORD, dbname=name
            )

        return Db(name, connect, "postgres")

    def my_db(self, name: str) -> Db:
        my = self.my

        def connect():
            return pymysql.connect(
                host=my.host, port=my.port, user=my.user, password=PASSWORD, database=name
            )

        return Db(name, connect, "mysql")

    def database(self, label: str, kind: str) -> SiteDb:
        live, restored = f"{self.prefix}_{label}", f"{self.prefix}_{label}_r"
        if kind == "postgres":
            with self.pg.connect() as conn:
                conn.execute(f'CREATE DATABASE "{live}"')
            db = SiteDb(
                f"{label}-pg".replace("_", "-"),
                kind,
                live,
                restored,
                self.pg_db(live),
                self.pg_db(restored),
            )
        else:
            with self.my.connect() as conn:
                conn.cursor().execute(f"CREATE DATABASE `{live}`")
            db = SiteDb(
                f"{label}-my".replace("_", "-"),
                kind,
                live,
                restored,
                self.my_db(live),
                self.my_db(restored),
            )
        self._dbs.append(db)
        return db

    def all(self) -> list[SiteDb]:
        return list(self._dbs)

    def store_config(self, db: SiteDb) -> dict:
        if db.kind == "postgres":
            return {
                "kind": "postgres",
                "name": db.store_name,
                "host": self.pg.host,
                "port": self.pg.port,
                "user": self.pg.user,
                "password": {"env": PG_ENV},
                "database": db.live_name,
                "bin_dir": str(self.pg.bin_dir),
            }
        return {
            "kind": "mysql",
            "name": db.store_name,
            "host": self.my.host,
            "port": self.my.port,
            "user": self.my.user,
            "password": {"env": MY_ENV},
            "databases": [db.live_name],
        }

    def site_dict(self, targets: dict, stores: dict[str, list[SiteDb]], **extra) -> dict:
        data = {
            "site": self.prefix.replace("_", "-"),
            "catalog": {"path": "catalog"},
            "pause": {"call_timeout_ms": 3000, "drain_timeout_ms": 5000},
            **extra,
        }
        for comp, dbs in stores.items():
            data[comp] = {
                "targets": {"static": [str(t) for t in targets[comp]]},
                "stores": [self.store_config(db) for db in dbs],
            }
        return data

    def write_site(
        self, directory: Path, targets: dict, stores: dict[str, list[SiteDb]], **extra
    ) -> Path:
        path = directory / "site.yaml"
        path.write_text(yaml.safe_dump(self.site_dict(targets, stores, **extra), sort_keys=False))
        return path
