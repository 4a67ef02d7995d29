"""Prefect tasks of the check flow: each one check of ``pausepoint.checks`` (nothing is paused,
locked or changed), and the report as a table artifact."""

from __future__ import annotations

from prefect.artifacts import create_table_artifact
from prefect.exceptions import ObjectNotFound

from pausepoint import checks
from pausepoint.admin.client import AdminClient
from pausepoint.catalog import Catalog
from pausepoint.checks import CheckLine
from pausepoint.secrets import SecretResolver
from pausepoint.site import Site
from pausepoint.stores.base import Store
from tasks._step import step
from tasks.reporting import artifact_key


@step(name="check-nodes")
def check_nodes(site: Site, client: AdminClient, resolve: SecretResolver) -> list[CheckLine]:
    return checks.check_nodes(site, client, resolve)


@step(name="check-store")
def check_store(component: str, store: Store) -> list[CheckLine]:
    return checks.check_store(component, store)


@step(name="check-clock")
def check_clock(site: Site) -> list[CheckLine]:
    return [checks.check_clock(site)]


@step(name="check-catalog")
def check_catalog(site: Site, catalog: Catalog) -> list[CheckLine]:
    return [checks.check_catalog(site, catalog)]


def pause_lock_line(site: Site) -> CheckLine:
    """The site's pause lock as the Prefect API shows it (read only: nothing is taken)."""
    from tasks.pause_lock import lock_view

    try:
        view = lock_view(site.site)
    except ObjectNotFound:
        view = None
    except Exception as exc:  # the API down or slow: say so, the other checks stand
        return checks.failed("pause lock", exc)
    return checks.lock_line(view, site.site)


@step(name="check-pause-lock")
def check_pause_lock(site: Site) -> list[CheckLine]:
    return [pause_lock_line(site)]


@step(name="publish-check-report")
def publish_check_report(site: Site, lines: list[CheckLine]) -> None:
    create_table_artifact(
        key=artifact_key(site.site, "check"),
        table=[{"check": x.check, "verdict": x.verdict, "detail": x.detail} for x in lines],
        description=f"site {site.site}: {checks.verdict(lines)}",
    )
