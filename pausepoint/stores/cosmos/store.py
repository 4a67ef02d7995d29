"""Cosmos DB (NoSQL API, as ScalarDB uses it) by point-in-time recovery.

Nothing is copied during a backup: the restore point is the pause window's mid-time (rounded to
the second), and a restore asks Azure for a NEW account restored to that instant (ScalarDB's
backup guide; FACTS.md §8). Steps of a restore, each recorded in the restore journal so that a
restore that died resumes where it stopped:

1. ``create``: the new account (``restore_as``) in restore mode, from the restorable account
   recorded at capture, ScalarDB's databases only; waited for (a long-running operation);
2. ``created``: the new account's document endpoint is known (reported in the restore report);

and after it (``reapply_settings``, idempotent, so run again on a resumed restore):

3. the default consistency set to Strong (ScalarDB needs it; a restored account does not keep
   it);
4. ScalarDB's stored procedures re-installed by the configured ``repair_command`` (the Schema
   Loader with ``--cosmos ... --repair-all``): point-in-time recovery does not restore them.

There is no data-plane client here: the store records no fingerprint. The ScalarDB checks
(coordinator states, application checks) verify the data once the user points ScalarDB at the
new account.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pausepoint.errors import (
    CaptureError,
    RestoreError,
    RestoreTargetError,
    StoreCheckError,
    TargetNotEmptyError,
)
from pausepoint.locations import Location
from pausepoint.stores._common import pitr_capture, verify_artifacts
from pausepoint.stores.base import (
    CaptureHandle,
    Fingerprint,
    PreparedCapture,
    ProgressFn,
    Store,
    StoreCapture,
    StoreJournal,
)
from pausepoint.stores.cosmos import arm
from pausepoint.stores.cosmos.config import CosmosCaptureDetails, CosmosConfig

GRANULARITY_MS = 1000  # restore timestamps are taken to the second
CREATE, CREATED = "create", "created"  # journal steps
STRONG = "Strong"


def _utc(at: datetime | str | None) -> datetime | None:
    if at is None or at == "":
        return None
    if isinstance(at, str):  # some fields are strings in the SDK (latestRestorableTimestamp)
        at = datetime.fromisoformat(at.replace("Z", "+00:00"))
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


class CosmosStore(Store[CosmosConfig]):
    kind = "cosmos"
    fingerprint_method = "cosmos-none-v1"  # no data-plane client: nothing to fingerprint

    def __init__(self, config: CosmosConfig, resolve: Any):
        super().__init__(config, resolve)
        self._arm: Any = None
        self.endpoint: str | None = None  # the restored account's, once known

    @property
    def client(self) -> Any:
        if self._arm is None:
            self._arm = arm.client(self.config, self._resolve)
        return self._arm

    def _where(self) -> str:
        c = self.config
        return f"store {self.name}: Cosmos DB account {c.account!r}"

    # --- preflight ------------------------------------------------------------------------------

    def _source(self, error: type[Exception]) -> tuple[Any, Any]:
        """(the account, its restorable account) or ``error`` naming what is wrong."""
        c = self.config
        with arm.calling(c, "read the account", error, "check account and resource_group"):
            account = self.client.database_accounts.get(c.resource_group, c.account)
        policy = getattr(account.properties, "backup_policy", None)
        kind = getattr(policy, "type", None) or (policy or {}).get("type")
        if str(kind).lower() != "continuous":
            raise error(
                f"{self._where()} has {kind or 'no'} backup, not continuous backup, so it cannot "
                "be restored to a point in time. Turn it on: `az cosmosdb update --name "
                f"{c.account} --resource-group {c.resource_group} --backup-policy-type "
                "Continuous` (it cannot be turned off again), then back up"
            )
        with arm.calling(c, "list the restorable accounts", error):
            restorable = [
                r
                for r in self.client.restorable_database_accounts.list_by_location(c.location)
                if r.properties.account_name == c.account and not r.properties.deletion_time
            ]
        if not restorable:
            raise error(
                f"{self._where()} is not among the restorable accounts of location "
                f"{c.location!r}; set `location` to the account's write region"
            )
        return account, max(restorable, key=lambda r: _utc(r.properties.creation_time))

    def _containers(self, error: type[Exception]) -> dict[str, list[str]]:
        c = self.config
        with arm.calling(c, "list ScalarDB's databases", error):
            present = {
                d.name
                for d in self.client.sql_resources.list_sql_databases(c.resource_group, c.account)
            }
        missing = [d for d in c.databases if d not in present]
        if missing:
            raise error(
                f"{self._where()} has no database {', '.join(repr(m) for m in missing)} "
                f"(it has {', '.join(sorted(present)) or 'none'}); list ScalarDB's namespaces "
                "and `coordinator` in `databases`, as the Schema Loader created them"
            )
        out: dict[str, list[str]] = {}
        for db in c.databases:
            with arm.calling(c, f"list the containers of database {db!r}", error):
                out[db] = sorted(
                    x.name
                    for x in self.client.sql_resources.list_sql_containers(
                        c.resource_group, c.account, db
                    )
                )
        return out

    def check(self) -> dict[str, Any]:
        account, restorable = self._source(StoreCheckError)
        containers = self._containers(StoreCheckError)
        props = restorable.properties
        consistency = account.properties.consistency_policy.default_consistency_level
        return {
            "account": self.config.account,
            "backup": "continuous",
            "restorable_since": _utc(props.oldest_restorable_time or props.creation_time),
            "databases": {db: len(cs) for db, cs in containers.items()},
            "consistency": str(consistency),
        }

    def check_pitr(self) -> dict[str, Any]:
        """Continuous backup on, and since when the account can be restored."""
        _, restorable = self._source(StoreCheckError)
        props = restorable.properties
        since = _utc(props.oldest_restorable_time or props.creation_time)
        return {"backup": "continuous", "restorable_since": since.isoformat() if since else "?"}

    # --- capture: nothing inside the window; the point's time after it --------------------------

    def _open(self, prepared: PreparedCapture) -> CaptureHandle:
        return CaptureHandle(ctx=prepared.ctx, prepared=prepared, opened_at=datetime.now(UTC))

    def _finish(self, h: CaptureHandle, progress: ProgressFn | None) -> StoreCapture:
        at = h.ctx.point_time(GRANULARITY_MS)
        account, restorable = self._source(CaptureError)
        containers = self._containers(CaptureError)
        props = restorable.properties
        details = CosmosCaptureDetails(
            account=self.config.account,
            resource_group=self.config.resource_group,
            location=self.config.location,
            restorable_id=restorable.id,
            databases=containers,
            oldest_restorable=_utc(props.oldest_restorable_time or props.creation_time),
            consistency=str(account.properties.consistency_policy.default_consistency_level),
        )
        payload = {"point": at.isoformat(), "restorable_id": restorable.id}
        return pitr_capture(
            self,
            h,
            method="pitr",
            at=at,
            details=details,
            artifact="pitr.json",
            payload=json.dumps(payload, sort_keys=True).encode(),
            progress=None,
        )

    # --- restore --------------------------------------------------------------------------------

    def restorable_window(self, capture: StoreCapture) -> tuple[datetime, datetime] | None:
        """From the source's oldest restorable time to the newest time EVERY container of
        ScalarDB's databases can be restored to now (Azure's latest restorable timestamp)."""
        from azure.mgmt.cosmosdb.models import ContinuousBackupRestoreLocation

        d: CosmosCaptureDetails = self.captured_details(capture)
        c = self.config
        instance = d.restorable_id.rstrip("/").rsplit("/", 1)[-1]
        with arm.calling(c, "read the restorable account", RestoreError):
            r = self.client.restorable_database_accounts.get_by_location(d.location, instance)
        props = r.properties
        oldest = _utc(props.oldest_restorable_time or props.creation_time) or d.oldest_restorable
        deleted = _utc(props.deletion_time)
        newest = deleted or datetime.now(UTC)
        if deleted is None:
            for db, containers in d.databases.items():
                for container in containers:
                    with arm.calling(
                        c, f"read the latest restorable time of {db}.{container}", RestoreError
                    ):
                        info = (
                            self.client.sql_resources.begin_retrieve_continuous_backup_information(
                                d.resource_group,
                                d.account,
                                db,
                                container,
                                ContinuousBackupRestoreLocation(location=d.location),
                            ).result()
                        )
                    latest = _utc(info.continuous_backup_information.latest_restorable_timestamp)
                    if latest is not None:
                        newest = min(newest, latest)
        return (oldest, newest)

    def _target_name(self) -> str:
        if not self.config.restore_as:
            raise RestoreTargetError(
                f"store {self.name}: a Cosmos DB restore creates a new account; set `restore_as` "
                "(the new account's name) for this store in the restore target file"
            )
        return self.config.restore_as

    def check_restore_target(self, capture: StoreCapture, replace: bool) -> None:
        name = self._target_name()
        with arm.calling(self.config, f"check whether account name {name!r} is free", RestoreError):
            taken = self.client.database_accounts.check_name_exists(name)
        if taken:
            raise TargetNotEmptyError(
                f"store {self.name}: Cosmos DB account name {name!r} is taken (account names are "
                "global); a point-in-time restore creates a new account and cannot write into an "
                "existing one, --replace or not. Choose another `restore_as`, or delete that "
                "account first if it is a scratch copy"
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
        d: CosmosCaptureDetails = self.captured_details(capture)
        name = self._target_name()
        at = capture.pitr_timestamp
        if at is None:
            raise RestoreError(f"store {self.name}: the capture has no point-in-time timestamp")
        step = journal.step if journal is not None else None
        if step == CREATED:
            self.endpoint = str(journal.data.get("endpoint") or "") or None  # type: ignore[union-attr]
            return
        exists = False
        if step == CREATE:
            # The run that sent the create died: the account may exist (being created) or not.
            with arm.calling(self.config, f"check account {name!r}", RestoreError):
                exists = self.client.database_accounts.check_name_exists(name)
        if journal is not None:
            journal.record(CREATE, {"account": name})
        account = self._wait_created(name) if exists else self._create(name, d, at)
        self.endpoint = account.properties.document_endpoint
        if journal is not None:
            journal.record(CREATED, {"account": name, "endpoint": self.endpoint})

    def _create(self, name: str, d: CosmosCaptureDetails, at: datetime) -> Any:
        from azure.mgmt.cosmosdb import models as m

        params = m.DatabaseAccountCreateUpdateParameters(
            location=d.location,
            kind="GlobalDocumentDB",
            properties=m.DatabaseAccountCreateUpdateProperties(
                locations=[m.Location(location_name=d.location, failover_priority=0)],
                database_account_offer_type="Standard",
                create_mode=m.CreateMode.RESTORE,
                backup_policy=m.ContinuousModeBackupPolicy(),
                restore_parameters=m.RestoreParameters(
                    restore_mode=m.RestoreMode.POINT_IN_TIME,
                    restore_source=d.restorable_id,
                    restore_timestamp_in_utc=at.astimezone(UTC),
                    databases_to_restore=[
                        m.DatabaseRestoreResource(database_name=db, collection_names=cs)
                        for db, cs in sorted(d.databases.items())
                    ],
                ),
            ),
        )
        c = self.config
        with arm.calling(
            c,
            f"create account {name!r} restored to {at.isoformat()}",
            RestoreError,
            "Nothing of the source account was changed; fix the cause and restore again",
        ):
            poller = self.client.database_accounts.begin_create_or_update(
                c.resource_group, name, params
            )
            poller.result(timeout=c.restore_timeout_s)
            if not poller.done():
                raise RestoreError(
                    f"store {self.name}: account {name!r} was not created within "
                    f"{c.restore_timeout_s:.0f} s; the restore resumes from here when run again "
                    "(or raise restore_timeout_s)"
                )
        return self._wait_created(name)

    def _wait_created(self, name: str) -> Any:
        c = self.config
        deadline = time.monotonic() + c.restore_timeout_s
        while True:
            with arm.calling(c, f"read account {name!r}", RestoreError):
                account = self.client.database_accounts.get(c.resource_group, name)
            state = str(account.properties.provisioning_state or "")
            if state.lower() == "succeeded":
                return account
            if state.lower() == "failed":
                raise RestoreError(
                    f"store {self.name}: Azure reports the restored account {name!r} as Failed; "
                    "delete it and restore again (see its activity log for the cause)"
                )
            if time.monotonic() > deadline:
                raise RestoreError(
                    f"store {self.name}: account {name!r} is still {state or 'not ready'} after "
                    f"{c.restore_timeout_s:.0f} s; run the restore again to go on waiting"
                )
            time.sleep(max(c.poll_interval_s, 0.05))

    def reapply_settings(self, capture: StoreCapture) -> None:
        """Strong consistency and ScalarDB's stored procedures on the new account (both reset
        by a point-in-time restore); idempotent, so a resumed restore runs it again."""
        from azure.mgmt.cosmosdb import models as m

        c = self.config
        name = self._target_name()
        with arm.calling(c, f"read account {name!r}", RestoreError):
            account = self.client.database_accounts.get(c.resource_group, name)
        self.endpoint = account.properties.document_endpoint
        level = str(account.properties.consistency_policy.default_consistency_level)
        if level.lower() != STRONG.lower():
            update = m.DatabaseAccountUpdateParameters(
                properties=m.DatabaseAccountUpdateProperties(
                    consistency_policy=m.ConsistencyPolicy(default_consistency_level=STRONG)
                )
            )
            with arm.calling(c, f"set Strong consistency on account {name!r}", RestoreError):
                self.client.database_accounts.begin_update(c.resource_group, name, update).result(
                    timeout=c.restore_timeout_s
                )
        if c.repair_command:
            self._repair(name)

    def _repair(self, name: str) -> None:
        c = self.config
        argv = [
            a.format(endpoint=self.endpoint or "", account=name) for a in c.repair_command or []
        ]
        secrets = {k: self._resolve(ref) for k, ref in c.repair_env.items()}
        env = {**os.environ, **{k: v.get_secret_value() for k, v in secrets.items() if v}}
        try:
            done = subprocess.run(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=c.repair_timeout_s,
                check=False,
            )
        except FileNotFoundError:
            raise RestoreError(
                f"store {self.name}: repair_command {argv[0]!r} was not found; install ScalarDB's "
                "Schema Loader (and Java) on the worker or fix the path. The account "
                f"{name!r} is restored; run the repair by hand before starting ScalarDL on it"
            ) from None
        except subprocess.TimeoutExpired:
            raise RestoreError(
                f"store {self.name}: repair_command did not finish in {c.repair_timeout_s:.0f} s; "
                f"account {name!r} is restored but ScalarDB's stored procedures may be missing: "
                "run the repair again"
            ) from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout or b"").decode(errors="replace")
            for v in secrets.values():  # the tool may echo its settings: never a secret
                if v and v.get_secret_value():
                    tail = tail.replace(v.get_secret_value(), "***")
            last = " | ".join(tail.strip().splitlines()[-3:])
            raise RestoreError(
                f"store {self.name}: repair_command exited with {done.returncode} ({last}); "
                f"account {name!r} is restored but ScalarDB's stored procedures are not "
                "re-installed: fix the command and restore again (the restore resumes)"
            )

    def restored_to(self) -> dict[str, str]:
        return {"account": self.config.restore_as or "", "endpoint": self.endpoint or ""}

    def fingerprint(
        self, tables: list[str] | None = None, method: str | None = None
    ) -> Fingerprint:
        if tables:
            raise RestoreError(
                f"store {self.name}: a Cosmos DB store records no fingerprint (no data-plane "
                f"client); asked for {', '.join(tables)}"
            )
        return {}


def locations(
    cfg: CosmosConfig, *, as_target: bool, where: str | None = None, resolve: Any = None
) -> frozenset[Location]:
    """Each of ScalarDB's databases in the account (as a restore target: in the NEW account)."""
    account = (cfg.restore_as or cfg.account) if as_target else cfg.account
    server = f"cosmos:{cfg.subscription_id.lower()}/{account}"
    return frozenset(Location(server, db.casefold(), f"{account}/{db}") for db in cfg.databases)
