"""The prune flow (scheduled daily): retention of restore points, and the files failed runs left.

    load site -> plan retention (every point and its latest drill; pausepoint.retention)
              -> delete what is not kept (through the catalog; manifest first)
              -> sweep unfinished points (no manifest, idle 24 h)
              -> delete ended leases older than max(keep_daily_days, 7) days
              -> publish what was kept and deleted, and why

Never deletes the newest point nor the newest verified point (latest drill passed), nor a point
whose manifest or drill records cannot be read (reported, with the file and the fix). A damaged
lease file is reported and skipped (the watchdog quarantines it). With ``dry_run`` it only
reports. A point that could not be deleted fails the run after the rest are done.
"""

from __future__ import annotations

from prefect import flow

from pausepoint.catalog import open_catalog
from pausepoint.errors import CatalogError
from pausepoint.requests import PruneRequest
from pausepoint.retention import Policy, PruneReport
from tasks._step import secret_resolver
from tasks.prune_steps import (
    delete_old_leases,
    delete_points,
    plan_retention,
    publish_prune_report,
    sweep_orphans,
)
from tasks.site_steps import load_site


@flow(name="prune", description="Delete old restore points by retention; sweep failed runs' files.")
def prune(request: PruneRequest) -> dict:
    """Prune the site's catalog; returns what was kept, deleted and swept, each with why."""
    site = load_site(request.site_file)
    catalog = open_catalog(site.catalog, secret_resolver())  # a remote catalog's credentials
    policy = Policy(keep_last=request.keep_last, keep_daily_days=request.keep_daily_days)
    planned, unreadable = plan_retention(catalog, site, policy)
    report = PruneReport(site.site, request.dry_run, planned, unreadable=unreadable)
    delete_points(catalog, site, report)
    sweep_orphans(catalog, site, report)
    delete_old_leases(catalog, site, report)
    publish_prune_report(report)
    if report.failed:
        raise CatalogError(
            f"site {site.site!r}: {len(report.failed)} restore point(s) could not be deleted: "
            + "; ".join(f"{i}: {why}" for i, why in report.failed.items())
            + ". Their manifests may be gone already (then they are no longer listed and the "
            "next prune sweeps their files); check the catalog's permissions and free space."
        )
    return report.to_dict()
