"""Prefect tasks of the prune flow: plan by retention, delete through the catalog, sweep what
failed runs left, publish what was done."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from pausepoint.catalog import Catalog
from pausepoint.errors import PausepointError
from pausepoint.retention import (
    Policy,
    PruneReport,
    RetentionPlan,
    candidates,
    old_leases,
    plan,
    prune_markdown,
)
from pausepoint.site import Site
from pausepoint.watchdog import live_staging
from tasks._step import step
from tasks.watchdog_steps import flow_run_alive


@step(name="plan-retention", retries=1, retry_delay_seconds=2)
def plan_retention(
    catalog: Catalog, site: Site, policy: Policy
) -> tuple[RetentionPlan, dict[str, str]]:
    """Every registered point with its latest drill, planned; and the points that cannot be
    read (id -> problem): never deleted, never counted as newest or verified."""
    found, unreadable = candidates(catalog, site.site)
    result = plan(found, policy, datetime.now(UTC))
    log = get_run_logger()
    for d in result.decisions:
        log.info("%s %s: %s", "keep" if d.keep else "delete", d.id, "; ".join(d.reasons))
    for point_id, why in unreadable.items():
        log.error("restore point %s cannot be read, so it is kept untouched: %s", point_id, why)
    return result, unreadable


@step(name="delete-restore-points")
def delete_points(catalog: Catalog, site: Site, report: PruneReport) -> None:
    """Delete what the plan does not keep, one by one; a failure is recorded, the rest go on."""
    log = get_run_logger()
    for d in report.plan.delete:
        if report.dry_run:
            report.deleted.append(d.id)
            continue
        try:
            catalog.delete_point(site.site, d.id)
        except (PausepointError, OSError) as exc:
            report.failed[d.id] = f"{type(exc).__name__}: {exc}"
            log.error("could not delete restore point %s: %s", d.id, exc)
            continue
        report.deleted.append(d.id)
        log.info("deleted restore point %s", d.id)


@step(name="sweep-orphans", retries=1, retry_delay_seconds=2)
def sweep_orphans(catalog: Catalog, site: Site, report: PruneReport) -> None:
    swept = catalog.sweep_orphans(site.site, dry_run=report.dry_run)
    report.swept = [str(p) for p in swept]
    for p in report.swept:
        get_run_logger().info(
            "%s unfinished point %s", "would sweep" if report.dry_run else "swept", p
        )


@step(name="delete-old-leases", retries=1, retry_delay_seconds=2)
def delete_old_leases(catalog: Catalog, site: Site, report: PruneReport) -> None:
    """Ended leases past their history period; active ones are never touched."""
    log = get_run_logger()
    scan = catalog.scan_leases(site.site)
    for bad in scan.damaged:
        # Not ours to move: the watchdog first checks every node the file may have paused.
        report.damaged_leases[bad.location] = bad.problem
        log.error("lease file %s cannot be read; skipped: %s", bad.location, bad.problem)
    old = old_leases(scan.leases, report.plan.policy, datetime.now(UTC))
    for run_id in old:
        if not report.dry_run:
            try:
                catalog.delete_lease(site.site, run_id)
            except PausepointError as exc:  # rewritten or damaged since the scan: next prune
                log.error("could not delete the ended lease of run %s: %s", run_id, exc)
                continue
        report.leases.append(run_id)
        log.info(
            "%s ended lease of run %s", "would delete" if report.dry_run else "deleted", run_id
        )


@step(name="publish-prune-report")
def publish_prune_report(report: PruneReport) -> None:
    get_run_logger().info("%s", report.summary())
    create_markdown_artifact(
        key=f"{report.site}-prune".lower(),
        markdown=prune_markdown(report),
        description=report.summary(),
    )


def sweep_abandoned_staging(catalog: Catalog, site: Site) -> list[str]:
    """Remove the staging that killed backups left (their run provably gone), at the start of
    a backup instead of after prune's 24 hours. Called inside the backup's begin-restore-point
    step, under the site's pause lock; never fails the backup (a failure is logged)."""
    log = get_run_logger()
    try:
        live = live_staging(catalog, site.site, flow_run_alive)
        swept = [str(p) for p in catalog.sweep_abandoned_staging(site.site, live)]
    except Exception as exc:  # tidying must never cost a backup
        log.warning("could not sweep abandoned staging of site %s: %s", site.site, exc)
        return []
    for path in swept:
        log.info("swept the staging of a backup run that is gone: %s", path)
    return swept
