"""ScalarDB-managed components on REAL ScalarDB tables, through the real backup and restore flows.

ScalarDB's own schema loader (3.16, ``.cache/scalardb-node/tools``) creates a multi-storage
layout on the session's servers: namespace ``<tag>_mbank`` on MariaDB, ``pbank`` and the
coordinator on PostgreSQL, ScalarDB's metadata (namespace ``<tag>_meta``, the configurable
``jdbc.table_metadata.schema``) in both. The records and coordinator states of the cases are
written directly into the tables ScalarDB created, with ScalarDB's state codes (PREPARED 1,
COMMITTED 3; ``TransactionState.java``): a committed base, a PREPARED record whose transaction
the coordinator holds as COMMITTED (what a drained pause leaves for lazy recovery), and for the
torn case a PREPARED record whose transaction the coordinator does not know.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from flows.backup import backup
from flows.restore import restore
from harness.gate_server import start_gate_cluster
from harness.kinds import for_servers
from harness.servers import PASSWORD
from harness.sites import MY_ENV, PG_ENV
from pausepoint.errors import ScalarDbCoverageError, ScalarDbRenameError, ScalarDbTransactionError
from pausepoint.requests import BackupRequest, RestoreRequest
from tests.support.prefect_api import latest_artifact
from tests.support.scalardb_multi import MultiStorage, create_schema, read_through_scalardb

pytestmark = [pytest.mark.integration]

NOW = 1_765_000_000_000  # ms, any fixed time


@dataclass
class Sdb:
    tag: str
    storage: MultiStorage
    site: dict
    site_file: Path
    work: Path
    lib: Path
    pg: object
    my: object
    nodes: object

    @property
    def mbank(self) -> str:
        return self.storage.mbank

    @property
    def meta(self) -> str:
        return self.storage.my_metadata

    def write_site(self, data: dict, name: str = "site.yaml") -> Path:
        path = self.work / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def target(self, mysql: dict, name: str) -> Path:
        path = self.work / f"{name}.yaml"
        stores = {"ledger-pg": {"database": f"{self.storage.pg_database}_{name}"}}
        stores["ledger-my"] = mysql
        path.write_text(yaml.safe_dump({"stores": stores}))
        return path

    def my_rows(self, sql: str, args=()) -> list:
        conn = self.my.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def pg_exec(self, sql: str, args=(), db: str | None = None) -> list:
        with self.pg.connect(db or self.storage.pg_database) as conn:
            cur = conn.execute(sql, args)
            return cur.fetchall() if cur.description else []


def _record(tx: str, state: int, balance: int, ident: int) -> tuple:
    return (ident, balance, tx, state, 1, NOW, NOW if state == 3 else None)


INSERT = (
    "INSERT INTO {t} (id, balance, tx_id, tx_state, tx_version, tx_prepared_at, "
    "tx_committed_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


@pytest.fixture(scope="module")
def sdb(pg_server, mysql_server, scalardb_tools, prefect_api, tmp_path_factory) -> Iterator[Sdb]:
    tag = f"sdb{secrets.token_hex(3)}"
    work = tmp_path_factory.mktemp("scalardb")
    pg_db = f"{tag}_pg"
    with pg_server.connect() as conn:
        conn.execute(f'CREATE DATABASE "{pg_db}"')
    storage = MultiStorage(
        pg_server,
        mysql_server,
        pg_db,
        mbank=f"{tag}_mbank",
        my_metadata=f"{tag}_meta",
        pg_metadata=f"{tag}_meta",
    )
    mp = pytest.MonkeyPatch()
    try:
        create_schema(scalardb_tools, storage, work / "loader")
        kinds = for_servers(pg_server, mysql_server, {"postgres": PG_ENV, "mysql": MY_ENV})
        mp.setenv(PG_ENV, PASSWORD)
        mp.setenv(MY_ENV, PASSWORD)
        with start_gate_cluster(1) as nodes:
            ledger = {
                "targets": {"static": [str(t) for t in nodes.targets]},
                "stores": [
                    kinds["postgres"].store_config(
                        "ledger-pg", pg_db, schemas=["pbank", "coordinator", f"{tag}_meta"]
                    ),
                    kinds["mysql"].store_config("ledger-my", storage.mbank)
                    | {"databases": [storage.mbank, f"{tag}_meta"]},
                ],
                "scalardb": {
                    "namespaces": ["pbank", storage.mbank],
                    "metadata_namespace": f"{tag}_meta",
                },
            }
            site = {
                "site": tag,
                "catalog": {"path": str(work / "catalog")},
                "pause": {"call_timeout_ms": 3000, "drain_timeout_ms": 5000},
                "ledger": ledger,
            }
            ctx = Sdb(tag, storage, site, work / "site.yaml", work, scalardb_tools,
                      pg_server, mysql_server, nodes)  # fmt: skip
            ctx.write_site(site)
            _seed(ctx)
            yield ctx
    finally:
        mp.undo()
        conn = mysql_server.connect()
        try:
            with conn.cursor() as cur:
                for db in (storage.mbank, f"{tag}_meta"):
                    for suffix in ("", "_r", "_r2"):
                        cur.execute(f"DROP DATABASE IF EXISTS `{db}{suffix}`")
        finally:
            conn.close()
        with pg_server.connect() as conn:
            for suffix in ("", "_side", "_live", "_torn", "_cov"):
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_db}{suffix}" WITH (FORCE)')


def _seed(ctx: Sdb) -> None:
    """Committed accounts on both storages (5 x 100 each), and one transfer whose coordinator
    state is COMMITTED but whose PostgreSQL record is still PREPARED (lazy recovery rolls it
    forward): a drained pause may leave exactly that."""
    mtable = f"`{ctx.mbank}`.`accounts`"
    conn = ctx.my.connect()
    try:
        with conn.cursor() as cur:
            for i in range(5):
                cur.execute(INSERT.format(t=mtable), _record("seed", 3, 100, i))
    finally:
        conn.close()
    ptable = '"pbank"."accounts"'
    for i in range(4):
        ctx.pg_exec(INSERT.format(t=ptable), _record("seed", 3, 100, i))
    ctx.pg_exec(INSERT.format(t=ptable), _record("tx-rolls-forward", 1, 100, 4))
    ctx.pg_exec(
        'INSERT INTO "coordinator"."state" (tx_id, tx_state, tx_created_at) VALUES (%s, 3, %s)',
        ("tx-rolls-forward", NOW),
    )


def _restore(sdb: Sdb, point: str, target: Path) -> dict:
    return restore(
        RestoreRequest(
            site_file=str(sdb.site_file), point_id=point, confirm=point, target_file=str(target)
        )
    )


def _metadata_tables(ctx: Sdb, meta: str) -> list[str]:
    rows = ctx.my_rows(f"SELECT DISTINCT full_table_name FROM `{meta}`.`metadata` ORDER BY 1")
    return [r[0] for r in rows]


def test_the_schema_loader_wrote_the_layout_pausepoint_reads(sdb):
    # ScalarDB 3.16's JDBC metadata: <metadata schema>.metadata keyed by full_table_name.
    assert _metadata_tables(sdb, sdb.meta) == [f"{sdb.mbank}.accounts"]
    pg = sdb.pg_exec(f'SELECT DISTINCT full_table_name FROM "{sdb.meta}"."metadata" ORDER BY 1')
    assert [r[0] for r in pg] == ["coordinator.state", "pbank.accounts"]
    columns = sdb.my_rows(
        f"SELECT column_name FROM `{sdb.meta}`.`metadata` WHERE full_table_name = %s",
        (f"{sdb.mbank}.accounts",),
    )
    assert {"tx_id", "tx_state", "tx_version", "before_tx_state"} <= {c[0] for c in columns}


def test_preflight_refuses_a_site_that_misses_a_namespace_the_coordinator_or_metadata(sdb):
    data = yaml.safe_load(yaml.safe_dump(sdb.site))
    data["ledger"]["stores"][0]["schemas"] = ["pbank", f"{sdb.tag}_meta"]  # no coordinator
    data["ledger"]["stores"][1]["databases"] = [sdb.mbank]  # no metadata on MariaDB
    data["catalog"]["path"] = str(sdb.work / "catalog-cov")
    path = sdb.write_site(data, "site-cov.yaml")
    with pytest.raises(ScalarDbCoverageError) as err:
        backup(BackupRequest(site_file=str(path)))
    text = str(err.value)
    assert "the coordinator namespace 'coordinator' (table coordinator.state)" in text
    assert f"add '{sdb.tag}_meta' to `databases` of store 'ledger-my'" in text
    assert "nothing was paused" in text
    assert sdb.nodes.servers[0].calls.get("Pause", 0) == 0


@pytest.fixture(scope="module")
def drained_point(sdb) -> str:
    return backup(BackupRequest(site_file=str(sdb.site_file)))


def test_a_rename_that_would_rewrite_the_live_metadata_is_refused(sdb, drained_point):
    target = sdb.target({"database_map": {sdb.mbank: f"{sdb.mbank}_r2"}}, "live")
    with pytest.raises(ScalarDbRenameError) as err:
        _restore(sdb, drained_point, target)
    assert f"namespace '{sdb.mbank}' as '{sdb.mbank}_r2'" in str(err.value)
    assert "the live site's" in str(err.value)
    # Refused before anything was touched.
    assert sdb.my_rows("SHOW DATABASES LIKE %s", (f"{sdb.mbank}_r2",)) == []
    assert _metadata_tables(sdb, sdb.meta) == [f"{sdb.mbank}.accounts"]


def test_side_by_side_restore_rewrites_scalardbs_metadata_to_the_new_names(sdb, drained_point):
    mbank_r, meta_r = f"{sdb.mbank}_r", f"{sdb.meta}_r"
    target = sdb.target({"database_map": {sdb.mbank: mbank_r, sdb.meta: meta_r}}, "side")
    result = _restore(sdb, drained_point, target)
    # The restored metadata names the restored namespace; the live one is untouched.
    assert _metadata_tables(sdb, meta_r) == [f"{mbank_r}.accounts"]
    assert _metadata_tables(sdb, sdb.meta) == [f"{sdb.mbank}.accounts"]
    checks = {name: (ok, detail) for name, ok, detail in result["checks"]}
    assert checks["ScalarDB metadata renamed"][0]
    ok, detail = checks["ScalarDB transactions ledger"]
    assert ok, detail
    assert "1 PREPARED records, coordinator COMMITTED (rolls forward)" in detail
    report = str(latest_artifact(f"{sdb.tag}-restore").data)
    assert "## ScalarDB transactions of ledger: PASS" in report
    assert "| PREPARED | COMMITTED | 1 | pbank.accounts | yes |" in report
    # ScalarDB itself finds the renamed namespace through the rewritten metadata.
    restored = MultiStorage(
        sdb.pg, sdb.my, f"{sdb.storage.pg_database}_side", mbank=mbank_r,
        my_metadata=meta_r, pg_metadata=sdb.meta,
    )  # fmt: skip
    assert read_through_scalardb(sdb.lib, restored, mbank_r, sdb.work / "read") == (
        "rows=5 sum=500"
    )


def test_a_torn_copy_fails_the_restore_naming_the_records_the_coordinator_does_not_know(sdb):
    # A transfer PREPARED on MariaDB whose coordinator state is missing: what copying the
    # coordinator before that transaction committed and MariaDB after it prepared leaves.
    conn = sdb.my.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(INSERT.format(t=f"`{sdb.mbank}`.`accounts`"), _record("tx-torn", 1, 50, 9))
    finally:
        conn.close()
    try:
        point = backup(BackupRequest(site_file=str(sdb.site_file)))
    finally:
        sdb.my_rows(f"DELETE FROM `{sdb.mbank}`.`accounts` WHERE id = 9")
    target = sdb.target(
        {"host": "127.0.0.1", "database_map": {sdb.mbank: f"{sdb.mbank}_r2",
                                               sdb.meta: f"{sdb.meta}_r2"}},
        "torn",
    )  # fmt: skip
    with pytest.raises(ScalarDbTransactionError) as err:
        _restore(sdb, point, target)
    text = str(err.value)
    assert "1 PREPARED records, no coordinator state: unresolved" in text
    assert f"{sdb.mbank}_r2.accounts" in text and "tx-torn" in text
    assert "1 PREPARED records, coordinator COMMITTED (rolls forward)" in text
    report = str(latest_artifact(f"{sdb.tag}-restore").data)
    assert "## ScalarDB transactions of ledger: FAIL" in report
    assert f"| PREPARED | none | 1 | {sdb.mbank}_r2.accounts | **no** | tx-torn |" in report
