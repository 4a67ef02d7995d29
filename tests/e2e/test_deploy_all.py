"""`prefect deploy --all --no-prompt` against a real Prefect server registers what prefect.yaml
says: schedules, parameters, concurrency limits, the pull step. About 20 s (one server).

The flows are not run here (tests/e2e/test_prefect_deployments.py runs them with a worker).
"""

from __future__ import annotations

import httpx
import pytest

from deployments.environment import ROOT, resolve
from deployments.serve import deployment_specs
from tests.e2e.conftest import deployments_by_name, schedule_as_stored

pytestmark = pytest.mark.e2e
POINT = "20261128T003119Z-3f9a"


def test_deploy_all_registers_what_prefect_yaml_says(own_server, monkeypatch):
    monkeypatch.delenv("PAUSEPOINT_HOME", raising=False)  # resolved by each worker, not here
    own_server.cli("work-pool", "create", "pausepoint", "--type", "process")

    # Without an environment the build step stops the deploy before anything is registered.
    monkeypatch.delenv("PAUSEPOINT_ENV", raising=False)
    refused = own_server.cli("deploy", "--all", "--no-prompt", cwd=ROOT, check=False)
    assert refused.returncode != 0
    assert "PAUSEPOINT_ENV is not set" in refused.stdout + refused.stderr
    assert deployments_by_name(own_server) == {}

    own_server.cli("deploy", "--all", "--no-prompt", cwd=ROOT, env={"PAUSEPOINT_ENV": "staging"})
    got = deployments_by_name(own_server)
    want = {s["name"]: s for s in deployment_specs(resolve("staging"))}
    assert (
        sorted(got) == sorted(want) == ["backup", "check", "drill", "prune", "restore", "watchdog"]
    )
    for name, spec in want.items():
        d = got[name]
        assert d["entrypoint"] == spec["entrypoint"]
        assert d["parameters"] == spec["parameters"]
        assert d["tags"] == ["pausepoint", "staging"]
        assert d["work_pool_name"] == "pausepoint" and d["work_queue_name"] == "default"
        assert d["enforce_parameter_schema"] is True
        assert d["pull_steps"] == [
            {
                "prefect.deployments.steps.set_working_directory": {
                    "directory": "{{ $PAUSEPOINT_HOME }}"
                }
            }
        ]
        schedules = [
            {k: v for k, v in s["schedule"].items() if k != "anchor_date"} for s in d["schedules"]
        ]
        assert schedules == [schedule_as_stored(s) for s in spec["schedules"]], name
        assert all(s["active"] for s in d["schedules"])
        limit = spec["concurrency_limit"]
        assert d["global_concurrency_limit"]["limit"] == limit["limit"]
        assert d["concurrency_options"]["collision_strategy"] == limit["collision_strategy"]
        assert d["concurrency_options"]["grace_period_seconds"] == limit.get("grace_period_seconds")
    assert got["prune"]["parameters"]["request"]["keep_last"] == 8  # staging/parameters.yaml
    assert got["restore"]["schedules"] == []


def test_a_restore_run_must_name_the_point_and_confirm_it(own_server):
    restore = deployments_by_name(own_server)["restore"]
    url = f"{own_server.url}/deployments/{restore['id']}/create_flow_run"
    site = restore["parameters"]["request"]["site_file"]
    # The deployment's defaults alone: the server refuses the run (point_id, confirm required).
    r = httpx.post(url, json={}, timeout=30)
    assert r.status_code == 409 and "point_id" in r.text, r.text
    # A run's `request` replaces the default one whole: the site file is sent again.
    r = httpx.post(url, json={"parameters": {"request": {"point_id": POINT, "confirm": POINT}}})
    assert r.status_code == 409 and "site_file" in r.text, r.text
    r = httpx.post(
        url, json={"parameters": {"request": {"site_file": site, "point_id": "x", "confirm": "x"}}}
    )
    assert r.status_code == 409 and "point_id" in r.text, r.text
    body = {"parameters": {"request": {"site_file": site, "point_id": POINT, "confirm": POINT}}}
    r = httpx.post(url, json=body, timeout=30)
    assert r.status_code == 201, r.text
    assert r.json()["state"]["type"] == "SCHEDULED"
