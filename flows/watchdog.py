"""The watchdog flow (scheduled every minute): never leave ScalarDL paused.

    load site -> close orphaned leases (expired, run gone: unpause what they left paused;
                 a lease file that cannot be read: unpause every paused node of the site but
                 those of live leases, then quarantine the file)
              -> announce each one (event pausepoint.pause.orphaned) and each quarantined
                 file (event pausepoint.lease.quarantined)

A lease that could not be closed stays active for the next run, and this run fails with the
most severe failure (an UnpauseError when nodes may still be paused).
"""

from __future__ import annotations

from prefect import flow

from pausepoint.errors import most_severe
from pausepoint.requests import WatchdogRequest
from tasks.site_steps import connect, load_site
from tasks.watchdog_steps import announce_orphaned, announce_quarantined, close_orphaned_leases


@flow(
    name="watchdog",
    description="Unpause the nodes a dead backup run left paused (expired leases); announce it.",
)
def watchdog(request: WatchdogRequest) -> dict:
    """Close the site's orphaned leases; returns what was done (see WatchdogReport.to_dict)."""
    site = load_site(request.site_file)
    client, _, catalog = connect(site)
    try:
        report = close_orphaned_leases(site, catalog, client)
    finally:
        client.close()
    for broken in report.broken:
        announce_orphaned(site.site, broken)
    for quarantined in report.quarantined:
        announce_quarantined(site.site, quarantined, report.site_check)
    if report.failures:
        raise most_severe(report.failures)  # type: ignore[misc]
    return report.to_dict()
