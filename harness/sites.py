"""Build test sites: databases on the test servers, their site file and restore targets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.bank_app import Db
from harness.kinds import KINDS, for_servers
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
        return KINDS[self.kind].moved_to(self.live_name, self.restored_name)


class SiteDbs:
    def __init__(self, pg: PostgresServer, my: MysqlServer, monkeypatch, prefix: str):
        self.pg, self.my, self.prefix = pg, my, prefix
        self.kinds = for_servers(pg, my, {"postgres": PG_ENV, "mysql": MY_ENV})
        self._dbs: list[SiteDb] = []
        monkeypatch.setenv(PG_ENV, PASSWORD)
        monkeypatch.setenv(MY_ENV, PASSWORD)

    def database(self, label: str, kind: str) -> SiteDb:
        live, restored = f"{self.prefix}_{label}", f"{self.prefix}_{label}_r"
        server = self.kinds[kind]
        server.create_db(live)
        db = SiteDb(
            f"{label}-{server.short}".replace("_", "-"),
            kind,
            live,
            restored,
            server.db(live),
            server.db(restored),
        )
        self._dbs.append(db)
        return db

    def all(self) -> list[SiteDb]:
        return list(self._dbs)

    def store_config(self, db: SiteDb) -> dict:
        return self.kinds[db.kind].store_config(db.store_name, db.live_name)

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
