"""The ``rds`` store kind: an RDS DB instance or an Aurora DB cluster, restored by RDS's
point-in-time recovery into a NEW instance or cluster at the pause window's mid-time.

Nothing is copied at capture: ``_finish`` records the point (to the second), the engine and
the restorable window. A restore (journaled: a rerun resumes):

    instance: requested  restore_db_instance_to_point_in_time(source -> restore_as, the point)
              available  the new instance answers "available"; its endpoint is reported
    cluster:  requested  restore_db_cluster_to_point_in_time(source -> restore_as, the point)
              cluster_available
              instance_requested  create_db_instance(restore_as-1 in the new cluster)
              available  the instance is "available"; the cluster's endpoints are reported

pausepoint never connects to the database engine itself: the restored data is checked by the
operator's means (ScalarDB's checker, ledger validation), so the fingerprint is empty.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pausepoint.errors import (
    CaptureError,
    NameTakenError,
    PitrWindowError,
    RestoreError,
    StoreCheckError,
)
from pausepoint.stores._aws import AwsClients, error_code, utc, wait_until
from pausepoint.stores._common import pitr_capture, verify_artifacts
from pausepoint.stores.base import (
    CaptureHandle,
    Fingerprint,
    ProgressFn,
    Store,
    StoreCapture,
    StoreJournal,
)
from pausepoint.stores.rds.config import ENGINES, RdsCaptureDetails, RdsConfig

GRANULARITY_MS = 1000  # RDS restores to the second
ARTIFACT = "pitr.json"
RDS = "rds"
NOT_FOUND = {"DBInstanceNotFound", "DBInstanceNotFoundFault", "DBClusterNotFoundFault"}
BROKEN = {
    "failed",
    "incompatible-restore",
    "incompatible-parameters",
    "incompatible-network",
    "inaccessible-encryption-credentials",
    "storage-full",
}
STEPS = ("requested", "cluster_available", "instance_requested", "available")


class RdsStore(Store[RdsConfig]):
    kind = "rds"
    fingerprint_method = "none"

    def __init__(self, config: RdsConfig, resolve: Any):
        super().__init__(config, resolve)
        self.aws = AwsClients(config, resolve, config.name)

    # --- AWS --------------------------------------------------------------------------------------

    def _instance(self, name: str, error: type[Exception]) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            found = self.aws.call(
                RDS, "DescribeDBInstances", error, f"instance {name}", DBInstanceIdentifier=name
            )["DBInstances"]
        except ClientError as exc:
            if error_code(exc) in NOT_FOUND:
                return None
            raise
        return found[0] if found else None

    def _cluster(self, name: str, error: type[Exception]) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            found = self.aws.call(
                RDS, "DescribeDBClusters", error, f"cluster {name}", DBClusterIdentifier=name
            )["DBClusters"]
        except ClientError as exc:
            if error_code(exc) in NOT_FOUND:
                return None
            raise
        return found[0] if found else None

    def _source(self, error: type[Exception]) -> dict[str, Any]:
        cfg = self.config
        found = (
            self._cluster(cfg.source, error)
            if cfg.is_cluster
            else self._instance(cfg.source, error)
        )
        if found is None:
            what = "DB cluster" if cfg.is_cluster else "DB instance"
            raise error(
                f"store {self.name}: no {what} {cfg.source!r} in {cfg.region}; check the "
                f"identifier ('{'cluster' if cfg.is_cluster else 'instance'}' in the site "
                "file) and the region"
            )
        return found

    def _window(self, src: dict[str, Any], error: type[Exception]) -> tuple[datetime, datetime]:
        """Earliest and latest restorable time of the source now."""
        now = datetime.now(UTC)
        latest = src.get("LatestRestorableTime")
        if self.config.is_cluster:
            earliest = src.get("EarliestRestorableTime")
        else:
            earliest = None
            backups = self.aws.call(
                RDS,
                "DescribeDBInstanceAutomatedBackups",
                error,
                "the automated backups",
                DBInstanceIdentifier=self.config.source,
            ).get("DBInstanceAutomatedBackups", [])
            for b in backups:
                w = b.get("RestoreWindow") or {}
                earliest = earliest or w.get("EarliestTime")
                latest = latest or w.get("LatestTime")
            if earliest is None:  # not reported: the retention from the instance's creation
                days = int(src.get("BackupRetentionPeriod") or 0)
                created = src.get("InstanceCreateTime") or now
                earliest = max(utc(created), now - timedelta(days=days))
        if earliest is None or latest is None:
            return (now, now - timedelta(seconds=1))  # nothing restorable
        return utc(earliest), utc(latest)

    # --- preflight ------------------------------------------------------------------------------

    def _checked_source(self, error: type[Exception]) -> dict[str, Any]:
        src = self._source(error)
        engine = src.get("Engine", "")
        if engine not in ENGINES:
            raise error(
                f"store {self.name}: engine {engine!r} of {self.config.source} is not one this "
                f"kind restores ({', '.join(ENGINES)})"
            )
        retention = int(src.get("BackupRetentionPeriod") or 0)
        if retention == 0:
            raise error(
                f"store {self.name}: automated backups are off on {self.config.source} "
                "(backup retention 0 days), so it cannot be restored to a point in time; set "
                "a backup retention period of at least "
                f"{self.config.min_retention_days} day(s) (aws rds modify-db-"
                f"{'cluster' if self.config.is_cluster else 'instance'} --backup-retention-"
                "period N --apply-immediately) and back up again"
            )
        if retention < self.config.min_retention_days:
            raise error(
                f"store {self.name}: the automated backup retention of {self.config.source} is "
                f"{retention} day(s), shorter than min_retention_days "
                f"({self.config.min_retention_days}); lengthen it or lower min_retention_days"
            )
        return src

    def check_pitr(self) -> dict[str, Any]:
        """Automated backups on (retention), and since when the source can be restored."""
        facts = self.check()
        return {
            "automated backups": f"{facts['retention_days']} days",
            "restorable_since": facts["restorable_from"],
        }

    def check(self) -> dict[str, Any]:
        src = self._checked_source(StoreCheckError)
        earliest, latest = self._window(src, StoreCheckError)
        return {
            "server_version": f"{src.get('Engine')} {src.get('EngineVersion', '')}".strip(),
            "retention_days": int(src.get("BackupRetentionPeriod") or 0),
            "restorable_from": earliest.isoformat(),
            "restorable_until": latest.isoformat(),
        }

    # --- capture ---------------------------------------------------------------------------------

    def _open(self, prepared: Any) -> CaptureHandle:
        return CaptureHandle(ctx=prepared.ctx, prepared=prepared, opened_at=datetime.now(UTC))

    def _writer_class(self, src: dict[str, Any]) -> str:
        if not self.config.is_cluster:
            return str(src.get("DBInstanceClass", ""))
        for m in src.get("DBClusterMembers", []):
            if m.get("IsClusterWriter"):
                inst = self._instance(m["DBInstanceIdentifier"], CaptureError)
                if inst is not None:
                    return str(inst.get("DBInstanceClass", ""))
        return ""

    def _finish(self, h: CaptureHandle, progress: ProgressFn | None) -> StoreCapture:
        at = h.ctx.point_time(GRANULARITY_MS)
        src = self._checked_source(CaptureError)
        earliest, latest = self._window(src, CaptureError)
        details = RdsCaptureDetails(
            point_id=h.ctx.point_id or at.strftime("%Y%m%dT%H%M%SZ"),
            region=self.config.region,
            endpoint_url=self.config.endpoint_url,
            source=self.config.source,
            is_cluster=self.config.is_cluster,
            engine=str(src.get("Engine", "")),
            engine_version=str(src.get("EngineVersion", "")),
            instance_class=self._writer_class(src),
            retention_days=int(src.get("BackupRetentionPeriod") or 0),
            earliest=earliest,
            latest=latest,
        )
        return pitr_capture(
            self,
            h,
            method="rds-pitr",
            at=at,
            details=details,
            artifact=ARTIFACT,
            payload=details.model_dump_json(indent=2).encode(),
            progress=progress,
        )

    # --- restore ----------------------------------------------------------------------------------

    def _details(self, capture: StoreCapture) -> RdsCaptureDetails:
        details: RdsCaptureDetails = self.captured_details(capture)
        return details

    def restorable_window(self, capture: StoreCapture) -> tuple[datetime, datetime] | None:
        self._details(capture)
        return self._window(self._source(RestoreError), RestoreError)

    def check_restorable(self, capture: StoreCapture) -> None:
        at = capture.pitr_timestamp
        if at is None:
            raise RestoreError(f"store {self.name}: the capture records no point in time")
        oldest, newest = self.restorable_window(capture)  # type: ignore[misc]
        if not oldest <= at <= newest:
            raise PitrWindowError(
                f"store {self.name}: the restore point's time {at.isoformat()} is outside the "
                f"restorable window of {self.config.source} now ({oldest.isoformat()} .. "
                f"{newest.isoformat()}), so it cannot be restored to it; nothing was created. "
                "Pick a restore point inside that window (`pausepoint points list`); a newer "
                "point becomes restorable once RDS's latest restorable time (usually within 5 "
                "minutes) passes it; lengthen the backup retention so older points stay "
                "restorable."
            )

    def _names(self) -> list[tuple[str, str]]:
        cfg = self.config
        if cfg.restore_as is None:
            raise RestoreError(
                f"store {self.name}: no restore_as: give the new "
                f"{'cluster' if cfg.is_cluster else 'instance'}'s identifier in the restore "
                "target"
            )
        if cfg.is_cluster:
            return [("cluster", cfg.restore_as), ("instance", cfg.cluster_instance)]
        return [("instance", cfg.restore_as)]

    def check_restore_target(self, capture: StoreCapture, replace: bool) -> None:
        """The new identifiers are free (RDS never restores over an existing one; replace does
        not delete a database here)."""
        self._details(capture)
        taken = [
            f"{what} {name}"
            for what, name in self._names()
            if (self._cluster if what == "cluster" else self._instance)(name, RestoreError)
        ]
        if taken:
            raise NameTakenError(
                f"store {self.name}: DB {', '.join(taken)} exists already, and an RDS restore "
                "creates a new one under that name; nothing was created. Give another "
                "restore_as in the restore target, or delete the old one yourself (pausepoint "
                "never deletes a database, even with --replace)"
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
        step = journal.step if journal is not None else None
        if step is None:
            self.check_restore_target(capture, replace)
        if step is None or (step == "requested" and not self._exists_new()):
            self.check_restorable(capture)  # before anything is created

        def record(s: str, **data: Any) -> None:
            nonlocal step
            step = s
            if journal is not None:
                journal.record(s, data)

        def at(s: str) -> bool:
            return step is not None and STEPS.index(step) >= STEPS.index(s)

        cfg = self.config
        assert cfg.restore_as is not None and capture.pitr_timestamp is not None
        point = capture.pitr_timestamp
        tags = [{"Key": "pausepoint-restore-point", "Value": details.point_id}]
        network: dict[str, Any] = {}
        if cfg.subnet_group:
            network["DBSubnetGroupName"] = cfg.subnet_group
        if cfg.security_groups:
            network["VpcSecurityGroupIds"] = cfg.security_groups
        if not cfg.is_cluster:
            if not at("requested") or not self._exists_new():
                record("requested")
                extra = dict(network)
                if cfg.instance_class:
                    extra["DBInstanceClass"] = cfg.instance_class
                if cfg.parameter_group:
                    extra["DBParameterGroupName"] = cfg.parameter_group
                self.aws.call(
                    RDS,
                    "RestoreDBInstanceToPointInTime",
                    RestoreError,
                    f"restoring {cfg.source} at {point.isoformat()} as {cfg.restore_as}",
                    SourceDBInstanceIdentifier=cfg.source,
                    TargetDBInstanceIdentifier=cfg.restore_as,
                    RestoreTime=point,
                    Tags=tags,
                    **extra,
                )
            self._wait_instance(cfg.restore_as)
            record("available")
            return
        if not at("cluster_available"):
            if not at("requested") or not self._exists_new():
                record("requested")
                extra = dict(network)
                if cfg.cluster_parameter_group:
                    extra["DBClusterParameterGroupName"] = cfg.cluster_parameter_group
                self.aws.call(
                    RDS,
                    "RestoreDBClusterToPointInTime",
                    RestoreError,
                    f"restoring {cfg.source} at {point.isoformat()} as {cfg.restore_as}",
                    DBClusterIdentifier=cfg.restore_as,
                    SourceDBClusterIdentifier=cfg.source,
                    RestoreToTime=point,
                    RestoreType="full-copy",
                    Tags=tags,
                    **extra,
                )
            self._wait_cluster(cfg.restore_as)
            record("cluster_available")
        if not at("available"):
            if not at("instance_requested") or not self._instance(
                cfg.cluster_instance, RestoreError
            ):
                record("instance_requested")
                extra = {}
                if cfg.parameter_group:
                    extra["DBParameterGroupName"] = cfg.parameter_group
                self.aws.call(
                    RDS,
                    "CreateDBInstance",
                    RestoreError,
                    f"adding instance {cfg.cluster_instance} to {cfg.restore_as}",
                    DBInstanceIdentifier=cfg.cluster_instance,
                    DBClusterIdentifier=cfg.restore_as,
                    Engine=details.engine,
                    DBInstanceClass=cfg.instance_class or details.instance_class or "db.r6g.large",
                    Tags=tags,
                    **extra,
                )
            self._wait_instance(cfg.cluster_instance)
            record("available")

    def _exists_new(self) -> bool:
        cfg = self.config
        assert cfg.restore_as is not None
        if cfg.is_cluster:
            return self._cluster(cfg.restore_as, RestoreError) is not None
        return self._instance(cfg.restore_as, RestoreError) is not None

    def _wait(self, what: str, describe: Any, key: str) -> None:
        def probe() -> tuple[bool, str]:
            found = describe()
            if found is None:
                raise RestoreError(
                    f"store {self.name}: {what} is missing while its restore should be "
                    "running; RDS may have refused it. Run the restore again"
                )
            status = str(found.get(key, ""))
            if status in BROKEN:
                raise RestoreError(
                    f"store {self.name}: {what} ended in state {status!r}; see its events in "
                    "the RDS console (aws rds describe-events), fix the cause (parameter group, "
                    "network, KMS key, storage), delete it and restore again"
                )
            return status == "available", status

        wait_until(
            what,
            probe,
            interval_s=self.config.poll_interval_s,
            timeout_s=self.config.wait_timeout_s,
            error=RestoreError,
            store=self.name,
        )

    def _wait_instance(self, name: str) -> None:
        self._wait(
            f"DB instance {name}", lambda: self._instance(name, RestoreError), "DBInstanceStatus"
        )

    def _wait_cluster(self, name: str) -> None:
        self._wait(f"DB cluster {name}", lambda: self._cluster(name, RestoreError), "Status")

    def endpoint(self) -> dict[str, Any]:
        """Where the restored database answers: host, port (Aurora: reader endpoint too)."""
        cfg = self.config
        assert cfg.restore_as is not None
        if cfg.is_cluster:
            c = self._cluster(cfg.restore_as, RestoreError) or {}
            return {
                "host": c.get("Endpoint"),
                "port": c.get("Port"),
                "reader": c.get("ReaderEndpoint"),
            }
        i = self._instance(cfg.restore_as, RestoreError) or {}
        e = i.get("Endpoint") or {}
        return {"host": e.get("Address"), "port": e.get("Port")}

    def restored_to(self) -> dict[str, str]:
        """The new instance or cluster and its endpoint(s): the site is switched to them."""
        cfg = self.config
        if cfg.restore_as is None:
            return {}
        e = self.endpoint()
        out = {
            "cluster" if cfg.is_cluster else "instance": cfg.restore_as,
            "endpoint": f"{e.get('host')}:{e.get('port')}" if e.get("host") else "",
        }
        if e.get("reader"):
            out["reader endpoint"] = str(e["reader"])
        return out

    def fingerprint(
        self, tables: list[str] | None = None, method: str | None = None
    ) -> Fingerprint:
        return {}  # the engine is never connected to (see the module's docstring)
