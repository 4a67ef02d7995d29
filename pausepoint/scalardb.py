"""ScalarDB-managed components: what a component declares (``scalardb:`` in the site file) and
the preflight check that its stores capture all of it.

A ScalarDL component keeps its state through ScalarDB (Consensus Commit), often over several
storages (multi-storage). A consistent backup of it is more than its namespaces: the
coordinator table (``<coordinator namespace>.state``) decides the fate of every record left
PREPARED, and ScalarDB's table metadata (the ``scalardb`` database on MySQL/MariaDB, the
``scalardb`` schema on PostgreSQL, in EACH storage) is how ScalarDB finds the tables at all.

How a store holds namespaces comes from its kind's registry entry
(``registry.scalardb_namespaces``): MySQL/MariaDB captures exactly its ``databases``; PostgreSQL
its ``schemas`` of ``database``, or every user schema of it when none are listed; Cassandra its
``keyspaces``, whose schema is ScalarDB's metadata there (nothing else to capture). A kind
without that entry holds none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pausepoint.errors import ScalarDbCoverageError
from pausepoint.stores import registry

if TYPE_CHECKING:
    from pausepoint.locations import Resolver
    from pausepoint.site import Component, Site
    from pausepoint.stores.scalardb_layout import StoreNamespaces

# ScalarDB's defaults (3.16): Coordinator.NAMESPACE and DatabaseConfig's
# DEFAULT_SYSTEM_NAMESPACE_NAME (the JDBC metadata schema unless
# scalar.db.jdbc.table_metadata.schema names another).
DEFAULT_COORDINATOR = "coordinator"
DEFAULT_METADATA = "scalardb"

# A full table name is "namespace.table", so a namespace holds no dot; 64 is MySQL's limit.
Namespace = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_$-]{0,63}$")]


class ScalarDbSettings(BaseModel):
    """``scalardb:`` of a component: the component's data is managed by ScalarDB."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespaces: list[Namespace] = Field(
        min_length=1,
        description="the component's ScalarDB namespaces (ScalarDL Ledger: scalar; Auditor: "
        "auditor), whatever storage each is on",
    )
    coordinator_namespace: Namespace = Field(
        DEFAULT_COORDINATOR,
        description="scalar.db.consensus_commit.coordinator.namespace (its table: state)",
    )
    metadata_namespace: Namespace = Field(
        DEFAULT_METADATA,
        description="where ScalarDB keeps its table metadata in each JDBC storage: "
        "scalar.db.jdbc.table_metadata.schema (ScalarDB 3.16 default: scalardb)",
    )

    @model_validator(mode="after")
    def _distinct(self) -> ScalarDbSettings:
        seen: set[str] = set()
        for ns in self.namespaces:
            if ns in seen:
                raise ValueError(f"namespace {ns!r} is listed twice; list each namespace once")
            seen.add(ns)
        if self.coordinator_namespace in seen:
            raise ValueError(
                f"{self.coordinator_namespace!r} is the coordinator namespace; do not list it "
                "in namespaces"
            )
        if self.metadata_namespace in seen | {self.coordinator_namespace}:
            raise ValueError(
                f"{self.metadata_namespace!r} is ScalarDB's metadata namespace; it cannot also "
                "be a data or the coordinator namespace"
            )
        return self

    def data_namespaces(self) -> list[str]:
        """Every namespace whose tables ScalarDB keeps: the component's and the coordinator."""
        return [*self.namespaces, self.coordinator_namespace]


def _store_views(
    comp: Component, resolve: Resolver | None
) -> tuple[list[StoreNamespaces], list[str]]:
    """(how each store holds namespaces, stores whose kind cannot say: 'name (kind)')."""
    views, blind = [], []
    for cfg in comp.stores:
        view = registry.scalardb_namespaces(cfg, as_target=False, resolve=resolve)
        if view is None:
            blind.append(f"{cfg.name} ({cfg.kind})")
        else:
            views.append(view)
    return views, blind


def holders(views: list[StoreNamespaces], namespace: str) -> list[StoreNamespaces]:
    """The stores that capture ``namespace``: those listing it by name, else those that capture
    every namespace of their storage."""
    named = [v for v in views if v.lists(namespace)]
    return named or [v for v in views if v.captured is None]


def _add_to(views: list[StoreNamespaces], namespace: str) -> str:
    return " or ".join(f"`{v.setting}` of store {v.store!r} (as a {v.unit})" for v in views)


def coverage_problems(name: str, comp: Component, resolve: Resolver | None = None) -> list[str]:
    """What of ScalarDB-managed component ``name`` its stores do not capture, one line each
    with the fix (empty when all of it is captured, or the component is not ScalarDB-managed).
    Raises LocationError when a store's place cannot be told."""
    sdb = comp.scalardb
    if sdb is None:
        return []
    views, blind = _store_views(comp, resolve)
    problems = []
    used: list[StoreNamespaces] = []
    for ns in sdb.data_namespaces():
        found = holders(views, ns)
        used += found
        if found:
            continue
        what = (
            f"the coordinator namespace {ns!r} (table {ns}.state)"
            if ns == sdb.coordinator_namespace
            else f"ScalarDB namespace {ns!r}"
        )
        fix = (
            f"add {ns!r} to {_add_to(views, ns)}, or add a store that captures it"
            if views
            else "add a postgres or mysql store that captures it"
        )
        problems.append(f"{name}: {what} is captured by no store; {fix}")
    meta = sdb.metadata_namespace
    checked: list[frozenset[str]] = []
    for v in used:
        if v.metadata_in_schema or any(v.storage & s for s in checked):
            continue  # metadata_in_schema: captured with each namespace's own schema
        checked.append(v.storage)
        if not any(w.holds(meta) and w.storage & v.storage for w in views):
            problems.append(
                f"{name}: ScalarDB's table metadata of the storage of store {v.store!r} "
                f"({meta!r}, a {v.unit}, which lists the tables of the namespaces there) is "
                f"captured by no store; add {meta!r} to `{v.setting}` of store {v.store!r}"
            )
    if problems and blind:
        problems.append(
            f"{name}: stores {', '.join(blind)} are of kinds that do not say which ScalarDB "
            "namespaces they hold, so they cover none"
        )
    return problems


def check_coverage(site: Site, resolve: Resolver | None = None) -> list[str]:
    """Preflight: refuse (ScalarDbCoverageError) a site whose ScalarDB-managed components are
    not captured whole; returns one line per ScalarDB-managed component that is."""
    problems: list[str] = []
    covered = []
    for name, comp in site.components().items():
        found = coverage_problems(name, comp, resolve)
        problems += found
        if comp.scalardb is not None and not found:
            sdb = comp.scalardb
            views, _ = _store_views(comp, resolve)
            used = [v for ns in sdb.data_namespaces() for v in holders(views, ns)]
            meta = (
                "metadata in each namespace's own schema"  # Cassandra: nothing else to capture
                if used and all(v.metadata_in_schema for v in used)
                else f"metadata {sdb.metadata_namespace!r}"
            )
            covered.append(
                f"{name}: namespaces {', '.join(sdb.namespaces)}, coordinator "
                f"{sdb.coordinator_namespace!r} and {meta} captured"
            )
    if problems:
        raise ScalarDbCoverageError(
            f"site {site.site!r}: a backup would not hold every ScalarDB table it needs: "
            + "; ".join(problems)
            + ". Fix the site file's stores (or the component's `scalardb:`); nothing was paused."
        )
    return covered
