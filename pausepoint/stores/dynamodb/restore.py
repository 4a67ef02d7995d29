"""Restoring DynamoDB tables to a point in time, one table per worker (bounded), each step
recorded in the restore journal so a restore that dies resumes where it stopped.

In place (ScalarDB's documented procedure; DynamoDB restores only into a NEW table name):

    alias_requested  restore_table_to_point_in_time(source -> alias, the point)
    alias_ready      alias ACTIVE
    backup_requested create_backup(alias)                 (found again by name on resume)
    backup_ready     backup AVAILABLE
    alias_deleted    delete_table(alias), gone
    original_deleted delete_table(original), gone          nothing is deleted before this point
    restore_requested restore_table_from_backup(backup -> original name)
    restored         original ACTIVE again

Side by side (the originals stay):

    target_cleared   an existing target table deleted (only with replace)
    restore_requested restore_table_to_point_in_time(source -> prefix + name, the point)
    restored         target ACTIVE

    then, once every table is restored (``DynamoStore``): ScalarDB's metadata entries of the
    restored tables renamed to the new prefix (``tables.rename_keys``; idempotent)

Settings (PITR, TTL, tags, auto scaling, streams, deletion protection) are re-applied after
(``Store.reapply_settings``); billing mode and capacity are given to the restore call itself.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pausepoint.errors import NameTakenError, RestoreError
from pausepoint.stores._aws import AwsClients, error_code, wait_until
from pausepoint.stores.base import StoreJournal
from pausepoint.stores.dynamodb import tables as t
from pausepoint.stores.dynamodb.config import DynamoTableSettings

JOURNAL_STEP = "tables"  # the store's journal step; data: {"tables": {name: {"step": ...}}}

IN_PLACE_STEPS = (
    "alias_requested",
    "alias_ready",
    "backup_requested",
    "backup_ready",
    "alias_deleted",
    "original_deleted",
    "restore_requested",
    "restored",
)
SIDE_STEPS = ("target_cleared", "restore_requested", "restored")


def alias_name(table: str, point_id: str) -> str:
    """The alias a table is restored to first (in place): never a ScalarDB table name."""
    return f"{table}.pp-{point_id}"[:255]


def backup_name(table: str, point_id: str) -> str:
    digest = hashlib.sha256(table.encode()).hexdigest()[:10]
    return f"pausepoint-{point_id}-{digest}"


def find_backup(aws: AwsClients, alias: str, name: str) -> str | None:
    """The ARN of the backup an earlier run made of ``alias`` (named from the point), if any."""
    start: str | None = None
    while True:
        page = aws.call(
            t.DDB,
            "ListBackups",
            RestoreError,
            f"the backups of {alias}",
            TableName=alias,
            BackupType="USER",
            **({"ExclusiveStartBackupArn": start} if start else {}),
        )
        for b in page.get("BackupSummaries", []):
            if b.get("BackupName") == name and b.get("BackupStatus") != "DELETED":
                return str(b["BackupArn"])
        start = page.get("LastEvaluatedBackupArn")
        if not start:
            return None


class TableJournal:
    """Every table's step, persisted as one journal record (thread-safe)."""

    def __init__(self, journal: StoreJournal | None):
        self._journal = journal
        self._lock = threading.Lock()
        data = journal.data if journal is not None and journal.step == JOURNAL_STEP else {}
        self.tables: dict[str, dict[str, Any]] = {
            k: dict(v) for k, v in dict(data.get("tables", {})).items()
        }

    @property
    def resuming(self) -> bool:
        return bool(self.tables)

    def step(self, table: str) -> str | None:
        with self._lock:
            return self.tables.get(table, {}).get("step")

    def get(self, table: str, key: str) -> Any:
        with self._lock:
            return self.tables.get(table, {}).get(key)

    def record(self, table: str, step: str, **extra: Any) -> None:
        with self._lock:
            entry = self.tables.setdefault(table, {})
            entry.update(extra, step=step)
            if self._journal is not None:
                self._journal.record(JOURNAL_STEP, {"tables": self.tables})


def reached(steps: tuple[str, ...], current: str | None, step: str) -> bool:
    """Whether ``current`` is ``step`` or later."""
    return current is not None and steps.index(current) >= steps.index(step)


class TableRestore:
    """One table's restore, resumable. ``hook(table, step)`` runs after each recorded step
    (the tests' way to die at a step)."""

    def __init__(
        self,
        aws: AwsClients,
        settings: DynamoTableSettings,
        target: str,
        point: datetime,
        point_id: str,
        journal: TableJournal,
        *,
        replace: bool,
        interval_s: float,
        timeout_s: float,
        hook: Callable[[str, str], None] | None = None,
    ):
        self.aws, self.s, self.target, self.point = aws, settings, target, point
        self.point_id, self.journal, self.replace = point_id, journal, replace
        self.interval_s, self.timeout_s, self.hook = interval_s, timeout_s, hook
        self.source = settings.name

    @property
    def in_place(self) -> bool:
        return self.target == self.source

    @property
    def alias(self) -> str:
        return alias_name(self.source, self.point_id)

    # --- the steps ------------------------------------------------------------------------------

    def run(self) -> None:
        if self.in_place:
            self._in_place()
        else:
            self._side_by_side()

    def _record(self, step: str, **extra: Any) -> None:
        self.journal.record(self.source, step, **extra)
        if self.hook is not None:
            self.hook(self.source, step)

    def _at(self, steps: tuple[str, ...], step: str) -> bool:
        return reached(steps, self.journal.step(self.source), step)

    def _in_place(self) -> None:
        steps = IN_PLACE_STEPS
        if not self._at(steps, "alias_ready"):
            if not self._at(steps, "alias_requested"):
                if t.describe(self.aws, self.alias, RestoreError) is not None:
                    raise NameTakenError(self._alias_taken())
                self._record("alias_requested")
                self._pitr_restore(self.alias)
            elif t.describe(self.aws, self.alias, RestoreError) is None:
                self._pitr_restore(self.alias)  # died before the call reached AWS
            self._wait_active(self.alias)
            self._record("alias_ready")
        if not self._at(steps, "backup_ready"):
            arn = self.journal.get(self.source, "backup_arn") or self._find_backup()
            if arn is None:
                arn = self.aws.call(
                    t.DDB,
                    "CreateBackup",
                    RestoreError,
                    f"backing up alias {self.alias}",
                    TableName=self.alias,
                    BackupName=backup_name(self.source, self.point_id),
                )["BackupDetails"]["BackupArn"]
            self._record("backup_requested", backup_arn=arn)
            self._wait_backup(arn)
            self._record("backup_ready", backup_arn=arn)
        if not self._at(steps, "alias_deleted"):
            self._delete(self.alias)
            self._record("alias_deleted")
        if not self._at(steps, "original_deleted"):
            self._delete(self.source)
            self._record("original_deleted")
        if not self._at(steps, "restored"):
            if t.describe(self.aws, self.source, RestoreError) is None:
                self._record("restore_requested")
                self.aws.call(
                    t.DDB,
                    "RestoreTableFromBackup",
                    RestoreError,
                    f"restoring table {self.source} from the alias's backup",
                    TargetTableName=self.source,
                    BackupArn=self.journal.get(self.source, "backup_arn"),
                    **t.restore_overrides(self.s),
                )
            self._wait_active(self.source)
            self._record("restored")

    def _side_by_side(self) -> None:
        steps = SIDE_STEPS
        if not self._at(steps, "target_cleared"):
            if t.describe(self.aws, self.target, RestoreError) is not None:
                if not self.replace:
                    raise RestoreError(
                        f"store {self.aws.store}: table {self.target} appeared during the "
                        "restore (it was checked absent before); nothing of it was changed. "
                        "Find out who made it, then restore again (with --replace to drop it)"
                    )
                self._delete(self.target)
            self._record("target_cleared")
        if not self._at(steps, "restored"):
            if not self._at(steps, "restore_requested"):
                self._record("restore_requested")
                self._pitr_restore(self.target)
            elif t.describe(self.aws, self.target, RestoreError) is None:
                self._pitr_restore(self.target)
            self._wait_active(self.target)
            self._record("restored")

    # --- AWS --------------------------------------------------------------------------------------

    def _pitr_restore(self, into: str) -> None:
        self.aws.call(
            t.DDB,
            "RestoreTableToPointInTime",
            RestoreError,
            f"restoring table {self.source} at {self.point.isoformat()} into {into}",
            SourceTableName=self.source,
            TargetTableName=into,
            RestoreDateTime=self.point,
            **t.restore_overrides(self.s),
        )

    def _find_backup(self) -> str | None:
        return find_backup(self.aws, self.alias, backup_name(self.source, self.point_id))

    def _delete(self, name: str) -> None:
        from botocore.exceptions import ClientError

        table = t.describe(self.aws, name, RestoreError)
        if table is not None and table.get("TableStatus") != "DELETING":
            try:
                self.aws.call(
                    t.DDB, "DeleteTable", RestoreError, f"deleting table {name}", TableName=name
                )
            except ClientError as exc:
                if error_code(exc) not in t.NOT_FOUND:
                    raise
        wait_until(
            f"deleting table {name}",
            lambda: (
                (d := t.describe(self.aws, name, RestoreError)) is None,
                (d or {}).get("TableStatus", "gone"),
            ),
            interval_s=self.interval_s,
            timeout_s=self.timeout_s,
            error=RestoreError,
            store=self.aws.store,
        )

    def _wait_active(self, name: str) -> None:
        def probe() -> tuple[bool, str]:
            d = t.describe(self.aws, name, RestoreError)
            status = (d or {}).get("TableStatus", "missing")
            if d is None:
                raise RestoreError(
                    f"store {self.aws.store}: table {name} is missing while its restore should "
                    "be running; AWS may have refused the restore. Run the restore again: it "
                    "resumes from its recorded step"
                )
            return status == "ACTIVE", status

        wait_until(
            f"the restore of table {name}",
            probe,
            interval_s=self.interval_s,
            timeout_s=self.timeout_s,
            error=RestoreError,
            store=self.aws.store,
        )

    def _wait_backup(self, arn: str) -> None:
        def probe() -> tuple[bool, str]:
            d = self.aws.call(
                t.DDB, "DescribeBackup", RestoreError, f"backup {arn}", BackupArn=arn
            )["BackupDescription"]["BackupDetails"]
            status = d.get("BackupStatus", "")
            if status == "DELETED":
                raise RestoreError(
                    f"store {self.aws.store}: the backup {arn} of alias {self.alias} was "
                    "deleted before the original was replaced; the original table is "
                    "untouched. Run the restore again"
                )
            return status == "AVAILABLE", status

        wait_until(
            f"the backup of alias {self.alias}",
            probe,
            interval_s=self.interval_s,
            timeout_s=self.timeout_s,
            error=RestoreError,
            store=self.aws.store,
        )

    def _alias_taken(self) -> str:
        return (
            f"store {self.aws.store}: table {self.alias}, the alias this restore needs for "
            f"{self.source}, exists and was not made by this restore; nothing was changed. "
            "Delete it if it is left over from an abandoned restore (after checking nobody "
            "needs it), then restore again"
        )
