"""Prefect tasks of the prune flow: plan by retention, delete through the catalog, sweep what
failed runs left, publish what was done."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from pausepoint.catalog import Catalog
from pausepoint.errors import PausepointError
from pausepoint.retention import (
    Candidate,
    Policy,
    PruneReport,
    RetentionPlan,
    old_leases,
    plan,
    prune_markdown,
)
from pausepoint.site import Site
from tasks._step import step


@step(name="plan-retention", retries=1, retry_delay_seconds=2)
def plan_retention(catalog: Catalog, site: Site, policy: Policy) -> RetentionPlan:
    """Every registered point with its latest drill; a damaged manifest or drill record fails
    the run (naming the file) rather than guessing what is verified."""
    candidates = []
    for point in catalog.list_points(site.site):
        latest = catalog.latest_drill(site.site, point.id)
        candidates.append(
            Candidate(point.id, point.window.mid, latest is not None and latest.passed)
        )
    result = plan(candidates, policy, datetime.now(UTC))
    log = get_run_logger()
    for d in result.decisions:
        log.info("%s %s: %s", "keep" if d.keep else "delete", d.id, "; ".join(d.reasons))
    return result


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
    old = old_leases(catalog.list_leases(site.site), report.plan.policy, datetime.now(UTC))
    for run_id in old:
        if not report.dry_run:
            catalog.delete_lease(site.site, run_id)
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
