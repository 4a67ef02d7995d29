"""Real ScalarDB tables on the test servers: multi-storage over PostgreSQL and MariaDB, created by
ScalarDB's own schema loader (the jars of ``.cache/scalardb-node/tools``, built by
scripts/fetch-scalardb-node.sh), and a read through ScalarDB's transaction manager (a
single-file Java program run from that class path) to prove ScalarDB finds a table through its
metadata."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCHEMA_LOADER_MAIN = "com.scalar.db.schemaloader.SchemaLoader"

# Scans one table through a Consensus Commit transaction: prints "rows=N sum=S".
READER = """
import com.scalar.db.api.*;
import com.scalar.db.service.TransactionFactory;
public class ScalarDbRead {
  public static void main(String[] a) throws Exception {
    DistributedTransactionManager m = TransactionFactory.create(a[0]).getTransactionManager();
    try {
      DistributedTransaction tx = m.begin();
      long n = 0, sum = 0;
      for (Result r : tx.scan(Scan.newBuilder().namespace(a[1]).table(a[2]).all().build())) {
        n++; sum += r.getInt("balance");
      }
      tx.commit();
      System.out.println("rows=" + n + " sum=" + sum);
    } finally { m.close(); }
  }
}
"""


@dataclass(frozen=True)
class MultiStorage:
    """ScalarDB over two storages: ``mbank`` on MariaDB, ``pbank`` and the coordinator on
    PostgreSQL (database ``pg_database``), the metadata in ``metadata`` of each (or per storage
    ``my_metadata``/``pg_metadata`` when they differ)."""

    pg: object  # harness.servers.PostgresServer
    my: object  # harness.servers.MysqlServer
    pg_database: str
    mbank: str
    pbank: str = "pbank"
    coordinator: str = "coordinator"
    my_metadata: str = "scalardb"
    pg_metadata: str = "scalardb"

    def properties(self) -> dict[str, str]:
        props = {
            "scalar.db.storage": "multi-storage",
            "scalar.db.transaction_manager": "consensus-commit",
            "scalar.db.consensus_commit.coordinator.namespace": self.coordinator,
            "scalar.db.multi_storage.storages": "mariadb,postgres",
            "scalar.db.multi_storage.namespace_mapping": (
                f"{self.mbank}:mariadb,{self.pbank}:postgres,{self.coordinator}:postgres"
            ),
            "scalar.db.multi_storage.default_storage": "postgres",
        }
        for name, server, url, meta in (
            (
                "mariadb",
                self.my,
                f"jdbc:mariadb://{self.my.host}:{self.my.port}/",
                self.my_metadata,
            ),
            (
                "postgres",
                self.pg,
                f"jdbc:postgresql://{self.pg.host}:{self.pg.port}/{self.pg_database}",
                self.pg_metadata,
            ),
        ):
            prefix = f"scalar.db.multi_storage.storages.{name}."
            props |= {
                prefix + "storage": "jdbc",
                prefix + "contact_points": url,
                prefix + "username": server.user,
                prefix + "password": server.password,
                prefix + "jdbc.table_metadata.schema": meta,
                prefix + "jdbc.connection_pool.min_idle": "1",
            }
        return props

    def schema(self) -> dict:
        table = {
            "transaction": True,
            "partition-key": ["id"],
            "columns": {"id": "INT", "balance": "INT"},
        }
        return {f"{self.mbank}.accounts": table, f"{self.pbank}.accounts": table}

    def write_properties(self, path: Path) -> Path:
        path.write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()))
        path.chmod(0o600)
        return path


def _java(lib: Path, args: list[str], cwd: Path, timeout: float = 300) -> str:
    java = shutil.which("java")
    assert java, "java is not on PATH"
    # Every jar named: source-file mode compiles against the class path, where "lib/*" is
    # not expanded.
    classpath = ":".join(str(p) for p in sorted(lib.glob("*.jar")))
    cmd = [java, "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", classpath]
    r = subprocess.run(cmd + args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    out = (r.stdout + r.stderr).strip()
    if r.returncode != 0:
        raise AssertionError(f"java {args[0]} failed ({r.returncode}):\n{out[-3000:]}")
    return r.stdout


def create_schema(lib: Path, storage: MultiStorage, workdir: Path) -> None:
    """ScalarDB's schema loader creates the tables, the coordinator table and the metadata."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = storage.write_properties(workdir / "schema-loader.properties")
    schema = workdir / "schema.json"
    schema.write_text(json.dumps(storage.schema()))
    _java(
        lib,
        [
            SCHEMA_LOADER_MAIN,
            "--config",
            str(config),
            "--schema-file",
            str(schema),
            "--coordinator",
        ],
        workdir,
    )


def read_through_scalardb(lib: Path, storage: MultiStorage, namespace: str, workdir: Path) -> str:
    """``rows=N sum=S`` of ``namespace.accounts`` read by a ScalarDB transaction."""
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "ScalarDbRead.java"
    source.write_text(READER)
    config = storage.write_properties(workdir / "read.properties")
    return _java(lib, [str(source), str(config), namespace, "accounts"], workdir).strip()
