"""Fixtures of the end-to-end tests against a real Prefect server (harness/prefect_server.py).

The server starts once per session on PostgreSQL (a database of its own on the session's test
PostgreSQL, as production runs it; SQLite answered "database is locked" under load), with its
own PREFECT_HOME, a free loopback port and the scheduler off: every run here is triggered by a
test. The project's prefect.yaml is deployed to
it as a person would (`prefect deploy --all --no-prompt`), and one process worker runs the flow
runs from this checkout. Logs are files under pytest's tmp dir; a failing test prints their tails.
Missing tools skip locally and fail in CI, like the database servers (tests/conftest.py).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import httpx
import pytest

from harness.prefect_server import (
    REPO,
    BrowserUnavailable,
    PrefectServer,
    PrefectUnavailable,
    PrefectWorker,
    chromium_executable,
    postgres_database,
    start_server,
)
from harness.servers import PASSWORD
from harness.sites import MY_ENV, PG_ENV, SiteDbs
from tests.support.small_site import SmallSite, start_small_site

POOL = "pausepoint"  # the work pool of prefect.yaml's deployments
# The environment `prefect deploy` is run for (prefect.yaml's build step reads it). Each test
# points its runs at its own site through the run's parameters, as an operator's API call would.
DEPLOY_ENV = {"PAUSEPOINT_ENV": "production"}

_sites = itertools.count()
_LOGS: list[tuple[str, object]] = []  # (name, process) whose log tail a failing test prints


_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


def _unavailable(reason: str) -> None:
    """Skip locally; in CI a missing tool is a failure (as tests/conftest.py does for servers)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run every test: check scripts/install-servers.sh)")
    pytest.skip(reason)


_databases = itertools.count()


def _serve(tmp_path_factory, pg_server, name: str, label: str) -> Iterator[PrefectServer]:
    database = postgres_database(pg_server, f"prefect_{name.replace('-', '_')}_{next(_databases)}")
    try:
        server = start_server(tmp_path_factory.mktemp(name), database_url=database)
    except PrefectUnavailable as exc:
        _unavailable(str(exc))
    _LOGS.append((label, server))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory, pg_server) -> Iterator[PrefectServer]:
    """`prefect server start` on PostgreSQL for the whole session; its log is
    <tmp>/prefect-server*/server.log."""
    yield from _serve(tmp_path_factory, pg_server, "prefect-server", "prefect server")


@pytest.fixture(scope="module")
def own_server(tmp_path_factory, pg_server) -> Iterator[PrefectServer]:
    """A server of the test module's own (its own database), for tests that deploy to an empty
    server."""
    yield from _serve(tmp_path_factory, pg_server, "prefect-own", "prefect server (own)")


def deployments_by_name(server: PrefectServer) -> dict[str, dict]:
    r = httpx.post(f"{server.url}/deployments/filter", json={}, timeout=30)
    r.raise_for_status()
    return {d["name"]: d for d in r.json()}


def schedule_as_stored(config: dict) -> dict:
    """A schedule of prefect.yaml as the API returns it."""
    if "cron" in config:
        return {"cron": config["cron"], "timezone": config["timezone"], "day_or": True}
    return {"interval": float(config["interval"]), "timezone": "UTC"}


@pytest.fixture(scope="session")
def deployments(prefect_server: PrefectServer) -> dict[str, dict]:
    """The project's deployments, made by `prefect deploy --all --no-prompt` from the repository
    root; name -> the deployment as the API returns it."""
    prefect_server.cli("work-pool", "create", POOL, "--type", "process")
    # PAUSEPOINT_HOME is left unset here: the pull step must resolve it on the worker.
    prefect_server.cli(
        "deploy", "--all", "--no-prompt", cwd=REPO, env=DEPLOY_ENV, unset=("PAUSEPOINT_HOME",)
    )
    found = httpx.post(f"{prefect_server.url}/deployments/filter", json={}, timeout=30)
    found.raise_for_status()
    return {d["name"]: d for d in found.json()}


@pytest.fixture(scope="session")
def prefect_worker(
    prefect_server: PrefectServer, deployments, tmp_path_factory
) -> Iterator[PrefectWorker]:
    """One process worker for the session, running flow runs from this checkout. It carries the
    test databases' password variables the sites name (secrets by reference, never parameters)."""
    log = tmp_path_factory.mktemp("prefect-worker") / "worker.log"
    worker = prefect_server.start_worker(
        POOL,
        REPO,
        log,
        env={PG_ENV: PASSWORD, MY_ENV: PASSWORD, "PREFECT_WORKER_QUERY_SECONDS": "1"},
    )
    _LOGS.append(("prefect worker", worker))
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def api(prefect_server: PrefectServer) -> Iterator[httpx.Client]:
    """A plain HTTP client of the server's REST API (base URL .../api)."""
    with httpx.Client(base_url=prefect_server.url, timeout=30) as client:
        yield client


@pytest.fixture
def prefect_logs_on_failure(request) -> Iterator[None]:
    """Print the tails of the server's and worker's logs when the test failed."""
    yield
    if request.node.stash.get(_FAILED, False):
        for name, process in _LOGS:
            print(f"\n===== {name} log ({process.log}) =====\n{process.log_tail(120)}")


@pytest.fixture
def e2e_site(pg_server, mysql_server, tmp_path, monkeypatch) -> Iterator[SmallSite]:
    """A small site of its own (2 ledger + 1 auditor test admin nodes over gRPC in this process,
    databases on the session's PostgreSQL and MariaDB), its site file under tmp_path."""
    dbs = SiteDbs(pg_server, mysql_server, monkeypatch, prefix=f"e2e{next(_sites)}")
    with start_small_site(dbs, tmp_path) as site:
        yield site


@pytest.fixture(scope="session")
def chromium() -> str:
    try:
        return chromium_executable()
    except BrowserUnavailable as exc:
        _unavailable(str(exc))
