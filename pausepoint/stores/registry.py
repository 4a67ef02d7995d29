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
  over the site's own data?".

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
from pausepoint.stores.mysql_config import MysqlCaptureDetails, MysqlConfig
from pausepoint.stores.postgres_config import PostgresCaptureDetails, PostgresConfig

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
class StoreKind:
    """One store kind (see the module's docstring)."""

    kind: str
    config: type[StoreConfigBase]
    store: str  # "package.module:Class", imported lazily
    locations: LocationsFn
    capabilities: Capabilities = field(default_factory=Capabilities)
    details: type[CaptureDetails] = CaptureDetails

    def __post_init__(self) -> None:
        declared = self.config.model_fields["kind"].default
        if declared != self.kind:
            raise StoreKindError(
                f"store kind {self.kind!r}: its config model says kind {declared!r}"
            )
        if ":" not in self.store:
            raise StoreKindError(f"store kind {self.kind!r}: store must be 'module:Class'")

    def store_class(self) -> type[Store]:
        module, _, name = self.store.partition(":")
        cls = getattr(importlib.import_module(module), name)
        if not (isinstance(cls, type) and issubclass(cls, Store)):
            raise StoreKindError(f"store kind {self.kind!r}: {self.store} is not a Store class")
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


BUILTIN: tuple[StoreKind, ...] = (
    StoreKind(
        kind="postgres",
        config=PostgresConfig,
        store="pausepoint.stores.postgres:PostgresStore",
        locations=_postgres_locations,
        details=PostgresCaptureDetails,
    ),
    StoreKind(
        kind="mysql",
        config=MysqlConfig,
        store="pausepoint.stores.mysql.store:MysqlStore",
        locations=_mysql_locations,
        details=MysqlCaptureDetails,
    ),
    StoreKind(
        kind="cassandra",
        config=CassandraConfig,
        store="pausepoint.stores.cassandra.store:CassandraStore",
        locations=_cassandra_locations,
        # Not transactional across nodes or partitions: every node is snapshotted in a pause.
        capabilities=Capabilities(capture="snapshot", transactional=False),
        details=CassandraCaptureDetails,
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
    return of(config).store_class()(config, resolve)


def capabilities(config: StoreConfigBase) -> Capabilities:
    return of(config).capabilities


def locations(
    config: StoreConfigBase,
    *,
    as_target: bool,
    where: str | None = None,
    resolve: Resolver | None = None,
) -> frozenset[Location]:
    """Where a store's data lives (as a restore target: where the restore writes)."""
    return of(config).locations(config, as_target=as_target, where=where, resolve=resolve)
