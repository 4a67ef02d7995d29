"""How a store kind holds ScalarDB namespaces: the per-kind answer the ScalarDB checks ask
(``pausepoint.scalardb``, ``pausepoint.scalardb_restore``), declared in the kind's registry
entry (``StoreKind.scalardb``), so nothing outside the registry asks which kind a store is.

ScalarDB's JDBC storage maps a namespace to a database on MySQL/MariaDB and to a schema of the
configured database on PostgreSQL; its table metadata lives in a namespace of the same storage
(``scalardb`` by default). On Cassandra a namespace is a keyspace and the metadata is the
cluster's own schema (``metadata_in_schema``). ``StoreNamespaces`` says, for one store config,
which storage it is, which namespaces it captures, and (as a restore target) which it restores
under another name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pausepoint.locations import Location


@dataclass(frozen=True)
class StoreNamespaces:
    """The ScalarDB namespaces of one store, as its kind maps them."""

    store: str  # the store's name
    # The ScalarDB storage(s) the store is part of, as canonical places: one server (MySQL),
    # one database of a server (PostgreSQL). Two stores of one storage share its metadata.
    storage: frozenset[str]
    # Namespaces the store captures; None: every namespace of its storage (PostgreSQL with
    # no `schemas` listed captures every user schema of its database).
    captured: frozenset[str] | None
    setting: str  # the config field that lists namespaces, for messages ("databases")
    unit: str  # what a namespace is in this kind, for messages ("database", "schema of ...")
    # as a restore target: captured namespace -> the name it is restored under
    renamed: Mapping[str, str] = field(default_factory=dict)
    # captured namespace -> where it is read (live) or written (restore target)
    location_of: Callable[[str], frozenset[Location]] = field(
        default=lambda _ns: frozenset(), compare=False
    )
    # True when the kind keeps ScalarDB's table metadata in the database's own schema, which
    # is captured with each namespace (Cassandra: ScalarDB 3.16's CassandraAdmin reads the
    # cluster's schema; its system keyspace holds no table): no metadata namespace to capture.
    metadata_in_schema: bool = False

    def holds(self, namespace: str) -> bool:
        return self.captured is None or namespace in self.captured

    def lists(self, namespace: str) -> bool:
        """Captured by name (not only as part of "everything in the storage")."""
        return self.captured is not None and namespace in self.captured

    def restored_name(self, namespace: str) -> str:
        return self.renamed.get(namespace, namespace)


NamespacesFn = Callable[..., StoreNamespaces]  # (config, *, as_target, resolve)


@dataclass(frozen=True)
class ScalarDbHooks:
    """A kind's ScalarDB support: its namespace mapping, and its SQL access to ScalarDB's
    tables (``"module:Class"`` of a ``pausepoint.stores.scalardb_sql.ScalarDbSql``,
    imported only when a restore reads them)."""

    namespaces: NamespacesFn
    sql: str | None = None  # None: the kind has no SQL access (no data-plane client here)

    def sql_class(self) -> Any:
        import importlib

        if self.sql is None:
            return None

        module, _, name = self.sql.partition(":")
        return getattr(importlib.import_module(module), name)
