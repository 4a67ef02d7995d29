"""Prefect events pausepoint emits, for automations and the event feed.

Every event's resource is the site (``pausepoint.site.<site>``); the restore point, the lease and
the flow run are related resources, so an automation can match on any of them.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect.events import emit_event

from pausepoint.catalog.manifest import RestorePoint

BACKUP_COMPLETED = "pausepoint.backup.completed"
BACKUP_FAILED = "pausepoint.backup.failed"
RESTORE_COMPLETED = "pausepoint.restore.completed"
RESTORE_FAILED = "pausepoint.restore.failed"
PAUSE_ORPHANED = "pausepoint.pause.orphaned"
# The site's pause lock (tasks/pause_lock.py): a release that did not happen, a slot freed
# because no run of the site could hold it.
PAUSE_LOCK_RELEASE_FAILED = "pausepoint.pause-lock.release-failed"
PAUSE_LOCK_FREED = "pausepoint.pause-lock.freed"
# A lease file the watchdog could not read, moved aside after a check of every node.
LEASE_QUARANTINED = "pausepoint.lease.quarantined"


def site_resource(site: str) -> dict[str, str]:
    return {"prefect.resource.id": f"pausepoint.site.{site}", "prefect.resource.name": site}


def point_resource(site: str, point_id: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"pausepoint.restore-point.{site}.{point_id}",
        "prefect.resource.role": "restore-point",
        "prefect.resource.name": point_id,
    }


def flow_run_resource(flow_run_id: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
        "prefect.resource.role": "flow-run",
    }


def emit(
    event: str,
    site: str,
    payload: dict[str, Any],
    point_id: str | None = None,
    related: list[dict[str, str]] | None = None,
) -> str | None:
    """Emit one event; returns its id (None when no events client is configured)."""
    links = list(related or [])
    if point_id is not None:
        links.append(point_resource(site, point_id))
    try:
        sent = emit_event(event=event, resource=site_resource(site), related=links, payload=payload)
    except Exception:  # an event that cannot be sent must never replace the run's own outcome
        logging.getLogger(__name__).warning(
            "could not emit %s for site %s", event, site, exc_info=True
        )
        return None
    return str(sent.id) if sent is not None else None


def backup_completed(point: RestorePoint) -> str | None:
    w = point.window
    return emit(
        BACKUP_COMPLETED,
        point.site,
        {
            "point_id": point.id,
            "mid_time": w.mid.isoformat(),
            "paused": w.paused,
            "write_stall_ms": round(w.write_stall_ms, 1),
            "size_bytes": sum(s.total_bytes for c in point.components.values() for s in c.stores),
            "components": sorted(point.components),
            "labels": point.labels,
        },
        point_id=point.id,
    )


def _failure(error: BaseException) -> dict[str, str]:
    # The message is the error's own text: it names the thing and the fix, and holds no secret.
    return {"error_type": type(error).__name__, "error": str(error)[:2000]}


def backup_failed(site: str, error: BaseException, point_id: str | None) -> str | None:
    return emit(BACKUP_FAILED, site, {**_failure(error), "point_id": point_id}, point_id=point_id)


def restore_completed(
    point: RestorePoint, checks: list[tuple[str, bool, str]], target: str
) -> str | None:
    return emit(
        RESTORE_COMPLETED,
        point.site,
        {
            "point_id": point.id,
            "target": target,
            "checks": [{"check": n, "passed": ok, "detail": d} for n, ok, d in checks],
        },
        point_id=point.id,
    )


def restore_failed(site: str, error: BaseException, point_id: str) -> str | None:
    return emit(RESTORE_FAILED, site, {**_failure(error), "point_id": point_id}, point_id=point_id)
