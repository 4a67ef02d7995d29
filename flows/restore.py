"""The restore flow: every component of a site back to ONE restore point, or nothing.

validate point (every component, every store, every checksum)
-> nodes stopped (when restoring over the site's own databases)
-> check every target (reachable, empty unless replace)            in parallel
-> restore every store                                             in parallel
-> compare fingerprints                                            in parallel
-> publish the restore report
"""

from __future__ import annotations

from contextlib import nullcontext

from prefect import flow

from flows.backup import _results
from pausepoint.errors import most_severe
from pausepoint.requests import RestoreRequest
from pausepoint.restore import RestoreRun, load_target
from tasks import events
from tasks.pause_lock import site_pause_lock
from tasks.reporting import publish_restore_report
from tasks.restore_steps import (
    check_nodes_stopped,
    check_target,
    restore_store,
    validate_point,
    verify_store,
)
from tasks.site_steps import connect, load_site


def _restore_and_check(run: RestoreRun, client) -> list[tuple[str, bool, str]]:
    """Every step of a restore, in order; returns each check with its result."""
    checks: list[tuple[str, bool, str]] = []
    checks.append(("restore point complete and intact", True, validate_point(run)))
    checks.append(("ScalarDL nodes", True, check_nodes_stopped(run, client)))
    errors = _results([check_target.submit(run, s) for s in run.slots])
    if errors:
        raise most_severe(errors)  # type: ignore[misc]
    checks.append(("targets ready", True, f"{len(run.slots)} stores"))
    errors = _results([restore_store.submit(run, s) for s in run.slots])
    if errors:
        raise most_severe(errors)  # type: ignore[misc]
    _results([verify_store.submit(run, s) for s in run.slots])
    for s in run.slots:
        ok = not s.fingerprint_problems
        detail = (
            f"{len(s.capture.fingerprint)} tables, "
            f"{sum(f.rows for f in s.capture.fingerprint.values())} rows match"
            if ok
            else "; ".join(s.fingerprint_problems)
        )
        checks.append((f"fingerprint {s.component}/{s.store.name}", ok, detail))
    return checks


def _target_name(run: RestoreRun) -> str:
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
        # Over the site's own databases no backup may pause it meanwhile; scratch targets are free.
        with site_pause_lock(site, "restore") if run.in_place else nullcontext():
            checks = _restore_and_check(run, client)
        publish_restore_report(run.point, checks)
        run.raise_if_mismatch()
        events.restore_completed(run.point, checks, target=_target_name(run))
        return {"point": run.point.id, "checks": [list(c) for c in checks]}
    except BaseException as exc:
        events.restore_failed(site.site, exc, request.point_id)
        raise
    finally:
        client.close()
