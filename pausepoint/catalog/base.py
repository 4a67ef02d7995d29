"""The catalog facade: restore points, their artifacts and leases, over any driver.

A restore point exists only once its manifest is written, and the manifest is written last:

    pending = catalog.begin_point(site)           reserve an id; stores write into
    pending.store_dir(component, store)           ... its staging directories
    catalog.register(pending, point)              check every artifact, then write the manifest
    catalog.discard(pending)                      or, on failure, remove the staged files

A crash anywhere before the manifest's rename leaves a directory without a manifest: never
listed, never restorable, removed by the next backup once its run is provably gone
(``sweep_abandoned_staging``) or by prune once idle long enough (``sweep_orphans``).

One unreadable file never hides the others: ``scan_points`` and ``scan_leases`` return the good
records and name each bad file; the watchdog quarantines a damaged lease (``quarantine_lease``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from pausepoint.catalog import layout
from pausepoint.catalog.drills import DrillRecord, dump_drill, parse_drill
from pausepoint.catalog.driver import ArtifactWriter, CatalogDriver, Versioned
from pausepoint.catalog.lease import Lease, LeaseState, dump_lease, parse_lease
from pausepoint.catalog.manifest import RestorePoint, dump_manifest, parse_manifest
from pausepoint.catalog.restores import RestoreJournalRecord, dump_journal, parse_journal
from pausepoint.errors import (
    CatalogConflictError,
    CatalogError,
    CorruptArtifactError,
    InternalError,
    LeaseError,
    RestorePointNotFoundError,
)
from pausepoint.stores.base import ArtifactSink

log = logging.getLogger(__name__)

# Hashing reads whole files; a few in parallel keep disks busy (hashlib releases the GIL).
_HASH_WORKERS = 4
# How many existing ids a not-found message lists.
_IDS_SHOWN = 10
# How many full ids a shortened id's message lists.
_MATCHES_SHOWN = 5
_ID_ATTEMPTS = 20
# A conditional lease write that keeps losing (a heartbeat every few seconds cannot cause this
# many) means something rewrites the lease in a loop.
_LEASE_ATTEMPTS = 20
# A run writes its staging all the time (the copy streams into it); one that wrote nothing for
# this long (three missed lease heartbeats) and whose run is gone is not coming back to it.
STAGING_IDLE = timedelta(seconds=15)


@dataclass(frozen=True)
class PendingPoint:
    """A restore point being made: its id and where its stores write their artifacts."""

    site: str
    id: str
    staging: Path  # local directory of the point's files until register() publishes them

    def store_dir(self, component: str, store: str) -> Path:
        """The (created) directory one store writes its artifacts into."""
        path = self.staging / layout.check_segment("component", component)
        path = path / layout.check_segment("store", store)
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class Unreadable:
    """A catalog file that cannot be used (damaged, edited, or written by a newer pausepoint).

    Listings skip it and say so, so one bad file never hides the good ones."""

    id: str  # the point id (a manifest) or the run id (a lease) its name gives
    key: str
    location: str
    problem: str  # the error's message: names the file and what to do
    modified: datetime | None = None  # when the file was last written (UTC), when known


@dataclass(frozen=True)
class PointScan:
    """Registered points, newest data first, and the points whose manifest cannot be read."""

    points: list[RestorePoint]
    unreadable: list[Unreadable]


@dataclass(frozen=True)
class LeaseScan:
    """Readable leases, newest first, and the lease files that cannot be read."""

    leases: list[Lease]
    damaged: list[Unreadable]


@dataclass(frozen=True)
class _Artifact:
    component: str
    store: str
    path: str
    size: int
    sha256: str


def _artifacts(point: RestorePoint) -> Iterable[_Artifact]:
    for comp_name, comp in point.components.items():
        for store in comp.stores:
            for a in store.artifacts:
                yield _Artifact(comp_name, store.name, a.path, a.size, a.sha256)


class Catalog:
    """Restore points and leases of every site, stored through one driver."""

    def __init__(self, driver: CatalogDriver):
        self.driver = driver

    def __repr__(self) -> str:
        return f"Catalog({self.driver!r})"

    # --- making a restore point ------------------------------------------------------------

    def begin_point(self, site: str, now: datetime | None = None) -> PendingPoint:
        """Reserve a fresh point id (sortable UTC time + random suffix) and its staging area."""
        for _ in range(_ID_ATTEMPTS):
            point_id = layout.new_point_id(now)
            key = layout.point_key(site, point_id)
            if self.driver.reserve(key):
                return PendingPoint(site, point_id, self.driver.staging_dir(key))
        raise CatalogError(
            f"could not reserve a new restore point id for site {site!r} in "
            f"{self.driver.location(layout.points_prefix(site))} after {_ID_ATTEMPTS} tries: "
            "something else is creating directories there; check nothing else writes to it."
        )

    def register(self, pending: PendingPoint, restore_point: RestorePoint) -> None:
        """Make the point restorable: publish and check every artifact, then write the manifest.

        Raises CorruptArtifactError listing every missing or wrong file; nothing is registered
        then and the staged files are left for ``discard`` or ``sweep_orphans``.
        """
        point = restore_point
        if (point.site, point.id) != (pending.site, pending.id):
            raise CatalogError(
                f"restore point {point.id} of site {point.site!r} cannot be registered as the "
                f"pending point {pending.id} of site {pending.site!r}: build it with the pending "
                "point's id and site"
            )
        manifest = layout.manifest_key(point.site, point.id)
        if self.driver.exists(manifest):
            raise CatalogError(
                f"restore point {point.id} of site {point.site!r} is already registered "
                f"({self.driver.location(manifest)}); restore points are never rewritten"
            )
        self.driver.publish(layout.point_key(point.site, point.id))
        problems = self._problems(point)
        if problems:
            raise CorruptArtifactError(
                f"restore point {point.id} of site {point.site!r} was NOT registered: "
                f"{len(problems)} artifact problem(s): {'; '.join(problems)}. This backup is "
                "unusable; check the store's capture and the catalog's disk, then back up again."
            )
        # The finish marker: written last, atomically, and only if no one else wrote one.
        try:
            self.driver.create_if_absent(manifest, dump_manifest(point))
        except CatalogConflictError:
            raise CatalogConflictError(
                f"restore point {point.id} of site {point.site!r} was registered by another "
                f"writer meanwhile ({self.driver.location(manifest)}); it is already registered "
                "and restore points are never rewritten. Check that only one backup of the "
                "site runs at a time."
            ) from None
        log.info("registered restore point %s of site %s", point.id, point.site)

    def discard(self, pending: PendingPoint) -> bool:
        """Remove a failed run's staged files. Never touches a registered point (returns
        False then): once the manifest exists the backup is good, whatever failed after."""
        key = layout.point_key(pending.site, pending.id)
        if self.driver.exists(layout.manifest_key(pending.site, pending.id)):
            log.warning(
                "not discarding restore point %s of site %s: it is already registered",
                pending.id,
                pending.site,
            )
            return False
        self.driver.delete_prefix(key)
        return True

    # --- reading ----------------------------------------------------------------------------

    def _candidate_ids(self, site: str) -> list[str]:
        # Only names this catalog could have created; anything else is not ours to read or sweep.
        children = self.driver.list_children(layout.points_prefix(site))
        return [c for c in children if layout.is_point_id(c)]

    def point_ids(self, site: str) -> list[str]:
        """Ids of the registered points (with a manifest), newest first by id."""
        ids = [
            i for i in self._candidate_ids(site) if self.driver.exists(layout.manifest_key(site, i))
        ]
        return sorted(ids, reverse=True)

    def _read(self, site: str, point_id: str) -> RestorePoint:
        key = layout.manifest_key(site, point_id)
        where = self.driver.location(key)
        point = parse_manifest(self.driver.read_bytes(key), where)
        if (point.site, point.id) != (site, point_id):
            raise CatalogError(
                f"manifest {where} describes restore point {point.id} of site {point.site!r}, "
                f"not {point_id} of {site!r}: it was copied or moved. Put it back where it "
                "belongs (its directory must be named after its id, under its site)."
            )
        return point

    def scan_points(self, site: str) -> PointScan:
        """Every registered point that can be read, newest data first (by mid-time, then id),
        and every point whose manifest cannot be read (each naming its file and the fix).

        Directories without a manifest (running or failed backups) are not points and are
        skipped.
        """
        points: list[RestorePoint] = []
        unreadable: list[Unreadable] = []
        for point_id in self.point_ids(site):
            try:
                points.append(self._read(site, point_id))
            except FileNotFoundError:
                continue  # deleted while we listed
            except CatalogError as exc:
                key = layout.manifest_key(site, point_id)
                info = self.driver.stat(key)
                unreadable.append(
                    Unreadable(
                        point_id,
                        key,
                        self.driver.location(key),
                        str(exc),
                        info.modified if info else None,
                    )
                )
        points.sort(key=lambda p: (p.window.mid, p.id), reverse=True)
        return PointScan(points, unreadable)

    def list_points(self, site: str) -> list[RestorePoint]:
        """Registered restore points that can be read, newest data first (by mid-time, then
        id). A point whose manifest cannot be read is skipped with a warning; ``scan_points``
        says which and why."""
        scan = self.scan_points(site)
        for bad in scan.unreadable:
            log.warning("skipping restore point %s of site %s: %s", bad.id, site, bad.problem)
        return scan.points

    def get_point(self, site: str, point_id: str) -> RestorePoint:
        if layout.is_point_id(point_id):
            try:
                return self._read(site, point_id)
            except FileNotFoundError:
                pass
        raise RestorePointNotFoundError(self._not_found(site, point_id))

    def _not_found(self, site: str, point_id: str) -> str:
        ids = self.point_ids(site)
        matches = [i for i in ids if point_id and i.startswith(point_id)]
        if matches and not layout.is_point_id(point_id):
            # A shortened id: never guess which point was meant (a restore overwrites data).
            shown = ", ".join(matches[:_MATCHES_SHOWN])
            more = (
                f" and {len(matches) - _MATCHES_SHOWN} more"
                if len(matches) > _MATCHES_SHOWN
                else ""
            )
            return (
                f"{point_id!r} is not a full restore point id of site {site!r}; it is the start "
                f"of {len(matches)} point id(s): {shown}{more}. Use the full id from "
                "`pausepoint points list --site FILE` (ids look like 20261128T003119Z-3f9a)."
            )
        if not layout.is_point_id(point_id):
            head = f"{point_id!r} is not a restore point id (they look like 20261128T003119Z-3f9a)"
        elif self.driver.exists(layout.point_key(site, point_id)):
            head = (
                f"restore point {point_id} of site {site!r} is unfinished: its backup never "
                "registered it (no manifest), so it cannot be restored"
            )
        else:
            head = f"site {site!r} has no restore point {point_id}"
        if not ids:
            where = self.driver.location(layout.points_prefix(site))
            return (
                f"{head}. The site has no restore points in {where}: run a backup first, or "
                "check catalog.path in the site file."
            )
        shown = ", ".join(ids[:_IDS_SHOWN])
        more = f" and {len(ids) - _IDS_SHOWN} older" if len(ids) > _IDS_SHOWN else ""
        return (
            f"{head}. Existing points (newest first): {shown}{more}. Pick one of them "
            "(`pausepoint points list --site FILE`)."
        )

    def manifest_location(self, site: str, point_id: str) -> str:
        """Where a point's manifest lives (a path or a URL), to link the catalog entry."""
        return self.driver.location(layout.manifest_key(site, point_id))

    def point_dir(self, site: str, point_id: str) -> Path:
        return self.driver.fetch_dir(layout.point_key(site, point_id))

    def store_dir(self, site: str, point_id: str, component: str, store: str) -> Path:
        """The local directory holding one store's artifacts (the restore's source)."""
        return self.driver.fetch_dir(layout.store_key(site, point_id, component, store))

    def _artifact_key(self, site: str, point_id: str, component: str, store: str, path: str) -> str:
        if not layout.safe_relative(path):
            raise CatalogError(
                f"artifact path {path!r} of store {store!r} leaves the store's directory: use a "
                "relative path without '..'"
            )
        return f"{layout.store_key(site, point_id, component, store)}/{path}"

    def write_artifact(
        self, pending: PendingPoint, component: str, store: str, path: str
    ) -> AbstractContextManager[ArtifactWriter]:
        """Stream one artifact of a pending point into the catalog, hashed on the way::

            with catalog.write_artifact(pending, "ledger", "ledger-pg", "dump.sql") as out:
                shutil.copyfileobj(source, out, 1 << 20)
            Artifact(path="dump.sql", size=out.size, sha256=out.sha256)

        It appears complete when the block ends, or not at all."""
        key = self._artifact_key(pending.site, pending.id, component, store, path)
        return self.driver.open_write(key)

    def artifact_sink(self, pending: PendingPoint, component: str, store: str) -> ArtifactSink:
        """The sink one store's capture writes its artifacts into (``CaptureContext.sink``):
        the staging directory (local driver), or streams into the catalog (a remote one)."""
        local = pending.store_dir(component, store)
        key = layout.store_key(pending.site, pending.id, component, store)
        return self.driver.artifact_sink(key, local)

    def open_artifact(
        self, site: str, point_id: str, component: str, store: str, path: str
    ) -> AbstractContextManager[BinaryIO]:
        """One artifact of a point as a file-like object, read in chunks.
        FileNotFoundError when it is missing."""
        return self.driver.open_read(self._artifact_key(site, point_id, component, store, path))

    # --- verifying --------------------------------------------------------------------------

    def verify_point(self, site: str, point_id: str) -> list[str]:
        """Every problem of a registered point's artifacts (missing, wrong size, wrong sha256),
        each naming the file. Empty when the point is intact."""
        return self._problems(self.get_point(site, point_id))

    def _problems(self, point: RestorePoint) -> list[str]:
        artifacts = list(_artifacts(point))
        with ThreadPoolExecutor(max_workers=_HASH_WORKERS) as pool:
            found = pool.map(lambda a: self._check(point, a), artifacts)
            return [p for p in found if p is not None]

    def _check(self, point: RestorePoint, a: _Artifact) -> str | None:
        whose = f"(store {a.store!r} of {a.component})"
        if not layout.safe_relative(a.path):
            return (
                f"artifact path {a.path!r} {whose} leaves the store's directory; the manifest "
                "was altered"
            )
        try:
            key = f"{layout.store_key(point.site, point.id, a.component, a.store)}/{a.path}"
        except CatalogError as exc:
            return f"artifact {a.path!r} {whose}: {exc}"
        where = self.driver.location(key)
        info = self.driver.stat(key)
        if info is None:
            return f"{where} {whose}: missing"
        if info.size != a.size:
            return f"{where} {whose}: wrong size: {info.size} bytes, the manifest says {a.size}"
        try:
            digest = self.driver.sha256(key)
        except FileNotFoundError:
            return f"{where} {whose}: missing"
        if digest != a.sha256:
            return f"{where} {whose}: wrong sha256: {digest}, the manifest says {a.sha256}"
        return None

    # --- removing ---------------------------------------------------------------------------

    def staged_ids(self, site: str) -> list[str]:
        """Ids of point directories without a manifest: a backup still making them, or one
        that died. Oldest first."""
        return sorted(
            i
            for i in self._candidate_ids(site)
            if not self.driver.exists(layout.manifest_key(site, i))
        )

    def sweep_orphans(
        self,
        site: str,
        older_than: timedelta = timedelta(hours=24),
        now: datetime | None = None,
        dry_run: bool = False,
    ) -> list[Path | str]:
        """Delete point directories without a manifest that have been idle for ``older_than``.

        Idle means: neither the id's start time nor any file in it is newer. A backup still
        copying keeps writing, so make ``older_than`` longer than the slowest capture's pauses.
        Returns the directories removed (with ``dry_run``: those it would remove, untouched):
        local paths, or the driver's locations (s3:// URLs) for a remote catalog.
        """
        return self._sweep(site, self.staged_ids(site), older_than, now, dry_run)

    def sweep_abandoned_staging(
        self,
        site: str,
        live_point_ids: Collection[str],
        now: datetime | None = None,
        idle: timedelta = STAGING_IDLE,
        dry_run: bool = False,
    ) -> list[Path | str]:
        """Delete the staging of backups that are provably gone, without waiting 24 hours.

        Every point directory without a manifest whose id is NOT in ``live_point_ids`` and in
        which nothing was written for ``idle`` is removed. The caller names every point a run
        may still be writing (``pausepoint.watchdog.live_staging`` decides from the leases
        and the runs' state); a point it cannot account for must be in that set.
        """
        live = set(live_point_ids)
        gone = [i for i in self.staged_ids(site) if i not in live]
        return self._sweep(site, gone, idle, now, dry_run)

    def _sweep(
        self,
        site: str,
        point_ids: Iterable[str],
        idle: timedelta,
        now: datetime | None,
        dry_run: bool,
    ) -> list[Path | str]:
        now = now or datetime.now(UTC)
        swept: list[Path | str] = []
        for point_id in point_ids:
            if self.driver.exists(layout.manifest_key(site, point_id)):
                continue
            key = layout.point_key(site, point_id)
            files = self.driver.list_files(key)
            last = max(
                [
                    layout.point_id_time(point_id),
                    *(f.modified for f in files),
                    *self.driver.pending_writes(key),
                ]
            )
            if now - last < idle:
                continue
            # Re-check: a backup may have registered while we looked.
            if self.driver.exists(layout.manifest_key(site, point_id)):
                continue
            # Named, never fetched: a remote driver's fetch_dir would download it.
            path: Path | str = (
                self.point_dir(site, point_id)
                if self.driver.fetches_in_place
                else self.driver.location(key)
            )
            if dry_run:
                swept.append(path)
                continue
            self.driver.delete_prefix(key)
            log.info(
                "swept unfinished restore point %s of site %s (idle since %s)",
                point_id,
                site,
                last.isoformat(),
            )
            swept.append(path)
        return swept

    def delete_point(self, site: str, point_id: str) -> None:
        """Delete a registered point. The manifest goes first, so a half-finished delete leaves
        an unlisted orphan for ``sweep_orphans``, never a listed point with missing files."""
        self.get_point(site, point_id)  # RestorePointNotFoundError with the ids that exist
        self.driver.delete(layout.manifest_key(site, point_id))
        self.driver.delete_prefix(layout.point_key(site, point_id))

    # --- restore journals (see catalog/restores.py) -------------------------------------------

    def read_restore_journal(
        self, site: str, point_id: str, restore_id: str
    ) -> RestoreJournalRecord | None:
        """The journal of a restore of this point into one target; None when there is none."""
        key = layout.restore_journal_key(site, point_id, restore_id)
        if not self.driver.exists(key):
            return None
        return parse_journal(self.driver.read_bytes(key), self.driver.location(key))

    def write_restore_journal(self, record: RestoreJournalRecord) -> str:
        """Write (replace) a restore journal atomically; returns where."""
        if not self.driver.exists(layout.manifest_key(record.site, record.point_id)):
            # never recreate a deleted point's directory
            raise RestorePointNotFoundError(self._not_found(record.site, record.point_id))
        key = layout.restore_journal_key(record.site, record.point_id, record.restore_id)
        self.driver.write_atomic(key, dump_journal(record))
        return self.driver.location(key)

    # --- drills -----------------------------------------------------------------------------

    def record_drill(self, record: DrillRecord) -> str:
        """Write one drill's result under the point it drilled (atomically); returns where."""
        self.get_point(record.site, record.point_id)  # never recreate a deleted point's directory
        key = layout.drill_key(record.site, record.point_id, record.started_at)
        self.driver.write_atomic(key, dump_drill(record))
        return self.driver.location(key)

    def list_drills(self, site: str, point_id: str) -> list[DrillRecord]:
        """Every drill of a point, newest first. A damaged record raises CatalogError naming it."""
        prefix = layout.drills_prefix(site, point_id)
        drills = []
        for info in self.driver.list_files(prefix):
            name = info.key.removeprefix(prefix + "/")
            if not layout.is_drill_name(name):
                continue  # a temp file of an atomic write, or not ours
            where = self.driver.location(info.key)
            try:
                record = parse_drill(self.driver.read_bytes(info.key), where)
            except FileNotFoundError:
                continue  # deleted with its point while we listed
            if (record.site, record.point_id) != (site, point_id):
                raise CatalogError(
                    f"drill record {where} belongs to point {record.point_id} of site "
                    f"{record.site!r}: it was copied or moved; put it back under its own point"
                )
            drills.append(record)
        return sorted(drills, key=lambda d: (d.started_at, d.finished_at), reverse=True)

    def latest_drill(self, site: str, point_id: str) -> DrillRecord | None:
        """The newest drill of a point; its ``passed`` says whether the point is verified."""
        drills = self.list_drills(site, point_id)
        return drills[0] if drills else None

    # --- leases -----------------------------------------------------------------------------

    def _lease_record(self, site: str, run_id: str) -> tuple[Versioned, Lease]:
        """A lease as stored (with its version, for a conditional rewrite) and as parsed.
        FileNotFoundError when there is none; LeaseError when it cannot be used."""
        stored = self.driver.read_versioned(layout.lease_key(site, run_id))
        return stored, self._parse_lease(site, run_id, stored.data)

    def _parse_lease(self, site: str, run_id: str, data: bytes) -> Lease:
        where = self.driver.location(layout.lease_key(site, run_id))
        lease = parse_lease(data, where)
        if (lease.site, lease.run_id) != (site, run_id):
            raise LeaseError(
                f"lease {where} belongs to run {lease.run_id!r} of site {lease.site!r}: it was "
                "copied or renamed; put it back under its own name"
            )
        return lease

    def _read_lease(self, site: str, run_id: str, missing_ok: bool = False) -> Lease:
        """The lease of one run; LeaseError when there is none or it cannot be used (with
        ``missing_ok``, FileNotFoundError when there is none)."""
        try:
            return self._lease_record(site, run_id)[1]
        except FileNotFoundError:
            if missing_ok:
                raise
            raise LeaseError(
                f"site {site!r} has no lease for run {run_id!r} "
                f"({self.driver.location(layout.lease_key(site, run_id))}); list them with "
                "Catalog.list_leases"
            ) from None

    def _put_lease(self, lease: Lease, version: str | None) -> None:
        """Create the lease (``version`` None) or replace the very record ``version`` names.
        CatalogConflictError when someone else wrote it first: nothing was overwritten."""
        key = layout.lease_key(lease.site, lease.run_id)
        try:
            if version is None:
                self.driver.create_if_absent(key, dump_lease(lease))
            else:
                self.driver.replace_if_unchanged(key, dump_lease(lease), version)
        except CatalogConflictError:
            raise
        except CatalogError as exc:
            raise LeaseError(
                f"lease of run {lease.run_id!r} (site {lease.site!r}, nodes "
                f"{', '.join(lease.nodes)}) could not be written: {exc}"
            ) from exc

    def _lease_race_lost(self, site: str, run_id: str) -> LeaseError:
        return LeaseError(
            f"lease of run {run_id!r} of site {site!r} "
            f"({self.driver.location(layout.lease_key(site, run_id))}) was rewritten by someone "
            f"else {_LEASE_ATTEMPTS} times while this write was retried: something rewrites it "
            "in a loop (two runs with one run id?); stop it, then check the lease"
        )

    def write_lease(self, lease: Lease) -> Lease:
        """Write (or extend) an active lease. Before any node is paused, then as heartbeat.

        Conditional: a lease that the watchdog (or the run's own timer) ended since it was read
        is never made active again; the write is refused with LeaseError instead."""
        if lease.state != "active":
            raise LeaseError(
                f"a new lease must be active, not {lease.state!r}; use release_lease or "
                "mark_broken to end one"
            )
        key = layout.lease_key(lease.site, lease.run_id)
        for _ in range(_LEASE_ATTEMPTS):
            try:
                stored = self.driver.read_versioned(key)
            except FileNotFoundError:
                stored = None
            if stored is not None:
                try:
                    old = self._parse_lease(lease.site, lease.run_id, stored.data)
                except LeaseError:
                    old = None  # damaged: the fresh record replaces it
                if old is not None and old.state != "active":
                    raise LeaseError(
                        f"run {lease.run_id!r} of site {lease.site!r} already ended its lease "
                        f"({old.state}); a run takes one lease, so start a new run"
                    )
            try:
                self._put_lease(lease, stored.version if stored is not None else None)
            except CatalogConflictError:
                continue  # someone wrote it since we read it: decide again on what is there
            return lease
        raise self._lease_race_lost(lease.site, lease.run_id)

    def get_lease(self, site: str, run_id: str) -> Lease:
        return self._read_lease(site, run_id)

    def _end_lease(
        self, site: str, run_id: str, state: LeaseState, reason: str | None, now: datetime | None
    ) -> Lease:
        # Read, decide, replace-if-unchanged: when the run and the watchdog end one lease at
        # once, exactly one write lands; the other re-reads and returns the first record.
        for _ in range(_LEASE_ATTEMPTS):
            try:
                stored, lease = self._lease_record(site, run_id)
            except FileNotFoundError:
                self._read_lease(site, run_id)  # LeaseError naming the run
                continue  # it came back meanwhile
            if lease.state != "active":
                # Already ended: keep the first record (who unpaused, and why).
                log.info("lease of run %s of site %s is already %s", run_id, site, lease.state)
                return lease
            ended = lease.model_copy(
                update={
                    "state": state,
                    "broken_reason": reason,
                    "updated_at": now or datetime.now(UTC),
                }
            )
            ended = Lease.model_validate(ended.model_dump())  # re-check the invariants
            try:
                self._put_lease(ended, stored.version)
            except CatalogConflictError:
                log.info(
                    "lease of run %s of site %s changed meanwhile: reading it again", run_id, site
                )
                continue
            return ended
        raise self._lease_race_lost(site, run_id)

    def release_lease(self, site: str, run_id: str, now: datetime | None = None) -> Lease:
        """The run unpaused every node: the lease is done. Returns the lease as stored (a lease
        the watchdog already broke stays broken)."""
        return self._end_lease(site, run_id, "released", None, now)

    def mark_broken(
        self, site: str, run_id: str, reason: str, now: datetime | None = None
    ) -> Lease:
        """Someone else (the watchdog) had to act on this lease; ``reason`` says what and why."""
        if not reason.strip():
            raise InternalError("break_lease() needs a reason: say why the lease is broken")
        return self._end_lease(site, run_id, "broken", reason, now)

    def delete_lease(self, site: str, run_id: str) -> None:
        """Delete an ENDED lease (history; prune does this). An active lease is never deleted:
        it may name paused nodes the watchdog still has to unpause."""
        lease = self._read_lease(site, run_id)
        if lease.state == "active":
            raise LeaseError(
                f"lease of run {run_id!r} of site {site!r} is active: it names nodes that may be "
                "paused and is the watchdog's to close, never deleted"
            )
        self.driver.delete(layout.lease_key(site, run_id))

    def scan_leases(self, site: str) -> LeaseScan:
        """Every lease of a site that can be read (newest first) and every lease file that
        cannot (damaged, edited, copied from another run, or of a newer format).

        Only files named ``<run id>.json`` directly under the leases prefix are leases: the
        temp file of an atomic write (dot-prefixed, half-written while a run writes it) and the
        quarantine are never read as one.
        """
        prefix = layout.leases_prefix(site)
        leases: list[Lease] = []
        damaged: list[Unreadable] = []
        for info in self.driver.list_files(prefix):
            run_id = layout.lease_run_id(info.key.removeprefix(prefix + "/"))
            if run_id is None:
                continue
            try:
                leases.append(self._read_lease(site, run_id, missing_ok=True))
            except FileNotFoundError:
                continue  # deleted (or quarantined) while we listed
            except (LeaseError, CatalogError) as exc:  # what the file holds, or the disk
                where = self.driver.location(info.key)
                damaged.append(Unreadable(run_id, info.key, where, str(exc), info.modified))
        leases.sort(key=lambda x: (x.created_at, x.run_id), reverse=True)
        return LeaseScan(leases, damaged)

    def list_leases(self, site: str, state: LeaseState | None = None) -> list[Lease]:
        """Leases of a site that can be read, newest first, optionally only those in
        ``state``. A damaged lease file is skipped with a warning: ``scan_leases`` names it,
        and the watchdog quarantines it."""
        scan = self.scan_leases(site)
        for bad in scan.damaged:
            log.warning("skipping lease file %s: %s", bad.location, bad.problem)
        return [lease for lease in scan.leases if state is None or lease.state == state]

    def quarantine_lease(
        self, site: str, damaged: Unreadable, now: datetime | None = None
    ) -> str | None:
        """Move a damaged lease file aside (``<site>/leases/quarantine/<run id>.json.<UTC
        time>``), kept for people and never read as a lease again. Returns where it went.

        Returns None, and leaves the file, when it is gone or no longer damaged: a run rewrote
        it since it was scanned (the heartbeat of a live run replaces a damaged lease with its
        own record). A file rewritten during the move is put back.
        """
        key = layout.lease_key(site, damaged.id)
        where = self.driver.location(key)
        try:
            before = self.driver.read_bytes(key)
        except FileNotFoundError:
            return None
        if self._lease_is_valid(site, damaged.id, before):
            log.info("lease file %s was rewritten and is valid now: not quarantined", where)
            return None
        target = layout.lease_quarantine_key(site, damaged.id, now or datetime.now(UTC))
        try:
            self.driver.move(key, target)
        except FileNotFoundError:
            return None
        moved = self.driver.read_bytes(target)
        if moved != before and self._lease_is_valid(site, damaged.id, moved):
            # A run rewrote its lease between our read and the move: give it back (unless it
            # wrote again since), it is a live record, not the damaged one.
            try:
                self.driver.move(target, key)
            except CatalogConflictError:
                self.driver.delete(target)  # a newer record is in place already
            log.info("lease file %s was rewritten while moved aside: put back", where)
            return None
        log.warning("quarantined damaged lease file %s to %s", where, self.driver.location(target))
        return self.driver.location(target)

    def _lease_is_valid(self, site: str, run_id: str, data: bytes) -> bool:
        try:
            self._parse_lease(site, run_id, data)
        except (LeaseError, CatalogError):
            return False
        return True
