"""One restore of a restore point, as steps the restore flow calls one task each.

Ledger and Auditor come back from the SAME point or not at all: ``RestoreRun.validate`` refuses a
point that lacks a component or store of the site, or whose artifacts fail their checksums, before
any database is touched.

Whether a store is restored "in place" (over a database the live site uses) is decided by
``place_stores`` from where the data lives (``pausepoint.locations``), never from whether the
target file has an entry for the store: ``host: 127.1``, the machine's host name or an identity
``database_map`` still name the live database. An in-place restore needs the site's nodes
stopped and holds the site's pause lock (``flows/restore.py``).

A target file names secrets by reference only, like the site file: an inline password is
refused (``InlineSecretError``) without repeating it, and no validation message of a target
carries an input value.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pausepoint.admin.client import AdminCallError, AdminClient, Reason
from pausepoint.admin.fanout import call_all
from pausepoint.catalog import Catalog
from pausepoint.catalog.manifest import RestorePoint, explain_validation
from pausepoint.catalog.restores import DONE, RestoreJournalRecord, StoreStep, restore_id
from pausepoint.errors import (
    ConfigError,
    CorruptArtifactError,
    FingerprintMismatchError,
    IncompleteRestorePointError,
    InlineSecretError,
    RestoreError,
    RestoreTargetError,
)
from pausepoint.locations import Location, Resolver, locations, system_resolver
from pausepoint.secrets import SecretResolver
from pausepoint.site import Site
from pausepoint.stores import open_store, registry
from pausepoint.stores.base import Fingerprint, Store, StoreCapture, StoreJournal
from pausepoint.validation import explain_lines
from pausepoint.yamlfile import load_yaml

log = logging.getLogger(__name__)


# A setting that holds a secret, whatever its exact name (password, passwd, api_key, token, ...).
_SECRET_KEY = re.compile(r"pass|pwd|secret|token|credential|private.?key|api.?key", re.I)


def _is_reference(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and set(value) <= {"env", "block"}
        and all(isinstance(v, str) for v in value.values())
    )


def inline_secrets(stores: Any) -> list[tuple[str, str]]:
    """(store, setting) for every secret-like setting of a target's stores that is not given
    by reference ({env: VAR} | {block: NAME})."""
    if not isinstance(stores, dict):
        return []
    return [
        (str(store), str(key))
        for store, overrides in stores.items()
        if isinstance(overrides, dict)
        for key, value in overrides.items()
        if _SECRET_KEY.search(str(key)) and not _is_reference(value) and not _is_structured(value)
    ]


def _is_structured(value: Any) -> bool:
    """Structured credentials ({source: ...}, pausepoint.credentials): their own model refuses
    an inline part, naming it without its value."""
    return isinstance(value, dict) and "source" in value


def _inline_secret_message(found: list[tuple[str, str]]) -> str:
    # Names the store and setting, NEVER the value.
    what = "; ".join(f"store {store!r} gives {key!r} inline" for store, key in found)
    key = found[0][1]
    return (
        f"{what}. Secrets are given by reference only, as in the site file: write "
        f"'{key}: {{env: VARIABLE_NAME}}' or '{key}: {{block: prefect-secret-block-name}}' and "
        "put the value there (the value given is not repeated here)"
    )


class RestoreTarget(BaseModel):
    """Where to restore: per store, settings that replace the site's (another host, database).

    Secrets only by reference ({env: VAR} | {block: NAME}), as in the site file."""

    # An error must not quote the input: it may hold a secret written inline.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    replace: bool = Field(False, description="drop existing data in the target databases")
    stores: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="store name -> settings to override for the restore"
    )

    @field_validator("stores", mode="before")
    @classmethod
    def _secrets_by_reference(cls, value: Any) -> Any:
        found = inline_secrets(value)
        if found:
            raise ValueError(_inline_secret_message(found))
        return value


def load_target(path: str | Path | None) -> RestoreTarget:
    """The restore (or drill) target file; ConfigError naming the file and the fix.

    Errors are raised outside the ``except`` blocks so that not even the exception's context
    carries the parser's or pydantic's text, which quotes what the file holds."""
    if path is None:
        return RestoreTarget()
    path = Path(path)
    # load_yaml's messages give the parser's explanation and position, never the source line
    # (which may hold a secret); a key given twice is refused.
    data = load_yaml(path, f"restore target file {path}") or {}
    found = inline_secrets(data.get("stores") if isinstance(data, dict) else None)
    if found:
        raise InlineSecretError(f"restore target file {path}: {_inline_secret_message(found)}.")
    try:
        return RestoreTarget.model_validate(data)
    except ValidationError as exc:
        # explain_lines gives where and what, never the input value (it may be a secret).
        problem = (
            f"restore target file {path} is invalid:"
            + "".join(f"\n  - {line}" for line in explain_lines(exc))
            + "\nIt holds 'replace: true|false' and 'stores: {store-name: {setting: value}}'."
        )
    raise ConfigError(problem)


def retarget(cfg: Any, overrides: dict[str, Any], what: str) -> Any:
    """The site's store config with a target's ``overrides`` applied (validated, by the kind's
    ``StoreConfigBase.retarget``)."""
    try:
        return cfg.retarget(overrides)
    except ValidationError as exc:
        # where and what only; raised below, so the context holds no input value either
        problem = f"{what} for store {cfg.name!r} is invalid: {explain_validation(exc)}"
    raise ConfigError(problem)


@dataclass(frozen=True)
class TargetPlace:
    """Where one store of the site is restored, and which live databases that is."""

    component: str
    name: str
    config: Any  # the retargeted config: what the restore writes into
    moved: bool  # the target file has an entry for this store
    live: frozenset[Location]  # where the store's live data is
    locations: frozenset[Location]  # where the restore writes
    # target locations that some store of the live site uses -> "component/store (as written)"
    over: tuple[tuple[Location, tuple[str, ...]], ...] = ()

    @property
    def in_place(self) -> bool:
        """Writes over a database the live site uses (any store's, not only its own)."""
        return bool(self.over)

    def describe_over(self) -> str:
        return "; ".join(
            f"{loc}, the live database of {' and '.join(f'store {s}' for s in users)}"
            for loc, users in self.over
        )


def place_stores(
    site: Site, target: RestoreTarget, *, what: str, resolve: Resolver = system_resolver
) -> list[TargetPlace]:
    """Where each store of the site is restored under ``target``, compared by location with
    every database of the live site. Raises ConfigError for invalid settings and LocationError
    when a place cannot be told (never guesses "elsewhere")."""
    live: dict[Location, list[str]] = {}
    own: dict[str, frozenset[Location]] = {}
    for comp, cfg in site.stores():
        own[cfg.name] = locations(cfg, as_target=False, resolve=resolve)
        for loc in sorted(own[cfg.name], key=str):
            live.setdefault(loc, []).append(f"{comp}/{cfg.name} ({loc})")
    places = []
    for comp, cfg in site.stores():
        overrides = target.stores.get(cfg.name, {})
        target_cfg = retarget(cfg, overrides, what)
        # The live places were resolved above: a place that fails now came from the target.
        source = f"in {what}" if overrides else "in the site file"
        locs = locations(target_cfg, as_target=True, where=source, resolve=resolve)
        over = tuple((loc, tuple(live[loc])) for loc in sorted(locs, key=str) if loc in live)
        places.append(
            TargetPlace(comp, cfg.name, target_cfg, bool(overrides), own[cfg.name], locs, over)
        )
    return places


def shared_targets(places: list[TargetPlace]) -> list[tuple[TargetPlace, TargetPlace, Location]]:
    """Pairs of stores restored into one location, in site order. A location both stores
    already share on the live site (one database holding both) is no conflict."""
    out = []
    for i, a in enumerate(places):
        for b in places[i + 1 :]:
            for loc in sorted(a.locations & b.locations, key=str):
                if not (loc in a.live and loc in b.live):
                    out.append((a, b, loc))
    return out


def compare_fingerprints(store: str, captured: Fingerprint, restored: Fingerprint) -> list[str]:
    """Every difference between two fingerprints, as readable lines."""
    problems = []
    for table in sorted(set(captured) | set(restored)):
        a, b = captured.get(table), restored.get(table)
        if a is None:
            problems.append(f"{store}: table {table} exists after restore but was not captured")
        elif b is None:
            problems.append(f"{store}: table {table} is missing after restore")
        elif a != b:
            problems.append(
                f"{store}: table {table} differs (captured {a.rows} rows/{a.hash}, "
                f"restored {b.rows} rows/{b.hash})"
            )
    return problems


def refuse_unsupported_modes(places: list[TargetPlace]) -> None:
    """Refuse a store restored in place (or side by side) when its kind cannot restore so
    (registry capabilities ``restore_modes``), before anything is touched."""
    problems = []
    for p in places:
        modes = registry.capabilities(p.config).restore_modes
        mode = "in_place" if p.in_place else "side_by_side"
        if mode not in modes:
            how = (
                f"in place (over {p.describe_over()})"
                if p.in_place
                else "side by side (into a database the site does not use)"
            )
            fix = (
                "restore it into a database the site does not use"
                if p.in_place
                else "restore it over its own live database, with the site's nodes stopped"
            )
            problems.append(f"store {p.name!r} ({p.config.kind}) cannot be restored {how}: {fix}")
    if problems:
        raise RestoreTargetError("; ".join(problems) + ". Nothing was touched.")


class RestoreJournal:
    """The journal of one restore (a point into one target) in the catalog, shared by the
    stores' parallel restore steps. Written only when a store records a step; a store whose
    entry says DONE starts afresh (that restore finished)."""

    def __init__(
        self,
        catalog: Catalog,
        site: str,
        point_id: str,
        target: dict[str, list[str]],
    ):
        self._catalog = catalog
        self._lock = threading.Lock()
        rid = restore_id(point_id, target)
        now = datetime.now(UTC)
        found = catalog.read_restore_journal(site, point_id, rid)
        self.resumed = found is not None and any(s.step != DONE for s in found.stores.values())
        if found is not None and self.resumed:
            self.record = found.model_copy(update={"runs": found.runs + 1, "updated_at": now})
        else:
            self.record = RestoreJournalRecord(
                site=site,
                point_id=point_id,
                restore_id=rid,
                target=target,
                started_at=now,
                updated_at=now,
            )
        self._written = False

    @property
    def key(self) -> str:
        return self.record.restore_id

    def entry(self, store: str) -> StoreStep | None:
        step = self.record.stores.get(store)
        return None if step is None or step.step == DONE else step

    def record_step(self, store: str, step: str, data: dict[str, Any]) -> None:
        with self._lock:
            now = datetime.now(UTC)
            stores = {**self.record.stores, store: StoreStep(step=step, data=data, at=now)}
            record = self.record.model_copy(update={"stores": stores, "updated_at": now})
            self._catalog.write_restore_journal(record)
            self.record, self._written = record, True

    def finish(self, store: str) -> None:
        """The store's restore and settings are done: a later restore starts afresh."""
        if store in self.record.stores:
            self.record_step(store, DONE, {})

    def for_store(self, store: str) -> _StoreJournal:
        return _StoreJournal(self, store)


class _StoreJournal(StoreJournal):
    def __init__(self, journal: RestoreJournal, store: str):
        self._journal, self._store = journal, store

    @property
    def step(self) -> str | None:
        entry = self._journal.entry(self._store)
        return entry.step if entry is not None else None

    @property
    def data(self) -> dict[str, Any]:
        entry = self._journal.entry(self._store)
        return dict(entry.data) if entry is not None else {}

    def record(self, step: str, data: Mapping[str, Any] | None = None) -> None:
        self._journal.record_step(self._store, step, dict(data or {}))


@dataclass
class RestoreSlot:
    component: str
    capture: StoreCapture
    store: Store  # built from the RETARGETED config: the database to write into
    source_dir: Path
    in_place: bool  # writes over a database the live site uses (decided by location)
    place: TargetPlace | None = None
    fingerprint_problems: list[str] = field(default_factory=list)
    journal: StoreJournal | None = None  # this store's part of the run's restore journal


@dataclass
class RestoreRun:
    site: Site
    catalog: Catalog
    point: RestorePoint
    target: RestoreTarget
    resolver: SecretResolver
    # where each store goes, decided in prepare() (before the flow takes the pause lock)
    places: list[TargetPlace] = field(default_factory=list)
    slots: list[RestoreSlot] = field(default_factory=list)
    # validate() checked the sha256 of the very files the stores will read.
    artifacts_verified: bool = False
    journal: RestoreJournal | None = None  # from validate(): resumes a restore that crashed

    @classmethod
    def prepare(
        cls,
        site: Site,
        catalog: Catalog,
        point_id: str,
        target: RestoreTarget,
        resolver: SecretResolver,
        *,
        what: str = "the restore target",
        resolve: Resolver = system_resolver,
    ) -> RestoreRun:
        """Load the point and decide where each store goes; refuses unknown stores and two
        stores restored into one database before anything is touched."""
        point = catalog.get_point(site.site, point_id)
        run = cls(site=site, catalog=catalog, point=point, target=target, resolver=resolver)
        unknown = set(target.stores) - {s.name for _, s in site.stores()}
        if unknown:
            raise ConfigError(
                f"the restore target names stores the site does not have: {sorted(unknown)}; "
                f"the site's stores are {sorted(s.name for _, s in site.stores())}"
            )
        run.places = place_stores(site, target, what=what, resolve=resolve)
        shared = shared_targets(run.places)
        if shared:
            raise RestoreTargetError(
                f"refusing to restore site {site.site!r}: "
                + "; ".join(
                    f"stores {a.name!r} and {b.name!r} would both be restored into {loc}"
                    for a, b, loc in shared
                )
                + ". Give each store its own database in the restore target. Nothing was touched."
            )
        refuse_unsupported_modes(run.places)
        return run

    def validate(self) -> None:
        """Same point for every component, every store present, every artifact intact."""
        missing = []
        for comp_name, comp in self.site.components().items():
            record = self.point.components.get(comp_name)
            if record is None:
                missing.append(f"component {comp_name!r} (all of it)")
                continue
            have = {s.name for s in record.stores}
            missing += [
                f"store {s.name!r} of {comp_name}" for s in comp.stores if s.name not in have
            ]
        if missing:
            raise IncompleteRestorePointError(
                f"restore point {self.point.id} of site {self.site.site!r} lacks "
                f"{', '.join(missing)}. Ledger and Auditor must come back from the same point, so "
                "nothing was restored. Pick a point that holds every component "
                "(`pausepoint points list`)."
            )
        problems = self.catalog.verify_point(self.site.site, self.point.id)
        if problems:
            raise CorruptArtifactError(
                f"restore point {self.point.id} of site {self.site.site!r} failed verification; "
                f"nothing was restored: {'; '.join(problems)}. Restore an older point, or restore "
                "the catalog's files from a copy."
            )
        self.artifacts_verified = self.catalog.driver.fetches_in_place
        self.journal = RestoreJournal(
            self.catalog,
            self.site.site,
            self.point.id,
            {p.name: sorted(f"{x.server}/{x.database}" for x in p.locations) for p in self.places},
        )
        if self.journal.resumed:
            log.warning(
                "restore of point %s into this target resumes restore %s (run %d), from the "
                "steps its stores recorded",
                self.point.id,
                self.journal.key,
                self.journal.record.runs,
            )
        for place in self.places:
            _, capture = self.point.store(place.name)
            self.slots.append(
                RestoreSlot(
                    component=place.component,
                    capture=capture,
                    store=open_store(place.config, self.resolver),
                    source_dir=self.catalog.store_dir(
                        self.site.site, self.point.id, place.component, place.name
                    ),
                    in_place=place.in_place,
                    place=place,
                    journal=self.journal.for_store(place.name),
                )
            )

    @property
    def in_place(self) -> bool:
        """Whether any store is restored over a database the live site uses."""
        return any(p.in_place for p in self.places) or any(s.in_place for s in self.slots)

    def describe_in_place(self) -> str:
        """Which stores write over which live databases (empty when none)."""
        return "; ".join(
            f"store {p.name!r} into {p.describe_over()}" for p in self.places if p.in_place
        )

    def check_nodes_stopped(self, client: AdminClient, node_set: dict) -> None:
        """Refuse to restore a site's own databases while its ScalarDL nodes still answer."""
        if not self.in_place:
            return
        nodes = [(c, t) for c, ts in node_set.items() for t in ts]
        results = call_all(nodes, lambda n: client.check_paused(n[1], timeout_s=2.0))
        running = [
            f"{c}/{t}"
            for (c, t), r in results.items()
            if r.error is None
            or not (isinstance(r.error, AdminCallError) and r.error.reason == Reason.UNAVAILABLE)
        ]
        if running:
            raise RestoreError(
                f"site {self.site.site!r}: ScalarDL nodes {', '.join(running)} still answer, and "
                f"this restore writes over databases the site uses ({self.describe_in_place()}), "
                "which would change data under them; nothing was restored. Stop every "
                "Ledger/Auditor node first, or point every store of the restore target at a "
                "database the site does not use (another database name or server: another "
                "spelling of the same server and database does not count)."
            )

    def check_target(self, slot: RestoreSlot) -> None:
        """Before any change (every store's, before the first restore): the point lies in the
        store's restorable window now (PITR kinds), and the target is ready."""
        slot.store.check_restorable(slot.capture)
        if slot.journal is not None and slot.journal.step is not None:
            return  # resuming: the target holds what the crashed run already restored
        # Not check(): a restore target's database may not exist yet (restore creates it).
        slot.store.check_restore_target(slot.capture, self.target.replace)

    def restore(self, slot: RestoreSlot) -> None:
        """Restore, then re-apply what a provider's restore resets (before the fingerprints);
        a store that journals its steps resumes from the last one recorded."""
        # The store skips its own sha256 pass when validate() already hashed these files.
        slot.store.restore(
            slot.capture,
            slot.source_dir,
            self.target.replace,
            verified=self.artifacts_verified,
            journal=slot.journal,
        )
        slot.store.reapply_settings(slot.capture)
        if self.journal is not None:
            self.journal.finish(slot.store.name)

    def verify(self, slot: RestoreSlot) -> list[str]:
        store = slot.store
        captured, current = slot.capture.fingerprint_method, store.fingerprint_method
        if captured != current and captured not in store.earlier_fingerprint_methods:
            slot.fingerprint_problems = [
                f"{slot.store.name}: the point's fingerprints were made with method "
                f"{captured or '(unrecorded, an earlier version)'} and this version makes "
                f"{current}; the restored data could not be compared. Compare it by other means "
                "or restore a point made by this version"
            ]
            return slot.fingerprint_problems
        restored = store.fingerprint(sorted(slot.capture.fingerprint), captured)
        slot.fingerprint_problems = compare_fingerprints(
            slot.store.name, slot.capture.fingerprint, restored
        )
        return slot.fingerprint_problems

    def raise_if_mismatch(self) -> None:
        problems = [p for s in self.slots for p in s.fingerprint_problems]
        if problems:
            raise FingerprintMismatchError(
                f"restore of point {self.point.id} finished but the data differs from what was "
                f"captured: {'; '.join(problems)}. Do not start ScalarDL on these databases; "
                "check that nothing wrote to them during the restore and restore again."
            )
