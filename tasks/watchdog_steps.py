"""Prefect tasks of the watchdog flow: close orphaned leases, announce each one, and announce
each damaged lease file it quarantined.

Whether a lease's run is alive is Prefect's knowledge, so it is asked here and handed to the core
(``pausepoint.watchdog``) as a plain function.
"""

from __future__ import annotations

from uuid import UUID

from prefect import get_client
from prefect.exceptions import ObjectNotFound
from prefect.logging import get_run_logger

from pausepoint.admin.client import AdminClient
from pausepoint.catalog import Catalog
from pausepoint.site import Site
from pausepoint.watchdog import (
    BrokenLease,
    NodeOutcome,
    QuarantinedLease,
    SiteCheck,
    WatchdogReport,
    run_watchdog,
)
from tasks._step import step
from tasks.events import LEASE_QUARANTINED, PAUSE_ORPHANED, emit, flow_run_resource


def _flow_run_id(run_id: str) -> UUID | None:
    try:
        return UUID(run_id)
    except ValueError:
        return None  # a run without a flow run (pausepoint's own "local-..." ids)


def flow_run_alive(run_id: str) -> bool:
    """Alive while the Prefect API reports the flow run in a non-final state (scheduled,
    pending, running, paused, cancelling). A run the API does not know counts as not alive."""
    flow_run_id = _flow_run_id(run_id)
    if flow_run_id is None:
        return False
    with get_client(sync_client=True) as client:
        try:
            flow_run = client.read_flow_run(flow_run_id)
        except ObjectNotFound:
            return False
    return flow_run.state is None or not flow_run.state.is_final()


@step(name="close-orphaned-leases")
def close_orphaned_leases(site: Site, catalog: Catalog, client: AdminClient) -> WatchdogReport:
    logger = get_run_logger()
    report = run_watchdog(catalog, site, client, flow_run_alive)
    for broken in report.broken:
        logger.warning("%s", broken.lease.broken_reason)
    if report.site_check is not None:
        logger.warning("%s", report.site_check.reason)
    for q in report.quarantined:
        logger.error(
            "damaged lease file %s moved to %s (kept for you to read; it is never read as a "
            "lease again): %s",
            q.location,
            q.moved_to,
            q.problem,
        )
    for run_id, why in report.waiting.items():
        logger.info("lease of run %s left active: %s", run_id, why)
    for failure in report.failures:
        logger.error("%s", failure)
    logger.info("%s", report.summary())
    return report


@step(name="announce-orphaned-pause")
def announce_orphaned(site: str, broken: BrokenLease) -> str | None:
    """The event automations react to: a backup run died and left its pause behind."""
    lease = broken.lease
    return emit(
        PAUSE_ORPHANED,
        site,
        {
            "run_id": lease.run_id,
            "owner": lease.owner,
            "deadline": lease.deadline.isoformat(),
            "nodes": lease.nodes,
            **broken.outcome(),
            "reason": lease.broken_reason,
        },
        point_id=lease.point_id,
        related=_related(site, lease.run_id),
    )


def _related(site: str, run_id: str) -> list[dict[str, str]]:
    """An event's related resources: the lease, and its run when the id is a flow run's."""
    related = [
        {
            "prefect.resource.id": f"pausepoint.lease.{site}.{run_id}",
            "prefect.resource.role": "lease",
            "prefect.resource.name": run_id,
        }
    ]
    if _flow_run_id(run_id) is not None:
        related.append(flow_run_resource(run_id))
    return related


@step(name="announce-quarantined-lease")
def announce_quarantined(
    site: str, quarantined: QuarantinedLease, check: SiteCheck | None
) -> str | None:
    """A lease file could not be read: the watchdog checked every node of the site, unpaused
    what reported paused, and moved the file aside. People should read it."""
    return emit(
        LEASE_QUARANTINED,
        site,
        {
            "run_id": quarantined.run_id,
            "file": quarantined.location,
            "moved_to": quarantined.moved_to,
            "problem": quarantined.problem,
            **(check or NodeOutcome.none()).outcome(),
            "reason": check.reason if check else None,
        },
        related=_related(site, quarantined.run_id),
    )
