"""The drill flow (scheduled weekly): restore the newest restore point into scratch databases and
verify it, so a backup is known to restore before anyone needs it.

    load site, scratch target -> check the target is none of the site's databases (refuse early)
    -> pick the newest registered point
    -> validate it (every component, store and checksum)           the restore flow's steps
    -> check every scratch target -> restore every store -> compare fingerprints
    -> record the drill under the point in the catalog, publish the report

The scratch databases are replaced by every drill. A failed drill is recorded too, and fails the
run; prune keeps the newest point whose latest drill passed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow
from prefect.runtime import flow_run

from flows._common import Check, restore_and_check
from pausepoint.catalog import open_catalog
from pausepoint.drill import WHAT, drill_record
from pausepoint.errors import ScratchTargetError
from pausepoint.requests import DrillRequest
from pausepoint.restore import RestoreRun, load_target
from tasks._step import secret_resolver
from tasks.drill_steps import check_scratch, pick_newest_point, publish_drill_report, record_drill
from tasks.site_steps import load_site


def _exercise(run: RestoreRun, checks: list[Check]) -> None:
    """The restore flow's steps into the scratch target; appends each check as it passes."""
    if run.in_place:  # check_scratch refused this already (a name may resolve anew): never restore
        raise ScratchTargetError(
            f"refusing to drill: {run.describe_in_place()}. Nothing was restored; point the "
            "scratch target at databases the site does not use."
        )
    restore_and_check(run, checks)
    run.raise_if_mismatch()


@flow(
    name="drill",
    description="Restore the newest restore point into scratch databases, verify, record it.",
)
def drill(request: DrillRequest) -> dict:
    """Drill the site's newest point; returns the drill record (as JSON-ready data)."""
    site = load_site(request.site_file)
    # A drill always replaces its scratch databases: they hold the previous drill.
    target = load_target(request.target_file).model_copy(update={"replace": True})
    where = check_scratch(site, target)  # before the catalog or any database is touched
    catalog = open_catalog(site.catalog, secret_resolver())
    point = pick_newest_point(catalog, site)
    started = datetime.now(UTC)
    checks: list[Check] = []
    failure: BaseException | None = None
    try:
        run = RestoreRun.prepare(site, catalog, point.id, target, secret_resolver(), what=WHAT)
        run.wait_restorable_s = request.wait_restorable_s  # a fresh PITR point: wait for it
        _exercise(run, checks)
    except Exception as exc:  # recorded below, then raised
        failure = exc
    record = drill_record(
        point,
        started,
        datetime.now(UTC),
        checks,
        failure,
        targets=where,
        target_file=request.target_file,
        flow_run_id=flow_run.get_id(),
    )
    try:
        record_drill(catalog, record)
    finally:
        publish_drill_report(record, point)
    if failure is not None:
        raise failure
    return record.model_dump(mode="json")
