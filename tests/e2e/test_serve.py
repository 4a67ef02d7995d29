"""`pausepoint serve` against a real Prefect server: one process registers every deployment of
prefect.yaml with its schedule, parameters and concurrency limit, without a work pool, and
pauses the schedules when it stops. About 30 s (one server, one serve process).

The flows are not run here (the harness starts the server with its scheduler off).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from deployments.environment import ROOT
from deployments.serve import deployment_specs, values_for
from tests.e2e.conftest import deployments_by_name, schedule_as_stored

pytestmark = pytest.mark.e2e


def test_serve_registers_every_deployment_with_its_schedule(own_server, tmp_path):
    site = tmp_path / "site.yaml"
    target = tmp_path / "drill-target.yaml"
    shutil.copy(ROOT / "deployments/staging/site.yaml", site)
    shutil.copy(ROOT / "deployments/staging/drill-target.yaml", target)
    log = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "pausepoint.cli", "serve", "--site", str(site)]
    cmd += ["--drill-target", str(target), "--env", "staging"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=tmp_path, env=own_server.env(), stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len(got := deployments_by_name(own_server)) < 6:
            assert proc.poll() is None, f"serve exited with {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"not all deployments served:\n{log.read_text()}"
            time.sleep(0.5)
        want = {
            s["name"]: s
            for s in deployment_specs(
                values_for(site_file=site, drill_target=target, environment="staging")
            )
        }
        assert sorted(got) == sorted(want) == [
            "backup", "check", "drill", "prune", "restore", "watchdog",
        ]  # fmt: skip
        for name, spec in want.items():
            d = got[name]
            assert d["work_pool_name"] is None, name  # served by the process, not a pool
            assert d["paused"] is False
            assert d["parameters"] == spec["parameters"]
            assert d["parameters"]["request"]["site_file"] == str(site)
            assert d["tags"] == ["pausepoint", "staging"]
            schedules = [
                {k: v for k, v in s["schedule"].items() if k != "anchor_date"}
                for s in d["schedules"]
            ]
            assert schedules == [schedule_as_stored(s) for s in spec["schedules"]], name
            limit = spec["concurrency_limit"]
            assert d["global_concurrency_limit"]["limit"] == limit["limit"]
            assert d["concurrency_options"]["collision_strategy"] == limit["collision_strategy"]
        assert got["prune"]["parameters"]["request"]["keep_last"] == 8
        assert got["drill"]["parameters"]["request"]["target_file"] == str(target)
        # Registered before serving starts: stop only once it polls for their runs (the API then
        # calls them READY), so that it pauses them on the way out.
        while any(d["status"] != "READY" for d in deployments_by_name(own_server).values()):
            assert proc.poll() is None, f"serve exited with {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"serve did not start serving:\n{log.read_text()}"
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
    # Nothing serves them any more: their schedules are paused, so no run waits for nobody.
    assert all(d["paused"] for d in deployments_by_name(own_server).values()), log.read_text()


def test_serve_without_an_api_refuses(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "home")
    env["PREFECT_API_URL"] = ""
    shutil.copy(ROOT / "deployments/staging/site.yaml", tmp_path / "site.yaml")
    r = subprocess.run(
        [sys.executable, "-m", "pausepoint.cli", "serve", "--site", str(tmp_path / "site.yaml")],
        env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert r.returncode != 0
    assert "PREFECT_API_URL is not set" in r.stderr, r.stderr
