"""Suite-wide fixtures. Servers start once per session and only when a test asks for them."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before anything imports Prefect: its server must not phone home (loopback traffic only), also
# when pytest runs without the Makefile's environment.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from harness import servers
from tests.support import hygiene


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_BASELINE] = hygiene.Baseline.take()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Every fixture is torn down by now: the suite fails if it left anything behind."""
    baseline = session.config.stash.get(_BASELINE, None)
    if baseline is None or os.environ.get("PAUSEPOINT_KEEP_SERVERS"):
        return
    from harness import gate_server

    nodes = [
        f"{n.host}:{n.port}{' (PAUSED)' if n.gate.check_paused() else ''}"
        for n in list(gate_server.LIVE)
    ]
    found = baseline.leftovers(nodes)
    if found:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = "the test session left behind:\n  " + "\n  ".join(found)
        if reporter is not None:
            reporter.write_sep("=", "LEFT BEHIND", red=True)
            reporter.write_line(text)
        else:
            print(text)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_BASELINE = pytest.StashKey[hygiene.Baseline]()


def _unavailable(reason: str) -> None:
    """Skip locally; in CI a missing server is a failure (`make test` installs them)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run every test: check scripts/install-servers.sh)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A temporary Prefect API for the whole session (flows and tasks record their runs)."""
    from prefect.testing.utilities import prefect_test_harness

    # Two cores: the first start of the API can take well over the default 30 s.
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def servers_dir() -> Iterator[Path]:
    """A private directory for the servers' data. Not pytest's tmp_path: that one is 0700 and
    PostgreSQL runs as the `postgres` user, which must be able to traverse into it."""
    path = Path(tempfile.mkdtemp(prefix="pausepoint-servers-"))
    path.chmod(0o711)
    yield path
    if not os.environ.get("PAUSEPOINT_KEEP_SERVERS"):
        shutil.rmtree(path, ignore_errors=True)


def _serve(start, directory: Path):
    """Start one private server for the session, skip/fail when unavailable, stop at the end."""
    try:
        server = start(directory)
    except servers.ServerUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_server(servers_dir: Path) -> Iterator[servers.PostgresServer]:
    """A private PostgreSQL (superuser `postgres`, password servers.PASSWORD) on a free port."""
    yield from _serve(servers.start_postgres, servers_dir / "postgres")


@pytest.fixture(scope="session")
def mysql_server(servers_dir: Path) -> Iterator[servers.MysqlServer]:
    """A private MariaDB (user `root`, password servers.PASSWORD) on a free port."""
    yield from _serve(servers.start_mariadb, servers_dir / "mariadb")


@pytest.fixture(scope="session")
def moto(servers_dir: Path):
    """moto's server (DynamoDB, RDS, S3 for the real boto3) on loopback, once per session.
    Tests call ``moto.reset()`` when they need an empty account."""
    from harness import moto_server

    yield from _serve(moto_server.start_moto, servers_dir / "moto")


@pytest.fixture(scope="session")
def s3_endpoint(moto):
    """moto's S3 for the S3 catalog driver (tests/support/catalog_drivers.py: ``s3_driver``,
    ``s3_config``), in this process and in the processes it spawns."""
    from tests.support.catalog_drivers import use_s3_endpoint

    with use_s3_endpoint(moto):
        yield moto


# --- the ScalarDB-backed node (harness/scalardb_node.py) ---------------------------------------


@pytest.fixture(scope="session")
def scalardb_node_cp() -> str:
    """The built node's Java class path (scripts/fetch-scalardb-node.sh, run by `make test`);
    a missing build skips locally and fails in CI."""
    from harness import scalardb_node

    try:
        return scalardb_node.require_node()
    except scalardb_node.NodeUnavailable as exc:
        _unavailable(str(exc))


# --- Cassandra (harness/cassandra_cluster.py) and a private sshd (harness/sshd.py) ------------


@pytest.fixture(scope="session")
def cassandra_cluster(servers_dir: Path):
    """A real 3-node Cassandra 5.0 cluster on 127.0.0.1-3 (scripts/fetch-cassandra.sh, run by
    `make test`), started once per session; ~1 GB RSS per node. Tests make their own keyspaces.
    ``cluster.store_settings(keyspaces)`` is a cassandra store's site-file entry (local
    executor); ``cluster.start_seconds`` how long the start took."""
    from harness import cassandra_cluster as cc

    try:
        cluster = cc.CassandraCluster(servers_dir / "cassandra")
    except cc.CassandraUnavailable as exc:
        _unavailable(str(exc))
    try:
        cluster.start()
        print(f"\ncassandra: 3 nodes up in {cluster.start_seconds:.1f} s")
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def sshd(servers_dir: Path):
    """A private OpenSSH server on 127.0.0.1 with its own host and client keys."""
    from harness import sshd as sshd_harness

    try:
        server = sshd_harness.start_sshd(servers_dir / "sshd")
    except sshd_harness.SshdUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def scalardb_tools() -> Path:
    """ScalarDB's schema loader class path folder (``.cache/scalardb-node/tools``, built with the
    node by `make test`); missing jars skip locally and fail in CI."""
    from harness import scalardb_node

    try:
        return scalardb_node.require_tools()
    except scalardb_node.NodeUnavailable as exc:
        _unavailable(str(exc))
