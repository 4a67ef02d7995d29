"""One restore of a restore point, as steps the restore flow calls one task each.

Ledger and Auditor come back from the SAME point or not at all: ``RestoreRun.validate`` refuses a
point that lacks a component or store of the site, or whose artifacts fail their checksums, before
any database is touched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pausepoint.admin.client import AdminCallError, AdminClient, Reason
from pausepoint.admin.fanout import call_all
from pausepoint.catalog import Catalog
from pausepoint.catalog.manifest import RestorePoint
from pausepoint.errors import (
    ConfigError,
    CorruptArtifactError,
    FingerprintMismatchError,
    IncompleteRestorePointError,
    RestoreError,
)
from pausepoint.secrets import SecretResolver
from pausepoint.site import Site
from pausepoint.stores import open_store
from pausepoint.stores.base import Fingerprint, Store, StoreCapture
from pausepoint.validation import explain_lines
from pausepoint.yamlfile import load_yaml

log = logging.getLogger(__name__)


class RestoreTarget(BaseModel):
    """Where to restore: per store, settings that replace the site's (another host, database)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    replace: bool = Field(False, description="drop existing data in the target databases")
    stores: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="store name -> settings to override for the restore"
    )


def load_target(path: str | Path | None) -> RestoreTarget:
    if path is None:
        return RestoreTarget()
    path = Path(path)
    try:
        data = load_yaml(path, f"restore target file {path}") or {}
        return RestoreTarget.model_validate(data)
    except OSError as exc:
        raise ConfigError(f"cannot read restore target file {path}: {exc.strerror}") from None
    except ValidationError as exc:
        raise ConfigError(
            f"restore target file {path} is invalid:"
            + "".join(f"\n  - {line}" for line in explain_lines(exc))
            + "\nIt holds 'replace: true|false' and 'stores: {store-name: {setting: value}}'."
        ) from None


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


@dataclass
class RestoreSlot:
    component: str
    capture: StoreCapture
    store: Store  # built from the RETARGETED config: the database to write into
    source_dir: Path
    in_place: bool  # restoring over the site's own database
    fingerprint_problems: list[str] = field(default_factory=list)


@dataclass
class RestoreRun:
    site: Site
    catalog: Catalog
    point: RestorePoint
    target: RestoreTarget
    resolver: SecretResolver
    slots: list[RestoreSlot] = field(default_factory=list)
    # validate() checked the sha256 of the very files the stores will read.
    artifacts_verified: bool = False

    @classmethod
    def prepare(
        cls,
        site: Site,
        catalog: Catalog,
        point_id: str,
        target: RestoreTarget,
        resolver: SecretResolver,
    ) -> RestoreRun:
        point = catalog.get_point(site.site, point_id)
        run = cls(site=site, catalog=catalog, point=point, target=target, resolver=resolver)
        unknown = set(target.stores) - {s.name for _, s in site.stores()}
        if unknown:
            raise ConfigError(
                f"the restore target names stores the site does not have: {sorted(unknown)}; "
                f"the site's stores are {sorted(s.name for _, s in site.stores())}"
            )
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
        for comp_name, comp in self.site.components().items():
            for cfg in comp.stores:
                _, capture = self.point.store(cfg.name)
                overrides = self.target.stores.get(cfg.name, {})
                try:
                    target_cfg = type(cfg).model_validate({**cfg.model_dump(), **overrides})
                except ValidationError as exc:
                    raise ConfigError(
                        f"restore target for store {cfg.name!r} is invalid: {exc}"
                    ) from None
                self.slots.append(
                    RestoreSlot(
                        component=comp_name,
                        capture=capture,
                        store=open_store(target_cfg, self.resolver),
                        source_dir=self.catalog.store_dir(
                            self.site.site, self.point.id, comp_name, cfg.name
                        ),
                        in_place=not overrides,
                    )
                )

    @property
    def in_place(self) -> bool:
        """Whether any store is restored over the site's own database."""
        return any(s.in_place for s in self.slots)

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
                f"site {self.site.site!r}: ScalarDL nodes {', '.join(running)} still answer while "
                "restoring over their own databases would change data under them. Stop every "
                "Ledger/Auditor node first, or restore into other databases with --target."
            )

    def check_target(self, slot: RestoreSlot) -> None:
        # Not check(): a restore target's database may not exist yet (restore creates it).
        slot.store.check_restore_target(slot.capture, self.target.replace)

    def restore(self, slot: RestoreSlot) -> None:
        # The store skips its own sha256 pass when validate() already hashed these files.
        slot.store.restore(
            slot.capture, slot.source_dir, self.target.replace, verified=self.artifacts_verified
        )

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
