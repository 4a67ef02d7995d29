"""ScalarDB's tables in a restored Cassandra cluster, through CQL: what the restore flow's
transaction check (``pausepoint.scalardb_restore.check_transactions``) reads.

ScalarDB 3.16 on Cassandra (github.com/scalar-labs/scalardb, tag v3.16.1,
``core/.../storage/cassandra/CassandraAdmin.java``) keeps no metadata table: a table's columns
are the cluster's schema (``getTableMetadata`` reads the driver's ``TableMetadata``), so the
"metadata" here is ``system_schema.columns`` of the store's keyspaces. A namespace is a
keyspace, and the records and the coordinator table (``<coordinator keyspace>.state``, keyed
by ``tx_id``) carry the same columns and state codes as on JDBC (``scalardb_sql``). Nothing is
renamed on Cassandra (a restore keeps keyspace names), so there is no metadata to rewrite.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from pausepoint.errors import InternalError, RestoreError, StoreCheckError
from pausepoint.stores.scalardb_sql import COMMITTED, COORDINATOR_TABLE, ScalarDbSql

_BATCH = 100  # tx ids per coordinator lookup (an IN on the partition key)


class CassandraScalarDbCql(ScalarDbSql):
    """The same questions as the SQL kinds', asked over the store's CQL session."""

    @staticmethod
    def quote(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    @contextmanager
    def _session(self, what: str) -> Iterator[Any]:
        from cassandra import DriverException

        try:
            cluster, session = self.store.cql()
        except StoreCheckError as exc:
            raise RestoreError(f"store {self.store.name}: {what} failed: {exc}") from None
        try:
            yield session
        except DriverException as exc:
            raise RestoreError(f"store {self.store.name}: {what} failed: {exc}") from None
        finally:
            cluster.shutdown()

    def metadata(self, metadata_namespace: str) -> dict[str, list[str]]:
        """ "keyspace.table" -> its column names, from the cluster's schema (the metadata
        namespace is not used: ScalarDB keeps none on Cassandra)."""
        found: dict[str, list[str]] = {}
        with self._session("reading the keyspaces' schema") as session:
            for ks in self.store.config.keyspaces:
                rows = session.execute(
                    "SELECT table_name, column_name FROM system_schema.columns "
                    "WHERE keyspace_name = %s",
                    (ks,),
                )
                for table, column in rows:
                    found.setdefault(f"{ks}.{table}", []).append(column)
        return found

    def rename_namespaces(self, metadata_namespace: str, renames: dict[str, str]) -> int:
        raise InternalError(
            f"store {self.store.name}: a Cassandra restore keeps keyspace names; no ScalarDB "
            "metadata to rewrite"
        )

    def pending(self, namespace: str, table: str) -> list[tuple[str, int]]:
        """(tx_id, tx_state) of every record not COMMITTED: the whole table read at
        consistency ALL (CQL cannot filter on a regular column without ALLOW FILTERING)."""
        from cassandra import ConsistencyLevel
        from cassandra.query import SimpleStatement

        stmt = SimpleStatement(
            f"SELECT tx_id, tx_state FROM {self.table(namespace, table)}",
            consistency_level=ConsistencyLevel.ALL,
            fetch_size=5000,
        )
        with self._session(f"reading {namespace}.{table}") as session:
            return [
                (str(tx), int(state))
                for tx, state in session.execute(stmt, timeout=300)
                if state is not None and state != COMMITTED
            ]

    def coordinator_states(self, namespace: str, tx_ids: Iterable[str]) -> dict[str, int]:
        from cassandra import ConsistencyLevel
        from cassandra.query import SimpleStatement, ValueSequence

        ids = sorted(set(tx_ids))
        found: dict[str, int] = {}
        stmt = SimpleStatement(
            f"SELECT tx_id, tx_state FROM {self.table(namespace, COORDINATOR_TABLE)} "
            "WHERE tx_id IN %s",
            consistency_level=ConsistencyLevel.ALL,
        )
        with self._session(f"reading the coordinator table {namespace}.state") as session:
            for i in range(0, len(ids), _BATCH):
                rows = session.execute(stmt, (ValueSequence(ids[i : i + _BATCH]),), timeout=120)
                found.update((str(tx), int(state)) for tx, state in rows)
        return found
