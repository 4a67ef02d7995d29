"""The check flow: every preflight check of a backup, without pausing anything.

load site -> nodes (reachable, not paused; TLS), every store (reachable, versions, tools,
point-in-time settings where it has them), clock bound, catalog writable, pause lock free
(in parallel) -> the report as a table artifact. The same checks as `pausepoint check`.
"""

from __future__ import annotations

from prefect import flow

from pausepoint import checks
from pausepoint.requests import CheckRequest
from tasks.check_steps import (
    check_catalog,
    check_clock,
    check_nodes,
    check_pause_lock,
    check_store,
    publish_check_report,
)
from tasks.site_steps import connect, load_site


@flow(name="check", description="Every preflight check of a backup; pauses nothing.")
def check(request: CheckRequest) -> dict:
    """The check lines of ``request.site_file``'s site and the overall verdict."""
    site = load_site(request.site_file)
    client, resolver, catalog = connect(site)
    try:
        futures = [
            check_nodes.submit(site, client, resolver),
            *[
                check_store.submit(comp, store)
                for comp, store in checks.open_stores(site, resolver)
            ],
            check_clock.submit(site),
            check_catalog.submit(site, catalog),
            check_pause_lock.submit(site),
        ]
        lines = [line for f in futures for line in f.result()]
    finally:
        client.close()
    publish_check_report(site, lines)
    return {
        "site": site.site,
        "verdict": checks.verdict(lines),
        "checks": [line.as_dict() for line in lines],
    }
