"""Every store kind pausepoint knows, in one place: the only file a new kind is added to.

An entry (``StoreKind``) declares what the rest of pausepoint asks of a kind:

- ``config``: its site-file model (a ``StoreConfigBase`` with ``kind: Literal[...]``); the site
  file's union over ``kind`` is built from the entries (``config_union``, ``stores_adapter``);
- ``store``: its Store class as ``"module:Class"``, imported only when a store is opened (each
  kind pulls its own driver);
- ``capabilities``: how it captures (a snapshot established inside the window and copied after,
  or a point-in-time-recovery timestamp with its granularity), whether it is transactional on
  its own, and where a restore may go (in place, side by side);
- ``details``: its typed ``CaptureDetails`` model (``StoreCapture.details`` is read into it);
- ``locations(config, *, as_target, where, resolve)``: the physical places it reads or, as a
  restore target, writes (``pausepoint.locations``): the one answer to "does this restore write
  over the site's own data?";
- ``scalardb`` (optional): how it holds ScalarDB namespaces and reads ScalarDB's tables
  (``pausepoint.stores.scalardb_layout.ScalarDbHooks``); a kind without it cannot hold the
  data of a ScalarDB-managed component.

Nothing outside this module asks which kind a store is. Tests add a kind with ``registered``
(or ``register``/``unregister``); the site model sees it at once.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import Field, TypeAdapter

from pausepoint.errors import StoreKindError
from pausepoint.stores.base import CaptureDetails, Store, StoreConfigBase
from pausepoint.stores.cassandra_config import CassandraCaptureDetails, CassandraConfig
from pausepoint.stores.cosmos.config import CosmosCaptureDetails, CosmosConfig
from pausepoint.stores.dynamodb.config import DynamoCaptureDetails, DynamoConfig
from pausepoint.stores.mysql_config import MysqlBinlogDetails, MysqlCaptureDetails, MysqlConfig
from pausepoint.stores.postgres_config import (
    PostgresCaptureDetails,
    PostgresConfig,
    PostgresWalDetails,
)
from pausepoint.stores.rds.config import RdsCaptureDetails, RdsConfig
from pausepoint.stores.scalardb_layout import ScalarDbHooks, StoreNamespaces

if TYPE_CHECKING:
    from pausepoint.locations import Location, Resolver

RestoreMode = Literal["in_place", "side_by_side"]
BOTH: frozenset[RestoreMode] = frozenset({"in_place", "side_by_side"})


@dataclass(frozen=True)
class Capabilities:
    """What a kind can do, as the flows need to know it (never by asking its name)."""

    # "snapshot": established inside the pause window, copied after it;
    # "pitr": the provider restores to a timestamp; the capture records the window's mid-time.
    capture: Literal["snapshot", "pitr"] = "snapshot"
    # PITR only: the step of the provider's restore times, in ms (the hold derives from it).
    pitr_granularity_ms: int | None = None
    # True when the database alone gives a transactionally consistent snapshot (PostgreSQL,
    # MySQL): a site whose components all live in ONE such store needs no pause.
    transactional: bool = True
    restore_modes: frozenset[RestoreMode] = BOTH

    def __post_init__(self) -> None:
        if (self.capture == "pitr") != (self.pitr_granularity_ms is not None):
            raise StoreKindError("a PITR kind needs pitr_granularity_ms, a snapshot kind none")
        if self.pitr_granularity_ms is not None and self.pitr_granularity_ms < 0:
            raise StoreKindError("pitr_granularity_ms must not be negative")
        if not self.restore_modes or not self.restore_modes <= BOTH:
            raise StoreKindError(f"restore_modes must be a non-empty subset of {sorted(BOTH)}")


LocationsFn = Callable[..., "frozenset[Location]"]  # (config, *, as_target, where, resolve)


@dataclass(frozen=True)
class StoreMode:
    """A variant of a kind chosen by a setting of its config (``StoreConfigBase.store_mode()``,
    e.g. postgres ``pitr: wal``): its own store class, capabilities and capture details. Its
    captures carry ``method``, which is how a manifest's details are read back into ``details``.
    """

    name: str  # the value store_mode() returns
    store: str  # "package.module:Class", imported lazily
    method: str  # StoreCapture.method of its captures
    capabilities: Capabilities
    details: type[CaptureDetails]


@dataclass(frozen=True)
class StoreKind:
    """One store kind (see the module's docstring)."""

    kind: str
    config: type[StoreConfigBase]
    store: str  # "package.module:Class", imported lazily
    locations: LocationsFn
    capabilities: Capabilities = field(default_factory=Capabilities)
    details: type[CaptureDetails] = CaptureDetails
    scalardb: ScalarDbHooks | None = None
    modes: tuple[StoreMode, ...] = ()

    def __post_init__(self) -> None:
        declared = self.config.model_fields["kind"].default
        if declared != self.kind:
            raise StoreKindError(
                f"store kind {self.kind!r}: its config model says kind {declared!r}"
            )
        if any(":" not in s for s in (self.store, *(m.store for m in self.modes))):
            raise StoreKindError(f"store kind {self.kind!r}: store must be 'module:Class'")

    def mode(self, config: StoreConfigBase | None) -> StoreMode | None:
        """The mode a config selects (None: the kind's plain entry)."""
        name = config.store_mode() if config is not None else None
        if name is None:
            return None
        for m in self.modes:
            if m.name == name:
                return m
        raise StoreKindError(
            f"store kind {self.kind!r} has no mode {name!r}; its modes: "
            f"{', '.join(m.name for m in self.modes) or 'none'}"
        )

    def capabilities_of(self, config: StoreConfigBase) -> Capabilities:
        m = self.mode(config)
        return m.capabilities if m is not None else self.capabilities

    def details_of(self, method: str | None) -> type[CaptureDetails]:
        """The details model of a capture made with ``method`` (a mode's, or the kind's)."""
        for m in self.modes:
            if m.method == method:
                return m.details
        return self.details

    def store_class(self, config: StoreConfigBase | None = None) -> type[Store]:
        m = self.mode(config)
        path = m.store if m is not None else self.store
        module, _, name = path.partition(":")
        cls = getattr(importlib.import_module(module), name)
        if not (isinstance(cls, type) and issubclass(cls, Store)):
            raise StoreKindError(f"store kind {self.kind!r}: {path} is not a Store class")
        return cls


# --- the kinds ------------------------------------------------------------------------------


def _postgres_locations(
    cfg: PostgresConfig,
    *,
    as_target: bool,
    where: str | None = None,
    resolve: Resolver | None = None,
) -> frozenset[Location]:
    from pausepoint.locations import server_locations

    return server_locations(cfg, [cfg.database], as_target=as_target, where=where, resolve=resolve)


def _mysql_locations(
    cfg: MysqlConfig, *, as_target: bool, where: str | None = None, resolve: Resolver | None = None
) -> frozenset[Location]:
    from pausepoint.locations import server_locations

    # A restore writes the captured databases under their database_map names.
    names = [cfg.database_map.get(d, d) if as_target else d for d in cfg.databases]
    return server_locations(cfg, names, as_target=as_target, where=where, resolve=resolve)


def _cosmos_locations(cfg: CosmosConfig, **kw: Any) -> frozenset[Location]:
    from pausepoint.stores.cosmos.store import locations

    return locations(cfg, **kw)


def _postgres_namespaces(
    cfg: PostgresConfig, *, as_target: bool, resolve: Resolver | None = None
) -> StoreNamespaces:
    # ScalarDB on PostgreSQL: a namespace is a schema of the configured database. The store
    # captures its listed schemas, or every user schema when none is listed. A restore target
    # keeps schema names (another `database` or server moves all of them, renames none).
    locs = _postgres_locations(cfg, as_target=as_target, resolve=resolve)
    return StoreNamespaces(
        store=cfg.name,
        storage=frozenset(f"{x.server}/{x.database}" for x in locs),
        captured=frozenset(cfg.schemas) or None,
        setting="schemas",
        unit=f"schema of database {cfg.database!r}",
        location_of=lambda _ns: locs,
    )


def _mysql_namespaces(
    cfg: MysqlConfig, *, as_target: bool, resolve: Resolver | None = None
) -> StoreNamespaces:
    from pausepoint.locations import server_locations

    # ScalarDB on MySQL/MariaDB: a namespace is a database; the store captures exactly its
    # `databases`, restored under their `database_map` names.
    names = {d: cfg.database_map.get(d, d) if as_target else d for d in cfg.databases}
    locs = {
        d: server_locations(cfg, [n], as_target=as_target, resolve=resolve)
        for d, n in names.items()
    }
    return StoreNamespaces(
        store=cfg.name,
        storage=frozenset(x.server for ls in locs.values() for x in ls),
        captured=frozenset(cfg.databases),
        setting="databases",
        unit="database",
        renamed={d: n for d, n in names.items() if n != d},
        location_of=lambda ns: locs.get(ns, frozenset()),
    )


def _dynamodb_locations(
    cfg: DynamoConfig, *, as_target: bool, where: str | None = None, resolve: Resolver | None = None
) -> frozenset[Location]:
    from pausepoint.locations import Location

    # Every table of a namespace under the prefix: the same prefix in the same account and
    # region is the same place (the account is not known offline: equal regions count as one).
    server = cfg.server("dynamodb")
    return frozenset(
        Location(
            server,
            f"{cfg.table_prefix}{ns}.*".casefold(),
            f"dynamodb {cfg.region} {cfg.table_prefix}{ns}.*",
        )
        for ns in cfg.all_namespaces
    )


def _rds_locations(
    cfg: RdsConfig, *, as_target: bool, where: str | None = None, resolve: Resolver | None = None
) -> frozenset[Location]:
    from pausepoint.locations import Location

    # RDS identifiers are unique per account and region (and case-insensitive). A target
    # without restore_as would write over the source: it counts as the source's place.
    names = [cfg.source]
    if as_target and cfg.restore_as:
        names = [cfg.restore_as] + ([cfg.cluster_instance] if cfg.is_cluster else [])
    return frozenset(
        Location(cfg.server("rds"), n.casefold(), f"rds {cfg.region} {n}") for n in names
    )


def _dynamodb_namespaces(
    cfg: DynamoConfig, *, as_target: bool, resolve: Resolver | None = None
) -> StoreNamespaces:
    # ScalarDB on DynamoDB: a namespace is the tables <prefix><namespace>.*; a new table_prefix
    # moves every table and renames no namespace (ScalarDB is given the prefix).
    locs = _dynamodb_locations(cfg, as_target=as_target)
    return StoreNamespaces(
        store=cfg.name,
        storage=frozenset({f"{cfg.server('dynamodb')}/{cfg.table_prefix}"}),
        captured=frozenset(cfg.all_namespaces),
        setting="namespaces",
        unit="namespace (DynamoDB tables <table_prefix><namespace>.*)",
        location_of=lambda ns: frozenset(
            x for x in locs if x.database == f"{cfg.table_prefix}{ns}.*".casefold()
        ),
    )


def _cosmos_namespaces(
    cfg: CosmosConfig, *, as_target: bool, resolve: Resolver | None = None
) -> StoreNamespaces:
    # ScalarDB on Cosmos DB: a namespace is a database of the account (the metadata too); a
    # restore goes to a new account under the same database names.
    locs = _cosmos_locations(cfg, as_target=as_target)
    account = (cfg.restore_as or cfg.account) if as_target else cfg.account
    return StoreNamespaces(
        store=cfg.name,
        storage=frozenset({f"cosmos:{cfg.subscription_id.lower()}/{account}"}),
        captured=frozenset(cfg.databases),
        setting="databases",
        unit="database of the Cosmos DB account",
        location_of=lambda ns: frozenset(x for x in locs if x.database == ns.casefold()),
    )


def _cassandra_locations(
    cfg: CassandraConfig,
    *,
    as_target: bool,
    where: str | None = None,
    resolve: Resolver | None = None,
) -> frozenset[Location]:
    """Every keyspace on every node (its ring address) and every contact point, at the CQL
    port: a restore writes each node's files."""
    from pausepoint.locations import Location, servers, system_resolver

    where = where or ("in the restore target" if as_target else "in the site file")
    hosts = [n.address for n in cfg.nodes] + list(cfg.contact_points)
    found: set[Location] = set()
    for host in hosts:
        for server in servers(host, cfg.port, store=cfg.name, where=where,
                              resolve=resolve or system_resolver):  # fmt: skip
            for ks in cfg.keyspaces:
                found.add(Location(server, ks.casefold(), f"{host}:{cfg.port}/{ks}"))
    return frozenset(found)


def _cassandra_namespaces(
    cfg: CassandraConfig, *, as_target: bool, resolve: Resolver | None = None
) -> StoreNamespaces:
    # ScalarDB on Cassandra: a namespace is a keyspace of the cluster; the store captures its
    # `keyspaces` on every node, and a restore keeps their names. ScalarDB 3.16 keeps no table
    # metadata of its own there (CassandraAdmin.getTableMetadata reads the cluster's schema;
    # its system keyspace, `scalardb`, holds no table), and each keyspace's schema is captured
    # with it (schema.cql, the snapshots' CREATE TABLE with the table ids).
    locs = _cassandra_locations(cfg, as_target=as_target, resolve=resolve)
    return StoreNamespaces(
        store=cfg.name,
        storage=frozenset(f"cassandra:{x.server}" for x in locs),
        captured=frozenset(cfg.keyspaces),
        setting="keyspaces",
        unit="keyspace",
        location_of=lambda ns: frozenset(x for x in locs if x.database == ns.casefold()),
        metadata_in_schema=True,
    )


BUILTIN: tuple[StoreKind, ...] = (
    StoreKind(
        kind="postgres",
        config=PostgresConfig,
        store="pausepoint.stores.postgres:PostgresStore",
        locations=_postgres_locations,
        details=PostgresCaptureDetails,
        scalardb=ScalarDbHooks(
            _postgres_namespaces, "pausepoint.stores.scalardb_sql:PostgresScalarDbSql"
        ),
        modes=(
            # pitr: wal: base backups + archived WAL, replayed into a NEW server (docs/stores.md)
            StoreMode(
                name="wal",
                store="pausepoint.stores.postgres_wal:PostgresWalStore",
                method="pitr-wal",
                capabilities=Capabilities(
                    capture="pitr",
                    pitr_granularity_ms=1,  # commit timestamps are microseconds
                    # A replay to a time is consistent, but only a pause makes that time the
                    # captured (fingerprinted) state: even a site in this one store pauses.
                    transactional=False,
                    restore_modes=frozenset({"side_by_side"}),
                ),
                details=PostgresWalDetails,
            ),
        ),
    ),
    StoreKind(
        kind="mysql",
        config=MysqlConfig,
        store="pausepoint.stores.mysql.store:MysqlStore",
        locations=_mysql_locations,
        details=MysqlCaptureDetails,
        scalardb=ScalarDbHooks(
            _mysql_namespaces, "pausepoint.stores.scalardb_sql:MysqlScalarDbSql"
        ),
        modes=(
            # pitr: binlog: a base dump + fetched binary logs, replayed by time (docs/stores.md)
            StoreMode(
                name="binlog",
                store="pausepoint.stores.mysql.binlog:MysqlBinlogStore",
                method="pitr-binlog",
                # Whole seconds: without a pause the second holds writes on both sides of the
                # point, so even a site in this one store pauses (for at least a second).
                capabilities=Capabilities(
                    capture="pitr", pitr_granularity_ms=1000, transactional=False
                ),
                details=MysqlBinlogDetails,
            ),
        ),
    ),
    StoreKind(
        kind="cosmos",
        config=CosmosConfig,
        store="pausepoint.stores.cosmos.store:CosmosStore",
        locations=_cosmos_locations,
        # Restores go to a NEW account, to the second; Cosmos DB has no cross-partition
        # snapshot of its own, so the pause makes the point consistent.
        capabilities=Capabilities(
            capture="pitr",
            pitr_granularity_ms=1000,
            transactional=False,
            restore_modes=frozenset({"side_by_side"}),
        ),
        details=CosmosCaptureDetails,
        scalardb=ScalarDbHooks(_cosmos_namespaces),
    ),
    StoreKind(
        kind="dynamodb",
        config=DynamoConfig,
        store="pausepoint.stores.dynamodb.store:DynamoStore",
        locations=_dynamodb_locations,
        # DynamoDB restores to the second; a table alone is not a consistent ScalarDB snapshot.
        capabilities=Capabilities(capture="pitr", pitr_granularity_ms=1000, transactional=False),
        details=DynamoCaptureDetails,
        scalardb=ScalarDbHooks(_dynamodb_namespaces),
    ),
    StoreKind(
        kind="rds",
        config=RdsConfig,
        store="pausepoint.stores.rds.store:RdsStore",
        locations=_rds_locations,
        # RDS restores to the second, always into a new instance or cluster.
        capabilities=Capabilities(
            capture="pitr", pitr_granularity_ms=1000, restore_modes=frozenset({"side_by_side"})
        ),
        details=RdsCaptureDetails,
    ),
    StoreKind(
        kind="cassandra",
        config=CassandraConfig,
        store="pausepoint.stores.cassandra.store:CassandraStore",
        locations=_cassandra_locations,
        # Not transactional across nodes or partitions: every node is snapshotted in a pause.
        capabilities=Capabilities(capture="snapshot", transactional=False),
        details=CassandraCaptureDetails,
        scalardb=ScalarDbHooks(
            _cassandra_namespaces, "pausepoint.stores.cassandra.scalardb_cql:CassandraScalarDbCql"
        ),
    ),
)

# --- the registry ---------------------------------------------------------------------------

_lock = threading.Lock()
_kinds: dict[str, StoreKind] = {k.kind: k for k in BUILTIN}
_adapter: tuple[tuple[str, ...], TypeAdapter[Any]] | None = None


def register(entry: StoreKind, *, replace: bool = False) -> StoreKind:
    """Add a kind (tests, plugins). The site model sees it from the next validation on."""
    with _lock:
        if entry.kind in _kinds and not replace:
            raise StoreKindError(
                f"store kind {entry.kind!r} is registered already; pass replace=True to replace it"
            )
        _kinds[entry.kind] = entry
    return entry


def unregister(kind: str) -> None:
    with _lock:
        _kinds.pop(kind, None)


@contextlib.contextmanager
def registered(entry: StoreKind) -> Iterator[StoreKind]:
    """The kind is known inside the block only (a test's extra kind)."""
    register(entry)
    try:
        yield entry
    finally:
        unregister(entry.kind)


def kinds() -> tuple[StoreKind, ...]:
    """Every kind, in registration order (the built-in ones first)."""
    with _lock:
        return tuple(_kinds.values())


def names() -> list[str]:
    return [k.kind for k in kinds()]


def find(kind: str) -> StoreKind | None:
    with _lock:
        return _kinds.get(kind)


def get(kind: str) -> StoreKind:
    entry = find(kind)
    if entry is None:
        raise StoreKindError(
            f"no store kind {kind!r}; known kinds: {', '.join(names())} (a kind from a plugin "
            "needs that plugin installed)"
        )
    return entry


def of(config: StoreConfigBase) -> StoreKind:
    """The entry of a store's config."""
    return get(config.kind)


def config_union() -> Any:
    """The site file's store model: a union of every kind's config, discriminated by ``kind``
    (errors then name the kind)."""
    models = tuple(k.config for k in kinds())
    return Annotated[Union[models], Field(discriminator="kind")]  # noqa: UP007 (a runtime tuple)


def stores_adapter() -> TypeAdapter[Any]:
    """Validates a component's ``stores:`` list against the kinds registered now."""
    global _adapter
    key = tuple(names())
    cached = _adapter
    if cached is not None and cached[0] == key:
        return cached[1]
    adapter: TypeAdapter[Any] = TypeAdapter(list[config_union()])  # type: ignore[misc]
    _adapter = (key, adapter)
    return adapter


def store_class(kind: str) -> type[Store]:
    """The Store implementation of a kind (imported lazily: each pulls its own driver)."""
    return get(kind).store_class()


def open_store(config: StoreConfigBase, resolve: Any) -> Store:
    return of(config).store_class(config)(config, resolve)


def capabilities(config: StoreConfigBase) -> Capabilities:
    """What this store can do: its kind's, or the mode its config selects (``pitr: wal``)."""
    return of(config).capabilities_of(config)


def capture_capabilities(kind: str, method: str | None) -> Capabilities | None:
    """The capabilities a capture was made with (its kind, or the mode of its ``method``);
    None for a kind not registered here."""
    entry = find(kind)
    if entry is None:
        return None
    for m in entry.modes:
        if m.method == method:
            return m.capabilities
    return entry.capabilities


def locations(
    config: StoreConfigBase,
    *,
    as_target: bool,
    where: str | None = None,
    resolve: Resolver | None = None,
) -> frozenset[Location]:
    """Where a store's data lives (as a restore target: where the restore writes)."""
    return of(config).locations(config, as_target=as_target, where=where, resolve=resolve)


def scalardb_namespaces(
    config: StoreConfigBase, *, as_target: bool, resolve: Resolver | None = None
) -> StoreNamespaces | None:
    """How a store holds ScalarDB namespaces (None: its kind cannot say)."""
    hooks = of(config).scalardb
    if hooks is None:
        return None
    return hooks.namespaces(config, as_target=as_target, resolve=resolve)


def scalardb_sql(store: Store) -> Any:
    """The SQL access to ScalarDB's tables of an open store (None: its kind has none)."""
    hooks = get(store.config.kind).scalardb
    cls = None if hooks is None else hooks.sql_class()
    return None if cls is None else cls(store)
