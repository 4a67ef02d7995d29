"""A Prefect server restart while a backup holds the site's pause lock (issue 10, defect 4).

Prefect 3.9 keeps the leases of concurrency slots in the server's memory by default: the restart
forgets the backup's lease while its taken slot stays counted in the server's database. The
backup goes on through the restart (its release after the window is best effort, bounded, and
never discards the point), and the next backup of the site takes the lock once no run of the
site could hold the slot, instead of waiting out pause.lock_timeout_s and blaming a run that
does not exist.

The module has a server, deployments and worker of its own: it restarts its server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from harness.prefect_server import (
    REPO,
    PrefectServer,
    PrefectWorker,
    postgres_database,
    start_server,
)
from harness.servers import PASSWORD
from harness.sites import MY_ENV, PG_ENV
from pausepoint.pause_lock import lock_name
from pausepoint.site import load_site
from tests.support.prefect_api import create_flow_run_over_rest, run_logs, wait_final
from tests.support.small_site import SmallSite

pytestmark = [pytest.mark.e2e]

POOL = "pausepoint"  # prefect.yaml's work pool
LOCK_TIMEOUT_S = 240  # far longer than freeing an orphaned slot takes (QUIET_S after the last run)


@pytest.fixture(scope="module")
def server(tmp_path_factory, pg_server) -> Iterator[PrefectServer]:
    directory = tmp_path_factory.mktemp("prefect-restart")
    # PostgreSQL, as production: the restart keeps the server's database (and loses what Prefect
    # keeps only in memory: the concurrency slot leases).
    server = start_server(directory, database_url=postgres_database(pg_server, "prefect_restart"))
    try:
        server.cli("work-pool", "create", POOL, "--type", "process")
        server.cli(
            "deploy", "--all", "--no-prompt", cwd=REPO,
            env={"PAUSEPOINT_ENV": "production"}, unset=("PAUSEPOINT_HOME",),
        )  # fmt: skip
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def worker(server: PrefectServer, tmp_path_factory) -> Iterator[PrefectWorker]:
    log = tmp_path_factory.mktemp("prefect-restart-worker") / "worker.log"
    worker = server.start_worker(
        POOL, REPO, log,
        env={PG_ENV: PASSWORD, MY_ENV: PASSWORD, "PREFECT_WORKER_QUERY_SECONDS": "1"},
    )  # fmt: skip
    try:
        yield worker
    finally:
        worker.stop()


def _start_backup(api: httpx.Client, site: SmallSite) -> str:
    [deployment] = [
        d for d in api.post("/deployments/filter", json={}).json() if d["name"] == "backup"
    ]
    return create_flow_run_over_rest(api, deployment, {"request": {"site_file": str(site.path)}})


def _wait(condition, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout_s:.0f} s"
        time.sleep(0.05)


def test_a_server_restart_during_a_backup_leaves_no_stuck_pause_lock(
    server: PrefectServer, worker: PrefectWorker, e2e_site: SmallSite
):
    """The server is stopped in the backup's hold and started again (same port and database)
    only after the window closed. The run's steps after the window wait for the API (Prefect's
    client retries), and its release then meets a server that forgot the lease: the slot stays
    taken. The backup registers its point with nothing left paused; the next backup takes the
    lock (freeing the slot no run holds) and succeeds, instead of timing out on the lock."""
    e2e_site.edit(
        lambda d: d["pause"].update(
            min_hold_ms=25_000, drain_timeout_ms=2000, lease_margin_ms=5000,
            lock_timeout_s=LOCK_TIMEOUT_S,
        )
    )  # fmt: skip
    name = lock_name(load_site(e2e_site.path).site)
    with httpx.Client(base_url=server.url, timeout=30) as api:
        first = _start_backup(api, e2e_site)
        _wait(lambda: all(s.gate.check_paused() for s in e2e_site.servers), "the backup paused")

    server.stop()  # in the hold
    _wait(
        lambda: not any(s.gate.check_paused() for s in e2e_site.servers),
        "the backup unpaused with its Prefect server down",
    )
    time.sleep(5)  # the run's release of the lock meets the stopped server
    server.start_again()

    with httpx.Client(base_url=server.url, timeout=30) as api:
        run = wait_final(api, first, timeout_s=300)
        logs = run_logs(api, first)
        assert run["state"]["type"] == "COMPLETED", f"{run['state']}\n{logs[-6000:]}"
        [point] = e2e_site.points()
        assert point.flow_run_id == first
        assert [s.target for s in e2e_site.servers if s.gate.check_paused()] == []
        # The restart forgot the run's lease: the slot is still counted as taken.
        assert api.get(f"/v2/concurrency_limits/{name}").json()["active_slots"] == 1

        second = _start_backup(api, e2e_site)
        run = wait_final(api, second, timeout_s=LOCK_TIMEOUT_S + 120)
        logs = run_logs(api, second)
        assert run["state"]["type"] == "COMPLETED", f"{run['state']}\n{logs[-6000:]}"
        assert f"freed the slot of the pause lock {name!r}" in logs, logs[-6000:]
        assert len(e2e_site.points()) == 2
        assert api.get(f"/v2/concurrency_limits/{name}").json()["active_slots"] == 0
    assert [s.target for s in e2e_site.servers if s.gate.check_paused()] == []
