"""SQL access to ScalarDB's own tables in a restored JDBC store: its table metadata, the
transaction metadata columns of its records, the coordinator's states.

The layout is ScalarDB 3.16's, read from its source (github.com/scalar-labs/scalardb, tag
v3.16.1; unchanged through v3.16.6):

- ``core/.../storage/jdbc/JdbcAdmin.java``: the metadata table is ``<metadata
  schema>.metadata`` (``METADATA_TABLE = "metadata"``), the schema being
  ``scalar.db.jdbc.table_metadata.schema`` or ``DatabaseConfig.DEFAULT_SYSTEM_NAMESPACE_NAME``
  = ``"scalardb"``; a database on MySQL/MariaDB, a schema on PostgreSQL
  (``CREATE SCHEMA IF NOT EXISTS``). Columns: ``full_table_name`` (``namespace.table``, part
  of the primary key), ``column_name`` (the other part), ``data_type``, ``key_type``,
  ``clustering_order``, ``indexed``, ``ordinal_position``; one row per column of each table.
  3.16 keeps no separate namespaces table for JDBC: a namespace exists when its schema or
  database does (``information_schema.schemata``), and ``getNamespaceNames`` reads the
  namespaces from ``full_table_name``.
- ``core/.../api/TransactionState.java``: PREPARED = 1, DELETED = 2, COMMITTED = 3,
  ABORTED = 4, UNKNOWN = 5.
- ``core/.../transaction/consensuscommit/Attribute.java``: record columns ``tx_id``,
  ``tx_state``, ``tx_version``, ``tx_prepared_at``, ``tx_committed_at`` and their ``before_``
  images; ``Coordinator.java``: the coordinator table ``<coordinator namespace>.state``
  (namespace ``coordinator`` unless ``scalar.db.consensus_commit.coordinator.namespace``
  says otherwise) with ``tx_id`` (key), ``tx_state``, ``tx_created_at`` (and
  ``tx_child_ids`` with group commit).

Both drivers (psycopg, PyMySQL) take ``%s`` parameters and close a connection used as a
context manager, so one class holds the SQL and each kind gives its quoting and connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from pausepoint.errors import RestoreError

METADATA_TABLE = "metadata"
COORDINATOR_TABLE = "state"
STATES = {1: "PREPARED", 2: "DELETED", 3: "COMMITTED", 4: "ABORTED", 5: "UNKNOWN"}
COMMITTED = 3
_BATCH = 500  # tx ids per coordinator lookup


class ScalarDbSql:
    """ScalarDB's tables in one open store (``store``: a Store of a kind with ScalarDB hooks)."""

    driver_errors: ClassVar[tuple[type[Exception], ...]] = ()

    def __init__(self, store: Any):
        self.store = store

    @staticmethod
    def quote(name: str) -> str:
        raise NotImplementedError

    def table(self, namespace: str, table: str) -> str:
        return f"{self.quote(namespace)}.{self.quote(table)}"

    @contextmanager
    def _cursor(self, what: str) -> Iterator[Any]:
        try:
            with self.store._connect(RestoreError) as conn, conn.cursor() as cur:
                yield cur
        except self.driver_errors as exc:
            raise RestoreError(f"store {self.store.name}: {what} failed: {exc}") from None

    def metadata(self, metadata_namespace: str) -> dict[str, list[str]]:
        """full_table_name -> its column names, from ScalarDB's metadata table."""
        found: dict[str, list[str]] = {}
        what = f"reading ScalarDB's metadata {metadata_namespace}.{METADATA_TABLE}"
        with self._cursor(what) as cur:
            cur.execute(
                f"SELECT full_table_name, column_name FROM "
                f"{self.table(metadata_namespace, METADATA_TABLE)} "
                "ORDER BY full_table_name, ordinal_position"
            )
            for name, column in cur.fetchall():
                found.setdefault(name, []).append(column)
        return found

    def rename_namespaces(self, metadata_namespace: str, renames: dict[str, str]) -> int:
        """Rewrite ``full_table_name`` of every table of each renamed namespace (old -> new),
        in one transaction; returns the rows changed."""
        what = f"rewriting ScalarDB's metadata {metadata_namespace}.{METADATA_TABLE}"
        changed = 0
        with self._cursor(what) as cur:
            cur.execute("BEGIN")
            for old, new in sorted(renames.items()):
                prefix = f"{old}."
                # LEFT(), not LIKE: a namespace may hold '_', LIKE's wildcard.
                cur.execute(
                    f"UPDATE {self.table(metadata_namespace, METADATA_TABLE)} "
                    "SET full_table_name = CONCAT(%s, SUBSTRING(full_table_name, %s)) "
                    "WHERE LEFT(full_table_name, %s) = %s",
                    (f"{new}.", len(prefix) + 1, len(prefix), prefix),
                )
                changed += cur.rowcount
            cur.execute("COMMIT")
        return changed

    def pending(self, namespace: str, table: str) -> list[tuple[str, int]]:
        """(tx_id, tx_state) of every record of a transactional table not in COMMITTED."""
        with self._cursor(f"reading {namespace}.{table}") as cur:
            cur.execute(
                f"SELECT tx_id, tx_state FROM {self.table(namespace, table)} "
                "WHERE tx_state IS NOT NULL AND tx_state <> %s",
                (COMMITTED,),
            )
            return [(str(r[0]), int(r[1])) for r in cur.fetchall()]

    def coordinator_states(self, namespace: str, tx_ids: Iterable[str]) -> dict[str, int]:
        """tx_id -> tx_state of the coordinator table for each of ``tx_ids`` it holds."""
        ids = sorted(set(tx_ids))
        found: dict[str, int] = {}
        with self._cursor(f"reading the coordinator table {namespace}.state") as cur:
            for i in range(0, len(ids), _BATCH):
                batch = ids[i : i + _BATCH]
                marks = ", ".join(["%s"] * len(batch))
                cur.execute(
                    f"SELECT tx_id, tx_state FROM {self.table(namespace, COORDINATOR_TABLE)} "
                    f"WHERE tx_id IN ({marks})",
                    batch,
                )
                found.update((str(r[0]), int(r[1])) for r in cur.fetchall())
        return found


class PostgresScalarDbSql(ScalarDbSql):
    """A namespace is a schema of the store's database."""

    @staticmethod
    def quote(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def __init__(self, store: Any):
        super().__init__(store)
        import psycopg

        type(self).driver_errors = (psycopg.Error,)


class MysqlScalarDbSql(ScalarDbSql):
    """A namespace is a database of the server."""

    @staticmethod
    def quote(name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def __init__(self, store: Any):
        super().__init__(store)
        import pymysql

        type(self).driver_errors = (pymysql.err.MySQLError,)
