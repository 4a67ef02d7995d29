"""A restore of ScalarDB-managed components: namespaces renamed only with ScalarDB's metadata
rewritten to match, and the restored transaction metadata checked.

**Renames.** ScalarDB finds a table through its metadata (``<metadata namespace>.metadata``,
keyed by ``namespace.table``); a namespace restored under another name (MySQL's
``database_map``) is invisible to ScalarDB unless those rows name it. The policy: pausepoint
rewrites them. A store that renames a namespace of a ScalarDB-managed component must capture
that storage's metadata namespace too, and the metadata must be restored somewhere the live
site does not use (map it as well, e.g. ``scalardb: scalardb_r``, or restore to another
server); then, after the fingerprints matched the captured data, the restored metadata's rows
are rewritten to the new names. Anything else is refused before anything is touched
(ScalarDbRenameError). A restore under the same names (another server, or PostgreSQL's
``database``) rewrites nothing.

**Transaction metadata.** After a restore, every record of the component's transactional
tables (those with ScalarDB's ``tx_*`` columns, found through the restored metadata) that is
not COMMITTED is looked up in the restored coordinator table. Lazy recovery rolls a record
forward when its transaction's state is COMMITTED and back when ABORTED; a record whose
transaction has NO coordinator state is what a torn copy leaves (the coordinator captured
before that transaction committed, the record after it prepared). A point taken after a
drained pause has none, so any such record fails the restore (ScalarDbTransactionError), as
does a table the metadata lists but the restore does not hold.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from pausepoint.errors import RestoreError, ScalarDbRenameError, ScalarDbTransactionError
from pausepoint.locations import shown
from pausepoint.scalardb import holders
from pausepoint.stores import registry
from pausepoint.stores.scalardb_sql import STATES

if TYPE_CHECKING:
    from pausepoint.locations import Location, Resolver
    from pausepoint.restore import RestoreSlot, TargetPlace
    from pausepoint.site import Site
    from pausepoint.stores.scalardb_layout import StoreNamespaces

TX_COLUMNS = {"tx_id", "tx_state", "tx_version"}  # a transactional table has them all
RESOLVED = ("COMMITTED", "ABORTED")  # coordinator states lazy recovery acts on
NO_STATE = "none"
EXAMPLES = 3

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetadataRewrite:
    """Rows of one restored store's ScalarDB metadata to rename after the restore."""

    component: str
    store: str
    metadata: str  # the metadata namespace as restored
    renames: dict[str, str]  # captured namespace -> restored name

    def describe(self) -> str:
        moved = ", ".join(f"{a} -> {b}" for a, b in sorted(self.renames.items()))
        return f"store {self.store}: {moved} in {self.metadata}.metadata"


def plan_rewrites(
    site: Site, places: list[TargetPlace], resolve: Resolver | None = None
) -> list[MetadataRewrite]:
    """The metadata rewrites a restore to ``places`` needs; ScalarDbRenameError (before anything
    is touched) when a namespace is renamed where its metadata cannot follow."""
    live: set[Location] = {loc for p in places for loc in p.live}
    plans, problems = [], []
    for p in places:
        sdb = site.components()[p.component].scalardb
        view = registry.scalardb_namespaces(p.config, as_target=True, resolve=resolve)
        if sdb is None or view is None:
            continue
        renames = {a: b for a, b in view.renamed.items() if a in sdb.data_namespaces()}
        if not renames:
            continue
        meta = sdb.metadata_namespace
        what = f"store {p.name!r} of {p.component} restores " + ", ".join(
            f"namespace {a!r} as {b!r}" for a, b in sorted(renames.items())
        )
        taken = set(view.captured or ()) - set(renames)
        clash = sorted(b for b in renames.values() if b in taken or b in renames)
        if clash:
            problems.append(
                f"{what}, but {', '.join(map(repr, clash))} is also a captured namespace of "
                "that store; rename to names the store does not capture"
            )
        elif not view.holds(meta):
            problems.append(
                f"{what}, but ScalarDB's metadata ({meta!r}) is not captured by that store, so "
                f"its rows cannot be rewritten to the new names; add {meta!r} to "
                f"`{view.setting}` of store {p.name!r} (and map it too), or restore under the "
                "same names to another server"
            )
        elif over := view.location_of(meta) & live:
            problems.append(
                f"{what}, which needs ScalarDB's metadata rewritten, but the metadata would be "
                f"restored into {shown(over)}, the live site's: map {meta!r} to a new name "
                f"as well (e.g. {meta}: {meta}_r), or restore under the same names to another "
                "server"
            )
        else:
            plans.append(MetadataRewrite(p.component, p.name, view.restored_name(meta), renames))
    if problems:
        raise ScalarDbRenameError(
            "; ".join(problems) + ". ScalarDB finds tables through its metadata, which names "
            "each namespace; nothing was touched."
        )
    return plans


def rewrite_metadata(plan: MetadataRewrite, slot: RestoreSlot) -> str:
    """Rename the plan's namespaces in the restored metadata of ``slot``; one line for the
    report."""
    sql = registry.scalardb_sql(slot.store)
    rows = sql.rename_namespaces(plan.metadata, plan.renames)
    return f"{plan.describe()}: {rows} metadata rows"


# --- the transaction-metadata check -------------------------------------------------------


class PendingGroup(BaseModel):
    """Records in one non-COMMITTED state whose transactions have one coordinator state."""

    model_config = ConfigDict(frozen=True)

    record_state: str  # PREPARED, DELETED, ...
    coordinator_state: str  # COMMITTED, ABORTED, or "none" (no coordinator row)
    records: int
    tables: list[str]
    examples: list[str] = Field(default_factory=list)  # a few tx ids

    @property
    def resolved(self) -> bool:
        return self.coordinator_state in RESOLVED

    def describe(self) -> str:
        if self.coordinator_state == NO_STATE:
            fate = "no coordinator state: unresolved"
        else:
            fate = f"coordinator {self.coordinator_state}"
            fate += {"COMMITTED": " (rolls forward)", "ABORTED": " (rolls back)"}.get(
                self.coordinator_state, ": unresolved"
            )
        return (
            f"{self.records} {self.record_state} records, {fate}, in {', '.join(self.tables)}"
            + (f" (tx {', '.join(self.examples)})" if not self.resolved else "")
        )


class ScalarDbCheck(BaseModel):
    """The transaction-metadata check of one ScalarDB-managed component after a restore."""

    model_config = ConfigDict(frozen=True)

    component: str
    tables: list[str]  # transactional tables read (restored names)
    groups: list[PendingGroup] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)  # unreadable metadata or tables
    # stores whose kind cannot read ScalarDB's tables here (no SQL access: DynamoDB, Cosmos DB)
    unchecked: list[str] = Field(default_factory=list)

    @property
    def unresolved(self) -> int:
        return sum(g.records for g in self.groups if not g.resolved)

    @property
    def passed(self) -> bool:
        return not self.problems and not self.unresolved

    def summary(self) -> str:
        parts = [f"{len(self.tables)} transactional tables read"]
        if self.tables and not self.groups:
            parts.append("every record COMMITTED")
        if self.unchecked:
            parts.append(
                f"NOT checked: store(s) {', '.join(self.unchecked)} (their kind cannot read "
                "ScalarDB's tables here)"
            )
        parts += [g.describe() for g in self.groups]
        parts += self.problems
        return "; ".join(parts)


def _views(slots: list[RestoreSlot], resolve: Resolver | None) -> list[tuple[Any, Any]]:
    out = []
    for slot in slots:
        view = registry.scalardb_namespaces(slot.store.config, as_target=True, resolve=resolve)
        if view is not None:
            out.append((slot, view))
    return out


def check_transactions(
    site: Site, component: str, slots: list[RestoreSlot], resolve: Resolver | None = None
) -> ScalarDbCheck:
    """Read the restored transaction metadata of ``component`` (its slots only)."""
    sdb = site.components()[component].scalardb
    if sdb is None:
        raise ValueError(f"component {component!r} is not ScalarDB-managed")
    pairs = _views([s for s in slots if s.component == component], resolve)
    views: list[StoreNamespaces] = [v for _, v in pairs]
    by_view = {id(v): s for s, v in pairs}
    problems: list[str] = []
    unchecked: list[str] = []
    tables: list[str] = []
    records: dict[str, list[tuple[str, int]]] = {}  # table -> (tx_id, state)
    seen: set[tuple[frozenset[str], str]] = set()
    for slot, view in pairs:
        # The storage's metadata: the captured metadata namespace, or (Cassandra) the schema.
        if not (view.metadata_in_schema or view.holds(sdb.metadata_namespace)):
            continue
        # The namespaces of this storage, under their restored names.
        names = {
            w.restored_name(ns)
            for w in views
            if w.storage & view.storage
            for ns in sdb.namespaces
            if w in holders(views, ns)
        }
        sql = registry.scalardb_sql(slot.store)
        if sql is None:  # a kind without SQL access here (DynamoDB, Cosmos DB): not checked
            log.warning(
                "store %s: its kind cannot read ScalarDB's transaction metadata here; not checked",
                slot.store.name,
            )
            unchecked.append(slot.store.name)
            continue
        try:
            metadata = sql.metadata(view.restored_name(sdb.metadata_namespace))
        except RestoreError as exc:
            problems.append(str(exc))
            continue
        for full, columns in sorted(metadata.items()):
            ns, _, table = full.partition(".")
            key = (view.storage, full)
            if ns not in names or not set(columns) >= TX_COLUMNS or key in seen:
                continue
            seen.add(key)
            try:
                records[full] = sql.pending(ns, table)
            except RestoreError as exc:
                problems.append(
                    f"{exc} (ScalarDB's metadata lists {full}; the restore does not hold it)"
                )
                continue
            tables.append(full)
    states: dict[str, int] = {}
    tx_ids = {tx for rows in records.values() for tx, _ in rows}
    coordinators = holders(views, sdb.coordinator_namespace)
    if tx_ids and not coordinators:
        problems.append(
            f"no restored store holds the coordinator namespace {sdb.coordinator_namespace!r}"
        )
    elif tx_ids:
        view = coordinators[0]
        sql = registry.scalardb_sql(by_view[id(view)].store)
        if sql is None:
            problems.append(
                f"the coordinator namespace {sdb.coordinator_namespace!r} is on store "
                f"{view.store!r}, whose kind cannot read it here: the states of "
                f"{len(tx_ids)} pending transactions are unknown"
            )
        else:
            try:
                states = sql.coordinator_states(
                    view.restored_name(sdb.coordinator_namespace), tx_ids
                )
            except RestoreError as exc:
                problems.append(str(exc))
    groups: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for full, rows in records.items():
        for tx, state in rows:
            coord = states.get(tx)
            key = (
                STATES.get(state, f"state {state}"),
                NO_STATE if coord is None else STATES.get(coord, f"state {coord}"),
            )
            groups[key].append((full, tx))
    return ScalarDbCheck(
        component=component,
        tables=tables,
        unchecked=unchecked,
        groups=[
            PendingGroup(
                record_state=rs,
                coordinator_state=cs,
                records=len(items),
                tables=sorted({t for t, _ in items}),
                examples=sorted({tx for _, tx in items})[:EXAMPLES],
            )
            for (rs, cs), items in sorted(groups.items())
        ],
        problems=problems,
    )


def raise_if_unresolved(checks: list[ScalarDbCheck], point_id: str) -> None:
    failed = [c for c in checks if not c.passed]
    if failed:
        raise ScalarDbTransactionError(
            f"restore of point {point_id} finished but ScalarDB's transaction metadata does not "
            "hold together: "
            + "; ".join(f"{c.component}: {c.summary()}" for c in failed)
            + ". A record whose transaction the coordinator does not know is what a copy taken "
            "at two moments leaves; do not start ScalarDL on these databases, restore another "
            "point (see the restore report)."
        )
