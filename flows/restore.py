"""The restore flow: every component of a site back to ONE restore point, or nothing.

validate point (every component, every store, every checksum)
-> nodes stopped (when any store writes over a database the site uses, however the target
   file spells it: decided by location in RestoreRun.prepare, which also gates the pause lock)
-> check every target (reachable, empty unless replace)            in parallel
-> restore every store                                             in parallel
-> compare fingerprints                                            in parallel
-> ScalarDB-managed components: rewrite renamed namespaces in ScalarDB's restored metadata,
   check the restored transaction metadata (records no coordinator state resolves fail)
-> publish the restore report
"""

from __future__ import annotations

from contextlib import nullcontext

from prefect import flow

from flows._common import Check, restore_and_check
from pausepoint.requests import RestoreRequest
from pausepoint.restore import RestoreRun, load_target
from tasks import events
from tasks.pause_lock import site_pause_lock
from tasks.reporting import publish_restore_report
from tasks.site_steps import connect, load_site


def _target_name(run: RestoreRun) -> str:
    # Stable values of the event's payload; the checks say which databases (by location).
    return "the site's own databases" if run.in_place else "other databases (restore target)"


@flow(name="restore", description="Restore Ledger and Auditor of a site to one restore point.")
def restore(request: RestoreRequest) -> dict:
    """Restore ``request.point_id``; returns the checks that ran, each with its result."""
    site = load_site(request.site_file)
    target = load_target(request.target_file)
    if request.replace:
        target = target.model_copy(update={"replace": True})
    client, resolver, catalog = connect(site)
    try:
        run = RestoreRun.prepare(site, catalog, request.point_id, target, resolver)
        checks: list[Check] = []
        # Over the site's databases (by location, decided in prepare) no backup may pause it
        # meanwhile; databases the site does not use are free.
        with site_pause_lock(site, "restore") if run.in_place else nullcontext():
            restore_and_check(run, checks, client)
        publish_restore_report(run.point, checks, run.scalardb_checks)
        run.raise_if_mismatch()
        events.restore_completed(run.point, checks, target=_target_name(run))
        return {"point": run.point.id, "checks": [list(c) for c in checks]}
    except BaseException as exc:
        events.restore_failed(site.site, exc, request.point_id)
        raise
    finally:
        client.close()
