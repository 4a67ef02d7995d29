"""The automation that reacts to a failed backup: installed through the API, and fired by a real
failed backup (the test API runs Prefect's trigger service): the watchdog deployment gets a run.

What this cannot show: the run executing (no worker here; the e2e tests run deployments through a
worker) and a notification being delivered (no notification service on loopback)."""

from __future__ import annotations

import time

import pytest
from prefect import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

from deployments.automations import install, site_automations
from flows.backup import backup
from flows.watchdog import watchdog
from pausepoint.errors import PreflightError
from pausepoint.requests import BackupRequest

pytestmark = [pytest.mark.integration]


def _runs_of(deployment_id) -> list:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )


def test_a_failed_backup_runs_the_watchdog_deployment(small_site):
    import yaml

    site = yaml.safe_load(small_site.path.read_text())["site"]
    deployment_id = watchdog.to_deployment(name=f"watchdog-{site}").apply()
    [made] = site_automations(site, str(small_site.path), deployment_id)
    [automation_id] = install([made])
    assert install([made]) != [automation_id]  # installing again replaces it by name
    with get_client(sync_client=True) as client:
        [stored] = client.read_automations_by_name(made.name)
    assert stored.trigger.expect == {"pausepoint.backup.failed"}
    assert stored.actions[0].deployment_id == deployment_id
    assert stored.actions[0].parameters == {"request": {"site_file": str(small_site.path)}}

    time.sleep(2)  # the trigger service reloads automations when they change
    with small_site.node_down(), pytest.raises(PreflightError):
        backup(BackupRequest(site_file=str(small_site.path)))
    deadline = time.monotonic() + 60
    while not (runs := _runs_of(deployment_id)) and time.monotonic() < deadline:
        time.sleep(1)
    assert len(runs) == 1, "the automation did not start the watchdog deployment"
    assert runs[0].parameters == {"request": {"site_file": str(small_site.path)}}
