"""The ``dynamodb`` store kind: ScalarDB's tables on DynamoDB, restored by point-in-time
recovery to the pause window's mid-time (FACTS.md §3, §8).

Nothing is copied at capture: ``_finish`` records the point (``ctx.point_time(1000)``: DynamoDB
restores to the second), each table's restorable window and the settings a restore resets.
A restore goes side by side (new tables under another prefix; the originals stay) or, when the
restore target says ``in_place: true``, by ScalarDB's alias procedure (``restore.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pausepoint.errors import (
    CaptureError,
    NameTakenError,
    PitrWindowError,
    RestoreError,
    RestoreTargetError,
    StoreCheckError,
    TargetNotEmptyError,
)
from pausepoint.stores._aws import AwsClients, bounded_pool
from pausepoint.stores._common import pitr_capture, verify_artifacts
from pausepoint.stores.base import (
    CaptureHandle,
    Fingerprint,
    ProgressFn,
    Store,
    StoreCapture,
    StoreJournal,
)
from pausepoint.stores.dynamodb import tables as t
from pausepoint.stores.dynamodb.config import (
    DynamoCaptureDetails,
    DynamoConfig,
    DynamoTableSettings,
)
from pausepoint.stores.dynamodb.restore import (
    IN_PLACE_STEPS,
    TableJournal,
    TableRestore,
    alias_name,
    backup_name,
    find_backup,
    reached,
)

GRANULARITY_MS = 1000  # DynamoDB's RestoreDateTime is honoured to the second
ARTIFACT = "pitr.json"


class DynamoStore(Store[DynamoConfig]):
    kind = "dynamodb"
    fingerprint_method = "dynamodb-items-sha256-v1"

    def __init__(self, config: DynamoConfig, resolve: Any):
        super().__init__(config, resolve)
        self.aws = AwsClients(config, resolve, config.name)
        # Test seam: called with (table, step) after each recorded restore step.
        self.step_hook: Callable[[str, str], None] | None = None
        self._restored: dict[str, str] = {}  # source table -> restored table (for the report)
        self._backups: dict[str, str] = {}
        self._renamed = 0  # ScalarDB metadata entries moved to the new prefix

    # --- preflight ------------------------------------------------------------------------------

    def _tables(self, error: type[Exception]) -> dict[str, str]:
        found, empty = t.tables_of(self.config, self.aws, error)  # type: ignore[arg-type]
        if empty:
            raise error(
                f"store {self.name}: no table of namespace(s) {', '.join(empty)} under prefix "
                f"{self.config.table_prefix!r} in {self.config.region}; check namespaces, "
                "coordinator_namespace and table_prefix (ScalarDB names its tables "
                "<prefix><namespace>.<table>), or create the schema first"
            )
        return found

    def _settings(self, found: dict[str, str], error: type[Exception]) -> list[DynamoTableSettings]:
        with bounded_pool(self.config.parallel_tables) as pool:
            return list(
                pool.map(lambda kv: t.read_settings(self.aws, kv[0], kv[1], error), found.items())  # type: ignore[arg-type]
            )

    def _require_pitr(self, settings: list[DynamoTableSettings], error: type[Exception]) -> None:
        off = [s.name for s in settings if s.earliest is None]
        if off:
            raise error(
                f"store {self.name}: point-in-time recovery is off on table(s) "
                f"{', '.join(off)}; without it these tables cannot be restored to a point. Turn "
                "it on (aws dynamodb update-continuous-backups --table-name NAME "
                "--point-in-time-recovery-specification PointInTimeRecoveryEnabled=true; "
                "ScalarDB's schema loader does it unless --no-backup was given) and back up "
                "again"
            )

    def check_pitr(self) -> dict[str, Any]:
        """PITR on for every table, and the window they share now."""
        facts = self.check()
        return {
            "pitr": f"on for {facts['tables']} tables",
            "restorable_since": facts["restorable_from"],
            "restorable_until": facts["restorable_until"],
        }

    def check(self) -> dict[str, Any]:
        found = self._tables(StoreCheckError)
        settings = self._settings(found, StoreCheckError)
        self._require_pitr(settings, StoreCheckError)
        earliest = max(s.earliest for s in settings if s.earliest)
        latest = min(s.latest for s in settings if s.latest)
        return {
            "server_version": f"DynamoDB {self.config.region}",
            "tables": len(found),
            "restorable_from": earliest.isoformat(),
            "restorable_until": latest.isoformat(),
        }

    # --- capture: nothing inside the window; the point and the settings after it ---------------

    def _open(self, prepared: Any) -> CaptureHandle:
        return CaptureHandle(ctx=prepared.ctx, prepared=prepared, opened_at=datetime.now(UTC))

    def _finish(self, h: CaptureHandle, progress: ProgressFn | None) -> StoreCapture:
        at = h.ctx.point_time(GRANULARITY_MS)
        found = self._tables(CaptureError)
        settings = self._settings(found, CaptureError)
        self._require_pitr(settings, CaptureError)
        details = DynamoCaptureDetails(
            point_id=h.ctx.point_id or at.strftime("%Y%m%dT%H%M%SZ"),
            region=self.config.region,
            endpoint_url=self.config.endpoint_url,
            table_prefix=self.config.table_prefix,
            tables=settings,
        )
        # The items at the point cannot be read now: a restore is compared with nothing here
        # (the ScalarDB checker or ledger validation checks the restored data).
        return pitr_capture(
            self,
            h,
            method="dynamodb-pitr",
            at=at,
            details=details,
            artifact=ARTIFACT,
            payload=details.model_dump_json(indent=2).encode(),
            progress=progress,
        )

    # --- restore ----------------------------------------------------------------------------------

    def _details(self, capture: StoreCapture) -> DynamoCaptureDetails:
        details: DynamoCaptureDetails = self.captured_details(capture)
        return details

    def _target_of(self, s: DynamoTableSettings) -> str:
        return f"{self.config.table_prefix}{s.key}"

    def _windows(
        self,
        details: DynamoCaptureDetails,
        at: datetime | None,
        journal: TableJournal | None = None,
    ) -> dict[str, tuple[datetime, datetime] | None]:
        """Each source table's restorable window now. A table whose in-place restore already
        backed up its alias (that backup holds the point; the table itself may be gone or
        restored anew, without the old window) is left out: known from the journal, or from
        the backup itself (the flow checks before it hands the journal over)."""
        out: dict[str, tuple[datetime, datetime] | None] = {}
        for s in details.tables:
            in_place = self._target_of(s) == s.name
            if (
                in_place
                and journal is not None
                and reached(IN_PLACE_STEPS, journal.step(s.name), "backup_ready")
            ):
                continue
            desc = t.pitr(self.aws, s.name, RestoreError)
            win = None if desc is None else t.window(desc)
            holds = win is not None and at is not None and win[0] <= at <= win[1]
            if in_place and not holds:
                alias = alias_name(s.name, details.point_id)
                if find_backup(self.aws, alias, backup_name(s.name, details.point_id)):
                    continue
            if desc is None:
                raise RestoreError(
                    f"store {self.name}: source table {s.name} does not exist any more, so it "
                    "cannot be restored to a point in time from here (a deleted table's "
                    "point-in-time backups are restored from the AWS console's 'deleted "
                    "tables' list); nothing was changed"
                )
            out[s.name] = win
        return out

    def restorable_window(self, capture: StoreCapture) -> tuple[datetime, datetime] | None:
        windows = self._windows(self._details(capture), capture.pitr_timestamp)
        if not windows:
            return None
        if any(w is None for w in windows.values()):
            now = datetime.now(UTC)
            return (now, now)  # PITR off on a source table: nothing is restorable
        return (
            max(w[0] for w in windows.values() if w),
            min(w[1] for w in windows.values() if w),
        )

    def check_restorable(self, capture: StoreCapture, journal: TableJournal | None = None) -> None:
        """Every source table's window holds the point (names each table that does not)."""
        at = capture.pitr_timestamp
        if at is None:
            raise RestoreError(f"store {self.name}: the capture records no point in time")
        problems = []
        for name, w in self._windows(self._details(capture), at, journal).items():
            if w is None:
                problems.append(f"{name}: point-in-time recovery is off")
            elif not w[0] <= at <= w[1]:
                problems.append(f"{name}: restorable {w[0].isoformat()} .. {w[1].isoformat()}")
        if problems:
            raise PitrWindowError(
                f"store {self.name}: the restore point's time {at.isoformat()} is outside the "
                f"restorable window of {len(problems)} table(s) now ({'; '.join(problems)}), "
                "so it cannot be restored to it; nothing was changed. Pick a restore point "
                "inside the window (`pausepoint points list`); a point newer than the window "
                "becomes restorable once DynamoDB's latest restorable time (about 5 minutes "
                "behind) passes it; lengthen the tables' PITR recovery period so older points "
                "stay restorable."
            )

    def check_restore_target(self, capture: StoreCapture, replace: bool) -> None:
        details = self._details(capture)
        in_place, occupied, taken, protected = [], [], [], []
        for s in details.tables:
            target = self._target_of(s)
            if target == s.name:
                in_place.append(s.name)
                if t.describe(self.aws, alias_name(s.name, details.point_id), RestoreError):
                    taken.append(alias_name(s.name, details.point_id))
                desc = t.describe(self.aws, s.name, RestoreError) or {}
                if desc.get("DeletionProtectionEnabled"):
                    protected.append(s.name)
            elif t.describe(self.aws, target, RestoreError) is not None:
                occupied.append(target)
        if in_place and not self.config.in_place:
            raise RestoreTargetError(
                f"store {self.name}: this restore would replace the live tables "
                f"{', '.join(in_place)}; a DynamoDB restore goes side by side unless the "
                "restore target says in_place: true. Give a new table_prefix in the restore "
                "target instead (the originals stay); nothing was changed"
            )
        if taken:
            raise NameTakenError(
                f"store {self.name}: table(s) {', '.join(taken)}, the alias(es) the in-place "
                "procedure needs, exist and were not made by this restore; nothing was "
                "changed. Delete them if an abandoned restore left them (after checking nobody "
                "needs them), then restore again"
            )
        if protected:
            raise RestoreError(
                f"store {self.name}: deletion protection is on for {', '.join(protected)}, and "
                "restoring in place deletes the original after its point-in-time copy is "
                "backed up; nothing was changed. Turn deletion protection off for the restore "
                "(it is turned on again afterwards), or restore side by side"
            )
        if not replace and (in_place or occupied):
            what = in_place or occupied
            how = (
                "restoring in place replaces the live tables"
                if in_place
                else "the restore target's tables exist already"
            )
            raise TargetNotEmptyError(
                f"store {self.name}: {how}: {', '.join(what)}; pass --replace if they may be "
                "replaced, or give another table_prefix; nothing was changed"
            )

    def restore(
        self,
        capture: StoreCapture,
        source_dir: Path,
        replace: bool,
        *,
        verified: bool = False,
        journal: StoreJournal | None = None,
    ) -> None:
        verify_artifacts(source_dir, capture.artifacts, store=self.name, checksums=not verified)
        details = self._details(capture)
        tj = TableJournal(journal)
        if not tj.resuming:
            self.check_restore_target(capture, replace)
        # Before anything is deleted: the point is inside every table's window (tables whose
        # alias backup already holds the point are not asked again).
        self.check_restorable(capture, tj)
        at = capture.pitr_timestamp
        assert at is not None  # checked just above
        jobs = [
            TableRestore(
                self.aws,
                s,
                self._target_of(s),
                at,
                details.point_id,
                tj,
                replace=replace,
                interval_s=self.config.poll_interval_s,
                timeout_s=self.config.wait_timeout_s,
                hook=self.step_hook,
            )
            for s in details.tables
        ]
        errors: list[BaseException] = []
        lock = threading.Lock()

        def run(job: TableRestore) -> None:
            try:
                job.run()
            except BaseException as exc:  # the others finish their table; the first is raised
                with lock:
                    errors.append(exc)

        with bounded_pool(self.config.parallel_tables) as pool:
            list(pool.map(run, jobs))
        if errors:
            first = errors[0]
            for other in errors[1:]:
                first.add_note(f"also: {type(other).__name__}: {other}")
            raise first
        self._restored = {j.source: j.target for j in jobs}
        self._backups = {j.source: str(tj.get(j.source, "backup_arn")) for j in jobs if j.in_place}
        self._renamed = self._rename_in_metadata(details)

    def _rename_in_metadata(self, details: DynamoCaptureDetails) -> int:
        """Side by side: ScalarDB's restored metadata still names every table under the
        source's prefix (it keys tables by their prefixed names), so ScalarDB given the new
        prefix would find none of them; their entries are renamed to the new prefix.
        Idempotent (a resumed restore runs it again)."""
        old, new = details.table_prefix, self.config.table_prefix
        meta = self.config.metadata_namespace
        if meta is None or old == new:
            return 0
        namespaces = {s.key.partition(".")[0] for s in details.tables}
        renames = {f"{old}{s.key}": f"{new}{s.key}" for s in details.tables}
        renames |= {f"{old}{ns}": f"{new}{ns}" for ns in namespaces}
        return sum(
            t.rename_keys(self.aws, self._target_of(s), renames, RestoreError)
            for s in details.tables
            if s.key.partition(".")[0] == meta
        )

    def reapply_settings(self, capture: StoreCapture) -> None:
        details = self._details(capture)

        def one(s: DynamoTableSettings) -> list[str]:
            return t.reapply(self.aws, s, self._target_of(s), RestoreError)

        with bounded_pool(self.config.parallel_tables) as pool:
            list(pool.map(one, details.tables))

    def restored_to(self) -> dict[str, str]:
        """Side by side: the new tables' prefix (ScalarDB is pointed at it); in place: the
        alias backups kept (deleted by the operator once the restore is checked)."""
        if not self._restored:
            return {}
        moved = {s: t for s, t in self._restored.items() if s != t}
        if moved:
            prefix = self.config.table_prefix
            out = {"tables": f"{len(moved)} under prefix {prefix!r} in {self.config.region}"}
            if self.config.metadata_namespace:
                out["ScalarDB metadata"] = f"{self._renamed} entries renamed to the new prefix"
            out["ScalarDB setting"] = f"scalar.db.dynamo.namespace.prefix={prefix}"
            return out
        return {"alias backups kept": ", ".join(sorted(self._backups.values()))}

    def fingerprint(
        self, tables: list[str] | None = None, method: str | None = None
    ) -> Fingerprint:
        if tables is not None and not tables:
            return {}
        found = self._tables(RestoreError)
        if tables is not None:
            found = {k: v for k, v in found.items() if k in tables}
        return t.fingerprint(self.aws, found, RestoreError)
