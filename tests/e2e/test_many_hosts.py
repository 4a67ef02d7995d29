"""Many machines: workers on two hosts (network namespaces, harness/netns.py) sharing one S3
catalog (moto's server) and one Prefect server on PostgreSQL.

Host A runs backups, host B the watchdog, restores and prunes; each host reaches the Prefect
API, the databases, the test admin nodes and the catalog only through the network (relays on
the bridge's loopback-range addresses), as separate machines would. The catalog has an address
of its own so that one host's route to it can be cut.

What this cannot prove: real S3's atomicity of conditional writes (moto checks then writes),
latency and partitions of a real network (a cut route here fails at once), clock skew between
hosts (they share the kernel's clock).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from harness import netns
from harness.bank_app import BankApp, check_consistent, create_schema
from harness.gate_server import GateCluster, start_gate_cluster
from harness.prefect_server import REPO, PrefectServer, prefect_executable
from harness.servers import PASSWORD
from harness.sites import MY_ENV, PG_ENV, SiteDb, SiteDbs
from pausepoint.catalog import open_catalog
from pausepoint.secrets import SecretResolver
from pausepoint.site import load_site
from tests.e2e.conftest import _unavailable
from tests.support.catalog_drivers import S3_KEY_ENV, S3_SECRET_ENV
from tests.support.prefect_api import create_flow_run_over_rest, run_logs, wait_final

pytestmark = [pytest.mark.e2e]

BUCKET = "pausepoint-hosts"
ROLES = ("backup", "restore", "watchdog", "prune")
_sites = itertools.count()


@dataclass
class Hosts:
    server: PrefectServer
    network: netns.Network
    a: netns.Host
    b: netns.Host
    catalog_address: str  # where the hosts reach the S3 catalog (moto, relayed)
    moto_port: int
    logs: Path
    deployments: dict[str, dict] = field(default_factory=dict)  # "backup-host-a" -> deployment
    workers: dict[str, object] = field(default_factory=dict)

    @property
    def api_for_hosts(self) -> str:
        return f"http://{self.network.address}:{self.server.port}/api"

    def worker_env(self) -> dict[str, str]:
        from harness.moto_server import ACCESS_KEY, SECRET_KEY

        return self.server.env(
            PREFECT_API_URL=self.api_for_hosts,
            PAUSEPOINT_HOME=str(REPO),
            PREFECT_WORKER_QUERY_SECONDS="1",
            **{
                PG_ENV: PASSWORD,
                MY_ENV: PASSWORD,
                S3_KEY_ENV: ACCESS_KEY,
                S3_SECRET_ENV: SECRET_KEY,
            },
        )

    def start_worker(self, host: netns.Host) -> None:
        """A process worker for pool host-<name>, running in ``host``; returns once it polls."""
        pool, name = f"host-{host.name}", f"worker-{host.name}-{time.monotonic_ns()}"
        proc = host.popen(
            [prefect_executable(), "worker", "start", "--pool", pool, "--name", name],
            env=self.worker_env(),
            cwd=REPO,
            log=self.logs / f"{name}.log",
        )
        self.workers[host.name] = proc
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (self.logs / f"{name}.log").read_text()[-3000:]
            r = httpx.post(f"{self.server.url}/work_pools/{pool}/workers/filter", json={})
            if r.status_code == 200 and any(w["name"] == name for w in r.json()):
                return
            assert time.monotonic() < deadline, f"worker {name} did not register"
            time.sleep(0.5)

    def run(self, role: str, host: netns.Host, request: dict) -> str:
        with httpx.Client(base_url=self.server.url, timeout=30) as api:
            return create_flow_run_over_rest(
                api, self.deployments[f"{role}-host-{host.name}"], {"request": request}
            )

    def wait(self, run_id: str, timeout_s: float = 600) -> dict:
        with httpx.Client(base_url=self.server.url, timeout=30) as api:
            return wait_final(api, run_id, timeout_s)

    def logs_of(self, run_id: str) -> str:
        with httpx.Client(base_url=self.server.url, timeout=30) as api:
            return run_logs(api, run_id)


def _copy_deployment(server: PrefectServer, source: dict, name: str, pool: str) -> dict:
    """The project's deployment ``source`` again, on the work pool of one host."""
    body = {
        "name": name,
        "flow_id": source["flow_id"],
        "entrypoint": source["entrypoint"],
        "path": source.get("path"),
        "pull_steps": source["pull_steps"],
        "parameter_openapi_schema": source["parameter_openapi_schema"],
        "enforce_parameter_schema": True,
        "parameters": {},
        "work_pool_name": pool,
        "tags": ["pausepoint", "many-hosts"],
    }
    r = httpx.post(f"{server.url}/deployments/", json=body, timeout=30)
    assert r.status_code in (200, 201), r.text
    return r.json()


@pytest.fixture(scope="module")
def hosts(prefect_server, deployments, moto, pg_server, mysql_server, tmp_path_factory):
    why = netns.available()
    if why:
        _unavailable(f"network namespaces: {why}")
    network = netns.Network.free().up()
    try:
        catalog_address = network.add_address(250)
        moto_port = urlsplit(moto.endpoint).port
        assert moto_port is not None
        network.forward(moto_port, address=catalog_address)
        for port in (prefect_server.port, pg_server.port, mysql_server.port):
            network.forward(port)
        h = Hosts(
            prefect_server,
            network,
            network.host("a"),
            network.host("b"),
            catalog_address,
            moto_port,
            tmp_path_factory.mktemp("many-hosts-logs"),
        )
        moto.client("s3").create_bucket(Bucket=BUCKET)
        for host in (h.a, h.b):
            prefect_server.cli("work-pool", "create", f"host-{host.name}", "--type", "process")
            for role in ROLES:
                name = f"{role}-host-{host.name}"
                h.deployments[name] = _copy_deployment(
                    prefect_server, deployments[role], name, f"host-{host.name}"
                )
            h.start_worker(host)
        yield h
    finally:
        network.down()


@dataclass
class HostSite:
    path: Path
    dbs: SiteDbs
    stores: dict[str, list[SiteDb]]
    ledger: GateCluster
    auditor: GateCluster

    @property
    def servers(self):
        return self.ledger.servers + self.auditor.servers

    def edit_pause(self, **settings: int) -> None:
        data = yaml.safe_load(self.path.read_text())
        data["pause"].update(settings)
        self.path.write_text(yaml.safe_dump(data, sort_keys=False))

    def paused(self) -> list[str]:
        return [s.target for s in self.servers if s.gate.check_paused()]

    def catalog(self):
        site = load_site(self.path)
        return site, open_catalog(site.catalog, SecretResolver())

    def points(self) -> list:
        site, catalog = self.catalog()
        return catalog.list_points(site.site)

    def bank(self) -> BankApp:
        """Writers over each component's pair of databases, through its nodes' gates."""
        comps = []
        for cluster, (a, b) in ((self.ledger, self.stores["ledger"]),
                                (self.auditor, self.stores["auditor"])):  # fmt: skip
            comps.append(([s.gate for s in cluster.servers], [(a.live, b.live)]))
        return BankApp(components=comps, writers=3)


@pytest.fixture
def site(hosts, pg_server, mysql_server, tmp_path, monkeypatch) -> Iterator[HostSite]:
    """A site whose every address is one the hosts reach through the network: the admin nodes
    and databases of this test, relayed; an S3 catalog of its own prefix."""
    from harness.moto_server import ACCESS_KEY, SECRET_KEY

    monkeypatch.setenv(S3_KEY_ENV, ACCESS_KEY)
    monkeypatch.setenv(S3_SECRET_ENV, SECRET_KEY)
    n = next(_sites)
    dbs = SiteDbs(pg_server, mysql_server, monkeypatch, prefix=f"mh{n}")
    stores = {
        "ledger": [dbs.database("ledger_c", "postgres"), dbs.database("ledger_s", "mysql")],
        "auditor": [dbs.database("auditor_c", "postgres"), dbs.database("auditor_s", "mysql")],
    }
    for db in dbs.all():
        create_schema(db.live)
    with start_gate_cluster(2) as ledger, start_gate_cluster(1) as auditor:
        for s in ledger.servers + auditor.servers:
            hosts.network.forward(s.port)
        data = dbs.site_dict({"ledger": ledger.targets, "auditor": auditor.targets}, stores)
        data = yaml.safe_load(yaml.safe_dump(data).replace("127.0.0.1", hosts.network.address))
        data["catalog"] = {
            "driver": "s3",
            "bucket": BUCKET,
            "prefix": f"hosts/{tmp_path.name}",
            "region": "us-east-1",
            "endpoint_url": f"http://{hosts.catalog_address}:{hosts.moto_port}",
            "addressing_style": "path",
            "part_size_mib": 5,
            "spool_dir": str(tmp_path / "spool"),
            "credentials": {
                "source": "keys",
                "access_key_id": {"env": S3_KEY_ENV},
                "secret_access_key": {"env": S3_SECRET_ENV},
            },
        }
        path = tmp_path / "site.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        os.chmod(tmp_path, 0o755)  # the flow runs of the hosts read it (same user, no matter)
        yield HostSite(path, dbs, stores, ledger, auditor)


def test_backups_started_at_once_on_two_hosts_pause_one_after_the_other(hosts, site):
    runs = [hosts.run("backup", host, {"site_file": str(site.path)}) for host in (hosts.a, hosts.b)]
    finals = [hosts.wait(r) for r in runs]
    for run, final in zip(runs, finals, strict=True):
        assert final["state"]["type"] == "COMPLETED", hosts.logs_of(run)[-3000:]
    assert {f["work_pool_name"] for f in finals} == {"host-a", "host-b"}
    points = sorted(site.points(), key=lambda p: p.window.start)
    assert len(points) == 2
    first, second = points[0].window, points[1].window
    # One pause at a time per site, across machines: the second window opens after the first
    # closed (the site's pause lock is the Prefect server's, shared by both hosts).
    assert first.end <= second.start, (first, second)
    assert site.paused() == []


def test_a_point_registered_on_host_a_is_listed_and_restored_on_host_b(hosts, site, tmp_path):
    app = site.bank().start()
    try:
        app.wait_for_acks(30)
        run = hosts.run("backup", hosts.a, {"site_file": str(site.path)})
        final = hosts.wait(run)
        assert final["state"]["type"] == "COMPLETED", hosts.logs_of(run)[-3000:]
        app.wait_for_acks(len(app.acks) + 30)  # writes go on after the unpause
    finally:
        app.stop()
    (point,) = site.points()  # seen from here the moment it exists: the shared catalog

    target = tmp_path / "target.yaml"
    target.write_text(
        yaml.safe_dump({"stores": {db.store_name: db.restore_override for db in site.dbs.all()}})
    )
    run = hosts.run(
        "restore",
        hosts.b,
        {"site_file": str(site.path), "point_id": point.id, "confirm": point.id,
         "target_file": str(target)},
    )  # fmt: skip
    final = hosts.wait(run)
    assert final["state"]["type"] == "COMPLETED", hosts.logs_of(run)[-3000:]
    assert final["work_pool_name"] == "host-b"
    pairs = [(a.restored, b.restored) for a, b in site.stores.values()]
    verdict = check_consistent(pairs, app.acks, point.window.start, point.window.end)
    assert verdict["ok"], verdict
    assert verdict["acked_before_window"] >= 30


@pytest.mark.timeout(1500)
def test_host_a_losing_its_route_to_the_catalog_after_the_unpause_leaves_nothing(hosts, site):
    """The backup host cannot reach the catalog once the window closed: no point, nothing
    paused; its staging is swept later, by the next backup (here from host B)."""
    site.edit_pause(lease_margin_ms=1_000)  # its lease expires soon after the failure
    ledger_pg = site.stores["ledger"][0]
    kind = site.dbs.kinds["postgres"]
    kind.create_bulk(ledger_pg.live_name)
    kind.grow_bulk(ledger_pg.live_name, 400_000)  # tens of MB: the copy outlasts the window
    run = hosts.run("backup", hosts.a, {"site_file": str(site.path)})
    deadline = time.monotonic() + 300
    while len(site.paused()) < len(site.servers):
        assert time.monotonic() < deadline, "the backup never paused every node"
        time.sleep(0.01)
    while site.paused():
        assert time.monotonic() < deadline, "the backup never unpaused"
        time.sleep(0.005)
    hosts.a.cut(hosts.catalog_address)
    try:
        final = hosts.wait(run)
    finally:
        hosts.a.mend(hosts.catalog_address)
    assert final["state"]["type"] in ("FAILED", "CRASHED"), hosts.logs_of(run)[-3000:]
    assert site.paused() == []
    assert site.points() == []
    s, catalog = site.catalog()
    assert catalog.staged_ids(s.site), "the failed run left staging for prune to sweep"
    # The next backup of the site, from host B, sweeps it: the run is provably gone (its flow
    # run ended, its lease released or expired) and nothing was written there for a while (an
    # upload the cut left unfinished counts as writing).
    (failed,) = catalog.staged_ids(s.site)
    deadline = time.monotonic() + 300
    while failed in catalog.staged_ids(s.site):
        assert time.monotonic() < deadline, "the failed run's staging is never swept"
        time.sleep(5)
        again = hosts.run("backup", hosts.b, {"site_file": str(site.path)})
        assert hosts.wait(again)["state"]["type"] == "COMPLETED", hosts.logs_of(again)[-3000:]
    assert failed not in [p.id for p in site.points()]
    assert site.paused() == []


def test_the_backup_hosts_death_during_the_hold_is_healed_by_the_watchdog_on_host_b(hosts, site):
    """Every process of host A is killed while the nodes are paused; the watchdog on host B
    unpauses every node within the lease's deadline plus one watchdog period, and no point is
    registered."""
    period_s = 5.0
    site.edit_pause(min_hold_ms=20_000, lease_margin_ms=1_000)
    run = hosts.run("backup", hosts.a, {"site_file": str(site.path)})
    deadline = time.monotonic() + 300
    while len(site.paused()) < len(site.servers):
        assert time.monotonic() < deadline, hosts.logs_of(run)[-3000:]
        time.sleep(0.01)
    s, catalog = site.catalog()
    (lease,) = [x for x in catalog.scan_leases(s.site).leases if x.state == "active"]
    killed = hosts.a.kill_all()
    assert killed
    try:
        watchdogs = 0
        while site.paused():
            assert time.time() < lease.deadline.timestamp() + 3 * period_s + 60, (
                "nodes still paused long after the lease deadline"
            )
            wd = hosts.run("watchdog", hosts.b, {"site_file": str(site.path)})
            assert hosts.wait(wd)["state"]["type"] == "COMPLETED", hosts.logs_of(wd)[-3000:]
            watchdogs += 1
            if site.paused():
                time.sleep(period_s)
        unpaused_at = time.time()
        # The watchdog honoured the lease: the runs before its deadline left the nodes paused.
        assert watchdogs >= 2 and unpaused_at >= lease.deadline.timestamp() - 1
        # Within the lease deadline plus one watchdog period (each watchdog run itself takes
        # a few seconds through the worker on host B: counted in the slack).
        assert unpaused_at <= lease.deadline.timestamp() + period_s + 60
        assert site.points() == []
    finally:
        hosts.start_worker(hosts.a)  # host A "reboots"
